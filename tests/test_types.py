"""The package type-checks: `python -m mypy` with the settings of pyproject.toml's [tool.mypy].

The whole package is checked at mypy's default level; the games (envs/), the wire (protos/) and the
training core (learner/) strictly. Generated protobuf modules, run directories and the tests are
left out (pyproject.toml says why).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_type_checks(tmp_path):
    # The repository root is the package `stackrl` (pyproject.toml maps it to `.`), but mypy finds a
    # package by its folder's name, and the editable install's import hook is invisible to it: give
    # mypy a folder named `stackrl` that is the repository.
    (tmp_path / "stackrl").symlink_to(ROOT, target_is_directory=True)
    env = {
        **os.environ,
        "MYPYPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("MYPYPATH")])),
    }
    proc = subprocess.run(
        # A fresh cache: one written through another `stackrl` folder would report that folder's paths.
        [sys.executable, "-m", "mypy", "-p", "stackrl", "--cache-dir", str(tmp_path / "mypy_cache")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = (proc.stdout + proc.stderr).replace(f"{tmp_path / 'stackrl'}{os.sep}", "")
    assert proc.returncode == 0, report
