"""runners/slurm.py: the two sbatch submissions `stackrl slurm submit` makes, checked against a fake
`sbatch` on PATH that records its arguments and environment (the real cluster path is tested in
tests/deploy/test_slurm_cluster.py): each job's own resource request, the learner requeueable and resumable,
the actors started after it, the token only in the environment, and a refused submission cancels
the learner's job."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from stackrl.runners.slurm import SlurmResources, SubmitError, submit

FAKE = """#!{python}
import json, os, sys
from pathlib import Path

record = Path(os.environ["RECORD"])
n = len(list(record.iterdir()))
env = {{k: os.environ.get(k) for k in ("STACKRL_TOKEN", "STACKRL_RDV", "STACKRL_RUN_NAME")}}
(record / f"{{n}}.json").write_text(json.dumps({{"argv": sys.argv[1:], **env}}))
if os.environ.get("FAIL_SECOND") and n == 1:
    sys.exit("sbatch: error: invalid partition")
print(100 + n)
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "sbatch").write_text(FAKE.format(python=sys.executable))
    (bin_dir / "scancel").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/cancelled\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(record))
    monkeypatch.delenv("STACKRL_TOKEN", raising=False)
    return record


def _calls(record: Path) -> list[dict]:
    return [json.loads((record / f"{i}.json").read_text()) for i in range(len(list(record.iterdir())))]


def test_learner_and_actor_jobs_with_their_own_requests(fake_slurm, tmp_path):
    res = SlurmResources(
        actors=8, actor_cpus=2, learner_cpus=4, learner_gpus=1, learner_mem="16G", time="1:00:00"
    )
    sub = submit("stag_hunt", "r1", tmp_path / "runs", res, ("--seed", "3"), ("--partition=gpu",))
    assert (sub.learner_job, sub.actor_job) == ("100", "101")
    learner, actors = _calls(fake_slurm)
    la, aa = learner["argv"], actors["argv"]
    assert {"--ntasks=1", "--cpus-per-task=4", "--gres=gpu:1", "--mem=16G", "--time=1:00:00"} <= set(la)
    assert la[la.index(next(a for a in la if a.endswith("learner.sbatch"))) + 1 :] == [
        "stag_hunt", "--set", f"run_root={(tmp_path / 'runs').resolve()}", "--seed", "3",
    ]  # fmt: skip
    assert {"--ntasks=8", "--cpus-per-task=2", "--dependency=after:100", "--partition=gpu"} <= set(aa)
    assert not any(a.startswith("--gres") for a in aa) and aa[-1].endswith("actors.sbatch")
    # One fresh token for both jobs, never on a command line.
    assert learner["STACKRL_TOKEN"] == actors["STACKRL_TOKEN"] and len(learner["STACKRL_TOKEN"]) >= 32
    assert not any(learner["STACKRL_TOKEN"] in a for a in la + aa)
    assert learner["STACKRL_RDV"] == str(sub.rendezvous) and learner["STACKRL_RUN_NAME"] == "r1"
    sbatch = next(Path(a) for a in la if a.endswith("learner.sbatch")).read_text()
    assert "#SBATCH --requeue" in sbatch and "#SBATCH --signal=B:USR1@" in sbatch and "--resume" in sbatch


def test_a_refused_actor_job_cancels_the_learner_job(fake_slurm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIL_SECOND", "1")
    with pytest.raises(SubmitError, match="invalid partition"):
        submit("stag_hunt", "r2", tmp_path / "runs", SlurmResources())
    assert (tmp_path / "cancelled").read_text().split() == ["100"]


def test_resources_are_checked():
    with pytest.raises(ValueError, match="--actors must be >= 1"):
        SlurmResources(actors=0)
    with pytest.raises(ValueError, match="--learner-gpus"):
        SlurmResources(learner_gpus=-1)
