"""The import layering of docs/architecture.md ("Layering"): no file-level cycles, nothing upward.

Imports are read with `ast`, at module level and inside functions alike (a lazy import hides a cycle, it
does not remove one); imports under `if TYPE_CHECKING:` are annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Bottom to top: a package may import the packages before it, never those after it.
LAYERS = (
    "jetfleet",
    "costmodel",
    "cluster",
    "policies",
    "actors",
    "workloads",
    "simulator",
    "deployments",
    "benchmarks",
)
CLI = "jetfleet.cli"  # the `jetfleet` command assembles every package's commands: the top of all
# The pure layers: what they must never import, package or module (a prefix of the imported module's name).
FORBIDDEN = {
    "policies": ("actors", "deployments", "simulator", "workloads", "benchmarks", "cluster.local", "cluster.launcher"),
    "costmodel": ("actors", "deployments", "simulator", "workloads", "benchmarks", "policies", "cluster"),
    "jetfleet": LAYERS[1:],
}
# Upward edges kept on purpose, each with its reason (docs/architecture.md).
ALLOWED_UPWARD = {
    # `ray job submit -- python -m workloads.experiment` is the public way to run a live experiment; the
    # driver drives a service (deployments) and the simulator from inside workloads/.
    ("workloads.experiment", "deployments.runner"),
    ("workloads.experiment", "simulator.engine"),
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports (a `from m import name` of a submodule counts as that submodule)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        out |= {t for t in targets if t in known and t != module}
    return out


def _graph() -> dict[str, set[str]]:
    paths = {_module(p): p for pkg in LAYERS for p in (ROOT / pkg).rglob("*.py")}
    return {m: _imports(m, p, set(paths)) for m, p in paths.items()}


GRAPH = _graph()


def _layer(module: str) -> int:
    return len(LAYERS) if module.startswith(CLI) else LAYERS.index(module.split(".")[0])


def test_no_file_level_import_cycles():
    """Tarjan's strongly connected components of the module graph are all single modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_pure_layers_import_nothing_above_them(package):
    """policies/, costmodel/ and jetfleet/ (but its CLI) never reach the runtime, drivers or workloads."""
    bad = sorted(
        f"{a} -> {b}"
        for a, bs in GRAPH.items()
        if a.split(".")[0] == package and not a.startswith(CLI)
        for b in bs
        if any(b == f or b.startswith(f + ".") for f in FORBIDDEN[package])
    )
    assert bad == []


def test_packages_import_only_layers_below_them():
    """Every import goes down the LAYERS order (or stays in its package), but for ALLOWED_UPWARD."""
    upward = sorted(
        (a, b) for a, bs in GRAPH.items() for b in bs if _layer(b) > _layer(a) and (a, b) not in ALLOWED_UPWARD
    )
    assert upward == []


def test_allowed_upward_edges_still_exist():
    """An exception that is no longer needed is removed from ALLOWED_UPWARD (and the docs)."""
    assert sorted(e for e in ALLOWED_UPWARD if e[1] not in GRAPH.get(e[0], set())) == []
