"""The `stackrl` command line: train, solve, learner, actor, bench, eval."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from stackrl.config import ConfigError, ExperimentConfig
from stackrl.envs.matrix_games import MEMORIES
from stackrl.runners.presets import build_config

_memory_option = click.option(
    "--memory",
    type=click.Choice(list(MEMORIES)),
    default="full",
    show_default=True,
    help="What players observe: the previous joint action, the other's last action, nothing.",
)
"""`--memory` of the matrix games (`envs.matrix_games.MEMORIES`), for `solve` and `bench matrix`."""

_log_interval_option = click.option(
    "--log-interval",
    type=float,
    default=30.0,
    show_default=True,
    help="With --no-progress, log a status line (steps, steps/s, phase, leader value, policy lag, "
    "queue) every this many seconds (0: never).",
)


def _fail(msg: str) -> NoReturn:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


_allow_factory_option = click.option(
    "--allow-factory",
    "allow_factories",
    multiple=True,
    metavar="MODULE:CALLABLE",
    help="An environment factory this process may import (repeatable; also STACKRL_ALLOW_FACTORY). "
    "A config alone never makes a process import code (docs/byog.md).",
)
_token_file_option = click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Read the shared secret from this file (first line); unlike --token, not visible in `ps`.",
)


def _allow(factories: tuple[str, ...]) -> None:
    """Allow the operator's factories here and in the actor processes this command spawns."""
    from stackrl.envs.registry import allow_factory, allow_from_environment, export_allowed

    try:
        for path in factories:
            allow_factory(path)
        allow_from_environment()
    except ConfigError as e:
        _fail(str(e))
    export_allowed()


def _check_factories(cfg: ExperimentConfig) -> None:
    from stackrl.envs.registry import check_env_factories

    try:
        check_env_factories(cfg.env)
    except ConfigError as e:
        _fail(str(e))


def _token(token: str | None, token_file: str | None) -> str | None:
    """The shared secret from --token / STACKRL_TOKEN or --token-file; warns when it is in argv."""
    if token_file is not None:
        if token is not None:
            _fail("give one of --token (or STACKRL_TOKEN) and --token-file")
        try:
            lines = open(token_file).read().splitlines()  # noqa: SIM115  # read whole, closed at once
        except OSError as e:
            _fail(f"--token-file: cannot read {token_file}: {e.strerror}")
        token = lines[0].strip() if lines else ""
        if not token:
            _fail(f"--token-file: {token_file} is empty")
        return token
    source = click.get_current_context().get_parameter_source("token")
    if token is not None and source is click.core.ParameterSource.COMMANDLINE:
        click.echo(
            "warning: --token is visible to every user in `ps`; use STACKRL_TOKEN or --token-file", err=True
        )
    return token


def _claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, cfg: ExperimentConfig) -> Any:
    """`runners.run_dir.decide` for the CLI: a one-line error when the name is taken (or, resuming,
    holds another config). Returns the decision; the caller clears a REPLACE once its own checks pass."""
    from stackrl.runners.run_dir import RunDirError, Start, check_same_run, decide

    try:
        start = decide(run_dir, resume=resume, overwrite=overwrite)
        if start is Start.RESUME:
            check_same_run(cfg, run_dir)
    except RunDirError as e:
        _fail(str(e))
    _check_writable(run_dir)
    return start


def _check_writable(run_dir: Path) -> None:
    """Fail with one line, before anything starts, if the run directory cannot be written."""
    import tempfile

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as e:
        _fail(_os_error(e, run_dir))


def _os_error(e: OSError, run_dir: Path) -> str:
    """A file-system failure as one line naming the run directory (a full disk, a read-only mount)."""
    import errno

    what = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    where = f" ({e.filename})" if e.filename else ""
    return f"cannot write the run directory {run_dir}: {what}{where}"


def _bar_safe_logs(progress: bool) -> Any:
    """With a progress bar, log lines (the learner's, and the actors' that runners/child_logs.py
    forwards) go through tqdm, which clears the bar, prints the line and redraws the bar."""
    import contextlib

    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm() if progress else contextlib.nullcontext()


def _stopped(e: Exception, resume_command: str) -> NoReturn:
    """A run preempted by SIGTERM/SIGUSR1 (`learner.preemption.Preempted`): say where its checkpoint
    is and how to continue, and exit 128 + the signal, as a shell reports a process the signal ended."""
    from stackrl.learner.preemption import Preempted

    assert isinstance(e, Preempted)
    hint = f"; continue with: {resume_command}" if e.checkpoint is not None else ""
    click.echo(f"{e}{hint}", err=True)
    sys.exit(e.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stackrl", prog_name="stackrl", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """stackrl: Stackelberg equilibria with multi-agent RL on a distributed actor-learner."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@click.option("--game", default=None, help="A named matrix game (see `stackrl solve --list`).")
@click.option("--payoffs", default=None, help="User bimatrix as JSON: [[[rL,rF],[rL,rF]],[[rL,rF],[rL,rF]]].")
@click.option("--episode-length", type=int, default=None, help="Steps per episode (default: the game's own).")
@_memory_option
@click.option("--json", "as_json", is_flag=True, help="Print the solution as JSON.")
@click.option("--list", "list_games", is_flag=True, help="List the named games and exit.")
def solve(
    game: str | None,
    payoffs: str | None,
    episode_length: int | None,
    memory: str,
    as_json: bool,
    list_games: bool,
) -> None:
    """Exact strong Stackelberg equilibrium of an iterated bimatrix game (deterministic memory-1 policies)."""
    from stackrl.envs.matrix_games import GAMES, resolve_game
    from stackrl.envs.solver import format_solution
    from stackrl.envs.solver import solve as solve_game

    if list_games:
        for name, named_table in GAMES.items():
            click.echo(f"{name:20s} {named_table}")
        return
    if (game is None) == (payoffs is None):
        _fail("give exactly one of --game NAME or --payoffs JSON")
    try:
        table: list[Any] | None = json.loads(payoffs) if payoffs is not None else None
        p, length = resolve_game(game or "matrix", table, episode_length)
        sol = solve_game(p, length, memory)
    except (ValueError, json.JSONDecodeError) as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps(sol.to_json()))
    else:
        click.echo(format_solution(game or "user payoffs", sol, p.shape[0], p.shape[1], memory))


def _build_config(
    experiment: str,
    payoffs: str | None,
    seed: int | None,
    method: str | None,
    name: str | None,
    actors: int | None,
    overrides: tuple[str, ...],
) -> ExperimentConfig:
    fields: dict = {"env": {}, "actor": {}}
    if payoffs is not None:
        try:
            fields["env"] = {"name": "matrix", "payoffs": json.loads(payoffs)}
        except json.JSONDecodeError as e:
            raise ConfigError(f"--payoffs is not valid JSON: {e}") from None
    if seed is not None:
        fields["seed"] = seed
    if actors is not None:
        fields["actor"]["num_actors"] = actors
    cfg = build_config(experiment, method=method, fields=fields, overrides=overrides)
    if name is not None:
        return dataclasses.replace(cfg, name=name)
    if payoffs is not None or seed is not None or method is not None:
        return dataclasses.replace(cfg, name=f"{cfg.name}_{method or 'meta'}_s{cfg.seed}")
    return cfg


@main.command()
@click.argument("experiment", required=False)
@click.option(
    "--resume",
    "resume_dir",
    default=None,
    help="Continue the run in this directory (runs/<name>) from its checkpoint and config.",
)
@click.option("--payoffs", default=None, help="User bimatrix as JSON (overrides the game's payoffs).")
@click.option("--seed", type=int, default=None, help="Random seed.")
@click.option(
    "--method",
    type=click.Choice(["meta", "inner_outer"]),
    default=None,
    help="meta: pretrained contextual followers; inner_outer: the re-training baseline.",
)
@click.option("--actors", type=int, default=None, help="Actor processes (default: the preset's).")
@click.option("--serial", is_flag=True, help="Run learner and actors in this one process (no gRPC).")
@click.option("--name", default=None, help="Run name (directory under runs/).")
@click.option("--set", "overrides", multiple=True, help="Override a config key: --set learner.lr_leader=0.01")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run of the same name (default: refuse).")
@_log_interval_option
@_allow_factory_option
def train(
    experiment: str | None,
    resume_dir: str | None,
    payoffs: str | None,
    seed: int | None,
    method: str | None,
    actors: int | None,
    serial: bool,
    name: str | None,
    overrides: tuple[str, ...],
    no_progress: bool,
    overwrite: bool,
    log_interval: float,
    allow_factories: tuple[str, ...],
) -> None:
    """Train on EXPERIMENT (a preset in deploy/configs, a game name, or a YAML file); writes runs/<name>/.

    `stackrl train --resume runs/<name>` continues an interrupted run from its checkpoint. A name that
    is taken refuses to start unless --overwrite is given. SIGTERM or SIGUSR1 writes a checkpoint and
    exits 128 + the signal."""
    _allow(allow_factories)
    if resume_dir is not None:
        if (
            experiment is not None
            or overwrite
            or any(v for v in (payoffs, seed, method, actors, name, overrides, serial))
        ):
            _fail("--resume takes the run's own config: give no EXPERIMENT or other run options")
        from stackrl.learner.checkpoint import CheckpointError
        from stackrl.runners.launch import resume_config

        try:
            cfg, run_dir = resume_config(resume_dir)
        except (CheckpointError, ConfigError, ValueError) as e:
            _fail(str(e))
        _check_factories(cfg)  # a run directory may come from anyone: it names no code to import
    elif experiment is None:
        _fail("give an EXPERIMENT, or --resume RUN_DIR")
    else:
        try:
            cfg = _build_config(experiment, payoffs, seed, method, name, actors, overrides)
        except (ConfigError, ValueError) as e:
            _fail(str(e))
        _check_factories(cfg)
        run_dir = cfg.run_dir
        from stackrl.runners.run_dir import Start, clear

        if _claim_run_dir(run_dir, resume=False, overwrite=overwrite, cfg=cfg) is Start.REPLACE:
            clear(run_dir)
    click.echo(f"run directory: {run_dir}", err=True)
    from stackrl.learner.preemption import Preempted

    try:
        with _bar_safe_logs(not no_progress):
            if serial:
                from stackrl.runners.serial import run_serial

                result = run_serial(cfg, run_dir, progress=not no_progress, log_every_s=log_interval)
            else:
                from stackrl.learner.checkpoint import CheckpointError
                from stackrl.runners.launch import LaunchError, run_local

                try:
                    result = run_local(
                        cfg, run_dir, not no_progress, resume=resume_dir is not None, log_every_s=log_interval
                    )
                except (LaunchError, CheckpointError) as e:
                    _fail(str(e))
    except OSError as e:  # a full disk or a read-only run directory mid-run: one line, no traceback
        _fail(_os_error(e, run_dir))
    except Preempted as e:
        _stopped(e, f"stackrl train --resume {run_dir}")
    summary = {
        k: result.get(k)
        for k in ("leader_value", "exact_value", "gap", "leader_answers", "env_steps", "wall_seconds")
    }
    click.echo(json.dumps(summary))


@main.group()
def bench() -> None:
    """Benchmarks that print a table (and write JSON with --json FILE)."""


@bench.command("matrix")
@click.option(
    "--games", default=None, help="Comma-separated games, or `all` (default: all, unless --random/--payoffs)."
)
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds.")
@click.option(
    "--methods", default=None, help="Comma-separated methods (default: meta,inner_outer; meta with --random)."
)
@click.option("--payoffs", "payoff_sets", multiple=True, help="Extra user bimatrix (JSON); repeatable.")
@click.option("--random", "random_games", type=int, default=0, help="Add N random 2x2 games (payoffs 0-9).")
@click.option("--random-seed", type=int, default=0, show_default=True, help="Seed of the random suite.")
@_memory_option
@click.option(
    "--actors", type=int, default=0, help="0: serial in-process runs; N: the distributed path with N actors."
)
@click.option("--serial", is_flag=True, help="Serial in-process runs (the default; excludes --actors).")
@click.option("--background-load", is_flag=True, help="One low-priority busy process per core while it runs.")
@click.option(
    "--inner-outer-factor", type=float, default=10.0, help="inner_outer budget as a multiple of meta's."
)
@click.option("--json", "json_path", default=None, help="Write the rows to this JSON file.")
@click.option("--set", "overrides", multiple=True, help="Config override applied to every run.")
@click.option("--run-root", default="runs/bench_matrix", show_default=True, help="Where the runs go.")
@click.option(
    "--reuse", is_flag=True, help="Read back finished runs whose config is unchanged (resume a benchmark)."
)
def bench_matrix(random_games: int, serial: bool, methods: str | None, **options) -> None:
    """Matrix games x seeds x methods against the exact solver: the 12 named games and/or a random suite.

    Reports the exact vs achieved value, env steps and time; with --random, the suite's exact rate
    and its misses split into follower errors and leader errors."""
    from stackrl.experiments.bench_matrix import MatrixBench, run_matrix_benchmark

    if serial and options["actors"]:
        _fail("--serial and --actors exclude each other")
    if options["random_seed"] < 0 or random_games < 0:
        _fail("--random and --random-seed must be >= 0")
    default_methods = "meta" if random_games and options["games"] is None else "meta,inner_outer"
    bench = MatrixBench(random=random_games, methods=methods or default_methods, **options)
    try:
        run_matrix_benchmark(bench)
    except (ConfigError, ValueError) as e:
        _fail(str(e))


@main.command()
@click.argument("experiment")
@click.option("--host", default=None, help="Bind address (default: the config's, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (0 picks a free one; default: the config's).")
@click.option(
    "--token",
    envvar="STACKRL_TOKEN",
    default=None,
    help="Shared secret actors must send (env STACKRL_TOKEN); required off loopback (16+ characters).",
)
@_token_file_option
@click.option("--tls-cert", default=None, help="PEM certificate: serve TLS (with --tls-key).")
@click.option("--tls-key", default=None, help="PEM private key of --tls-cert.")
@click.option("--seed", type=int, default=None, help="Random seed.")
@click.option("--name", default=None, help="Run name (directory under runs/).")
@click.option("--set", "overrides", multiple=True, help="Override a config key: --set learner.queue_size=32")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in runs/<name> from its checkpoint if it has one (what Slurm and Kubernetes "
    "pass, so a requeued or restarted learner goes on); start it otherwise.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing run of the same name (default: refuse).")
@_log_interval_option
@click.option(
    "--stay-up",
    is_flag=True,
    help="After the run ends, stay up idle until SIGTERM (a Kubernetes StatefulSet restarts a pod that exits).",
)
@_allow_factory_option
def learner(
    experiment: str,
    host: str | None,
    port: int | None,
    token: str | None,
    token_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    seed: int | None,
    name: str | None,
    overrides: tuple[str, ...],
    no_progress: bool,
    resume: bool,
    overwrite: bool,
    log_interval: float,
    stay_up: bool,
    allow_factories: tuple[str, ...],
) -> None:
    """Serve EXPERIMENT's learner over gRPC until its schedule ends; actors join with `stackrl actor`.

    SIGTERM or SIGUSR1 writes a checkpoint and exits 128 + the signal without ending the run for the
    actors: they reconnect to the learner that `--resume` restarts."""
    import dataclasses

    from stackrl.learner.checkpoint import CheckpointError
    from stackrl.learner.preemption import Preempted
    from stackrl.learner.service import serve_learner
    from stackrl.protos.security import ServiceConfigError, check_bind, server_credentials
    from stackrl.runners.run_dir import Start, clear

    try:
        cfg = _build_config(experiment, None, seed, None, name, None, overrides)
        # The token stays out of the config: the learner writes the config to runs/<name>/config.yaml.
        given: dict[str, Any] = {"host": host, "port": port, "tls_cert": tls_cert, "tls_key": tls_key}
        cfg = dataclasses.replace(
            cfg, server=dataclasses.replace(cfg.server, **{k: v for k, v in given.items() if v is not None})
        )
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    token = _token(token, token_file)
    _allow(allow_factories)
    _check_factories(cfg)
    start = _claim_run_dir(cfg.run_dir, resume=resume, overwrite=overwrite, cfg=cfg)
    try:  # what can fail before training, checked before anything in the run directory changes
        check_bind(cfg.server, token or cfg.server.token)
        server_credentials(cfg.server)
    except ServiceConfigError as e:
        _fail(str(e))
    if start is Start.REPLACE:
        clear(cfg.run_dir)
    click.echo(f"run directory: {cfg.run_dir}", err=True)
    try:
        with _bar_safe_logs(not no_progress):
            result = serve_learner(
                cfg,
                cfg.run_dir,
                progress=not no_progress,
                token=token,
                on_bound=lambda address: click.echo(f"learner listening on {address}"),
                resume=start is Start.RESUME,
                log_every_s=log_interval,
            )
    except (ServiceConfigError, OSError, CheckpointError) as e:
        _fail(str(e))
    except Preempted as e:
        _stopped(e, "the same command with --resume")
    if result is None:
        _fail("the learner stopped before the schedule ended")
    click.echo(json.dumps({k: result.get(k) for k in ("leader_value", "exact_value", "gap", "env_steps")}))
    if stay_up:
        import signal

        click.echo("run finished; staying up until SIGTERM (--stay-up)", err=True)
        stop = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)


@main.command()
@click.option("--learner", "address", required=True, help="The learner's HOST:PORT.")
@click.option(
    "--token", envvar="STACKRL_TOKEN", default=None, help="The learner's shared secret (env STACKRL_TOKEN)."
)
@_token_file_option
@click.option("--tls-ca", default=None, help="PEM CA certificate of the learner's TLS certificate.")
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow plaintext to a learner off loopback: nothing authenticates it, and the token travels "
    "in clear (default: off loopback, --tls-ca is required).",
)
@click.option(
    "--connect-deadline",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to keep trying to reach the learner before exiting non-zero.",
)
@click.option("--compress", is_flag=True, help="zlib-compress trajectory tensors (image observations).")
@_allow_factory_option
def actor(
    address: str,
    token: str | None,
    token_file: str | None,
    tls_ca: str | None,
    insecure: bool,
    connect_deadline: float,
    compress: bool,
    allow_factories: tuple[str, ...],
) -> None:
    """Run one actor process against a learner service; exits 0 when the learner ends the run.

    The run's config comes from the learner; the actor refuses one that names an environment factory
    this machine has not allowed (--allow-factory)."""
    from stackrl.actors.main import run_actor_process

    token = _token(token, token_file)
    _allow(allow_factories)
    sys.exit(
        run_actor_process(
            address,
            token,
            tls_ca,
            connect_deadline_s=connect_deadline,
            compress=compress,
            insecure=insecure,
        )
    )


@bench.command("throughput")
@click.option(
    "--env", "env_name", default="prisoners_dilemma", show_default=True, help="A matrix game (or preset)."
)
@click.option("--actors", default="1,2", show_default=True, help="Comma-separated actor process counts.")
@click.option("--seconds", type=float, default=15.0, show_default=True, help="Measurement window per row.")
@click.option(
    "--warmup", type=float, default=3.0, show_default=True, help="Seconds of training before the window."
)
@click.option(
    "--phase",
    type=click.Choice(["pretrain", "leader"]),
    default="pretrain",
    show_default=True,
    help="The (endless) schedule phase measured.",
)
@click.option("--json", "json_path", default=None, help="Write the rows to this JSON file.")
@click.option("--set", "overrides", multiple=True, help="Config override applied to every run.")
def bench_throughput(
    env_name: str,
    actors: str,
    seconds: float,
    warmup: float,
    phase: str,
    json_path: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Distributed-path throughput per actor count: steps/s, policy lag, bytes/step, CPU per process."""
    from stackrl.experiments.bench_throughput import run_throughput_benchmark
    from stackrl.runners.launch import LaunchError

    try:
        counts = [int(a) for a in actors.split(",") if a.strip()]
    except ValueError:
        _fail(f"--actors: expected comma-separated integers, got {actors!r}")
    if not counts or min(counts) < 1:
        _fail("--actors: every count must be >= 1")
    try:
        run_throughput_benchmark(env_name, counts, seconds, warmup, phase, json_path, overrides)
    except (ConfigError, LaunchError) as e:
        _fail(str(e))


@bench.command("atari")
@click.option(
    "--env", "env_name", default="space_invaders_pricing", show_default=True, help="An Atari pricing preset."
)
@click.option("--seconds", type=float, default=20.0, show_default=True, help="End-to-end measurement window.")
@click.option("--warmup", type=float, default=10.0, show_default=True, help="Seconds of training before it.")
@click.option("--actors", type=int, default=None, help="Actor processes (default: the preset's).")
@click.option("--json", "json_path", default=None, help="Write the measurements to this JSON file.")
@click.option("--set", "overrides", multiple=True, help="Config override: --set learner.threads=2")
def bench_atari(
    env_name: str,
    seconds: float,
    warmup: float,
    actors: int | None,
    json_path: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Atari pricing: raw env, actor inference and learner rates, the 2-core limit they imply, and the
    end-to-end training rate (1 learner + actors over gRPC) as a fraction of it."""
    from stackrl.experiments.bench_atari import run_atari_benchmark
    from stackrl.runners.launch import LaunchError

    try:
        run_atari_benchmark(env_name, seconds, warmup, actors, json_path, overrides)
    except (ConfigError, LaunchError) as e:
        _fail(str(e))


@bench.command("scale")
@click.option(
    "--env", "env_name", default="space_invaders_pricing", show_default=True, help="The game recorded."
)
@click.option("--actors", default="8,32,128,256", show_default=True, help="Comma-separated actor counts.")
@click.option("--seconds", type=float, default=12.0, show_default=True, help="Measurement window per row.")
@click.option("--warmup", type=float, default=3.0, show_default=True, help="Seconds before each window.")
@click.option(
    "--no-update", is_flag=True, help="Learner decodes, validates, batches and drops (the transport ceiling)."
)
@click.option("--both", is_flag=True, help="Measure every count with SGD on, then with --no-update.")
@click.option("--processes", type=int, default=4, show_default=True, help="Processes the actors run in.")
@click.option(
    "--unroll-s",
    type=float,
    default=0.125,
    show_default=True,
    help="Seconds a simulated actor spends per unroll (a real Atari actor on one core: ~0.12); 0: none.",
)
@click.option(
    "--record",
    type=int,
    default=4,
    show_default=True,
    help="Unrolls recorded from a real actor and replayed.",
)
@click.option("--json", "json_path", default=None, help="Write the rows to this JSON file.")
@click.option("--set", "overrides", multiple=True, help="Config override applied to the learner.")
def bench_scale(
    env_name: str,
    actors: str,
    seconds: float,
    warmup: float,
    no_update: bool,
    both: bool,
    processes: int,
    unroll_s: float,
    record: int,
    json_path: str | None,
    overrides: tuple[str, ...],
) -> None:
    """One learner, M simulated actors (real gRPC, replayed Atari unrolls): ingest agent steps/s and
    MB/s, push latency, weight egress, learner RSS and CPU, refused and failed calls per M."""
    from stackrl.experiments.bench_scale import run_scale_benchmark

    try:
        counts = [int(a) for a in actors.split(",") if a.strip()]
    except ValueError:
        _fail(f"--actors: expected comma-separated integers, got {actors!r}")
    if not counts or min(counts) < 1:
        _fail("--actors: every count must be >= 1")
    if processes < 1 or record < 1 or seconds <= 0 or warmup < 0 or unroll_s < 0:
        _fail("--processes and --record must be >= 1, --seconds > 0, --warmup and --unroll-s >= 0")
    modes = (True, False) if both else (not no_update,)
    try:
        run_scale_benchmark(
            env_name, counts, seconds, warmup, modes, processes, unroll_s, json_path, overrides, record
        )
    except ConfigError as e:
        _fail(str(e))


@bench.command("hostile")
@click.option("--messages", type=int, default=1000, show_default=True, help="Hostile calls to make.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the hostile call generator.")
@click.option("--json", "json_path", default=None, help="Write the figures to this JSON file.")
def bench_hostile(messages: int, seed: int, json_path: str | None) -> None:
    """A learner process (with a token) under N hostile calls, then a real actor trains it to the exact
    value: tried / rejected / accepted / crashes / hangs / peak RSS growth / NaN weights. Exits 1 if
    any of issue 13's bounds fails (0 crashes, hangs, NaN weights; RSS growth <= 256 MB; exact value;
    exit within 10 s)."""
    from stackrl.experiments.bench_hostile import run_hostile_benchmark

    if messages < 1:
        _fail("--messages must be >= 1")
    if not run_hostile_benchmark(messages, seed=seed, json_path=json_path).passed:
        sys.exit(1)


@bench.command("peers")
@click.option(
    "--from-logs",
    "folder",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A folder written by benchmarks/vs_peers.sh (NAME.cmd + NAME.log per run).",
)
@click.option(
    "--warmup",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds of each peer's log skipped after its first update (the script's --warmup).",
)
@click.option(
    "--seconds",
    type=float,
    default=None,
    help="Length of each peer's window (the script's --seconds); default: to its last report.",
)
def bench_peers(folder: str, warmup: float, seconds: float | None) -> None:
    """The table of benchmarks/vs_peers.sh: ours and the peers at equal SGD passes, read from the
    runs' logs (this command installs and runs nothing; the script does)."""
    from stackrl.experiments.vs_peers import run_peer_table

    if warmup < 0 or (seconds is not None and seconds <= 0):
        _fail("--warmup must be >= 0 and --seconds > 0")
    try:
        run_peer_table(folder, warmup, seconds)
    except (ConfigError, ValueError) as e:
        _fail(str(e))


def _prices(text: str | None) -> list[float] | None:
    """`--regret-schedule 0,0.25,0,1,0` -> [0.0, 0.25, 0.0, 1.0, 0.0] (None when not given)."""
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _fail(f"--regret-schedule: {text!r} is not comma-separated prices")


@main.command("eval")
@click.argument("run_dir")
@click.option("--episodes", type=int, default=8, show_default=True, help="Evaluation episodes per schedule.")
@click.option(
    "--regret-steps",
    type=int,
    default=20000,
    show_default=True,
    help="Agent-step budget of the from-scratch follower behind the regret (0: skip regret).",
)
@click.option(
    "--regret-plateau",
    type=int,
    default=0,
    show_default=True,
    help="Train scratch followers until their return stops improving, checked every N agent steps "
    "(3 checks without a new best), the regret budget being the cap (0: train for the whole budget).",
)
@click.option(
    "--regret-schedule",
    default=None,
    help="Comma-separated prices, one per phase (e.g. the best schedule --search found): measure the "
    "follower regret on it instead of on the leader's schedule.",
)
@click.option("--max-steps", type=int, default=2500, show_default=True, help="Cut evaluation episodes here.")
@click.option("--greedy", is_flag=True, help="Followers act greedily (default: sample their policies).")
@click.option("--json", "json_path", default=None, help="Write the report to this JSON file.")
@click.option(
    "--search",
    is_flag=True,
    help="Also coordinate-search price schedules against the run's follower; report the learned leader's "
    "revenue as a fraction of the best found.",
)
@click.option(
    "--search-episodes", type=int, default=16, show_default=True, help="Episodes per schedule in --search."
)
@click.option("--restarts", type=int, default=2, show_default=True, help="Random restarts in --search.")
@click.option(
    "--search-regret-steps",
    type=int,
    default=0,
    show_default=True,
    help="Train a scratch follower on the best searched schedule for this many agent steps (0: skip).",
)
@click.option(
    "--video",
    is_flag=True,
    help="Also record the follower under the cheapest and dearest price and the learned schedule "
    "(TensorBoard video in RUN/tb and a GIF).",
)
@click.option("--video-steps", type=int, default=300, show_default=True, help="Play steps per clip.")
@click.option("--gif", default=None, help="Where to write the GIF (default: RUN/follower_prices.gif).")
@click.option("--skip-report", is_flag=True, help="Only --search / --video, not the per-price report.")
def eval_run(
    run_dir: str,
    episodes: int,
    regret_steps: int,
    regret_plateau: int,
    regret_schedule: str | None,
    max_steps: int,
    greedy: bool,
    json_path: str | None,
    search: bool,
    search_episodes: int,
    restarts: int,
    search_regret_steps: int,
    video: bool,
    video_steps: int,
    gif: str | None,
    skip_report: bool,
) -> None:
    """Evaluate an Atari pricing run: per-price fire rates, leader vs constant prices, follower regret;
    optionally a schedule search (--search) and clips of the follower (--video)."""
    from stackrl.experiments.atari_eval import format_report, record_eval, run_eval
    from stackrl.learner.checkpoint import CheckpointError

    report: dict = {}
    try:
        if not skip_report:
            report = run_eval(
                run_dir,
                episodes=episodes,
                regret_steps=regret_steps,
                max_episode_steps=max_steps,
                greedy=greedy,
                plateau_every=regret_plateau,
                regret_schedule=_prices(regret_schedule),
            )
            click.echo(format_report(report))
        if search:
            from stackrl.experiments.atari_search import format_search, run_search

            report["search"] = run_search(
                run_dir,
                episodes=search_episodes,
                max_episode_steps=max_steps,
                greedy=greedy,
                random_restarts=restarts,
                regret_steps=search_regret_steps,
                plateau_every=regret_plateau,
            )
            click.echo(format_search(report["search"]))
        if video:
            from stackrl.experiments.atari_video import run_video

            report["video"] = run_video(run_dir, steps=video_steps, gif=gif)
            click.echo(f"clips: TensorBoard {report['video']['tensorboard']}, GIF {report['video']['gif']}")
            for name, clip in report["video"]["clips"].items():
                click.echo(f"  {name}: {clip['frames']} frames, fire rate {clip['fire_rate']:.3f}")
    except (CheckpointError, ConfigError, ValueError) as e:
        _fail(str(e))
    kept = record_eval(run_dir, report)  # RUN/atari_eval.json, what `stackrl report` shows
    click.echo(f"report kept in {kept}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)


@main.command("report")
@click.option("--runs", "roots", multiple=True, help="A runs directory (repeatable; default: runs/).")
@click.option("--out", default="docs/results.md", show_default=True, help="The markdown file to write.")
@click.option("--figures", default=None, help="Folder for the PNG figures (default: <out dir>/figures).")
def report(roots: tuple[str, ...], out: str, figures: str | None) -> None:
    """Regenerate docs/results.md (tables and PNG figures) from run directories."""
    from stackrl.experiments.report import generate

    try:
        path = generate(list(roots) or ["runs"], out, figures)
    except ValueError as e:  # ReportError: a run directory it cannot read, named with the reason
        _fail(str(e))
    click.echo(f"wrote {path}")


@main.command("divergence")
@click.option("--game", default="prisoners_dilemma", show_default=True, help="A named matrix game.")
@click.option("--budget", type=int, default=100_000, show_default=True, help="Base-game env steps per run.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds.")
@click.option("--out", default="runs/divergence", show_default=True, help="Run root (writes <out>/<game>/).")
def divergence(game: str, budget: int, seeds: str, out: str) -> None:
    """Theorem 2 demo: naive RL leader vs a follower reading its parameters, against the query construction."""
    from stackrl.experiments.divergence import run_demo

    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    command = f"stackrl divergence --game {game} --budget {budget} --seeds {seeds} --out {out}"
    try:
        res = run_demo(game, budget, seed_list, out, command)
    except ValueError as e:
        _fail(str(e))
    click.echo(f"exact SSE value: {res['exact_value']:g}   (written to {res['_dir']})")
    for key in ("query", "naive"):
        for s in res["summary"][key]:
            click.echo(
                f"{key:6s} seed {s['seed']}: final value {s['final_value']:g} policy {s['final_policy']} "
                f"(distinct greedy policies in last half: {s['distinct_last_half']})"
            )


@main.command("ablation")
@click.argument(
    "name",
    type=click.Choice(
        ["queries", "invariance", "oracle", "es-leader", "q-reset", "leader-reward-during-adaptation"]
    ),
)
@click.option(
    "--games", default="prisoners_dilemma,chicken,deadlock", show_default=True, help="Comma-separated games."
)
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--out", default="runs/ablations", show_default=True, help="Run root (writes <out>/<name>/).")
@click.option("--set", "overrides", multiple=True, help="Config override applied to every training run.")
def ablation(name: str, games: str, seeds: str, out: str, overrides: tuple[str, ...]) -> None:
    """Query ablations: hidden vs observed queries, invariant vs non-invariant leader, follower oracles."""
    from stackrl.experiments.ablations import run_ablation

    game_list = [g for g in games.split(",") if g]
    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    command = (
        f"stackrl ablation {name} --games {games} --seeds {seeds}"
        + (f" --out {out}" if out != "runs/ablations" else "")
        + "".join(f" --set {o}" for o in overrides)
    )
    try:
        res = run_ablation(name, game_list, seed_list, out, overrides, command)
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    for r in res["rows"]:
        click.echo(
            f"{r['game']:18s} {r['variant']:22s} seed {r['seed']}: value {r['leader_value']:g} "
            f"exact {r['exact_value']:g} gap {r['gap']:g}"
        )


@main.command("sweep")
@click.argument("grid")
@click.option(
    "--backend",
    type=click.Choice(["local", "slurm"]),
    default="local",
    show_default=True,
    help="local: a pool of `concurrency` processes; slurm: one job array (one run per task).",
)
@click.option("--set", "overrides", multiple=True, help="Config override applied to every run.")
@click.option("--only", default=None, help="Comma-separated cell indices to run (e.g. the failed ones).")
@click.option("--jobs", type=int, default=None, help="Runs at once (overrides the grid's `concurrency`).")
@click.option("--list", "list_cells", is_flag=True, help="List the cells and their state, run nothing.")
@click.option("--task", type=int, default=None, hidden=True, help="Run one cell (a Slurm array task).")
@click.option("--no-wait", is_flag=True, help="slurm: return after submitting instead of waiting.")
@click.option("--sbatch-arg", "sbatch_args", multiple=True, help="slurm: extra sbatch option (repeatable).")
def sweep(
    grid: str,
    backend: str,
    overrides: tuple[str, ...],
    only: str | None,
    jobs: int | None,
    list_cells: bool,
    task: int | None,
    no_wait: bool,
    sbatch_args: tuple[str, ...],
) -> None:
    """Expand GRID.yaml (games x methods x variants x seeds, --set overrides) into runs under one run root.

    Finished runs are skipped, so running it again finishes what is missing; at the end the cells
    without a result are listed with the command that reruns them. `stackrl report --runs ROOT`
    aggregates the sweep."""
    from stackrl.experiments import sweep as sw

    try:
        g = sw.Grid.load(grid, overrides)
        if jobs is not None:
            g.concurrency = max(1, jobs)
        cells = g.runs()
        for r in cells:  # every cell's config validates before anything runs
            g.config(r)
        selected = [int(i) for i in only.split(",") if i.strip()] if only else None
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    if task is not None:
        if not 0 <= task < len(cells):
            _fail(f"--task {task}: the grid has cells 0..{len(cells) - 1}")
        click.echo(json.dumps(sw.run_task(grid, task, overrides)))
        return
    if list_cells:
        done = {r.index for r in sw.status(g)["done"]}
        for r in cells:
            click.echo(f"{r.index:4d} {'done' if r.index in done else 'missing':8s} {r.name}")
        return
    command = "stackrl sweep " + " ".join([grid, *(a for o in overrides for a in ("--set", o))])
    sw.write_manifest(g, command)
    click.echo(f"sweep: {len(cells)} runs under {g.run_root} ({backend}, {g.concurrency} at once)", err=True)
    try:
        if backend == "local":
            sw.run_local_pool(g, selected, overrides)
        else:
            job = sw.submit_slurm(g, selected, overrides, sbatch_args, wait=not no_wait)
            click.echo(f"submitted job array {job}; task logs in {g.run_root.resolve()}/.slurm/", err=True)
            if no_wait:
                return
    except (ConfigError, RuntimeError) as e:
        _fail(str(e))
    missing = sw.status(g)["missing"]
    if selected is not None:
        missing = [r for r in missing if r.index in selected]
    click.echo(f"sweep: {len(cells) - len(missing)}/{len(cells)} runs done under {g.run_root}")
    if missing:
        ids = ",".join(str(r.index) for r in missing)
        click.echo(f"failed: {', '.join(f'{r.index} ({r.name})' for r in missing)}", err=True)
        click.echo(f"rerun them with: {command} --backend {backend} --only {ids}", err=True)
        sys.exit(1)


@main.group()
def slurm() -> None:
    """Slurm: a run as a learner job and an actors job, each with its own resources."""


@slurm.command("submit", context_settings={"ignore_unknown_options": True})
@click.argument("experiment")
@click.argument("learner_options", nargs=-1, type=click.UNPROCESSED)
@click.option("--actors", type=int, default=2, show_default=True, help="Actor tasks.")
@click.option("--actor-cpus", type=int, default=1, show_default=True, help="CPUs per actor task.")
@click.option("--actor-mem", default=None, help="Memory per actor CPU (sbatch --mem-per-cpu, e.g. 2G).")
@click.option("--learner-cpus", type=int, default=1, show_default=True, help="CPUs of the learner.")
@click.option(
    "--learner-gpus", type=int, default=0, show_default=True, help="GPUs of the learner (gres gpu)."
)
@click.option("--learner-mem", default=None, help="Memory of the learner (sbatch --mem, e.g. 16G).")
@click.option("--time", "time_limit", default=None, help="Time limit of both jobs (sbatch --time).")
@click.option("--name", default=None, help="Run name (default: <experiment>-<date>-<time>).")
@click.option(
    "--run-root", default="runs", show_default=True, help="Run root on a filesystem all nodes share."
)
@click.option("--sbatch-arg", "sbatch_args", multiple=True, help="Extra sbatch option for both jobs.")
def slurm_submit(
    experiment: str,
    learner_options: tuple[str, ...],
    actors: int,
    actor_cpus: int,
    actor_mem: str | None,
    learner_cpus: int,
    learner_gpus: int,
    learner_mem: str | None,
    time_limit: str | None,
    name: str | None,
    run_root: str,
    sbatch_args: tuple[str, ...],
) -> None:
    """Submit EXPERIMENT as a learner job (its CPUs, a GPU with --learner-gpus) and an actors job.

    LEARNER_OPTIONS go to `stackrl learner` (e.g. --seed 3 --set learner.lr_leader=0.01). The learner
    job is requeueable: preempted or near its time limit, it checkpoints, is requeued and resumes;
    the actors reconnect. Prints the two job ids and the run directory."""
    import time

    from stackrl.runners.slurm import SlurmResources, SubmitError, submit

    try:
        res = SlurmResources(
            actors, actor_cpus, actor_mem, learner_cpus, learner_gpus, learner_mem, time_limit
        )
        build_config(experiment)  # an unknown experiment fails here, not inside the job
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    name = name or f"{Path(experiment).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        sub = submit(experiment, name, run_root, res, learner_options, sbatch_args)
    except SubmitError as e:
        _fail(str(e))
    click.echo(
        json.dumps({"learner_job": sub.learner_job, "actor_job": sub.actor_job, "run_dir": str(sub.run_dir)})
    )
    click.echo(f"learner log: {sub.rendezvous}/learner.log", err=True)


@main.group("config")
def config_group() -> None:
    """Experiment configurations."""


@config_group.command("show")
@click.argument("experiment")
@click.option("--seed", type=int, default=None, help="Random seed.")
@click.option("--method", type=click.Choice(["meta", "inner_outer"]), default=None, help="For a game name.")
@click.option("--set", "overrides", multiple=True, help="Override a config key: --set learner.lr_leader=0.01")
def config_show(experiment: str, seed: int | None, method: str | None, overrides: tuple[str, ...]) -> None:
    """Print EXPERIMENT's resolved configuration as YAML: preset, overrides and every default, exactly
    what `stackrl train` would run (and write to config.yaml)."""
    try:
        cfg = _build_config(experiment, None, seed, method, None, None, overrides)
    except (ConfigError, ValueError) as e:
        _fail(str(e))
    click.echo(cfg.to_yaml(redact_secrets=True), nl=False)


@main.command("probe-hash")
@click.argument("experiment")
@click.option("--set", "overrides", multiple=True, help="Override a config key: --set env.probe_seed=1")
def probe_hash_cmd(experiment: str, overrides: tuple[str, ...]) -> None:
    """Print the sha256 of EXPERIMENT's leader query set (pin it as `env.probe_hash`)."""
    from stackrl.envs.factory import make_env
    from stackrl.envs.probe import probe_hash

    try:
        cfg = build_config(experiment, overrides=overrides)
    except ConfigError as e:
        _fail(str(e))
    env = make_env(dataclasses.replace(cfg.env, num_games=1))
    try:
        click.echo(probe_hash(env.leader_query_set()))
    finally:
        env.close()


if __name__ == "__main__":
    main()
