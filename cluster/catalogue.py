"""Re-exports `jetfleet.catalogue.get_kind` for the modules that still import it from here.

The device catalogue lives in `jetfleet.catalogue`, below every other package (docs/architecture.md,
"Layering"); import it from there.
"""

from __future__ import annotations

from jetfleet.catalogue import get_kind

__all__ = ["get_kind"]
