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
