"""deploy/slurm/stackrl.sbatch on a real single-node Slurm cluster started by this test.

CI runs as root on a fresh Debian 12 machine: the test installs `slurm-wlm` and `munge` when they are
missing, starts munged, slurmctld and slurmd with a configuration in a temporary directory
(/work/shared/notes/slurm-single-node.md), submits the batch script for a short matrix-game run with
two actors, and checks the run's outputs. The daemons are stopped by their pid files at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "deploy" / "slurm" / "stackrl.sbatch"
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def _install_slurm() -> None:
    if all(shutil.which(p) for p in ("sbatch", "slurmctld", "slurmd", "munged", "scontrol", "sinfo")):
        return
    assert os.geteuid() == 0, "installing slurm-wlm and munge needs root (CI runs as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], env=env)
    _run(["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"], env=env)


def _munge_works() -> bool:
    if not MUNGE_SOCKET.exists():
        return False
    cred = subprocess.run(["munge", "-n"], capture_output=True)
    return (
        cred.returncode == 0
        and subprocess.run(["unmunge"], input=cred.stdout, capture_output=True).returncode == 0
    )


def _start_munge(tmp: Path) -> Path | None:
    """Start munged as the munge user unless one already answers; returns its pid file if we started it."""
    if _munge_works():
        return None
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)
    MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
    pidfile = MUNGE_SOCKET.parent / "munged.pid"
    _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force", f"--pid-file={pidfile}"])
    _wait(_munge_works, 20, "munged to answer", tmp)
    return pidfile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(tmp: Path) -> Path:
    host = _run(["hostname", "-s"]).stdout.strip()
    for d in ("state", "spool"):
        (tmp / d).mkdir()
    conf = tmp / "slurm.conf"
    conf.write_text(
        f"""ClusterName=stackrltest
SlurmctldHost={host}
SlurmUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
StateSaveLocation={tmp}/state
SlurmdSpoolDir={tmp}/spool
SlurmctldPidFile={tmp}/slurmctld.pid
SlurmdPidFile={tmp}/slurmd.pid
SlurmctldLogFile={tmp}/slurmctld.log
SlurmdLogFile={tmp}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=1
NodeName={host} CPUs=8 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    return conf


def _logs(tmp: Path) -> str:
    out = []
    for p in sorted(tmp.glob("*.log")) + sorted(tmp.glob("*.out")):
        out.append(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}")
    return "\n".join(out)


def _wait(pred, timeout: float, what: str, tmp: Path) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{_logs(tmp)}")


def _stop(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A one-node Slurm cluster (CPUs=8 declared, so a learner and two actors fit on 2 cores)."""
    _install_slurm()
    tmp = tmp_path_factory.mktemp("slurm")
    started: list[Path] = []
    munge_pid = _start_munge(tmp)
    if munge_pid is not None:
        started.append(munge_pid)
    conf = _slurm_conf(tmp)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        _run(["slurmctld", "-f", str(conf)], env=env)
        started.append(tmp / "slurmctld.pid")
        _run(["slurmd", "-f", str(conf)], env=env)
        started.append(tmp / "slurmd.pid")

        def idle() -> bool:
            r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            return r.returncode == 0 and r.stdout.strip() == "idle"

        _wait(idle, 60, "the node to be idle in sinfo", tmp)
        yield env, tmp
    finally:
        for pidfile in reversed(started):  # slurmd, slurmctld, then munged (if this test started it)
            _stop(pidfile)


def _job_state(env: dict[str, str], job_id: str) -> tuple[str, str]:
    out = _run(["scontrol", "show", "job", job_id], env=env).stdout
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return fields["JobState"], fields.get("ExitCode", "")


def _submit_and_wait(env, tmp: Path, run_root: Path, args: list[str], ntasks: int, timeout: float):
    out = tmp / "job-%j.out"
    sub = _run(
        ["sbatch", "--parsable", f"--ntasks={ntasks}", f"--output={out}", f"--chdir={tmp}", str(SBATCH), *args],
        env={**env, "STACKRL_RUN_ROOT": str(run_root), "STACKRL_PYTHON": sys.executable,
             "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
    )  # fmt: skip
    job_id = sub.stdout.strip().split(";")[0]
    state: list[tuple[str, str]] = []

    def finished() -> bool:
        state[:] = [_job_state(env, job_id)]
        return state[0][0] not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")

    _wait(finished, timeout, f"job {job_id}", tmp)
    log = Path(str(out).replace("%j", job_id)).read_text()
    return job_id, state[0], log


def test_sbatch_runs_learner_and_two_actors_under_slurm(slurm_cluster, tmp_path: Path):
    env, tmp = slurm_cluster
    run_root = tmp_path / "shared" / "runs"
    job_id, (state, exit_code), log = _submit_and_wait(
        env, tmp, run_root, ["stag_hunt", "--seed", "0"], ntasks=3, timeout=240
    )
    assert state == "COMPLETED" and exit_code == "0:0", f"{state} {exit_code}\n{log}\n{_logs(tmp)}"

    # Really under Slurm: each of the three tasks reported the job id Slurm gave it.
    for task in range(3):
        assert f"task {task}/3 on " in log and f"(SLURM_JOB_ID={job_id})" in log, log
    assert log.count("actor task ") == 2, log

    run = run_root / f"stag_hunt-{job_id}"
    result = json.loads((run / "result.json").read_text())
    assert result["leader_value"] == result["exact_value"], result
    assert list((run / "tb").glob("events.out.tfevents.*")), list(run.rglob("*"))
    assert (run / "checkpoint.pt").stat().st_size > 0
    token_line = next(line for line in (run / "config.yaml").read_text().splitlines() if "token" in line)
    assert token_line.split(":", 1)[1].strip() in ("null", "~", ""), (
        token_line
    )  # the job's token is not stored


def test_sbatch_fails_when_the_learner_fails(slurm_cluster, tmp_path: Path):
    env, tmp = slurm_cluster
    # An unknown override makes the learner exit with an error before it listens; the job must fail
    # and the actors must not hang until their wait deadline.
    t0 = time.monotonic()
    job_id, (state, exit_code), log = _submit_and_wait(
        env, tmp, tmp_path / "runs", ["stag_hunt", "--set", "learner.no_such_key=1"], ntasks=3, timeout=120
    )
    assert state == "FAILED" and exit_code != "0:0", f"{state} {exit_code}\n{log}"
    assert "no_such_key" in log and f"stackrl job {job_id} FAILED" in log, log
    assert time.monotonic() - t0 < 100
