"""A model repository: a folder with one directory per model (Triton-like in spirit).

    models/
      tinydet/
        model.yaml          what the model is (below)
        model.onnx          the network; engines load it (onnxruntime, TensorRT)
        plans/xavier-nx.plan    optional prebuilt TensorRT plans, one per device kind

    # model.yaml
    family: tinydet                  variants of one family share it
    variant: 64px                    optional label within the family
    task: detection                  classification (/v1 answers top-5) | detection | other
    accuracy: {value: 31.5, metric: coco-ap50}
    onnx: model.onnx
    input: {name: images, shape: [3, 64, 64], datatype: FP32, preprocessing: imagenet}
    outputs: [boxes, scores]
    plans: {xavier-nx: plans/xavier-nx.plan}
    facts:                           written by `jetfleet models add` from the ONNX graph
      {gmacs: 0.0123, params_m: 0.04, source: "onnx shape inference of model.onnx", onnx_sha256: ...}

The model's name is its directory's name. The facts the cost model uses (MACs per frame, parameters, input
size) come from the ONNX graph (`costmodel.onnx_facts`) every time the entry is loaded (the `facts` that
`add` writes are a record for readers, never trusted over the graph); an entry without an ONNX file (a
built-in model, or a model only its TensorRT plans run) states its facts with their `source`. `input` and
`outputs` default to the graph's. A bad entry raises ConfigError naming the file and the field.
`costmodel.model_zoo.use_repository` makes a repository's models known to a process.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costmodel.model_info import ModelInfo, ModelInput
from jetfleet.catalogue import CATALOGUE
from jetfleet.config import read_config_file
from jetfleet.errors import ConfigError

ENTRY_FILE = "model.yaml"
ONNX_FILE = "model.onnx"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
DATATYPES = ("FP32", "FP16", "UINT8", "INT8", "INT32", "INT64", "FP64", "BOOL")


class _Accuracy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = Field(ge=0, le=100, description="accuracy in %")
    metric: str = Field(min_length=1, description="e.g. imagenet-top1, coco-ap50")


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    shape: list[int] = Field(min_length=3, max_length=3, description="one frame: [C, H, W]")
    datatype: Literal[DATATYPES] = "FP32"  # type: ignore[valid-type]
    preprocessing: Literal["imagenet"] = "imagenet"


class _Facts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gmacs: float = Field(gt=0)
    params_m: float = Field(ge=0)
    input_hw: int | None = Field(None, ge=1)
    source: str = Field(min_length=1, description="where the figures come from")
    onnx_sha256: str | None = None


class _EntrySpec(BaseModel):
    """The schema of model.yaml (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    family: str = Field(pattern=NAME_PATTERN)
    variant: str = ""
    task: Literal["classification", "detection", "other"] = "classification"
    accuracy: _Accuracy
    onnx: str | None = None
    input: _Input | None = None
    outputs: list[str] | None = Field(None, min_length=1)
    plans: dict[str, str] = Field(default_factory=dict)
    facts: _Facts | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One model of a repository: its facts and its files (None/empty for a facts-only entry)."""

    info: ModelInfo
    root: Path | None  # the model's directory
    onnx_path: Path | None = None
    plans: dict[str, Path] = field(default_factory=dict)  # device kind -> TensorRT plan

    @property
    def yaml_path(self) -> Path | None:
        return None if self.root is None else self.root / ENTRY_FILE


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_entry(model_dir: str | Path) -> ModelEntry:
    """Read and check `model_dir/model.yaml`; ConfigError naming the file and the field."""
    model_dir = Path(model_dir).resolve()
    path = model_dir / ENTRY_FILE
    raw = read_config_file(path, "model entry")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a model entry must be a mapping (family, accuracy, onnx, ...)")
    try:
        spec = _EntrySpec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "entry"
        raise ConfigError(f"{path}: field {where!r}: {first['msg']}") from None
    name = model_dir.name
    if not _valid_name(name):
        raise ConfigError(f"{path}: the directory name {name!r} is not a valid model name ({NAME_PATTERN})")
    onnx_path = _member(model_dir, spec.onnx, path, "onnx") if spec.onnx else None
    plans = {}
    for kind, rel in spec.plans.items():
        if kind not in CATALOGUE:
            raise ConfigError(f"{path}: field 'plans.{kind}': unknown device kind; known: {', '.join(CATALOGUE)}")
        plans[kind] = _member(model_dir, rel, path, f"plans.{kind}")
    info = _info(name, spec, onnx_path, path)
    return ModelEntry(info=info, root=model_dir, onnx_path=onnx_path, plans=plans)


def _valid_name(name: str) -> bool:
    import re

    return re.fullmatch(NAME_PATTERN, name) is not None


def _member(model_dir: Path, rel: str, path: Path, field_name: str) -> Path:
    """A file of the model's directory named by a YAML field; it must exist and stay inside the directory."""
    target = (model_dir / rel).resolve()
    if model_dir not in target.parents:
        raise ConfigError(f"{path}: field {field_name!r}: {rel!r} is outside the model's directory")
    if not target.is_file():
        raise ConfigError(f"{path}: field {field_name!r}: no such file {rel!r}")
    return target


def _info(name: str, spec: _EntrySpec, onnx_path: Path | None, path: Path) -> ModelInfo:
    """The ModelInfo of an entry: facts from the ONNX graph where there is one, else the stated facts."""
    from costmodel.onnx_facts import OnnxFacts, onnx_facts

    facts = spec.facts
    graph: OnnxFacts | None = onnx_facts(onnx_path) if onnx_path is not None else None
    if graph is None and facts is None:
        raise ConfigError(f"{path}: field 'facts': required when the entry has no 'onnx' file")
    if graph is None and onnx_path is None and spec.input is None and facts.input_hw is None:
        raise ConfigError(f"{path}: field 'input': required (or facts.input_hw) when the entry has no 'onnx' file")
    if graph is not None:
        model_input = ModelInput(graph.input_name, graph.input_shape, graph.input_datatype)
        outputs = graph.output_names
        gmacs, params_m = graph.gmacs, graph.params_m
        source = f"onnx shape inference of {onnx_path.name}"
    else:
        hw = facts.input_hw or spec.input.shape[-1]
        model_input = ModelInput(shape=(3, hw, hw))
        outputs = ("output",)
        gmacs, params_m, source = facts.gmacs, facts.params_m, facts.source
    if spec.input is not None:
        declared = ModelInput(spec.input.name, tuple(spec.input.shape), spec.input.datatype, spec.input.preprocessing)
        if graph is not None and declared.shape != model_input.shape:
            raise ConfigError(
                f"{path}: field 'input.shape': {list(declared.shape)} but the ONNX graph's input is "
                f"{list(model_input.shape)}"
            )
        model_input = declared
    if spec.outputs is not None:
        if graph is not None and (missing := sorted(set(spec.outputs) - set(graph.output_names))):
            raise ConfigError(f"{path}: field 'outputs': {missing} not outputs of the graph ({list(outputs)})")
        outputs = tuple(spec.outputs)
    return ModelInfo(
        name=name,
        family=spec.family,
        gmacs=gmacs,
        params_m=params_m,
        input_hw=int(model_input.shape[-1]),
        accuracy_pct=spec.accuracy.value,
        accuracy_metric=spec.accuracy.metric,
        sources={"facts": source, "entry": str(path)},
        task=spec.task,
        variant=spec.variant,
        input=model_input,
        outputs=outputs,
    )


def load_repository(root: str | Path) -> list[ModelEntry]:
    """Every entry of the repository at `root` (directories holding a model.yaml), by name."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such model repository (a folder of model directories)")
    return [load_entry(d) for d in sorted(root.iterdir()) if (d / ENTRY_FILE).is_file()]


def add_model(
    root: str | Path,
    onnx_file: str | Path,
    *,
    family: str,
    accuracy_pct: float,
    accuracy_metric: str,
    name: str | None = None,
    variant: str = "",
    task: str = "classification",
    outputs: list[str] | None = None,
    plans: dict[str, str | Path] | None = None,
    overwrite: bool = False,
) -> ModelEntry:
    """Register `onnx_file` in the repository at `root`: copy it (and any TensorRT plans) into a new model
    directory, compute its facts from the graph and write model.yaml. Returns the entry as loaded back."""
    from costmodel.onnx_facts import onnx_facts

    onnx_file = Path(onnx_file)
    if not onnx_file.is_file():
        raise ConfigError(f"{onnx_file}: no such ONNX file")
    name = name or family
    if not _valid_name(name):
        raise ConfigError(f"model name {name!r} is not valid ({NAME_PATTERN})")
    facts = onnx_facts(onnx_file)  # refuse a broken graph before anything is written
    model_dir = Path(root) / name
    if model_dir.exists():
        if not overwrite:
            raise ConfigError(f"{model_dir}: model {name!r} is already in the repository (use --force to replace)")
        shutil.rmtree(model_dir)
    (model_dir / "plans").mkdir(parents=True)
    shutil.copyfile(onnx_file, model_dir / ONNX_FILE)
    doc: dict[str, Any] = {
        "family": family,
        "variant": variant,
        "task": task,
        "accuracy": {"value": float(accuracy_pct), "metric": accuracy_metric},
        "onnx": ONNX_FILE,
        "input": {
            "name": facts.input_name,
            "shape": list(facts.input_shape),
            "datatype": facts.input_datatype,
            "preprocessing": "imagenet",
        },
        "outputs": list(outputs or facts.output_names),
        "plans": {},
        "facts": {
            "gmacs": round(facts.gmacs, 9),
            "params_m": round(facts.params_m, 9),
            "source": f"onnx shape inference of {ONNX_FILE}",
            "onnx_sha256": file_sha256(model_dir / ONNX_FILE),
        },
    }
    for kind, plan in (plans or {}).items():
        rel = f"plans/{kind}.plan"
        shutil.copyfile(plan, model_dir / rel)
        doc["plans"][kind] = rel
    (model_dir / ENTRY_FILE).write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        return load_entry(model_dir)
    except ConfigError:
        shutil.rmtree(model_dir)
        raise
