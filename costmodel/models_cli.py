"""`jetfleet models ...`: the model repository (`costmodel.model_repository`).

jetfleet models add PATH.onnx --family F [--name N] [--task T] --accuracy PCT --metric M [--plan KIND=PLAN]
                                    copy an ONNX file into the repository, facts computed from its graph
jetfleet models list                the built-in models and the repository's, with their facts
jetfleet models show NAME           one model: facts and their sources, input, outputs, files

The repository is `--repository DIR`, else $JETFLEET_MODEL_REPOSITORY, else ./models.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from jetfleet.errors import ConfigError

models_app = typer.Typer(no_args_is_help=True)

REPOSITORY_HELP = "model repository folder (default: $JETFLEET_MODEL_REPOSITORY, else ./models)"


def repository_root(given: Path | None) -> Path:
    """The repository a command works on: `given`, else $JETFLEET_MODEL_REPOSITORY, else ./models."""
    from costmodel.model_zoo import REPOSITORY_ENV

    return Path(given or os.environ.get(REPOSITORY_ENV) or "models")


def _use(root: Path) -> None:
    from costmodel.model_zoo import use_repository

    if root.is_dir():
        use_repository(root)


@models_app.command("add")
def add(
    onnx_file: Path = typer.Argument(..., help="the model's ONNX file"),
    family: str = typer.Option(..., "--family", help="model family (variants of one family share it)"),
    accuracy: float = typer.Option(..., "--accuracy", help="accuracy in % on its metric"),
    metric: str = typer.Option(..., "--metric", help="accuracy metric, e.g. imagenet-top1, coco-ap50"),
    name: str = typer.Option(None, "--name", help="model name requests use (default: the family)"),
    variant: str = typer.Option("", "--variant", help="the variant's label within its family"),
    task: str = typer.Option("classification", "--task", help="classification (top-5) | detection | other"),
    plans: list[str] = typer.Option(None, "--plan", help="a prebuilt TensorRT plan: KIND=PATH (repeatable)"),
    force: bool = typer.Option(False, "--force", help="replace a model of the same name"),
    repository: Path = typer.Option(None, "--repository", help=REPOSITORY_HELP),
) -> None:
    """Register an ONNX model: copy it into the repository and write its model.yaml."""
    from costmodel.model_repository import add_model

    plan_files = {}
    for item in plans or []:
        kind, sep, path = item.partition("=")
        if not sep or not kind or not path:
            raise ConfigError(f"--plan {item!r}: expected KIND=PATH")
        plan_files[kind] = path
    if task not in ("classification", "detection", "other"):
        raise ConfigError(f"--task {task!r}: expected classification, detection or other")
    root = repository_root(repository)
    entry = add_model(
        root,
        onnx_file,
        family=family,
        name=name,
        variant=variant,
        task=task,
        accuracy_pct=accuracy,
        accuracy_metric=metric,
        plans=plan_files,
        overwrite=force,
    )
    info = entry.info
    typer.echo(
        f"added {info.name} to {root}: {info.gmacs:.4g} GMACs/frame, {info.params_m:.4g} M parameters, "
        f"input {info.model_input.name} {list(info.model_input.shape)}, outputs {', '.join(info.outputs)}"
    )


@models_app.command("list")
def list_models(
    repository: Path = typer.Option(None, "--repository", help=REPOSITORY_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Every model this repository and the built-in zoo hold."""
    from costmodel.model_zoo import MODELS, model_entry

    _use(repository_root(repository))
    rows = []
    for name in sorted(MODELS):
        entry = model_entry(name)
        info = entry.info
        rows.append(
            {
                "name": name,
                "family": info.family,
                "task": info.task,
                "gmacs": round(info.gmacs, 6),
                "params_m": round(info.params_m, 6),
                "input_hw": info.input_hw,
                "accuracy": f"{info.accuracy_pct:g} {info.accuracy_metric}",
                "files": "onnx" if entry.onnx_path else "built-in (facts only)",
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="models")
    for col in rows[0]:
        table.add_column(col, justify="right" if col in ("gmacs", "params_m", "input_hw") else "left")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)


@models_app.command("show")
def show(
    name: str = typer.Argument(..., help="model name"),
    repository: Path = typer.Option(None, "--repository", help=REPOSITORY_HELP),
) -> None:
    """One model's facts (with their sources), input, outputs and files, as JSON."""
    from costmodel.model_zoo import model_entry

    _use(repository_root(repository))
    entry = model_entry(name)
    info = entry.info
    spec = info.model_input
    doc = {
        "name": info.name,
        "family": info.family,
        "variant": info.variant,
        "task": info.task,
        "accuracy": {"value": info.accuracy_pct, "metric": info.accuracy_metric},
        "facts": {"gmacs": info.gmacs, "params_m": info.params_m, "input_hw": info.input_hw},
        "sources": info.sources,
        "input": {"name": spec.name, "shape": list(spec.shape), "datatype": spec.datatype},
        "outputs": list(info.outputs),
        "onnx": str(entry.onnx_path) if entry.onnx_path else None,
        "plans": {k: str(v) for k, v in entry.plans.items()},
    }
    typer.echo(json.dumps(doc, indent=2))
