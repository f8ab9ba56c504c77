"""A run on Slurm as two jobs: the learner with its own resources (a GPU when asked), the actors with theirs.

Why two jobs rather than one allocation: the learner and the actors need different resources (one
GPU and a few cores, against many single-core tasks), and Slurm records and schedules a job's
request as a whole; separate jobs make each request visible in `scontrol show job` and let the
learner's job be preempted and requeued (deploy/slurm/learner.sbatch) while the actors' job keeps
running and reconnects. (A heterogeneous job would say the same, but Slurm will not place its
components on one shared node, which rules out small clusters and our single-node test cluster.)

The learner job is submitted first; the actors' job depends on it having started (`after:<id>`).
They meet in a rendezvous directory on the shared run root, where the learner writes its address.
A fresh token guards the learner; it travels to both jobs in the environment only.
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SLURM_DIR = Path(__file__).resolve().parent.parent / "deploy" / "slurm"
"""learner.sbatch and actors.sbatch: data shipped with the deploy files (submitted, never imported)."""


class SubmitError(RuntimeError):
    """sbatch refused a job; the message holds its error."""


@dataclass
class SlurmResources:
    """What each side asks Slurm for (the flags of `stackrl slurm submit`)."""

    actors: int = 2
    """Actor tasks (one `stackrl actor` process each)."""
    actor_cpus: int = 1
    """CPUs per actor task."""
    actor_mem: str | None = None
    """Memory per actor task (`--mem-per-cpu` syntax, e.g. 2G); None: the cluster default."""
    learner_cpus: int = 1
    """CPUs of the learner."""
    learner_gpus: int = 0
    """GPUs of the learner (`--gres=gpu:N`); 0: none."""
    learner_mem: str | None = None
    """Memory of the learner (`--mem`); None: the cluster default."""
    time: str | None = None
    """Time limit of both jobs (`--time`); the learner checkpoints and requeues itself before it."""

    def __post_init__(self) -> None:
        for key in ("actors", "actor_cpus", "learner_cpus"):
            if getattr(self, key) < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        if self.learner_gpus < 0:
            raise ValueError(f"--learner-gpus must be >= 0, got {self.learner_gpus}")

    def learner_args(self) -> list[str]:
        out = ["--ntasks=1", f"--cpus-per-task={self.learner_cpus}"]
        out += [f"--gres=gpu:{self.learner_gpus}"] if self.learner_gpus else []
        out += [f"--mem={self.learner_mem}"] if self.learner_mem else []
        return out + ([f"--time={self.time}"] if self.time else [])

    def actor_args(self) -> list[str]:
        out = [f"--ntasks={self.actors}", f"--cpus-per-task={self.actor_cpus}"]
        out += [f"--mem-per-cpu={self.actor_mem}"] if self.actor_mem else []
        return out + ([f"--time={self.time}"] if self.time else [])


@dataclass(frozen=True)
class Submitted:
    learner_job: str
    actor_job: str
    run_dir: Path
    rendezvous: Path


def _sbatch(cmd: list[str], env: dict[str, str]) -> str:
    log.info("submitting: %s", shlex.join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SubmitError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]


def submit(
    experiment: str,
    name: str,
    run_root: str | Path,
    resources: SlurmResources,
    learner_options: tuple[str, ...] = (),
    sbatch_args: tuple[str, ...] = (),
) -> Submitted:
    """Submit the learner job, then the actors' job that starts once the learner's has started.

    Args:
        experiment: a preset, game name or YAML file (made absolute: the job may start elsewhere).
        name: the run's name; the run goes to `<run_root>/<name>/`.
        run_root: a directory every node shares.
        resources: what each job asks for.
        learner_options: passed on to `stackrl learner` (`--seed`, `--set k=v`, ...).
        sbatch_args: extra sbatch options for both jobs (`--partition`, `--account`, ...).

    Raises:
        SubmitError: sbatch refused a job (the learner's job is cancelled if the actors' is refused).
    """
    root = Path(run_root).resolve()
    rdv = root / ".slurm" / name
    rdv.mkdir(parents=True, exist_ok=True)
    rdv.chmod(0o700)
    if Path(experiment).suffix in (".yaml", ".yml") and Path(experiment).exists():
        experiment = str(Path(experiment).resolve())
    env = {
        **os.environ,
        "STACKRL_RUN_NAME": name,
        "STACKRL_RDV": str(rdv),
        "STACKRL_TOKEN": os.environ.get("STACKRL_TOKEN") or secrets.token_urlsafe(32),
    }
    common = ["sbatch", "--parsable", f"--chdir={root}", *sbatch_args]
    learner_cmd = [*common, f"--job-name=stackrl-learner-{name}", *resources.learner_args()]
    learner_cmd += [f"--output={rdv}/learner-%j.out", str(SLURM_DIR / "learner.sbatch"), experiment]
    learner_cmd += ["--set", f"run_root={root}", *learner_options]
    learner_job = _sbatch(learner_cmd, env)
    actor_cmd = [*common, f"--job-name=stackrl-actors-{name}", *resources.actor_args()]
    actor_cmd += [f"--dependency=after:{learner_job}", f"--output={rdv}/actors-%j.out"]
    try:
        actor_job = _sbatch([*actor_cmd, str(SLURM_DIR / "actors.sbatch")], env)
    except SubmitError:
        subprocess.run(["scancel", learner_job], check=False)
        raise
    return Submitted(learner_job, actor_job, root / name, rdv)
