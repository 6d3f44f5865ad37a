"""The layout is the pipeline: ``core`` imports only go from a later stage to an earlier one, and never in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# The data path, in order. A module may import from its own stage or an earlier one.
STAGES = (
    ("core.paths", "core.progress", "core.labels"),   # foundation: configuration and the label vocabulary
    ("core.io",),                                     # file -> image
    ("core.lungs",),                                  # image -> lung fields and zones
    ("core.features",),                               # image + lungs -> feature vectors
    ("core.learn",),                                  # features -> fitted models, consensus, flag rule
    ("core.evaluation",),                             # models -> metrics over splits
    ("core.severity",),                               # lungs + features -> corona score, progression
    ("core.worklist",),                               # flagged cases in a database
    ("core.triage",),                                 # one image -> verdict (acceptance, risk, score)
    ("core.validation",),                             # a site's labelled films -> validation figures, site profile
    ("core.workflow", "core.bench", "core.cli", "core.__main__"),  # orchestration
    ("dashboard",),                                   # the UI, on top of everything
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(module: str) -> int | None:
    for rank, prefixes in enumerate(STAGES):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None if module != "core" else 0


def _imports(path: Path) -> set[str]:
    """Every ``core``/``dashboard`` module imported anywhere in the file (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in ("core", "dashboard")}


def _graph() -> dict[str, set[str]]:
    files = sorted((REPO_ROOT / "core").rglob("*.py")) + sorted((REPO_ROOT / "dashboard").rglob("*.py"))
    modules = {_module_name(path): path for path in files}
    graph = {}
    for name, path in modules.items():
        # keep only targets that are modules (``from core.io import images`` names the module core.io.images)
        graph[name] = {target for target in _imports(path) if target in modules and target != name}
    return graph


GRAPH = _graph()


def test_core_has_sub_packages_along_the_data_path():
    packages = {path.parent.name for path in (REPO_ROOT / "core").glob("*/__init__.py")}
    assert len(packages) >= 4
    assert {"io", "lungs", "features", "learn", "evaluation", "severity", "worklist", "triage"} <= packages


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_from_a_later_stage_to_an_earlier_one(module: str):
    rank = _stage(module)
    assert rank is not None, f"{module} belongs to no stage: add it to STAGES"
    upward = sorted(target for target in GRAPH[module] if (_stage(target) or 0) > rank)
    assert not upward, f"{module} (stage {rank}) imports later stages: {upward}"


def test_no_import_circle():
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            cycle = path[path.index(module):] + (module,)
            pytest.fail("import circle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(GRAPH.get(module, ())):
            # a package's own __init__ is not an edge back into it
            if not module.startswith(target + "."):
                visit(target, path + (module,))
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, ())
