"""Issue 6: bad configuration is rejected by `stackrl train` before anything starts (no learner, no
actor process, no run directory), with exit code 2 and a one-line error naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner
from stackrl.deploy import cli


@pytest.fixture
def no_launch(monkeypatch):
    """Any attempt to start a run fails the test."""

    def boom(*a, **k):
        raise AssertionError("a run was launched despite an invalid config")

    import stackrl.runners.launch as launch
    import stackrl.runners.serial as serial

    monkeypatch.setattr(launch, "run_local", boom)
    monkeypatch.setattr(launch, "LearnerServer", boom)
    monkeypatch.setattr(serial, "run_serial", boom)


CASES = [
    # impossible values
    (["--set", "actor.num_actors=0"], "actor.num_actors", "must be >= 1"),
    (["--actors", "0"], "actor.num_actors", "must be >= 1"),
    (["--set", "actor.num_actors=-3"], "actor.num_actors", "must be >= 1"),
    (["--set", "learner.lr_leader=-0.1"], "learner.lr_leader", "must be > 0"),
    (["--set", "learner.lr_follower=0"], "learner.lr_follower", "must be > 0"),
    (["--set", "learner.discount=1.5"], "learner.discount", "must be in"),
    (["--set", "learner.batch_trajectories=0"], "learner.batch_trajectories", "must be >= 1"),
    (["--set", "learner.queue_size=0"], "learner.queue_size", "must be >= 1"),
    (["--set", "env.num_games=0"], "env.num_games", "must be >= 1"),
    (["--set", "actor.unroll_length=0"], "actor.unroll_length", "must be >= 1"),
    (["--set", "actor.connect_deadline_s=-1"], "actor.connect_deadline_s", "must be > 0"),
    (["--set", "schedule.phases=[]"], "schedule.phases", "at least one phase"),
    (["--set", "schedule.phases=[{kind: nope}]"], "schedule.phases[0].kind", "must be one of"),
    (["--set", "schedule.phases=[{kind: leader, env_steps: 0}]"], "schedule.phases[0].env_steps", ">= 1"),
    (["--set", "schedule.checkpoint_interval_s=0"], "schedule.checkpoint_interval_s", "must be > 0"),
    (["--set", "schedule.checkpoint_interval_updates=-1"], "schedule.checkpoint_interval_updates", ">= 0"),
    (["--set", "server.port=70000"], "server.port", "must be in [0, 65535]"),
    (["--set", "server.max_message_mb=0"], "server.max_message_mb", "must be in [1, 2047]"),
    # Issue 13: 4096 passed validation and overflowed gRPC's signed 32-bit byte count at bind time.
    (["--set", "server.max_message_mb=4096"], "server.max_message_mb", "must be in [1, 2047]"),
    (["--set", "seed=-1"], "seed", "must be >= 0"),
    (["--seed", "-2"], "seed", "must be >= 0"),
    (["--set", "learner.device=tpu"], "learner.device", "must be 'auto', 'cpu' or 'cuda'"),
    (["--set", "env.name=no_such_game"], "env.name", "unknown game"),
    # non-finite numbers
    (["--set", "learner.lr_leader=.inf"], "learner.lr_leader", "must be finite"),
    (["--set", "learner.lr_leader=.nan"], "learner.lr_leader", ""),
    (["--set", "learner.max_grad_norm=.inf"], "learner.max_grad_norm", "must be finite"),
    # wrong types
    (["--set", "learner.lr_leader=fast"], "learner.lr_leader", "expected float"),
    (["--set", "actor.num_actors=two"], "actor.num_actors", "expected int"),
    (["--set", "actor.unroll_length=1.5"], "actor.unroll_length", "expected int"),
    (["--set", "learner.entropy_anneal=maybe"], "learner.entropy_anneal", "expected bool"),
    (["--set", "env.num_games=[1, 2]"], "env.num_games", "expected int"),
    # unknown keys
    (["--set", "learner.bogus=1"], "learner.bogus", "unknown key"),
    (["--set", "nonsense.key=1"], "nonsense.key", "unknown key"),
    (["--set", "schedule.phases=[{kind: leader, typo: 3}]"], "schedule.phases[0].typo", "unknown key"),
    (["--set", "learner.lr_leader"], "learner.lr_leader", "expected key=value"),
]


@pytest.mark.parametrize("args, key, why", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_config_exits_2_naming_the_key_before_launching(tmp_path, monkeypatch, no_launch, args, key, why):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["train", "stag_hunt", "--no-progress", *args])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith("error: ") and "\n" not in line, line
    assert key in line and why in line, line
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()  # nothing was started or written


def test_bad_yaml_config_file_is_rejected(tmp_path, monkeypatch, no_launch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    for text, key in [
        ("name: x\nenv: {name: stag_hunt}\nactor: {num_actors: 0}\n", "actor.num_actors"),
        ("name: x\nenv: {name: stag_hunt}\nlearner: {lr_leader: -1}\n", "learner.lr_leader"),
        ("name: x\nenv: {name: stag_hunt, colour: red}\n", "env.colour"),
        ("name: x\nenv: {name: stag_hunt}\nactor: {num_actors: many}\n", "actor.num_actors"),
        ("name: x\nenv: {name: stag_hunt}\nextra_section: {a: 1}\n", "extra_section"),
    ]:
        bad.write_text(text)
        result = CliRunner().invoke(cli.main, ["train", str(bad), "--no-progress"])
        assert result.exit_code == 2 and key in result.output, (text, result.output)
    assert not (tmp_path / "runs").exists()


def test_real_cli_process_rejects_zero_actors_without_starting_anything(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "stackrl.deploy.cli", "train", "stag_hunt", "--set", "actor.num_actors=0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: actor.num_actors: must be >= 1, got 0"
    assert "learner listening" not in proc.stderr and not (tmp_path / "runs").exists()


def test_resume_rejects_other_run_options(tmp_path, monkeypatch, no_launch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["train", "stag_hunt", "--resume", "runs/x"])
    assert result.exit_code == 2 and "--resume" in result.output
    result = CliRunner().invoke(cli.main, ["train"])
    assert result.exit_code == 2 and "EXPERIMENT" in result.output


def test_resume_never_imports_a_factory_the_run_directory_names(tmp_path, monkeypatch):
    """Issue 13, defect 1: `stackrl train --resume DIR` imported whatever `env.pettingzoo` the run
    directory's config.yaml named, and a run directory may come from someone else. It is refused
    unless allowed on the command line (`--allow-factory`), before anything is imported."""
    from stackrl.config import ExperimentConfig as Cfg
    from stackrl.envs import registry
    from stackrl.learner.checkpoint import save_checkpoint

    monkeypatch.setattr(registry, "_allowed", set())
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    marker = tmp_path / "ran"
    (tmp_path / "evil_in_run_dir.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
        "def parallel_env(**kw):\n    raise SystemExit(5)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    run_dir = tmp_path / "runs" / "handed_over"
    run_dir.mkdir(parents=True)
    cfg = Cfg.from_dict(
        {
            "name": "handed_over",
            "env": {"name": "pettingzoo", "pettingzoo": "evil_in_run_dir:parallel_env", "leader_agent": "a"},
        }
    )
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    save_checkpoint(run_dir / "checkpoint.pt", {"format": "stackrl-checkpoint-v1"})
    res = CliRunner().invoke(cli.main, ["train", "--resume", str(run_dir), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "'evil_in_run_dir:parallel_env' is not an allowed factory" in res.output
    assert "--allow-factory evil_in_run_dir:parallel_env" in res.output
    assert not marker.exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: a\nenv: {name: stag_hunt\n", "not valid YAML at line 3, column 1"),
        ("name: a\nenv:\n  name: stag_hunt\n  name: chicken\n", "duplicate key 'name' at line 4, column 3"),
        ("name: ..\nenv: {name: stag_hunt}\n", "name: must be a plain directory name"),
        (
            "name: big\nenv: {name: matrix, payoffs: [[[200000, 1], [0, 0]], [[0, 0], [1, 1]]]}\n",
            "env.payoffs: |payoff| up to 200000 over 10 steps exceeds 100000",
        ),
    ],
)
def test_config_files_that_would_fail_later_are_one_line_errors(tmp_path, monkeypatch, text, expected):
    """Issue 13, item 6: a YAML syntax error was a multi-line dump, duplicate keys were accepted
    silently, `name: ..` was accepted, and payoffs of 2e5 started a run whose every unroll the learner
    then rejected without naming `env.payoffs`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.yaml").write_text(text)
    res = CliRunner().invoke(cli.main, ["train", "exp.yaml", "--no-progress"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], res.output
    assert "Traceback" not in res.output and not (tmp_path / "runs").exists()


def test_an_unwritable_run_directory_is_one_line_before_anything_starts(tmp_path, monkeypatch):
    """Issue 13, item 6: a read-only run directory was a traceback (here its parent is a file, which
    refuses writes even to root)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not_a_dir").write_text("")
    res = CliRunner().invoke(
        cli.main, ["train", "stag_hunt", "--set", "run_root=not_a_dir/runs", "--no-progress"]
    )
    assert res.exit_code == 2, res.output
    assert "error: cannot write the run directory not_a_dir/runs/stag_hunt" in res.output
    assert "Traceback" not in res.output


def test_a_full_disk_during_the_run_is_one_line(tmp_path, monkeypatch):
    """Issue 13, item 6: a full disk (ENOSPC while writing a checkpoint) was a traceback."""
    import errno

    from stackrl.runners import launch

    def full(cfg, run_dir, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(run_dir / "checkpoint.pt"))

    monkeypatch.setattr(launch, "run_local", full)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli.main, ["train", "stag_hunt", "--no-progress"])
    assert res.exit_code == 2, res.output
    assert (
        "cannot write the run directory runs/stag_hunt: the disk is full (runs/stag_hunt/checkpoint.pt)"
        in (res.output)
    )
    assert "Traceback" not in res.output
