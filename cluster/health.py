"""Ray's node health-check window, set by jetfleet on purpose, and what it means for a sleeping device.

The GCS pings every raylet each `HEALTH_CHECK_PERIOD_MS` and declares it dead after
`HEALTH_CHECK_FAILURE_THRESHOLD` missed pings: `HEALTH_CHECK_WINDOW_S` = 10 s. jetfleet sets these itself
(`RAY_HEALTH_CHECK_ENV`, in the environment of every Ray process `jetfleet up` and `jetfleet demo` start)
rather than inherit Ray's defaults (3 s × 5, each with a 10 s timeout, ≈ 15–65 s) because the window is what
separates a short sleep from a long one, and both sides must agree on it:
- a *short* sleep (deep idle, whose OS stays up; a suspend of at most `SHORT_SLEEP_MAX_S`, half the window)
  stays inside it: the node freezes and resumes, Ray sees a late heartbeat and nothing else;
- a *long* sleep would be declared a dead node, so the device drains its node first (cluster.node_sleep).
Ten seconds also bounds how long a node that really died keeps requests waiting before failover.
"""

from __future__ import annotations

HEALTH_CHECK_PERIOD_MS = 1000
HEALTH_CHECK_FAILURE_THRESHOLD = 10
RAY_HEALTH_CHECK_ENV = {
    "RAY_health_check_period_ms": str(HEALTH_CHECK_PERIOD_MS),
    "RAY_health_check_timeout_ms": str(HEALTH_CHECK_PERIOD_MS),
    "RAY_health_check_failure_threshold": str(HEALTH_CHECK_FAILURE_THRESHOLD),
}
HEALTH_CHECK_WINDOW_S = HEALTH_CHECK_PERIOD_MS * HEALTH_CHECK_FAILURE_THRESHOLD / 1000.0
SHORT_SLEEP_MAX_S = HEALTH_CHECK_WINDOW_S / 2  # margin for the transitions and a late ping


def is_long_sleep(sleep_s: float | None) -> bool:
    """A suspend longer than half the health-check window, or of unknown length, must drain its node first."""
    return sleep_s is None or sleep_s > SHORT_SLEEP_MAX_S
