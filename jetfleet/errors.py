"""The one exception tree of jetfleet.

    JetfleetError
    ├── ConfigError            a config/inventory/scenario file is wrong (names file, item, field)
    ├── DataError              a profile or trace table is missing columns or holds bad values
    ├── InvalidRequestError    a request a user sent is malformed (HTTP maps it to 4xx)
    │   └── PayloadError       an HTTP body the API refuses; carries the HTTP status (400, 404, 413, 422)
    ├── UnknownNameError       a device kind, model, policy, fleet... name that does not exist
    ├── NotFittedError         a model was asked to predict before `fit`
    ├── DeviceError            a device, engine, DVFS controller or power meter failed
    │   ├── FrequencyError     a frequency outside the device's own available list
    │   └── PowerStateError    a power state the device cannot enter, or could not wake from
    └── PolicyContractError    a policy returned a decision the core cannot apply (policies.core)

Every message names the offending value and where it came from. A request the fleet cannot take now is not an
exception: admission answers it with a `rejected` outcome and a retry-after (HTTP 429 + Retry-After).
"""

from __future__ import annotations

from collections.abc import Iterable


class JetfleetError(Exception):
    """Base of every error jetfleet raises on purpose."""


class ConfigError(JetfleetError, ValueError):
    """A configuration file or object is invalid; the message names the file, the item and the field."""


class DataError(JetfleetError, ValueError):
    """A data table (profiles, scenarios, traces) is missing columns or holds invalid values."""


class InvalidRequestError(JetfleetError, ValueError):
    """A request from a user is malformed."""


class PayloadError(InvalidRequestError):
    """An HTTP request body the API refuses (`deployments.payload`); `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UnknownNameError(JetfleetError, KeyError):
    """A name (device kind, model, policy, fleet, ...) that is not known."""

    def __init__(self, what: str, name: str, known: Iterable[str]) -> None:
        self.what, self.name, self.known = what, name, sorted(known)
        super().__init__(f"unknown {what} {name!r}; known: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError would quote the whole message otherwise
        return str(self.args[0])


class NotFittedError(JetfleetError, RuntimeError):
    """An estimator was used before `fit`."""


class DeviceError(JetfleetError, RuntimeError):
    """A device, engine, DVFS controller or power meter failed."""


class FrequencyError(DeviceError, ValueError):
    """A GPU frequency that is not in the device's own available-frequency list."""


class PowerStateError(DeviceError):
    """A power state a device does not offer, one it would have no way to wake from, or a failed transition."""
