"""Application sets for placement: a YAML file of apps (model, request rate, SLO) plus how to cost them.

    name: ibis-like
    overhead_ms: 10               # time outside the accelerator per request (network, pre-processing)
    memory:
      threshold: 0.8              # fraction of a device's free memory apps may use (Ibis: 0.8)
      reserve_mb: {jetson-nano: 1024}   # taken by the OS and container runtime before apps
      frontend_mb: 50             # per app (its own request handler), whatever the method
      engine_mb: {resnet18: 700}  # a loaded model (engine + runtime); default 477 + 19.06 MB per M params
    service_ms:                   # measured isolated time of one request, per device kind and model
      jetson-nano: {resnet18: 10.83}
    apps:
      - {model: resnet18, rate_hz: 10, slo_ms: 100, count: 6}   # count expands to resnet18-1..6
      - {name: cam-a, model: resnet50, rate_hz: 5, slo_ms: 150}

Service times not listed come from the analytic device models (`costmodel.device_models`, batch 1 at the
kind's highest clock), through `costmodel.variants` so variant names work too. A bad file raises
ConfigError naming the file, the app and the field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from costmodel.device_models import device_model
from costmodel.model_zoo import MODELS, get_model
from costmodel.variants import VariantDeviceModel, resolve
from jetfleet.catalogue import get_kind
from jetfleet.config import describe_validation_error, read_config_file
from jetfleet.errors import ConfigError, JetfleetError

__all__ = ["AppEntry", "AppSpec", "AppsConfig", "MemorySpec", "load_apps"]

# Fit through Ibis's ResNet18 (11.7 M params, 700 MB) and ResNet50 (25.6 M, 965 MB) TensorRT containers.
ENGINE_MB_FIXED, ENGINE_MB_PER_MPARAM = 477.0, 19.06


class MemorySpec(BaseModel):
    """How much memory apps get on a device and what each takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(0.8, gt=0, le=1)
    reserve_mb: dict[str, float] = Field(default_factory=dict)
    frontend_mb: float = Field(50.0, ge=0)
    engine_mb: dict[str, float] = Field(default_factory=dict)

    def usable_mb(self, kind: str) -> float:
        """Memory apps may use on a device of `kind`."""
        total_mb = get_kind(kind).memory_gb * 1024.0
        return max(0.0, (total_mb - self.reserve_mb.get(kind, 0.0)) * self.threshold)

    def engine_memory_mb(self, model: str) -> float:
        """Memory of one loaded model: the configured figure, else the fit on Ibis's containers."""
        if model in self.engine_mb:
            return self.engine_mb[model]

        v = resolve(model)
        params_m = get_model(v.base if v is not None else model).params_m
        return ENGINE_MB_FIXED + ENGINE_MB_PER_MPARAM * params_m


class AppEntry(BaseModel):
    """One line of the `apps` list (possibly several identical apps via `count`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    model: str
    rate_hz: float = Field(gt=0)
    slo_ms: float = Field(gt=0)
    count: int = Field(1, ge=1)
    overhead_ms: float | None = Field(None, ge=0)


class AppsConfig(BaseModel):
    """A whole apps file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "apps"
    overhead_ms: float = Field(0.0, ge=0)
    memory: MemorySpec = Field(default_factory=MemorySpec)
    service_ms: dict[str, dict[str, float]] = Field(default_factory=dict)
    apps: tuple[AppEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_names(self) -> AppsConfig:
        for kind in (*self.service_ms, *self.memory.reserve_mb):
            get_kind(kind)
        for i, entry in enumerate(self.apps):
            if entry.model not in MODELS and resolve(entry.model) is None:
                where = f"apps[{i}] ({entry.name or entry.model})"
                raise ConfigError(f"{where}: model {entry.model!r} is neither a zoo model nor a variant")
        return self

    def expand(self) -> list[AppSpec]:
        """The apps one by one, in file order, with unique names."""
        out: list[AppSpec] = []
        seen: set[str] = set()
        for entry in self.apps:
            base = entry.name or entry.model
            for i in range(entry.count):
                name = base if entry.count == 1 and entry.name else f"{base}-{i + 1}"
                while name in seen:
                    name += "'"
                seen.add(name)
                overhead = entry.overhead_ms if entry.overhead_ms is not None else self.overhead_ms
                out.append(AppSpec(name, entry.model, entry.rate_hz, entry.slo_ms / 1000, overhead / 1000))
        return out

    def service_time_s(self, kind: str, model: str) -> float:
        """Isolated time of one request of `model` on `kind`: configured, else the device model's."""
        measured = self.service_ms.get(kind, {}).get(model)
        if measured is not None:
            return measured / 1000.0

        dm = VariantDeviceModel(device_model(kind))
        return float(dm.latency_s(model, 1, get_kind(kind).max_freq_hz))

    def batch_curve(self, kind: str, model: str) -> Callable[[int], float]:
        """Isolated time of a batch of b requests: the one-request time (`service_time_s`) scaled by the
        shape of the device model's batch curve for that kind and model (`latency(b) / latency(1)`)."""
        dm = VariantDeviceModel(device_model(kind))
        f = get_kind(kind).max_freq_hz
        one_s = self.service_time_s(kind, model)
        base_s = float(dm.latency_s(model, 1, f))
        cache: dict[int, float] = {}

        def latency_s(batch: int) -> float:
            if batch not in cache:
                cache[batch] = one_s * float(dm.latency_s(model, batch, f)) / base_s
            return cache[batch]

        return latency_s


class AppSpec:
    """One application: a request stream of one model with a latency SLO (mean response time, as Ibis)."""

    __slots__ = ("name", "model", "rate_hz", "slo_s", "overhead_s")

    def __init__(self, name: str, model: str, rate_hz: float, slo_s: float, overhead_s: float = 0.0) -> None:
        self.name, self.model, self.rate_hz, self.slo_s, self.overhead_s = name, model, rate_hz, slo_s, overhead_s

    def __repr__(self) -> str:
        return f"AppSpec({self.name!r}, {self.model!r}, {self.rate_hz} Hz, slo {self.slo_s * 1000:g} ms)"


def _app_label(index: int, item: Any) -> str:
    name = (item.get("name") or item.get("model")) if isinstance(item, dict) else None
    return f"app #{index + 1}" + (f" ({name})" if name else "")


def apps_from_dict(raw: Any, source: str = "<apps>") -> AppsConfig:
    """Validate an apps mapping already parsed from YAML; errors name `source`, the app and the field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: an apps file must be a mapping with an 'apps' list")
    try:
        return AppsConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, raw, source, "apps", _app_label)) from None
    except JetfleetError as e:  # an unknown device kind in service_ms / reserve_mb
        raise ConfigError(f"{source}: {e}") from None


def load_apps(path: str | Path) -> AppsConfig:
    """Read and validate an apps YAML file."""
    return apps_from_dict(read_config_file(path, "apps file"), str(path))
