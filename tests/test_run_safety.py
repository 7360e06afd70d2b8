"""No lost runs (issue 18): --fresh over a longer run, signals with loader workers, exact
resume at any step, non-finite weights, a full disk, corrupt checkpoint files.

Each test trains the tiny VideoFlow of ``test_train`` on moving digits for a few steps.
"""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_train import losses, tiny_cfg, training_process

from videogen import checkpoint as ckpt_module
from videogen.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_pretrained,
    read_checkpoint,
)
from videogen.methods.videoflow import VideoFlow
from videogen.train import TrainingError, train


def step_dirs(run):
    return sorted(p.name for p in (run / "ckpt").glob("step-*"))


# --------------------------------------------------------------------------- --fresh


def test_fresh_over_a_longer_run_sets_it_aside_whole(tmp_path, capsys):
    run = train(tiny_cfg(tmp_path, steps=9), progress=False)
    old_export = (run / "export" / "model.safetensors").read_bytes()
    assert step_dirs(run) == ["step-0000006", "step-0000009"]

    train(tiny_cfg(tmp_path, steps=4), resume=False, progress=False)
    assert "set aside in" in capsys.readouterr().out
    (previous,) = run.glob("previous-*")
    # the earlier run, whole: its checkpoints, export and log
    assert step_dirs(previous) == ["step-0000006", "step-0000009"]
    assert (previous / "export" / "model.safetensors").read_bytes() == old_export
    assert sorted(losses(previous)) == list(range(1, 10))
    # the new run: only its own checkpoints, and `latest` names one that exists
    assert step_dirs(run) == ["step-0000003", "step-0000004"]
    assert (run / "ckpt" / (run / "ckpt" / "latest").read_text()).is_dir()
    assert sorted(losses(run)) == [1, 2, 3, 4]

    train(tiny_cfg(tmp_path, steps=6), progress=False)
    assert "resumed from" in capsys.readouterr().out
    assert sorted(losses(run)) == [1, 2, 3, 4, 5, 6]  # resumed at 4, not at the old run's 9
    assert latest_checkpoint(run).name == "step-0000006"


# --------------------------------------------------------------------------- exact resume


@pytest.mark.parametrize("workers", [0, 2])
def test_a_stop_between_checkpoints_resumes_the_same_batches(tmp_path, monkeypatch, workers):
    """A stop at step 7, between the checkpoints at 4 and 8 (the stream is reseeded at
    both): the resumed run gives the uninterrupted run's losses at 8 and 9 exactly. With two
    workers the resumed loader's first batch comes from the other worker's stream."""

    def cfg(folder):
        config = tiny_cfg(folder, steps=9, ckpt_every=4)
        config.data.num_workers = workers
        return config

    full = losses(train(cfg(tmp_path / "a"), progress=False))

    calls = {"n": 0}
    real_loss = VideoFlow.loss

    def signalled(self, video, **kw):
        calls["n"] += 1
        if calls["n"] == 7:  # during step 7: it ends, then the run stops
            os.kill(os.getpid(), signal.SIGINT)
        return real_loss(self, video, **kw)

    monkeypatch.setattr(VideoFlow, "loss", signalled)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tmp_path / "b"), progress=False)
    monkeypatch.setattr(VideoFlow, "loss", real_loss)
    run = tmp_path / "b" / "run"
    assert latest_checkpoint(run).name == "step-0000007"
    resumed = losses(train(cfg(tmp_path / "b"), progress=False))
    assert sorted(resumed) == list(range(1, 10))
    for step in range(1, 10):
        assert resumed[step] == full[step], step


def test_a_given_dataset_resumes_the_same_batches_by_replaying_them(tmp_path, monkeypatch):
    """A dataset given to ``train`` (here a list: shuffled, 3 batches an epoch) has no
    recorded positions; the resumed run redraws the segment's batches it had used."""
    g = torch.Generator().manual_seed(0)
    clips = list(torch.randint(0, 256, (12, 3, 16, 16, 1), generator=g, dtype=torch.uint8))
    full = losses(
        train(tiny_cfg(tmp_path / "a", steps=8, ckpt_every=4), dataset=clips, progress=False)
    )
    calls = {"n": 0}
    real_loss = VideoFlow.loss

    def signalled(self, video, **kw):
        calls["n"] += 1
        if calls["n"] == 6:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(self, video, **kw)

    monkeypatch.setattr(VideoFlow, "loss", signalled)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(tmp_path / "b", steps=8, ckpt_every=4), dataset=clips, progress=False)
    monkeypatch.setattr(VideoFlow, "loss", real_loss)
    assert latest_checkpoint(tmp_path / "b" / "run").name == "step-0000006"
    resumed = losses(
        train(tiny_cfg(tmp_path / "b", steps=8, ckpt_every=4), dataset=clips, progress=False)
    )
    assert [resumed[s] for s in (7, 8)] == [full[7], full[8]]


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_group_stops_within_seconds_with_a_checkpoint(tmp_path, sig):
    """Regression: with a checkpoint (and a new loader) every step, the signal used to land in
    the old loader's __del__ and be lost, or hang the exit."""
    proc, run = training_process(tmp_path, ckpt_every=1)
    deadline = time.time() + 120
    log = run / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, sig)
    sent = time.time()
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, output
    assert time.time() - sent < 15, output
    last = latest_checkpoint(run)
    assert last is not None, output
    read_checkpoint(last)  # complete and finite
    assert f"{signal.Signals(sig).name} received" in output


# --------------------------------------------------------------------------- non-finite


def all_checkpoints_finite(run):
    for path in (run / "ckpt").glob("step-*"):
        read_checkpoint(path)  # raises CheckpointError for non-finite weights, EMA or moments


def named_good_checkpoint(message):
    if "No good checkpoint exists" in message:
        return None
    return message.split("The last good checkpoint is ")[1].split(": running again")[0]


def test_a_huge_learning_rate_stops_with_a_true_message(tmp_path):
    cfg = tiny_cfg(tmp_path, steps=6, lr=3e37, grad_clip=None, ckpt_every=1)
    with pytest.raises(TrainingError, match="non-finite") as err:
        train(cfg, progress=False)
    all_checkpoints_finite(tmp_path / "run")
    named = named_good_checkpoint(str(err.value))
    assert named == (
        None
        if latest_checkpoint(tmp_path / "run") is None
        else str(latest_checkpoint(tmp_path / "run"))
    )
    assert not (tmp_path / "run" / "export").exists()


def test_non_finite_ema_is_never_saved_and_the_message_names_the_good_checkpoint(
    tmp_path, monkeypatch
):
    """The EMA takes no part in the loss: only the check before each write can see it."""
    from videogen.ema import EMA

    real_update = EMA.update

    def poisoned(self, model, step):
        real_update(self, model, step)
        if step == 2:  # the update of step 3
            self.shadow[0].fill_(float("inf"))

    monkeypatch.setattr(EMA, "update", poisoned)
    with pytest.raises(TrainingError, match="non-finite values in ema .* at step 4") as err:
        train(tiny_cfg(tmp_path, steps=6, ckpt_every=2), progress=False)
    run = tmp_path / "run"
    assert named_good_checkpoint(str(err.value)) == str(run / "ckpt" / "step-0000002")
    assert step_dirs(run) == ["step-0000002"]
    all_checkpoints_finite(run)
    assert not (run / "export").exists()


def test_no_checkpoint_yet_is_said_so(tmp_path, monkeypatch):
    real_loss = VideoFlow.loss

    def poisoned(self, video, **kw):
        out = real_loss(self, video, **kw)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(VideoFlow, "loss", poisoned)
    with pytest.raises(TrainingError, match="in 2 steps in a row before step 2") as err:
        train(tiny_cfg(tmp_path, steps=6, skip_nonfinite=2), progress=False)
    assert f"No good checkpoint exists in {tmp_path / 'run' / 'ckpt'}" in str(err.value)


def test_a_learning_rate_beyond_float32_is_a_message(tmp_path):
    with pytest.raises(TrainingError, match=r"train.lr=1e\+39 does not fit"):
        train(tiny_cfg(tmp_path, steps=2, lr=1e39, grad_clip=None), progress=False)


def test_load_pretrained_refuses_a_non_finite_export(tmp_path):
    run = train(tiny_cfg(tmp_path, steps=2), progress=False)
    weights = run / "export" / "model.safetensors"
    state = load_file(str(weights))
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=f"model.safetensors holds non-finite values \\({name}"):
        load_pretrained(run / "export")


# --------------------------------------------------------------------------- disk full


def test_a_full_disk_is_one_message_and_the_previous_checkpoint_stays(tmp_path, monkeypatch):
    real_write = ckpt_module.write_bytes

    def full_disk(path, data):
        if path.name == "optim.pt" and "0000004" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(ckpt_module, "write_bytes", full_disk)
    run = tmp_path / "run"
    with pytest.raises(TrainingError) as err:
        train(tiny_cfg(tmp_path, steps=6, ckpt_every=2), progress=False)
    message = str(err.value)
    assert (
        f"could not write {run / 'ckpt' / 'step-0000004'}: no space left on the device" in message
    )
    assert "optim.pt" in message
    assert "free some space" in message
    assert f"The last good checkpoint is {run / 'ckpt' / 'step-0000002'}" in message
    assert not list((run / "ckpt").glob(".tmp-*"))  # the staged folder is removed
    assert latest_checkpoint(run).name == "step-0000002"
    read_checkpoint(latest_checkpoint(run))

    monkeypatch.setattr(ckpt_module, "write_bytes", real_write)
    (run / "ckpt" / ".tmp-step-0000099").mkdir()  # as a kill mid-write leaves it
    train(tiny_cfg(tmp_path, steps=6, ckpt_every=2), progress=False)
    assert sorted(losses(run))[-1] == 6
    assert not list((run / "ckpt").glob(".tmp-*"))  # cleaned at the start


def test_a_full_disk_before_any_checkpoint_says_there_is_none(tmp_path, monkeypatch):
    from videogen import train as trainer

    def full_disk(cfg, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(trainer, "save_config", full_disk)
    with pytest.raises(TrainingError) as err:
        train(tiny_cfg(tmp_path, steps=2), progress=False)
    message = str(err.value)
    assert f"could not write {tmp_path / 'run' / 'config.yaml'}: no space left" in message
    assert "No good checkpoint exists" in message


# --------------------------------------------------------------------------- corrupt files


@pytest.mark.parametrize("name", ["optim.pt", "rng.pt", "model.safetensors", "ema.safetensors"])
def test_a_truncated_checkpoint_file_falls_back_to_the_previous_one(tmp_path, capsys, name):
    run = train(tiny_cfg(tmp_path, steps=6), progress=False)
    bad = run / "ckpt" / "step-0000006" / name
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    capsys.readouterr()
    train(tiny_cfg(tmp_path, steps=8), progress=False)
    out = capsys.readouterr().out
    assert f"checkpoint {bad} is unreadable" in out
    assert f"resuming from {run / 'ckpt' / 'step-0000003'} instead" in out
    assert (run / "ckpt" / "unreadable-step-0000006" / name).is_file()  # kept to look at
    assert latest_checkpoint(run).name == "step-0000008"


def test_no_readable_checkpoint_is_one_message(tmp_path):
    run = train(tiny_cfg(tmp_path, steps=3), progress=False)
    (run / "ckpt" / "step-0000003" / "rng.pt").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CheckpointError, match="no checkpoint of .* reads back .*rng.pt"):
        train(tiny_cfg(tmp_path, steps=6), progress=False)
