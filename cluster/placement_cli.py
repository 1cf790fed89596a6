"""`jetfleet place`: model-driven placement of applications onto a fleet."""

from __future__ import annotations

import typer

app = typer.Typer()
