"""`jetfleet costmodel ...`: train, evaluate and load the LightGBM cost model.

jetfleet costmodel eval --profiles PATH --split random|freq|device [--holdout NAME] [--seed N] --json OUT
                                    MAPE of latency and energy on a held-out split (keys: latency_mape_pct,
                                    energy_mape_pct, n_train, n_test; device split: few_shot too)
jetfleet costmodel train --profiles PATH --out DIR
                                    fit on every row and save (load with LightGBMCostModel.load(DIR))
jetfleet costmodel info DIR         what a saved model was trained on
jetfleet costmodel predict DIR --kind K --model M --batch B --freq-mhz F
                                    one prediction from a saved model
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

costmodel_app = typer.Typer(no_args_is_help=True)


@costmodel_app.command("eval")
def eval_command(
    profiles: Path = typer.Option(..., "--profiles", help="profile table: LoudVA Profiling.csv, energy/ or ours"),
    split: str = typer.Option(..., "--split", help="random (seeded 80/20), freq (every 3rd frequency) or device"),
    holdout: str = typer.Option("", "--holdout", help="device split: kind held out (e.g. jetson-nano, or Nano)"),
    seed: int = typer.Option(0, "--seed", help="seed of the random split, the few-shot sample and LightGBM"),
    json_out: Path = typer.Option(None, "--json", help="write the result as JSON here"),
) -> None:
    """Fit on the train part of a split and report latency and energy MAPE on the rest."""
    from rich.console import Console

    from costmodel.evaluation import evaluate
    from costmodel.evaluation import split as split_rows
    from costmodel.profiles import read_profiles

    console = Console(stderr=True)
    table = read_profiles(profiles)
    split_rows(table, split, holdout=holdout or None, seed=seed)  # bad split/holdout fail before any fitting
    with console.status(f"fitting and scoring the {split} split of {profiles.name}"):
        result = evaluate(table, split, holdout=holdout or None, seed=seed)
    _print_eval(result.to_dict())
    if json_out is not None:
        _write_json(json_out, result.to_dict())


@costmodel_app.command("train")
def train_command(
    profiles: Path = typer.Option(..., "--profiles", help="profile table to fit on (every row)"),
    out: Path = typer.Option(..., "--out", help="folder to write the model into"),
    seed: int = typer.Option(0, "--seed", help="LightGBM seed"),
) -> None:
    """Fit the cost model on a profile table and save it to a folder."""
    from rich.console import Console

    from costmodel.lgbm import LightGBMCostModel
    from costmodel.profiles import read_profiles

    table = read_profiles(profiles)
    with Console(stderr=True).status(f"fitting on {len(table)} rows of {profiles.name}"):
        model = LightGBMCostModel(seed=seed).fit(table, source=str(profiles))
    model.save(out)
    summary = model.training_summary_
    typer.echo(
        f"wrote {out}: {summary['n_rows']} rows of {', '.join(summary['kinds'])}; in-sample MAPE "
        f"latency {summary['in_sample_latency_mape_pct']:.2f} %, energy {summary['in_sample_energy_mape_pct']:.2f} %"
    )


@costmodel_app.command("info")
def info_command(model_dir: Path = typer.Argument(..., help="folder written by `costmodel train`")) -> None:
    """Show what a saved model was trained on and with which parameters."""
    from costmodel.lgbm import read_metadata

    meta = read_metadata(model_dir)
    typer.echo(json.dumps({k: meta[k] for k in ("params", "training", "lightgbm_version") if k in meta}, indent=2))


@costmodel_app.command("predict")
def predict_command(
    model_dir: Path = typer.Argument(..., help="folder written by `costmodel train`"),
    kind: str = typer.Option(..., "--kind", help="device kind, e.g. agx-xavier"),
    model: str = typer.Option("inceptionv3", "--model", help="model name from the zoo"),
    batch: int = typer.Option(1, "--batch", min=1, help="frames per batch"),
    freq_mhz: float = typer.Option(..., "--freq-mhz", help="GPU frequency, MHz"),
) -> None:
    """Predict latency and energy of one batch with a saved model (JSON on stdout)."""
    import pandas as pd

    from costmodel.lgbm import LightGBMCostModel

    cost = LightGBMCostModel.load(model_dir)
    row = pd.DataFrame({"kind": [kind], "model": [model], "batch": [batch], "freq_hz": [freq_mhz * 1e6]})
    latency, energy = cost.predict(row)
    out = {"kind": kind, "model": model, "batch": batch, "freq_hz": freq_mhz * 1e6}
    out.update(latency_s=float(latency[0]), energy_j=float(energy[0]), energy_per_frame_j=float(energy[0]) / batch)
    typer.echo(json.dumps(out))


def _print_eval(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    where = f" (held out: {result['holdout']})" if result.get("holdout") else ""
    table = Table(
        title=f"cost model, {result['split']} split{where}: {result['n_train']} train / {result['n_test']} test"
    )
    for col in ("rows", "n", "latency MAPE %", "energy MAPE %"):
        table.add_column(col, justify="left" if col == "rows" else "right")
    table.add_row(
        "all test rows", str(result["n_test"]), f"{result['latency_mape_pct']:.2f}", f"{result['energy_mape_pct']:.2f}"
    )
    for kind, r in result["per_kind"].items():
        table.add_row(f"  {kind}", str(r["n_test"]), f"{r['latency_mape_pct']:.2f}", f"{r['energy_mape_pct']:.2f}")
    shot = result.get("few_shot")
    if shot:
        label = f"+{shot['n_shots']} rows ({shot['fraction']:.0%}) of it"
        table.add_row(
            "zero-shot, other 90 %",
            str(shot["n_test"]),
            f"{shot['zero_shot_latency_mape_pct']:.2f}",
            f"{shot['zero_shot_energy_mape_pct']:.2f}",
        )
        table.add_row(label, str(shot["n_test"]), f"{shot['latency_mape_pct']:.2f}", f"{shot['energy_mape_pct']:.2f}")
    Console().print(table)


def _write_json(path: Path, payload: dict) -> None:
    from jetfleet.errors import ConfigError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
    except OSError as e:
        raise ConfigError(f"{path}: cannot write the JSON result: {e}") from None
    typer.echo(f"wrote {path}")
