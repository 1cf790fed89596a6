"""`jetfleet devices ...`: the device catalogue and the emulated device models."""

from __future__ import annotations

import typer

devices_app = typer.Typer(no_args_is_help=True)
