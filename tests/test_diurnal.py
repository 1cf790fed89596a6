"""The diurnal fleet trace: seeded, shaped like a day, compressible without changing what a request means."""

from __future__ import annotations

import numpy as np
import pytest

from jetfleet.errors import ConfigError
from workloads.diurnal import DiurnalSpec, activity, diurnal


def _rate_by_hour(requests, spec):
    hours = np.array([spec.start_h + r.arrival_s * spec.compress / 3600.0 for r in requests])
    frames = np.array([r.n_frames for r in requests])
    return np.bincount(hours.astype(int), weights=frames, minlength=int(spec.hours))


def test_the_same_seed_gives_the_same_trace_and_another_seed_another():
    spec = DiurnalSpec(cameras=20, compress=288.0)
    assert diurnal(spec, seed=3) == diurnal(spec, seed=3)
    assert diurnal(spec, seed=3) != diurnal(spec, seed=4)


def test_the_envelope_peaks_at_the_peak_hour_and_bottoms_out_twelve_hours_away():
    assert activity(15 * 3600.0, 0.05, 15.0) == pytest.approx(1.0)
    assert activity(3 * 3600.0, 0.05, 15.0) == pytest.approx(0.05)


def test_load_follows_the_day_peak_hours_carry_many_times_the_night():
    spec = DiurnalSpec(cameras=40, compress=288.0, bursts_per_h=0.0)
    by_hour = _rate_by_hour(diurnal(spec, seed=1), spec)
    assert by_hour[14:17].mean() > 8 * by_hour[2:5].mean()


def test_compression_shortens_the_trace_but_keeps_requests_meaning():
    slow, fast = DiurnalSpec(cameras=10, hours=2.0, compress=4.0), DiurnalSpec(cameras=10, hours=2.0, compress=8.0)
    a, b = diurnal(slow, seed=2), diurnal(fast, seed=2)
    assert slow.duration_s == pytest.approx(2 * fast.duration_s)
    assert max(r.arrival_s for r in b) < fast.duration_s + fast.period_s
    assert len(a) == pytest.approx(2 * len(b), rel=0.15)  # one request per camera period, half the periods
    assert {r.slo_s for r in a} <= {2.0, 6.0, 15.0} and {r.slo_s for r in b} <= {2.0, 6.0, 15.0}


def test_each_camera_keeps_one_slo_class_and_arrivals_are_sorted():
    reqs = diurnal(DiurnalSpec(cameras=30, compress=288.0), seed=5)
    slo_of: dict[str, set[float]] = {}
    for r in reqs:
        slo_of.setdefault(r.stream, set()).add(r.slo_s)
    assert all(len(s) == 1 for s in slo_of.values())
    times = [r.arrival_s for r in reqs]
    assert times == sorted(times) and len({r.request_id for r in reqs}) == len(reqs)


def test_bursts_raise_the_load():
    calm = DiurnalSpec(cameras=30, compress=96.0, bursts_per_h=0.0)
    bursty = DiurnalSpec(cameras=30, compress=96.0, bursts_per_h=2.0, burst_s=600.0)
    frames = [sum(r.n_frames for r in diurnal(s, seed=7)) for s in (calm, bursty)]
    assert frames[1] > 1.1 * frames[0]


def test_bad_shapes_are_refused():
    with pytest.raises(ConfigError):
        DiurnalSpec(trough=1.5)
    with pytest.raises(ConfigError):
        DiurnalSpec(compress=0.0)
