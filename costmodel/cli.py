"""`jetfleet devices ...` and `jetfleet costmodel ...` commands."""

from __future__ import annotations

import typer

devices_app = typer.Typer(no_args_is_help=True)
costmodel_app = typer.Typer(no_args_is_help=True)
