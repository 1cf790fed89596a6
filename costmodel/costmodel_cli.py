"""`jetfleet costmodel ...`: train, evaluate and load the LightGBM cost model."""

from __future__ import annotations

import typer

costmodel_app = typer.Typer(no_args_is_help=True)
