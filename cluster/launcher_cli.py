"""`jetfleet cluster ...`: Ray cluster-launcher configs for real fleets."""

from __future__ import annotations

import typer

cluster_app = typer.Typer(no_args_is_help=True)
