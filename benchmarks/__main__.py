"""Run benchmarks: `python -m benchmarks [NAME ...] [--quick]`; one JSON file per benchmark in benchmarks/out/."""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path

import typer

HERE = Path(__file__).parent
OUT = HERE / "out"


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    names: list[str] = typer.Argument(None, help="benchmark names (default: all), e.g. costmodel"),
    quick: bool = typer.Option(False, "--quick", help="smaller sizes, for a smoke run"),
) -> None:
    """Run the benchmarks; one JSON file per benchmark in benchmarks/out/."""
    available = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    names = names or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        print(f"error: unknown benchmark(s) {unknown}; available: {available}", file=sys.stderr)
        raise typer.Exit(2)
    OUT.mkdir(exist_ok=True)
    failed = 0
    for name in names:
        print(f"== benchmark {name}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{name}")
        started = time.perf_counter()
        try:
            figures = module.run(quick=quick)
        except Exception as e:  # one broken benchmark must not hide the others' figures
            print(f"   FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            failed += 1
            continue
        record = {
            "benchmark": name,
            "wall_s": round(time.perf_counter() - started, 3),
            "machine": {"python": platform.python_version(), "processor": platform.machine()},
            "quick": quick,
            "results": figures,
        }
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(record, indent=2, default=float) + "\n")
        print(f"   wrote {path}")
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
