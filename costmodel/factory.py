"""The one way to build the cost model a policy consults from its name on a command line or in a config.

    make_cost_model("lgbm")                 # LightGBM fitted on the emulated profiles (the default everywhere)
    make_cost_model("oracle")               # the calibrated device models themselves: a perfect predictor
    make_cost_model("runs/model-2024-05")   # a LightGBM model saved by `jetfleet costmodel train`

`jetfleet simulate`, `jetfleet serve`/`demo`, the Serve scheduler, `python -m workloads.experiment` and
`python -m simulator.reproduce` all build theirs here, so one name means one model everywhere.
"""

from __future__ import annotations

from pathlib import Path

from costmodel import lgbm
from costmodel.base import CostModel
from costmodel.device_models import OracleCostModel
from jetfleet.errors import UnknownNameError

COST_MODELS = ("lgbm", "oracle")
SAVED_MODEL = "<directory of a saved LightGBM model>"

__all__ = ["COST_MODELS", "make_cost_model"]


def make_cost_model(spec: str, *, where: str = "") -> CostModel:
    """The cost model named by `spec`: `lgbm`, `oracle`, or the directory of a saved LightGBM model.

    - `lgbm`: `costmodel.lgbm.default_cost_model()`, fitted once per process on the emulated profiles of
      every catalogue kind and zoo model (what profiling the fleet would give).
    - `oracle`: `costmodel.device_models.OracleCostModel()`, the simulator's own truth.
    - a directory (checked after the two names, so a folder called `lgbm` needs `./lgbm`): `lgbm.load(spec)`.

    There is no silent fallback: an unknown name raises `UnknownNameError` naming `spec`, `where` it came
    from (e.g. `--cost-model`) and the choices, and a missing `lightgbm` fails when `lgbm` is fitted rather
    than quietly handing policies the oracle (an experiment must consult the model it says it consults).
    """
    if spec == "lgbm":
        return lgbm.default_cost_model()
    if spec == "oracle":
        return OracleCostModel()
    if spec and Path(spec).is_dir():
        return lgbm.load(spec)
    what = f"cost model ({where})" if where else "cost model"
    raise UnknownNameError(what, spec, (*COST_MODELS, SAVED_MODEL))
