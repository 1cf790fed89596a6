"""Commands of this package, merged into the `jetfleet` CLI by `jetfleet.cli`."""

from __future__ import annotations

import typer

app = typer.Typer()
