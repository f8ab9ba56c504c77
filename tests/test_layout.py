"""The house rules of docs/design.md §2 ("the nevers"), read from the package's own imports.

Every `import stackrl...` / `from stackrl... import` in the package, at module level or inside a
function, is checked against the rules below, so a layout violation fails here instead of drifting
in. The checker is tested on a planted violation in a temporary copy of the package.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("envs", "protos", "learner", "actors", "runners", "experiments", "deploy")
GENERATED = ("stackrl.protos.stackrl_pb2", "stackrl.protos.stackrl_pb2_grpc")


def part_of(module: str) -> str:
    """'stackrl.learner.models' -> 'learner'; 'stackrl.config' -> 'config' (a root contract)."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every stackrl module the file imports, wherever the import statement is."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("stackrl")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stackrl"):
            # `from stackrl.protos import rpc` imports the module stackrl.protos.rpc.
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def rule_broken(src_part: str, src_file: str, target: str) -> str | None:
    """Why importing `target` from a file in `src_part` breaks a never (None: allowed)."""
    dst = part_of(target)
    if src_part == dst:
        return None
    if any(target == g or target.startswith(g + ".") for g in GENERATED) and src_part != "protos":
        return "only protos/ reads the generated gRPC modules"
    if dst == "deploy":
        return "nothing imports deploy/ except the console-script entry point"
    if src_part == "config":
        return "config.py imports no part"
    if src_part == "envs" and dst != "config":
        return "envs/ imports no other part (only config.py)"
    if src_part == "protos" and dst not in ("envs", "config", "trajectory"):
        return "protos/ imports only envs/ and the root contracts"
    if src_part == "learner" and dst in ("actors", "runners", "experiments"):
        return f"learner/ never imports {dst}/"
    if src_part == "actors":
        if dst == "learner" and not target.startswith("stackrl.learner.models"):
            return "actors/ imports from learner/ only the networks (learner/models.py)"
        if dst in ("runners", "experiments"):
            return f"actors/ never imports {dst}/"
    if src_part == "runners" and dst == "experiments":
        return "runners/ never imports experiments/"
    if src_part == "trajectory" and dst not in ("config",):
        return "trajectory.py is a root contract: it imports no part"
    return None


def violations(root: Path) -> list[str]:
    """Every broken never in the package at `root` (the repository root)."""
    found = []
    files = [root / "config.py", root / "trajectory.py"]
    for part in PARTS:
        files += sorted((root / part).rglob("*.py"))
    for path in files:
        rel = path.relative_to(root).as_posix()
        if "_pb2" in path.name:
            continue
        src_part = rel.split("/")[0].removesuffix(".py")
        for line, target in imports_of(path):
            why = rule_broken(src_part, rel, target)
            if why:
                found.append(f"{rel}:{line} imports {target}: {why}")
    return found


def test_the_package_keeps_every_never():
    assert violations(ROOT) == []


def test_every_part_of_the_layout_exists():
    for part in PARTS:
        assert (ROOT / part / "__init__.py").exists(), part


@pytest.mark.parametrize(
    ("file", "line", "expected"),
    [
        (
            "envs/matrix_games.py",
            "from stackrl.learner.models import build_networks",
            "envs/ imports no other",
        ),
        ("config.py", "    from stackrl.envs import factory", "config.py imports no part"),
        ("protos/codec.py", "from stackrl.learner.transport import Broadcast", "protos/ imports only"),
        ("learner/learner.py", "from stackrl.experiments.report import generate", "learner/ never imports"),
        ("actors/actor.py", "from stackrl.learner.update import actor_critic_loss", "only the networks"),
        ("runners/serial.py", "from stackrl.experiments import bench_matrix", "runners/ never imports"),
        ("experiments/report.py", "from stackrl.deploy.cli import main", "nothing imports deploy/"),
        ("learner/service.py", "from stackrl.protos import stackrl_pb2_grpc", "generated gRPC modules"),
    ],
)
def test_a_planted_violation_is_caught(tmp_path, file, line, expected):
    copy = tmp_path / "stackrl"
    shutil.copytree(
        ROOT, copy, ignore=shutil.ignore_patterns(".git", "runs", "tests", "__pycache__", "*.egg-info")
    )
    target = copy / file
    body = target.read_text()
    if line.startswith("    "):  # a lazy import inside a function must be caught as well
        body += f"\n\ndef _planted():\n{line}\n"
    else:
        body += f"\n{line}\n"
    target.write_text(body)
    found = violations(copy)
    assert len(found) == 1 and expected in found[0], found
