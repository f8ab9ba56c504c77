"""learner/checkpoint.py: atomic writes, and loads that refuse anything but a stackrl checkpoint."""

from __future__ import annotations

import collections
import pickle

import pytest
import torch
from stackrl.learner.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _state(step: int) -> dict:
    return {
        "format": "stackrl-checkpoint-v1",
        "nets": {"leader": {"w": torch.arange(6.0).reshape(2, 3) * step}},
        "versions": {"leader": step, "follower_0": 2 * step},
        "eval_history_json": "[]",
        "wall_seconds": 1.5 * step,
        "best_leader": None,
    }


class NotWeights:
    """An arbitrary Python object: pickling it stores a reference to this class (code to import)."""


def test_round_trip_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"  # the folder is created
    save_checkpoint(path, _state(1))
    save_checkpoint(path, _state(2))
    loaded = load_checkpoint(path)
    assert loaded.keys() == _state(2).keys()
    assert torch.equal(loaded["nets"]["leader"]["w"], _state(2)["nets"]["leader"]["w"])
    assert loaded["versions"] == {"leader": 2, "follower_0": 4} and loaded["wall_seconds"] == 3.0
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _state(1))
    with pytest.raises((pickle.PicklingError, AttributeError)):  # a lambda cannot be pickled midway
        save_checkpoint(path, {**_state(2), "callback": lambda: None})
    assert load_checkpoint(path)["versions"]["leader"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "checkpoint.pt")


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: b"not a checkpoint at all",
        lambda data: data[: len(data) // 2],  # truncated, as by a full disk or a kill mid-write
        lambda data: b"",
    ],
)
def test_corrupt_file_raises_checkpoint_error(tmp_path, corrupt):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _state(1))
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(CheckpointError, match="is corrupt or unreadable"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "foreign",
    [
        {"model": torch.zeros(2)},  # someone else's state dict
        {**_state(1), "format": "stackrl-checkpoint-v0"},
        collections.OrderedDict(format="stackrl-checkpoint-v2"),
        [torch.zeros(1)],
    ],
)
def test_foreign_data_raises_checkpoint_error(tmp_path, foreign):
    path = tmp_path / "checkpoint.pt"
    torch.save(foreign, path)
    with pytest.raises(CheckpointError, match="is not a stackrl checkpoint"):
        load_checkpoint(path)


def test_a_pickled_object_is_refused_not_loaded(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({**_state(1), "extra": NotWeights()}, path)
    with pytest.raises(CheckpointError, match="is corrupt or unreadable"):
        load_checkpoint(path)


KILLED_WRITER = """
import sys, time, torch
from pathlib import Path
from stackrl.learner import checkpoint

real_save = torch.save
def slow_save(obj, f):  # write half, tell the test, then hang: the test SIGKILLs us mid-write
    real_save(obj, f)
    f.flush()
    f.truncate(f.tell() // 2)
    print("writing", flush=True)
    time.sleep(60)
torch.save = slow_save
checkpoint.save_checkpoint(Path(sys.argv[1]), {"format": "stackrl-checkpoint-v1", "w": torch.ones(1000)})
"""


def test_a_writer_killed_mid_write_leaves_the_old_checkpoint_and_the_next_save_cleans_up(tmp_path):
    """Issue 14: SIGKILL (after a grace period ran out) during a checkpoint write: the previous
    checkpoint stays whole and loadable, and the abandoned temporary file is removed by the next save."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _state(1))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    stale = [p for p in tmp_path.iterdir() if p.name != "checkpoint.pt"]
    assert len(stale) == 1 and stale[0].name.endswith(".tmp")  # what the killed writer left
    assert load_checkpoint(path)["versions"]["leader"] == 1  # the old checkpoint, whole
    save_checkpoint(path, _state(2))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert load_checkpoint(path)["versions"]["leader"] == 2
