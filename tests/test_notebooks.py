"""Every notebook under notebooks/ runs headless, top to bottom, without an error.

The kernel is this interpreter (a kernelspec written to a temporary JUPYTER_PATH), so the test works in a
fresh clone whatever kernels the machine has. Notebooks read their data source from `JETFLEET_PROFILES`:
LoudVA's Profiling.csv when ../shared/data exists, else the emulated profile.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from costmodel.profiles import loudva_data_dir

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "jetfleet-test"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A kernelspec running `sys.executable -m ipykernel_launcher`, and the data source for the notebooks."""
    jupyter_path = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "jetfleet (test)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    loudva = loudva_data_dir()
    source = str(loudva / "Profiling.csv") if loudva is not None else "emulated"
    return {"JUPYTER_PATH": str(jupyter_path), "JETFLEET_PROFILES": source, "MPLBACKEND": "Agg"}


def _execute(path: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = nbclient.NotebookClient(
            notebook, kernel_name=KERNEL, timeout=120, resources={"metadata": {"path": str(path.parent)}}
        )
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return notebook


def _images(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for c in notebook.cells for out in c.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_headless(path: Path, kernel_env: dict[str, str]) -> None:
    notebook = _execute(path, kernel_env)
    assert _images(notebook) >= 1, f"{path.name} drew no figure"


@pytest.mark.slow
def test_profiling_notebook_runs_on_an_emulated_profile(kernel_env: dict[str, str]) -> None:
    """The fallback used outside this workplace (no ../shared/data) works too."""
    if kernel_env["JETFLEET_PROFILES"] == "emulated":
        pytest.skip("already covered: the main run used the emulated profile")
    notebook = _execute(ROOT / "notebooks" / "profiling.ipynb", {**kernel_env, "JETFLEET_PROFILES": "emulated"})
    text = "".join(out.get("text", "") for c in notebook.cells for out in c.get("outputs", []))
    assert "source: emulated" in text
