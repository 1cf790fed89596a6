"""A compiled `plan_batch`: the same arithmetic as `policies.planning`'s numpy reference, as one numba loop.

`plan_batch` costs a few dozen tiny numpy calls for a (frequencies x prefixes) grid of a few hundred cells,
so on small grids the calls, not the arithmetic, are the cost. This kernel runs the same steps in the same
order with the same IEEE operations (no fastmath), so it decides identically (`tests/test_planning_kernel.py`
checks it on random inputs). numba is optional (`pip install jetfleet[fast]`): without it `KERNEL` is None
and the planner runs its numpy reference. `JETFLEET_PLANNER=numpy` forces the reference.

Read `policies.planning` for what each step means; the comments here only map steps to the reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["KERNEL"]

_EPS_S = 1e-6  # as policies.planning._EPS_S
_TRIES = 16  # as _verified_cheapest's tries
_TOLERANCE = 0.02  # as _cheapest's near-tie tolerance


def _plan(
    padded: np.ndarray,
    fastest_padded: np.ndarray,
    latency: np.ndarray,
    score: np.ndarray,
    tables_cap: int,
    ready_s: float,
    freq_index: int,
    change_delay_s: float,
    frames: np.ndarray,
    deadlines_s: np.ndarray,
    cap: int,
    lookahead: int,
    behind_rate: np.ndarray,
    overhead: np.ndarray,
    overhead_scalar: bool,
    finish_limit: np.ndarray,
    has_limit: bool,
    clock_ok: np.ndarray,
    has_clock_ok: bool,
    share: float,
) -> tuple[int, int, int, int, float, np.ndarray]:
    """(code, freq index, prefix index, frames in the batch, slack, kept candidate indices): code 0 = no plan,
    1 = a plan that protects the requests behind, 2 = overloaded (most frames per second)."""
    n_f = padded.shape[0]
    start = np.empty(n_f)
    for f in range(n_f):
        start[f] = ready_s + change_delay_s
    if freq_index >= 0:
        start[freq_index] = ready_s
    # Reachable candidates (the reference's `reachable` filter).
    kept = np.empty(len(frames), np.int64)
    n = 0
    for i in range(len(frames)):
        b = frames[i] - 1
        earliest = ready_s + change_delay_s + fastest_padded[b]
        if freq_index >= 0:
            alone = ready_s + padded[freq_index, b]
            if alone < earliest:
                earliest = alone
        if earliest <= deadlines_s[i] + _EPS_S:
            kept[n] = i
            n += 1
    kept = kept[:n]
    if n == 0:
        return 0, 0, 0, 0, 0.0, kept
    cum = np.empty(n, np.int64)
    dl = np.empty(n)
    total = 0
    for i in range(n):
        total += frames[kept[i]]
        cum[i] = total
        dl[i] = deadlines_s[kept[i]]
    k_max = 0
    while k_max < n and cum[k_max] <= cap:
        k_max += 1
    k_max = max(1, k_max)
    n_behind = min(n, k_max + lookahead)
    finish = np.empty((n_f, k_max))
    for f in range(n_f):
        for k in range(k_max):
            finish[f, k] = start[f] + padded[f, cum[k] - 1]
    head = np.empty(k_max)
    head[0] = dl[0]
    for k in range(1, k_max):
        head[k] = min(head[k - 1], dl[k])
    fits = np.empty((n_f, k_max), np.bool_)
    any_fit = False
    for f in range(n_f):
        for k in range(k_max):
            fits[f, k] = finish[f, k] <= head[k] + _EPS_S
            any_fit = any_fit or fits[f, k]
    if not any_fit:
        return 0, 0, 0, 0, 0.0, kept
    # The optimistic look-behind (`_behind_limit_one`).
    fi_fast = 0
    for f in range(1, len(behind_rate)):
        if behind_rate[f] < behind_rate[fi_fast]:
            fi_fast = f
    rate = behind_rate[fi_fast]
    over = overhead[0] if overhead_scalar else overhead[fi_fast]
    behind = np.full(k_max, np.inf)
    upto = min(k_max, n_behind - 1)
    if upto > 0:
        running = np.inf
        suffix = np.empty(n_behind - 1)
        for j in range(n_behind - 1, 0, -1):
            g = dl[j] - rate * cum[j]
            running = min(running, g)
            suffix[j - 1] = running
        for k in range(upto):
            behind[k] = suffix[k]
    for k in range(k_max):
        behind[k] += rate * cum[k] - over
    protected = np.empty((n_f, k_max), np.bool_)
    any_protected = False
    for f in range(n_f):
        for k in range(k_max):
            protected[f, k] = fits[f, k] and finish[f, k] <= behind[k] + _EPS_S
            any_protected = any_protected or protected[f, k]
    if has_clock_ok:
        some = False
        for f in range(n_f):
            for k in range(k_max):
                some = some or (protected[f, k] and clock_ok[f])
        if some:
            for f in range(n_f):
                if not clock_ok[f]:
                    for k in range(k_max):
                        protected[f, k] = False
    any_protected = False
    for f in range(n_f):
        for k in range(k_max):
            any_protected = any_protected or protected[f, k]
    if has_limit and any_protected:
        lowest = np.inf
        for f in range(n_f):
            for k in range(k_max):
                if protected[f, k] and finish[f, k] < lowest:
                    lowest = finish[f, k]
        for f in range(n_f):
            limit = max(finish_limit[f], lowest)
            for k in range(k_max):
                protected[f, k] = protected[f, k] and finish[f, k] <= limit + _EPS_S
    # `_verified_cheapest`: the cheapest protected choice whose requests behind fit as real batches.
    for _ in range(_TRIES):
        best = np.inf
        found = False
        for f in range(n_f):
            for k in range(k_max):
                if protected[f, k]:
                    found = True
                    s = score[f, cum[k] - 1]
                    if s < best:
                        best = s
        if not found:
            break
        near_at = best * (1.0 + _TOLERANCE) + 1e-12
        kk = -1
        for k in range(k_max - 1, -1, -1):
            for f in range(n_f):
                if (score[f, cum[k] - 1] if protected[f, k] else np.inf) <= near_at:
                    kk = k
                    break
            if kk >= 0:
                break
        fi = -1
        low = np.inf
        for f in range(n_f):
            s = score[f, cum[kk] - 1] if protected[f, kk] else np.inf
            if fi < 0 or s < low:
                fi, low = f, s
        exact = _batched_behind_limit(
            padded[fi], fastest_padded, tables_cap, kk, cum[:n_behind], dl, change_delay_s, share
        )
        if finish[fi, kk] <= exact + _EPS_S:
            slack = min(head[kk], exact) - finish[fi, kk]
            return 1, fi, kk, cum[kk], slack, kept
        mine = finish[fi, kk]
        for f in range(n_f):
            if finish[f, kk] >= mine:
                protected[f, kk] = False
    # `_fastest`: the most frames per second among the fitting choices.
    best_rate = -np.inf
    bf, bk = 0, 0
    for f in range(n_f):
        for k in range(k_max):
            r = cum[k] / latency[f, cum[k] - 1] if fits[f, k] else -np.inf
            if r > best_rate:
                best_rate, bf, bk = r, f, k
    return 2, bf, bk, cum[bk], 0.0, kept


def _batched_behind_limit(
    row: np.ndarray,
    fastest_padded: np.ndarray,
    cap: int,
    k: int,
    cum: np.ndarray,
    dl: np.ndarray,
    change_delay_s: float,
    share: float,
) -> float:
    """As the reference's `_batched_behind_limit` / `_in_batches`, for one (clock row, prefix)."""
    if k + 1 >= len(cum):
        return np.inf
    out = np.inf
    for j in range(k + 1, len(cum)):
        m = int(max(1.0, np.ceil((cum[j] - cum[k]) * share)))
        full, rest = m // cap, m % cap
        stay = full * row[cap - 1] + (row[rest - 1] if rest > 0 else 0.0)
        switch = change_delay_s + (full * fastest_padded[cap - 1] + (fastest_padded[rest - 1] if rest > 0 else 0.0))
        out = min(out, dl[j] - min(stay, switch))
    return out


def _compile() -> Callable[..., Any] | None:
    if os.environ.get("JETFLEET_PLANNER", "").lower() == "numpy":
        return None
    try:
        import numba
    except ImportError:
        return None
    jit = numba.njit(cache=True, nogil=True)
    global _batched_behind_limit
    _batched_behind_limit = jit(_batched_behind_limit)
    return jit(_plan)


KERNEL = _compile()
