"""Fleet inventories: a YAML file naming the devices of a fleet and how each is driven.

    name: loudva-cluster
    devices:
      - name: agx0            # unique, used as the Ray resource `device:agx0`
        kind: agx-xavier      # a key of jetfleet.catalogue.CATALOGUE
        engine: emulated      # emulated | torch | onnxruntime | tensorrt
        dvfs: emulated        # emulated | jetson | nvml
        power: emulated       # emulated | jtop | nvml
        power_states: emulated  # emulated | jetson | nvml | none: how it sleeps (actors.power_states)
        host: 10.0.0.11       # optional: the node's address on a real cluster
        mac: 00:04:4b:aa:bb:cc  # optional: for Wake-on-LAN; without it the device never suspends without rtcwake
        link_mbps: 941        # optional: goodput of its link from the controller (default: its kind's, jetfleet.links)
        link_latency_ms: 0.5  # optional: fixed cost per batch on that link
        options: {}           # engine options (speed_factor, onnx_path, weights_path, ...)
    model_repository: ./models  # optional: a model repository (costmodel.model_repository) whose models
                                # every process that loads this fleet knows (relative to the file)

Built-in fleets live in `cluster/fleets/*.yaml` and are named without the suffix (`agx`,
`loudva-cluster`, `demo`). A bad inventory raises ConfigError naming the file, the device and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jetfleet.catalogue import CATALOGUE, DeviceKind
from jetfleet.config import describe_validation_error, read_config_file
from jetfleet.errors import ConfigError, UnknownNameError
from jetfleet.links import Link, default_link

FLEETS_DIR = Path(__file__).parent / "fleets"


class DeviceSpec(BaseModel):
    """One named device of a fleet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: str
    engine: Literal["emulated", "torch", "onnxruntime", "tensorrt"] = "emulated"
    dvfs: Literal["emulated", "jetson", "nvml"] = "emulated"
    power: Literal["emulated", "jtop", "nvml"] = "emulated"
    power_states: Literal["emulated", "jetson", "nvml", "none"] = "emulated"
    host: str | None = None
    mac: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
    models: tuple[str, ...] = ()
    # Its data path from the controller (`jetfleet.links`); unset: the kind's default (GbE on a Jetson dev kit).
    link_mbps: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    link_latency_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    options: dict[str, Any] = Field(default_factory=dict)
    model_repository: str | None = None  # copied from the fleet: the device's process loads it too

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in CATALOGUE:
            # a ValueError (ConfigError is one), so pydantic reports it with the file and the device
            raise ConfigError(f"unknown device kind {value!r}; known: {', '.join(sorted(CATALOGUE))}")
        return value

    @field_validator("model_repository")
    @classmethod
    def _use_repository(cls, value: str | None) -> str | None:
        return _use_repository(value)

    @property
    def device_kind(self) -> DeviceKind:
        return CATALOGUE[self.kind]

    @property
    def link(self) -> Link:
        """Its data path: the kind's default with this entry's `link_mbps` / `link_latency_ms` in place."""
        base = default_link(self.kind)
        if self.link_mbps is None and self.link_latency_ms is None:
            return base
        bandwidth_bps = base.bandwidth_bps if self.link_mbps is None else self.link_mbps * 1e6
        latency_s = base.latency_s if self.link_latency_ms is None else self.link_latency_ms / 1e3
        return Link(bandwidth_bps, latency_s)


class Fleet(BaseModel):
    """A named list of devices with unique names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "fleet"
    devices: tuple[DeviceSpec, ...] = Field(min_length=1)
    model_repository: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _repository_first(cls, raw: Any) -> Any:
        """Register the repository before the devices are checked, and hand it to each device."""
        if isinstance(raw, dict) and raw.get("model_repository"):
            _use_repository(raw["model_repository"])
            devices = raw.get("devices")
            if isinstance(devices, list):
                raw = dict(raw)
                raw["devices"] = [
                    {**d, "model_repository": d.get("model_repository") or raw["model_repository"]}
                    if isinstance(d, dict)
                    else d
                    for d in devices
                ]
        return raw

    @model_validator(mode="after")
    def _unique_names(self) -> Fleet:
        seen: dict[str, int] = {}
        for i, d in enumerate(self.devices, start=1):
            if d.name in seen:
                raise ConfigError(f"device name {d.name!r} appears twice (devices #{seen[d.name]} and #{i})")
            seen[d.name] = i
        return self

    def device(self, name: str) -> DeviceSpec:
        for d in self.devices:
            if d.name == name:
                return d
        raise UnknownNameError("device", name, [d.name for d in self.devices])


def _use_repository(root: str | None) -> str | None:
    """Make the models of repository `root` known to this process (costmodel.model_zoo.use_repository)."""
    if root:
        from costmodel.model_zoo import use_repository

        use_repository(root)
    return root


def _device_label(index: int, item: Any) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"device {name!r}" if name else f"device #{index + 1}"


def fleet_from_dict(raw: Any, source: str = "<fleet>") -> Fleet:
    """Validate an inventory already parsed from YAML/JSON; errors name `source`, device and field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: an inventory must be a mapping with a 'devices' list")
    try:
        return Fleet.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, raw, source, "devices", _device_label)) from None


def load_fleet(name_or_path: str | Path) -> Fleet:
    """Load a built-in fleet by name (e.g. `agx`) or an inventory YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = FLEETS_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise UnknownNameError("fleet", str(name_or_path), builtin_fleets())
    raw = read_config_file(path, "inventory file")
    if isinstance(raw, dict) and isinstance(raw.get("model_repository"), str):
        raw["model_repository"] = str((path.parent / raw["model_repository"]).resolve())
    return fleet_from_dict(raw, str(path))


def builtin_fleets() -> list[str]:
    return sorted(p.stem for p in FLEETS_DIR.glob("*.yaml"))
