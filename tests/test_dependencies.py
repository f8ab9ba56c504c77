"""Issue 14: every third-party module the package imports at run time (anywhere: module level or inside
a function) comes from a distribution that pyproject.toml declares, as a dependency or in an extra.
(matplotlib arrived only because envpool depends on it, so an image without envpool could not run
`stackrl report`.) Imports are read with ast and mapped to distributions by importlib.metadata."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
# benchmarks/ holds scripts around the package; sf_envpool_atari.py runs inside the peer's own venv.
NOT_PACKAGE = {"tests", "runs", "docs", "build", "stackrl.egg-info", "benchmarks"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *(d for ds in project["optional-dependencies"].values() for d in ds)]
    return {_norm(re.match(r"[A-Za-z0-9_.-]+", s).group(0)) for s in specs}


def imported(root: Path = REPO) -> dict[str, set[str]]:
    """Top-level third-party module -> the package files importing it."""
    out: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] in NOT_PACKAGE or rel.parts[0].startswith("."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("stackrl", "__future__"):
                    out.setdefault(top, set()).add(str(rel))
    return out


def undeclared(modules: dict[str, set[str]], names: set[str]) -> list[str]:
    dists = md.packages_distributions()
    bad = []
    for module, files in sorted(modules.items()):
        found = dists.get(module)
        if not found:
            bad.append(f"{module} (imported by {sorted(files)}): no installed distribution provides it")
        elif not any(_norm(d) in names for d in found):
            bad.append(
                f"{module} (imported by {sorted(files)}): from {found}, not declared in pyproject.toml"
            )
    return bad


def test_every_runtime_import_is_declared_in_pyproject():
    modules = imported()
    assert {"torch", "numpy", "grpc", "yaml", "matplotlib"} <= set(modules)  # the scan sees the package
    assert undeclared(modules, declared()) == []


def test_an_undeclared_import_is_caught(tmp_path: Path):
    (tmp_path / "plots.py").write_text("def draw():\n    import matplotlib.pyplot as plt\n    import yaml\n")
    modules = imported(tmp_path)
    assert modules == {"matplotlib": {"plots.py"}, "yaml": {"plots.py"}}
    (problem,) = undeclared(modules, declared() - {"matplotlib"})
    assert problem.startswith("matplotlib") and "not declared" in problem
