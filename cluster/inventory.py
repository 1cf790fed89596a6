"""Fleet inventories: a YAML file naming the devices of a fleet and how each is driven.

    name: loudva-cluster
    devices:
      - name: agx0            # unique, used as the Ray resource `device:agx0`
        kind: agx-xavier      # a key of cluster.catalogue.CATALOGUE
        engine: emulated      # emulated | torch | tensorrt
        dvfs: emulated        # emulated | jetson | nvml
        power: emulated       # emulated | jtop | nvml
        host: 10.0.0.11       # optional: the node's address on a real cluster
        options: {}           # engine options (speed_factor, onnx_path, weights_path, ...)

Built-in fleets live in `cluster/fleets/*.yaml` and are named without the suffix (`agx`,
`loudva-cluster`, `demo`). A bad inventory raises ConfigError naming the file, the device and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cluster.catalogue import CATALOGUE, DeviceKind
from jetfleet.errors import ConfigError, UnknownNameError

FLEETS_DIR = Path(__file__).parent / "fleets"


class DeviceSpec(BaseModel):
    """One named device of a fleet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: str
    engine: Literal["emulated", "torch", "tensorrt"] = "emulated"
    dvfs: Literal["emulated", "jetson", "nvml"] = "emulated"
    power: Literal["emulated", "jtop", "nvml"] = "emulated"
    host: str | None = None
    models: tuple[str, ...] = ()
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in CATALOGUE:
            raise ValueError(f"unknown device kind {value!r}; known: {', '.join(sorted(CATALOGUE))}")
        return value

    @property
    def device_kind(self) -> DeviceKind:
        return CATALOGUE[self.kind]


class Fleet(BaseModel):
    """A named list of devices with unique names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "fleet"
    devices: tuple[DeviceSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Fleet:
        seen: dict[str, int] = {}
        for i, d in enumerate(self.devices, start=1):
            if d.name in seen:
                raise ValueError(f"device name {d.name!r} appears twice (devices #{seen[d.name]} and #{i})")
            seen[d.name] = i
        return self

    def device(self, name: str) -> DeviceSpec:
        for d in self.devices:
            if d.name == name:
                return d
        raise UnknownNameError("device", name, [d.name for d in self.devices])


def _describe(error: ValidationError, raw: dict[str, Any], source: str) -> str:
    first = error.errors()[0]
    loc = list(first["loc"])
    where = source
    if len(loc) >= 2 and loc[0] == "devices" and isinstance(loc[1], int):
        devices = raw.get("devices") or []
        item = devices[loc[1]] if loc[1] < len(devices) else {}
        label = item.get("name") if isinstance(item, dict) else None
        where += f": device {label!r}" if label else f": device #{loc[1] + 1}"
        loc = loc[2:]
    message = first["msg"].removeprefix("Value error, ")
    if not loc:
        return f"{where}: {message}"
    field = ".".join(str(p) for p in loc)
    return f"{where}: field {field!r}: {message}"


def fleet_from_dict(raw: Any, source: str = "<fleet>") -> Fleet:
    """Validate an inventory already parsed from YAML/JSON; errors name `source`, device and field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: an inventory must be a mapping with a 'devices' list")
    try:
        return Fleet.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e, raw, source)) from None


def load_fleet(name_or_path: str | Path) -> Fleet:
    """Load a built-in fleet by name (e.g. `agx`) or an inventory YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = FLEETS_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise UnknownNameError("fleet", str(name_or_path), builtin_fleets())
    if not path.exists():
        raise ConfigError(f"{path}: no such inventory file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return fleet_from_dict(raw, str(path))


def builtin_fleets() -> list[str]:
    return sorted(p.stem for p in FLEETS_DIR.glob("*.yaml"))
