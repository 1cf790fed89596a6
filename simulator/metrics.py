"""Re-exports `jetfleet.metrics` for the modules that still import it from here; import it from there."""

from __future__ import annotations

from jetfleet.metrics import RESULT_KEYS, RunMetrics, RunRecord, compute_metrics, energy_bound_j

__all__ = ["RESULT_KEYS", "RunMetrics", "RunRecord", "compute_metrics", "energy_bound_j"]
