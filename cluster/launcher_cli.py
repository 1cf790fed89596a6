"""`jetfleet cluster ...`: Ray cluster-launcher configs for real fleets.

jetfleet cluster config --inventory YAML --head IP --out FILE [--ssh-user U] [--ssh-key PATH] [--token-file PATH]
    Write an on-prem Ray cluster-launcher file for the inventory's hosts (see docs/real-jetsons.md).
"""

from __future__ import annotations

from pathlib import Path

import typer

cluster_app = typer.Typer(no_args_is_help=True)


@cluster_app.command("config")
def config(
    inventory: str = typer.Option(..., "--inventory", help="fleet inventory YAML with each device's host"),
    out: Path = typer.Option(Path("cluster.yaml"), "--out", help="cluster-launcher file to write"),
    head: str = typer.Option(None, "--head", help="controller (Ray head) address; default: first device's host"),
    ssh_user: str = typer.Option("jetson", "--ssh-user", help="SSH user on every node"),
    ssh_key: str = typer.Option(None, "--ssh-key", help="SSH private key (default: ssh-agent)"),
    token_file: Path = typer.Option(
        None, "--token-file", help="Ray auth token file (created if missing; default: beside --out)"
    ),
    source_dir: Path = typer.Option(Path("."), "--source", help="project checkout to mount on every node"),
) -> None:
    """Write a Ray cluster-launcher config (on-prem provider, device resources, token auth)."""
    from rich.console import Console

    from cluster.inventory import load_fleet
    from cluster.launcher import LauncherOptions, node_resources, write_launcher_config
    from jetfleet.errors import ConfigError

    fleet = load_fleet(inventory)
    if head is None:
        hosts = [d.host for d in fleet.devices if d.host]
        if not hosts:
            raise ConfigError(f"{inventory}: no device has a 'host'; pass --head or add hosts to the inventory")
        head = hosts[0]
    token = token_file or out.with_name(out.stem + ".token")
    options = LauncherOptions(
        head=head, ssh_user=ssh_user, ssh_private_key=ssh_key, token_file=str(token), source_dir=str(source_dir)
    )
    path = write_launcher_config(fleet, options, out)
    console = Console()
    for host, res in sorted(node_resources(fleet, head).items()):
        role = "head" if host == head else "worker"
        console.print(f"  {role:6} {host:18} {', '.join(sorted(res)) or '(controller only)'}")
    console.print(f"wrote {path} (token in {token}); start it with: ray up {path}")
