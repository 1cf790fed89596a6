"""The `jetfleet power-states` commands, merged into the `jetfleet` CLI by `jetfleet.cli`.

jetfleet power-states probe [--out JSON] [--dwell-s S] [--suspend-s S] [--sysfs-root /]
    On a Jetson (only there): measure the board power of idle and of each power state this board offers, and
    each transition's latency and energy, with the board's own meter (jtop); write them as `PowerStateSpec`
    fields with their sources (actors.power_probe). Needs root for the sysfs writes and rtcwake.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer

power_states_app = typer.Typer(no_args_is_help=True)


@power_states_app.command("probe")
def probe(
    out: Path = typer.Option(None, "--out", help="write the figures here (JSON); stdout otherwise"),
    dwell_s: float = typer.Option(5.0, "--dwell-s", help="seconds of power samples per state"),
    suspend_s: float = typer.Option(None, "--suspend-s", help="also suspend once for this long (rtcwake)"),
    sysfs_root: Path = typer.Option(Path("/"), "--sysfs-root", help="root of /sys and /etc (tests use a fake)"),
) -> None:
    """Measure this Jetson's power states and write them in the catalogue's format."""
    from actors.power_probe import require_jetson

    require_jetson(sysfs_root)  # before jtop, which installs anywhere but measures only a Jetson
    result = asyncio.run(_probe(sysfs_root, dwell_s, suspend_s))
    text = json.dumps(_json_safe(result), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        typer.echo(f"wrote {out}")


async def _probe(root: Path, dwell_s: float, suspend_s: float | None) -> dict[str, Any]:
    import subprocess

    from actors.dvfs import JetsonDvfs
    from actors.power import JtopPowerMeter
    from actors.power_probe import probe_power_states
    from actors.power_states import JetsonPowerStates

    meter = JtopPowerMeter()
    try:
        backend = JetsonPowerStates(root=root, dvfs=JetsonDvfs(root=root))

        def rtcwake(seconds: float) -> None:
            subprocess.run(["rtcwake", "-m", "mem", "-s", str(max(1, math.ceil(seconds)))], check=True)

        return await probe_power_states(
            backend,
            lambda: meter.power_w(0.0),
            host=socket.gethostname(),
            date=datetime.now(timezone.utc).date().isoformat(),
            dwell_s=dwell_s,
            suspend_s=suspend_s,
            rtcwake=rtcwake,
        )
    finally:
        meter.close()


def _json_safe(x: Any) -> Any:
    """NaN (not measured) as null, so the file is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x
