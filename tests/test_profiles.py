"""Profile readers: LoudVA's Profiling.csv and energy/ folder into the one schema, and their bad-file errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from costmodel.profiles import (
    LOUDVA_MODEL,
    PROFILE_COLUMNS,
    loudva_data_dir,
    read_loudva_energy_dir,
    read_loudva_profiling,
    read_profiles,
    validate_profiles,
)
from jetfleet.errors import DataError

PROFILING_HEADER = "Throughput,Energy,Latency,Batch Size,Frequency,Directory\n"
ENERGY_HEADER = "Concurrency, Mean Power (W), Avg Latency (s), Throughput (Inference/sec), Energy (J)\n"


def _row(kind: str = "agx-xavier", **over: object) -> dict:
    row = {"kind": kind, "model": "resnet50", "batch": 2, "freq_hz": 1e9, "latency_s": 0.1, "energy_j": 2.0}
    row.update(power_w=row["energy_j"] / row["latency_s"], source="test")
    row.update(over)
    return row


# --- with the real LoudVA data ----------------------------------------------------------------------
def test_profiling_csv_reads_all_rows_into_the_schema(loudva_dir: Path) -> None:
    df = read_profiles(loudva_dir / "Profiling.csv")
    assert list(df.columns) == PROFILE_COLUMNS
    assert len(df) == 2185
    assert df.groupby("kind").size().to_dict() == {"agx-xavier": 1772, "jetson-nano": 143, "xavier-nx": 270}
    assert df.groupby("kind")["batch"].max().to_dict() == {"agx-xavier": 128, "jetson-nano": 13, "xavier-nx": 18}
    assert df.groupby("kind")["freq_hz"].nunique().to_dict() == {"agx-xavier": 14, "jetson-nano": 11, "xavier-nx": 15}
    assert set(df["model"]) == {LOUDVA_MODEL}
    assert (df["power_w"] * df["latency_s"]).sub(df["energy_j"]).abs().max() < 1e-9


def test_energy_folder_holds_the_same_sweep_as_profiling_csv(loudva_dir: Path) -> None:
    """Same (kind, batch, freq) keys and latencies; its measured mean power times latency is the energy."""
    keys = ["kind", "batch", "freq_hz"]
    csv = read_profiles(loudva_dir / "Profiling.csv").set_index(keys).sort_index()
    folder = read_loudva_energy_dir(loudva_dir / "energy").set_index(keys).sort_index()
    assert folder.index.equals(csv.index)
    pd.testing.assert_series_equal(folder["latency_s"], csv["latency_s"])
    assert ((folder["power_w"] * folder["latency_s"]) / folder["energy_j"] - 1).abs().max() < 1e-3
    assert folder["source"].str.startswith("loudva:energy/").all()


def test_loudva_data_dir_finds_the_shared_folder(loudva_dir: Path) -> None:
    assert loudva_data_dir() == loudva_dir


# --- synthetic files (run everywhere) ---------------------------------------------------------------
def test_concurrency_is_taken_as_batch_and_directory_names_map_to_catalogue_keys(tmp_path: Path) -> None:
    path = tmp_path / "Profiling.csv"
    path.write_text(PROFILING_HEADER + "10,1.0,0.5,4,921600000,Nano\n20,2.0,0.25,2,1109250000,NX\n")
    df = read_profiles(path)
    assert df["kind"].tolist() == ["jetson-nano", "xavier-nx"]
    assert df["batch"].tolist() == [4, 2]
    assert df["power_w"].tolist() == [2.0, 8.0]
    assert set(df["source"]) == {"loudva:Profiling.csv"}


def test_energy_folder_takes_frequency_from_the_file_name(tmp_path: Path) -> None:
    device = tmp_path / "xavier-nx-00"
    device.mkdir()
    (device / "energy_calculated_freq_510000000.csv").write_text(ENERGY_HEADER + "3, 8.0, 0.2, 15, 1.6\n")
    df = read_profiles(tmp_path)
    assert df.loc[0, ["kind", "batch", "freq_hz", "power_w"]].tolist() == ["xavier-nx", 3, 510e6, 8.0]


def test_own_schema_round_trips_through_parquet(tmp_path: Path) -> None:
    df = validate_profiles(pd.DataFrame([_row(), _row("jetson-nano", batch=5)]))
    df.to_parquet(tmp_path / "p.parquet")
    pd.testing.assert_frame_equal(read_profiles(tmp_path / "p.parquet"), df)


def test_missing_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_profiles(tmp_path / "absent.csv")


def test_unknown_loudva_device_is_named(tmp_path: Path) -> None:
    path = tmp_path / "Profiling.csv"
    path.write_text(PROFILING_HEADER + "10,1.0,0.5,4,921600000,TX2\n")
    with pytest.raises(DataError, match="TX2"):
        read_loudva_profiling(path)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("kind,model,batch\nagx-xavier,resnet50,1\n")
    with pytest.raises(DataError, match="latency_s"):
        read_profiles(path)


def test_empty_cells_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "Profiling.csv"
    path.write_text(PROFILING_HEADER + "10,,0.5,4,921600000,Nano\n")
    with pytest.raises(DataError, match="empty cells"):
        read_profiles(path)


def test_non_positive_values_name_the_column_and_row() -> None:
    with pytest.raises(DataError, match=r"'latency_s'.*row 1"):
        validate_profiles(pd.DataFrame([_row(), _row(latency_s=0.0)]), "t.csv")


def test_empty_energy_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no energy_calculated_freq"):
        read_loudva_energy_dir(tmp_path)


def test_validate_keeps_schema_order_and_drops_extra_columns() -> None:
    raw = pd.DataFrame([_row()])[list(reversed(PROFILE_COLUMNS))].assign(extra=1)
    assert list(validate_profiles(raw).columns) == PROFILE_COLUMNS
