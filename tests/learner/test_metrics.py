"""TensorBoard scalars of learner/metrics.py: the latest value per tag is kept for the progress bar,
events reach TensorBoard only when a log directory is given."""

from __future__ import annotations

from stackrl.learner.metrics import Metrics


def test_latest_value_per_tag_without_a_writer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = Metrics(None)
    m.scalar("loss", 1.5, step=1)
    m.scalar("loss", 0.25, step=2)
    m.scalar("return/leader", 3, step=2)
    assert m.latest == {"loss": 0.25, "return/leader": 3.0}
    assert isinstance(m.latest["return/leader"], float)
    m.text("config", "x")  # no writer: text, hparams, flush and close do nothing
    m.hparams({"lr": 0.1}, {"value": 1.0})
    m.flush()
    m.close()
    assert m._writer is None
    assert list(tmp_path.iterdir()) == []  # nothing was written anywhere (no default ./runs)


def test_scalars_reach_tensorboard_with_a_log_dir(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    m = Metrics(tmp_path / "tb")
    for step, value in enumerate([3.0, 2.0, 1.0]):
        m.scalar("loss", value, step)
    m.text("config", "hello")
    m.close()
    m.close()  # closing twice is fine
    assert m.latest == {"loss": 1.0}
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(0, 3.0), (1, 2.0), (2, 1.0)]


def test_purge_step_drops_events_logged_after_a_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = Metrics(tmp_path)
    for step in range(6):
        first.scalar("x", float(step), step)
    first.close()
    resumed = Metrics(tmp_path, purge_step=3)
    resumed.scalar("x", 30.0, 3)
    resumed.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("x")] == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 30.0)]


def _hparams_sessions(tb_dir) -> list[dict]:
    """The HParams plugin's session-start records in a run's event files (hparam name -> value)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = []
    for path in sorted(tb_dir.rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name != "hparams":
                    continue
                data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    hp = data.session_start_info.hparams
                    out.append(
                        {k: hp[k].WhichOneof("kind") and getattr(hp[k], hp[k].WhichOneof("kind")) for k in hp}
                    )
    return out


def test_a_finished_run_logs_its_config_to_the_hparams_tab(tmp_path):
    """Issue 14: the resolved config of a run (and its final value) in TensorBoard's HParams tab."""
    from stackrl.runners.presets import build_config
    from stackrl.runners.serial import run_serial

    short = "schedule.phases=[{kind: pretrain, env_steps: 2000}, {kind: leader, env_steps: 1000}]"
    cfg = build_config("stag_hunt", overrides=[short, "env.num_games=8", "learner.lr_leader=0.03"])
    run_serial(cfg, tmp_path / "run", progress=False)
    (session,) = _hparams_sessions(tmp_path / "run" / "tb")
    assert session["learner.lr_leader"] == 0.03 and session["env.name"] == "stag_hunt"
    assert session["seed"] == cfg.seed and "server.token" not in session
