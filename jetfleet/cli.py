"""The `jetfleet` command line. Each top-level package owns its commands in its own `cli` module;
this file only assembles them and turns jetfleet's own errors into one-line messages.

Command modules must stay cheap to import: Ray, LightGBM, torch and matplotlib are imported inside
the command functions, so `jetfleet --help` is instant.
"""

from __future__ import annotations

import sys

import typer

from jetfleet.errors import JetfleetError

app = typer.Typer(
    name="jetfleet",
    help="Energy-aware, SLO-aware DNN inference on a heterogeneous fleet of edge GPUs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _assemble() -> None:
    from cluster import cli as cluster_cli
    from cluster import placement_cli
    from cluster.launcher_cli import cluster_app
    from costmodel.costmodel_cli import costmodel_app
    from costmodel.devices_cli import devices_app
    from costmodel.models_cli import models_app
    from deployments import cli as deployments_cli
    from deployments import loadgen_cli, profile_cli
    from deployments.power_states_cli import power_states_app
    from simulator import cli as simulator_cli
    from simulator import overload_cli

    app.add_typer(devices_app, name="devices", help="The device catalogue and emulated device models.")
    app.add_typer(costmodel_app, name="costmodel", help="Train and evaluate the LightGBM cost model.")
    app.add_typer(models_app, name="models", help="The model repository: add, list, show models.")
    app.add_typer(cluster_app, name="cluster", help="Cluster-launcher configs for real fleets.")
    app.add_typer(power_states_app, name="power-states", help="Measure a real Jetson's sleep states.")
    for module in (
        simulator_cli,
        overload_cli,
        cluster_cli,
        placement_cli,
        deployments_cli,
        profile_cli,
        loadgen_cli,
    ):
        app.registered_commands.extend(module.app.registered_commands)


_assemble()


def main() -> None:
    """Console entry point: run the app; a JetfleetError becomes `error: ...` and exit code 2."""
    try:
        app(standalone_mode=False)
    except JetfleetError as e:
        # One line, even when the cause (a YAML or CSV parser) wrote several.
        typer.secho(f"error: {' '.join(str(e).split())}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except typer.Abort:
        typer.secho("aborted", err=True)
        sys.exit(130)
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, FileNotFoundError):
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
