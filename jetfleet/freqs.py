"""Finding a frequency in a device's list of available frequencies (1 Hz tolerance).

Every dispatch, completion and cost look-up asks it, and a device's list is one tuple for the device's life, so
the answers for the listed values themselves are kept in a table per list (kept by the tuple's identity); any other
value is found by scanning the list, as the table was built.
"""

from __future__ import annotations

from collections.abc import Sequence

_TABLES: dict[int, tuple[tuple[float, ...], dict[float, int]]] = {}
_MAX_TABLES = 1024  # distinct lists seen (a fleet has a few); past this the table starts over


def listed_index(freqs_hz: Sequence[float], freq_hz: float) -> int:
    """The index of the first listed frequency within 1 Hz of `freq_hz`, or -1 when the list has none."""
    if type(freqs_hz) is tuple:  # immutable: its table cannot go stale
        hit = _TABLES.get(id(freqs_hz))
        if hit is None or hit[0] is not freqs_hz:
            if len(_TABLES) >= _MAX_TABLES:
                _TABLES.clear()
            hit = _TABLES[id(freqs_hz)] = (freqs_hz, {f: _scan(freqs_hz, f) for f in freqs_hz})
        i = hit[1].get(freq_hz)
        if i is not None:
            return i
    return _scan(freqs_hz, freq_hz)


def _scan(freqs_hz: Sequence[float], freq_hz: float) -> int:
    for i, f in enumerate(freqs_hz):
        if abs(f - freq_hz) < 1.0:
            return i
    return -1
