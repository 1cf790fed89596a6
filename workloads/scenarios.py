"""LoudVA scenario files -> requests.

A LoudVA scenario (`../shared/data/loudva/scenarios/*.csv`, written by its workload generator) is one CSV
row per request: an event seen by a camera after its filter, carrying several frames.

    Time                 seconds since the start of the scenario (the request's arrival)
    Frames After Filter  frames in the request (>= 1)
    Camera Index         which camera sent it (becomes the request's stream, `camera<N>`)
    Throughput           informative only (the generator's running rate); ignored
    latency_constraint   the request's SLO in seconds from its arrival (> 0)

Rows become `Request(request_id=row number from 0 + id_offset, ...)` in file order. Every problem raises
`DataError` naming the file, the row (1-based data row, as a spreadsheet shows it after the header) and
the column.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from jetfleet.errors import DataError
from jetfleet.types import DEFAULT_MODEL, Request

COLUMNS = ("Time", "Frames After Filter", "Camera Index", "latency_constraint")


def read_scenario(
    path: str | Path, *, id_offset: int = 0, model: str = DEFAULT_MODEL, priority: int = 0
) -> list[Request]:
    """Read one LoudVA scenario CSV into requests (see the module docstring for the format)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such scenario file")
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read as CSV: {e}") from None
    if not rows:
        raise DataError(f"{path}: empty file; expected a header with columns {list(COLUMNS)}")
    header = [c.strip() for c in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; found {header}")
    col = {name: header.index(name) for name in COLUMNS}
    requests: list[Request] = []
    for row_no, row in enumerate(rows[1:], start=1):
        if not any(cell.strip() for cell in row):
            continue
        time_s = _number(path, row_no, row, col, "Time", minimum=0.0)
        frames = _number(path, row_no, row, col, "Frames After Filter", minimum=1.0, integer=True)
        camera = _number(path, row_no, row, col, "Camera Index", minimum=0.0, integer=True)
        slo_s = _number(path, row_no, row, col, "latency_constraint", minimum=0.0, strict=True)
        requests.append(
            Request(
                request_id=id_offset + len(requests),
                arrival_s=time_s,
                n_frames=int(frames),
                slo_s=slo_s,
                model=model,
                priority=priority,
                stream=f"camera{int(camera)}",
            )
        )
    if not requests:
        raise DataError(f"{path}: no requests (only a header)")
    return requests


def _number(
    path: Path,
    row_no: int,
    row: list[str],
    col: dict[str, int],
    name: str,
    *,
    minimum: float,
    integer: bool = False,
    strict: bool = False,
) -> float:
    where = f"{path}: row {row_no}, column {name!r}"
    try:
        text = row[col[name]].strip()
    except IndexError:
        raise DataError(f"{where}: missing value (row has {len(row)} cells)") from None
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {text!r} is not finite")
    if integer and value != int(value):
        raise DataError(f"{where}: {text!r} must be a whole number")
    if value < minimum or (strict and value == minimum):
        raise DataError(f"{where}: {text!r} must be {'>' if strict else '>='} {minimum:g}")
    return value
