"""Benchmarks: `make bench` runs every `benchmarks/bench_*.py` and writes `benchmarks/out/<name>.json`.

A benchmark module defines `run(quick: bool = False) -> dict` returning JSON-ready figures. Speed targets
live here, never in unit tests; ratios are measured side by side within one run.
"""
