"""The device catalogue and fleet inventories: sane figures with sources; bad inventories name file, device, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.inventory import DeviceSpec, builtin_fleets, fleet_from_dict, load_fleet
from jetfleet.catalogue import CATALOGUE, LOUDVA_NAMES, get_kind
from jetfleet.errors import ConfigError, FrequencyError, UnknownNameError

REQUIRED_KINDS = {"jetson-nano", "xavier-nx", "agx-xavier", "orin-nano", "orin-nx", "agx-orin", "cuda-gpu", "cpu"}


# --- catalogue ----------------------------------------------------------------------------------------
def test_catalogue_has_every_required_kind_keyed_by_its_own_key() -> None:
    assert set(CATALOGUE) == REQUIRED_KINDS
    assert all(key == kind.key for key, kind in CATALOGUE.items())


@pytest.mark.parametrize("key", sorted(REQUIRED_KINDS))
def test_each_kind_has_sane_figures_and_cites_their_sources(key: str) -> None:
    kind = CATALOGUE[key]
    assert list(kind.freqs_hz) == sorted(set(kind.freqs_hz)) and kind.min_freq_hz > 0
    assert kind.idle_power_w > 0 and kind.freq_change_delay_s >= 0
    assert kind.memory_gb > 0 and kind.max_batch >= 1 and kind.mem_bandwidth_gbps > 0
    assert {"freqs_hz", "idle_power_w", "max_batch", "specs"} <= set(kind.sources)
    assert all(kind.sources.values())
    assert kind.has_dvfs == (len(kind.freqs_hz) > 1)


def test_check_frequency_accepts_listed_values_and_names_the_list_otherwise() -> None:
    nano = get_kind("jetson-nano")
    assert nano.check_frequency(921.6e6) == nano.max_freq_hz
    assert nano.check_frequency(921.6e6 + 0.4) == nano.max_freq_hz
    with pytest.raises(FrequencyError, match=r"jetson-nano.*921\.6"):
        nano.check_frequency(1e9)


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="agx-orin"):
        get_kind("tx2")


def test_loudva_names_map_to_catalogue_kinds() -> None:
    assert set(LOUDVA_NAMES.values()) <= set(CATALOGUE)


def test_measured_frequencies_and_batches_are_in_the_catalogue(loudva_dir: Path) -> None:
    """Every GPU frequency LoudVA swept is an available frequency, and its largest batch is max_batch."""
    from costmodel.profiles import read_profiles

    df = read_profiles(loudva_dir / "Profiling.csv")
    for kind, rows in df.groupby("kind"):
        spec = get_kind(str(kind))
        for f in rows["freq_hz"].unique():
            spec.check_frequency(float(f))
        assert rows["batch"].max() == spec.max_batch


# --- inventories --------------------------------------------------------------------------------------
def test_builtin_fleets_load_by_name() -> None:
    assert {"agx", "demo", "loudva-cluster"} <= set(builtin_fleets())
    fleet = load_fleet("loudva-cluster")
    assert [d.kind for d in fleet.devices].count("xavier-nx") == 2
    assert fleet.device("agx0").device_kind is CATALOGUE["agx-xavier"]


def test_inventory_file_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("name: mine\ndevices:\n  - {name: n0, kind: jetson-nano, options: {speed_factor: 2}}\n")
    device = load_fleet(path).device("n0")
    assert (device.engine, device.dvfs, device.power) == ("emulated", "emulated", "emulated")
    assert device.options == {"speed_factor": 2}


def test_unknown_fleet_and_unknown_device_name_are_unknown_names() -> None:
    with pytest.raises(UnknownNameError, match="loudva-cluster"):
        load_fleet("nosuchfleet")
    with pytest.raises(UnknownNameError, match="agx0"):
        load_fleet("agx").device("nx9")


@pytest.mark.parametrize(
    ("yaml_text", "device", "field"),
    [
        ("devices:\n  - {name: agx0, kind: agx-xavier}\n  - {name: tpu0, kind: tpu}\n", "device 'tpu0'", "'kind'"),
        ("devices:\n  - {name: a0, kind: agx-xavier, engine: cuda}\n", "device 'a0'", "'engine'"),
        ("devices:\n  - {name: a0, kind: agx-xavier}\n  - {kind: jetson-nano}\n", "device #2", "'name'"),
        ("devices:\n  - {name: 'a 0', kind: agx-xavier}\n", "device 'a 0'", "'name'"),
        ("devices:\n  - {name: a0, kind: agx-xavier, colour: red}\n", "device 'a0'", "'colour'"),
        ("name: x\n", "", "'devices'"),
        ("devices: []\n", "", "'devices'"),
    ],
)
def test_bad_inventory_names_the_file_the_device_and_the_field(
    tmp_path: Path, yaml_text: str, device: str, field: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_fleet(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert device in message and f"field {field}" in message


def test_unknown_kind_message_lists_the_catalogue(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="known: agx-orin"):
        fleet_from_dict({"devices": [{"name": "t", "kind": "tpu"}]}, "inline")


def test_duplicate_device_names_are_named() -> None:
    raw = {"devices": [{"name": "a", "kind": "cpu"}, {"name": "a", "kind": "cpu"}]}
    with pytest.raises(ConfigError, match=r"inline: device name 'a' appears twice"):
        fleet_from_dict(raw, "inline")


def test_not_a_mapping_and_bad_yaml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inline: an inventory must be a mapping"):
        fleet_from_dict(["agx"], "inline")
    bad = tmp_path / "broken.yaml"
    bad.write_text("devices: [\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_fleet(bad)
    with pytest.raises(ConfigError, match="absent.yaml: no such inventory file"):
        load_fleet(tmp_path / "absent.yaml")


def test_device_spec_is_frozen() -> None:
    spec = DeviceSpec(name="x", kind="cpu")
    with pytest.raises(ValueError):
        spec.name = "y"  # type: ignore[misc]
