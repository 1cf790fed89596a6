"""jetfleet: energy-aware, SLO-aware DNN inference on a heterogeneous fleet of edge GPUs.

This package holds what every other top-level package shares: the request/decision/result
types (`jetfleet.types`), the exception tree (`jetfleet.errors`), decision telemetry
(`jetfleet.telemetry`) and the `jetfleet` command line (`jetfleet.cli`).
"""

__version__ = "0.1.0"
