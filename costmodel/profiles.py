"""One profile table schema for measured and emulated profiles, and readers for LoudVA's files.

A profile table is a pandas DataFrame with exactly `PROFILE_COLUMNS`:

    kind         device kind (catalogue key, e.g. "agx-xavier")
    model        model name (e.g. "inceptionv3")
    batch        frames per batch (int >= 1)
    freq_hz      GPU frequency in Hz
    latency_s    seconds per batch
    energy_j     joules per batch (board energy: includes the idle baseline)
    power_w      mean board power during the batch (= energy_j / latency_s)
    source       where the row came from ("loudva:Profiling.csv", "emulated", "profile:<device>")

LoudVA caveats, handled on purpose:
- its "Batch Size" is Triton perf_analyzer *concurrency* with dynamic batching, not an explicit batch.
  We take it as the batch: with concurrency c and dynamic batching, the server forms batches of ~c.
- its Energy is mean board power × latency, so it includes the idle baseline; so does ours.
- its latency excludes client/network time, as ours does.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from jetfleet.catalogue import LOUDVA_NAMES
from jetfleet.errors import DataError

PROFILE_COLUMNS = ["kind", "model", "batch", "freq_hz", "latency_s", "energy_j", "power_w", "source"]
LOUDVA_MODEL = "inceptionv3"  # LoudVA profiled InceptionV3 (TF, FP32, 299x299) under Triton only
LOUDVA_ENERGY_DIRS = {
    "agx-xavier-00": "agx-xavier",
    "xavier-nx-00": "xavier-nx",
    "LoudJetson0": "jetson-nano",
}

_LOUDVA_PROFILING = {"Energy", "Latency", "Batch Size", "Frequency", "Directory"}
_LOUDVA_ENERGY = {"Concurrency", "Mean Power (W)", "Avg Latency (s)", "Energy (J)"}


def validate_profiles(df: pd.DataFrame, source: str = "<profiles>") -> pd.DataFrame:
    """Check a table has the profile schema and sane values; return it with canonical dtypes/order."""
    missing = [c for c in PROFILE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing profile columns {missing}; expected {PROFILE_COLUMNS}")
    out = df[PROFILE_COLUMNS].copy()
    out["batch"] = out["batch"].astype(int)
    for col in ("freq_hz", "latency_s", "energy_j", "power_w"):
        out[col] = out[col].astype(float)
    for col in ("batch", "freq_hz", "latency_s", "energy_j"):
        bad = out.index[~(out[col] > 0)]
        if len(bad):
            raise DataError(f"{source}: column {col!r} must be > 0; row {int(bad[0])} has {out.at[bad[0], col]!r}")
    return out.reset_index(drop=True)


def read_loudva_profiling(path: str | Path) -> pd.DataFrame:
    """Read LoudVA's `Profiling.csv` into the profile schema (see module docstring for caveats)."""
    path = Path(path)
    raw = _read_csv(path, _LOUDVA_PROFILING)
    unknown = sorted(set(raw["Directory"]) - set(LOUDVA_NAMES))
    if unknown:
        raise DataError(f"{path}: unknown device names in 'Directory': {unknown}; known: {sorted(LOUDVA_NAMES)}")
    df = pd.DataFrame(
        {
            "kind": raw["Directory"].map(LOUDVA_NAMES),
            "model": LOUDVA_MODEL,
            "batch": raw["Batch Size"].astype(int),
            "freq_hz": raw["Frequency"].astype(float),
            "latency_s": raw["Latency"].astype(float),
            "energy_j": raw["Energy"].astype(float),
        }
    )
    df["power_w"] = df["energy_j"] / df["latency_s"]
    df["source"] = f"loudva:{path.name}"
    return validate_profiles(df, str(path))


def read_loudva_energy_dir(root: str | Path) -> pd.DataFrame:
    """Read LoudVA's `energy/<device>/energy_calculated_freq_<Hz>.csv` files into the profile schema."""
    root = Path(root)
    frames = []
    for device_dir, kind in LOUDVA_ENERGY_DIRS.items():
        for f in sorted((root / device_dir).glob("energy_calculated_freq_*.csv")):
            freq_hz = float(f.stem.rsplit("_", 1)[1])
            raw = _read_csv(f, _LOUDVA_ENERGY)
            frames.append(
                pd.DataFrame(
                    {
                        "kind": kind,
                        "model": LOUDVA_MODEL,
                        "batch": raw["Concurrency"].astype(int),
                        "freq_hz": freq_hz,
                        "latency_s": raw["Avg Latency (s)"].astype(float),
                        "energy_j": raw["Energy (J)"].astype(float),
                        "power_w": raw["Mean Power (W)"].astype(float),
                        "source": f"loudva:energy/{device_dir}/{f.name}",
                    }
                )
            )
    if not frames:
        raise DataError(f"{root}: no energy_calculated_freq_*.csv files under {sorted(LOUDVA_ENERGY_DIRS)}")
    return validate_profiles(pd.concat(frames, ignore_index=True), str(root))


def read_profiles(path: str | Path) -> pd.DataFrame:
    """Read any profile table: LoudVA's Profiling.csv, a LoudVA energy/ folder, or our own CSV/parquet."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_loudva_energy_dir(path)
    if path.suffix == ".parquet":
        return validate_profiles(pd.read_parquet(path), str(path))
    header = path.open().readline()
    if "Directory" in header and "Batch Size" in header:
        return read_loudva_profiling(path)
    return validate_profiles(_read_csv(path, set(PROFILE_COLUMNS)), str(path))


def _read_csv(path: Path, required: set[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read as CSV: {e}") from None
    df.columns = [c.strip() for c in df.columns]
    missing = sorted(required - set(df.columns))
    if missing:
        raise DataError(f"{path}: missing columns {missing}")
    if df[list(required & set(df.columns))].isna().any().any():
        raise DataError(f"{path}: empty cells in required columns")
    return df


def loudva_data_dir() -> Path | None:
    """The shared LoudVA data folder when it exists beside the checkout, else None (tests skip)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "shared" / "data" / "loudva", here / "shared" / "data" / "loudva"):
        if (candidate / "Profiling.csv").exists():
            return candidate
    return None
