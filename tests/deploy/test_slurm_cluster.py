"""deploy/slurm/stackrl.sbatch on a real single-node Slurm cluster started by this test.

CI runs as root on a fresh Debian 12 machine: the test installs `slurm-wlm` and `munge` when they are
missing, starts munged, slurmctld and slurmd with a configuration in a temporary directory
(/work/shared/notes/slurm-single-node.md), submits the batch script for a short matrix-game run with
two actors, and checks the run's outputs. The daemons are stopped by their pid files at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

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
    # One GPU as a generic resource on a dummy device (slurmd wants a character device; this one is
    # /dev/null's), so a request for it takes the same path as on a GPU node.
    gpu = tmp / "gpu0"
    os.mknod(gpu, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    (tmp / "gres.conf").write_text(f"NodeName={host} Name=gpu File={gpu}\n")
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
GresTypes=gpu
NodeName={host} CPUs=8 Gres=gpu:1 State=UNKNOWN
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


# -- issue 14: the learner and the actors as separate jobs, requeue, sweeps as job arrays ------------
CLI = [sys.executable, "-m", "stackrl.deploy.cli"]


def _job_fields(env: dict[str, str], job_id: str) -> dict[str, str]:
    out = _run(["scontrol", "show", "job", job_id], env=env).stdout
    return dict(f.split("=", 1) for f in out.split() if "=" in f)


def _job_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "STACKRL_PYTHON": sys.executable, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}


def test_learner_gets_its_gpu_and_actors_their_cpus_and_a_requeued_learner_resumes(slurm_cluster, tmp_path):
    """`stackrl slurm submit`: the learner job asks 2 CPUs and the GPU, the actors' job 1 CPU per task
    and no GPU (as `scontrol show job` shows them). Requeued mid-run (Slurm sends the learner SIGTERM,
    as on preemption), the learner checkpoints, runs again with --resume from where it stopped, the
    actor finds its new address, and the run ends at the exact value with every phase's env steps
    counted once."""
    env, tmp = slurm_cluster
    run_root = tmp_path / "shared" / "runs"
    sub = subprocess.run(
        [*CLI, "slurm", "submit", "stag_hunt", "--name", "rq", "--run-root", str(run_root),
         "--actors", "1", "--learner-cpus", "2", "--learner-gpus", "1", "--actor-cpus", "1",
         "--set", "schedule.checkpoint_interval_s=100000", "--set", "actor.connect_deadline_s=5",
         "--log-interval", "1"],
        env={**_job_env(env), "STACKRL_CONNECT_DEADLINE_S": "5"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sub.returncode == 0, sub.stderr
    jobs = json.loads(sub.stdout)
    learner_job, actor_job = jobs["learner_job"], jobs["actor_job"]
    lj, aj = _job_fields(env, learner_job), _job_fields(env, actor_job)
    assert (lj["NumTasks"], lj["CPUs/Task"], lj.get("TresPerNode")) == ("1", "2", "gres:gpu:1"), lj
    assert (aj["NumTasks"], aj["CPUs/Task"], aj.get("TresPerNode")) == ("1", "1", None), aj
    assert lj["Requeue"] == "1", lj

    rdv = run_root / ".slurm" / "rq"
    log = rdv / "learner.log"
    seen: list[int] = []

    def under_way() -> bool:
        text = log.read_text() if log.exists() else ""
        seen[:] = [int(s) for s in re.findall(r"steps (\d+)/", text)]
        return bool(seen) and seen[-1] >= 30_000

    _wait(under_way, 120, "the learner to pass 30000 env steps", tmp)
    _run(["scontrol", "requeue", learner_job], env=env)

    def pending_again() -> bool:
        state = _job_fields(env, learner_job)
        return state["JobState"] == "PENDING" and state["Restarts"] == "1"

    _wait(pending_again, 60, "the learner job to be requeued", tmp)
    # Slurm holds a requeued job for a while (BeginTime); let it start now.
    _run(["scontrol", "update", f"JobId={learner_job}", "StartTime=now"], env=env)

    def ended() -> bool:
        states = [_job_fields(env, j)["JobState"] for j in (learner_job, actor_job)]
        return all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in states)

    _wait(ended, 300, "both jobs to end", tmp)
    text = log.read_text()
    for j in (learner_job, actor_job):
        f = _job_fields(env, j)
        assert (f["JobState"], f["ExitCode"]) == ("COMPLETED", "0:0"), f"{f}\n{text[-3000:]}"
    assert "stopped by SIGTERM: checkpoint written to" in text, text[-3000:]
    resumed = int(re.search(r"resumed from \S+ at (\d+) env steps", text).group(1))
    assert resumed >= max(seen)  # the checkpoint holds every step consumed before the signal
    actors_log = next(rdv.glob("actors-*.out")).read_text()
    assert actors_log.count("connecting to") >= 2 and "the learner ended the run" in actors_log, actors_log

    result = json.loads((run_root / "rq" / "result.json").read_text())
    assert result["leader_value"] == result["exact_value"], result
    steps = result["env_steps"]
    phases = {k: v for k, v in steps.items() if k != "total"}
    assert sum(phases.values()) == steps["total"]
    cfg = yaml.safe_load((run_root / "rq" / "config.yaml").read_text())
    budgets = [p["env_steps"] // p.get("restarts", 1) for p in cfg["schedule"]["phases"]]
    unroll = cfg["env"]["num_games"] * cfg["actor"]["unroll_length"]
    # Each phase ends at its budget plus less than one unroll per actor: no steps doubled, none lost.
    assert phases["0_pretrain"] - budgets[0] in range(0, 2 * unroll), phases
    assert all(v - budgets[1] in range(0, 2 * unroll) for k, v in phases.items() if k != "0_pretrain"), phases


def test_sweep_as_a_job_array_2_games_x_2_seeds_and_report_aggregates_it(slurm_cluster, tmp_path):
    env, tmp = slurm_cluster
    root = tmp_path / "shared" / "runs" / "sweep_slurm"
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            {
                "run_root": str(root),
                "games": ["stag_hunt", "chicken"],
                "seeds": [0, 1],
                "concurrency": 2,
                "set": [
                    "schedule.phases=[{kind: pretrain, env_steps: 6000}, {kind: leader, env_steps: 3000}]",
                    "env.num_games=8",
                ],
            }
        )
    )
    proc = subprocess.run(
        [*CLI, "sweep", str(grid), "--backend", "slurm"],
        env=_job_env(env), cwd=tmp_path, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    task_logs = "\n".join(p.read_text() for p in sorted((root / ".slurm").glob("*.out")))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{task_logs}\n{_logs(tmp)}"
    assert "4/4 runs done" in proc.stdout
    job = re.search(r"submitted job array (\d+)", proc.stderr).group(1)
    fields = _job_fields(env, f"{job}_0")
    assert fields["ArrayJobId"] == job and fields["ArrayTaskThrottle"] == "2", fields
    for i in range(4):  # one run per array task, each really run by Slurm
        assert f"stackrl sweep task {i} of job {job}" in task_logs, task_logs
    assert len(list(root.glob("*/result.json"))) == 4

    out = tmp_path / "results.md"
    report = subprocess.run(
        [*CLI, "report", "--runs", str(root), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stderr[-3000:]
    text = out.read_text()
    assert "sweep_slurm" in text and "stag_hunt" in text and "chicken" in text
