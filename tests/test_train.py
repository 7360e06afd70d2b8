"""The trainer on a real method (a tiny VideoFlow) and real data (moving digits)."""

import json

import pytest
import torch

from videogen.checkpoint import latest_checkpoint, load_pretrained, read_config
from videogen.checkpoint import read_checkpoint as read_checkpoint_files
from videogen.config import Config, from_dict
from videogen.methods.videoflow import VideoFlow
from videogen.rank_rng import restore_rank_rng
from videogen.train import TrainingError, train

TINY = {
    "levels": 2,
    "steps_per_level": 1,
    "coupling_width": 8,
    "prior_depth": 1,
    "prior_width": 8,
    "cond_frames": 1,
    "context_frames": 1,
}


def tiny_cfg(tmp_path, steps=6, **train_kw):
    train_cfg = {
        "steps": steps,
        "batch_size": 4,
        "lr": 1e-3,
        "log_every": 1,
        "ckpt_every": 3,
        "sample_every": 0,
        "ema_decay": 0.9,
        "seed": 3,
        "out": str(tmp_path / "run"),
    }
    train_cfg.update(train_kw)
    return from_dict(
        Config,
        {
            "method": "videoflow",
            "model": TINY,
            "data": {"name": "moving-digits", "frames": 3, "size": 16, "channels": 1},
            "train": train_cfg,
        },
    )


def losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def test_resume_gives_the_same_next_losses_as_an_uninterrupted_run(tmp_path):
    full = train(tiny_cfg(tmp_path / "a"), progress=False)
    train(tiny_cfg(tmp_path / "b", steps=3), progress=False)
    resumed = train(tiny_cfg(tmp_path / "b", steps=6), progress=False)
    a, b = losses(full), losses(resumed)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        assert b[step] == pytest.approx(a[step], rel=1e-5), step
    assert latest_checkpoint(resumed).name == "step-0000006"


def test_run_folder_holds_config_logs_checkpoint_and_an_export_that_loads(tmp_path):
    run = train(tiny_cfg(tmp_path, steps=4), progress=False)
    assert (run / "config.yaml").is_file()
    assert any((run / "tb").rglob("events.out.tfevents.*"))
    assert read_config(run).train.steps == 4
    method = load_pretrained(run / "export")
    assert isinstance(method, VideoFlow) and not method.training
    # the export holds the EMA weights, not the raw ones
    raw = load_pretrained(run)  # a run folder loads its export too
    assert all(torch.equal(p, q) for p, q in zip(method.parameters(), raw.parameters()))
    ckpt = latest_checkpoint(run)
    from safetensors.torch import load_file

    ema = load_file(str(ckpt / "ema.safetensors"))
    name, value = next(iter(ema.items()))
    assert torch.equal(dict(method.named_parameters())[name], value)


def test_compiled_training_checkpoints_exports_and_resumes(tmp_path, monkeypatch):
    """Regression: under ``train.compile`` the EMA, checkpoints and export read the compiled
    wrapper, whose parameter names carry a prefix; the first EMA update failed."""
    from accelerate.utils import TorchDynamoPlugin

    from videogen import train as trainer
    from videogen.compile_options import uses_cuda_graphs
    from videogen.config import load_config
    from videogen.methods.mcvd import MCVD

    def cfg(steps, **train_kw):
        tiny_mcvd = ["model.ngf=8", "model.ch_mult=[1]", "model.num_res_blocks=1"]
        tiny_mcvd += ["model.attn_resolutions=[]", "model.past=1", "model.current=1"]
        tiny_mcvd += ["data.frames=2", "data.size=8", "train.batch_size=2", "train.log_every=1"]
        tiny_mcvd += ["train.ckpt_every=3", "train.sample_every=0", f"train.out={tmp_path}/run"]
        config = load_config("configs/mcvd/smmnist.yaml", tiny_mcvd)
        config.train.steps = steps
        for key, value in train_kw.items():
            setattr(config.train, key, value)
        return config

    assert trainer.dynamo_plugin(cfg(3)).backend.value == "NO"
    plugin = trainer.dynamo_plugin(cfg(3, compile=True, compile_mode="reduce-overhead"))
    assert plugin.backend.value == "INDUCTOR"
    assert plugin.options == {"triton.cudagraphs": True}
    plugin = trainer.dynamo_plugin(cfg(3, compile=True, channels_last=True))
    assert plugin.options == {"force_layout_optimization": True}
    assert not uses_cuda_graphs(plugin.options)
    assert uses_cuda_graphs(
        trainer.dynamo_plugin(cfg(3, compile=True, compile_mode="max-autotune")).options
    )
    # the same wrapper as inductor's, without minutes of C++ compilation on this CPU
    monkeypatch.setattr(trainer, "dynamo_plugin", lambda cfg: TorchDynamoPlugin(backend="eager"))
    run = train(cfg(3, compile=True), progress=False)
    assert isinstance(load_pretrained(run / "export"), MCVD)
    assert sorted(losses(train(cfg(6, compile=True), progress=False))) == [1, 2, 3, 4, 5, 6]
    assert latest_checkpoint(run).name == "step-0000006"


def test_max_minutes_ends_the_run_on_time_with_checkpoint_and_export(tmp_path):
    cfg = tiny_cfg(tmp_path, steps=100, log_every=2, max_minutes=0.0)
    run = train(cfg, progress=False)
    assert sorted(losses(run)) == [1]  # one process reads the clock after every step
    assert latest_checkpoint(run).name == "step-0000001"
    assert isinstance(load_pretrained(run / "export"), VideoFlow)
    # running again resumes from there
    cfg.train.max_minutes = None
    cfg.train.steps = 4
    assert sorted(losses(train(cfg, progress=False))) == [1, 2, 4]


def poison_calls(monkeypatch, bad_calls):
    """Make VideoFlow's loss NaN (and so its gradients) at the loss calls in ``bad_calls``."""
    calls = {"n": 0}
    real_loss = VideoFlow.loss

    def poisoned(self, video, **kw):
        calls["n"] += 1
        out = real_loss(self, video, **kw)
        if bad_calls(calls["n"]):
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(VideoFlow, "loss", poisoned)


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    poison_calls(monkeypatch, lambda n: n > 4)
    with pytest.raises(TrainingError, match="non-finite loss or gradients before step 5"):
        train(tiny_cfg(tmp_path, steps=8, skip_nonfinite=0), progress=False)
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt is not None and ckpt.name == "step-0000003"
    assert not (tmp_path / "run" / "export").exists()


@pytest.mark.parametrize("grad_clip", [1.0, None])
def test_one_non_finite_step_is_skipped_exactly_and_the_run_goes_on(
    tmp_path, monkeypatch, grad_clip
):
    """Regression (session 10): one non-finite step at step ~11,300 of an H200 run ended it and
    lost its 7 minutes. The update is now skipped: the weights and Adam's state after the
    poisoned step 2 are those a clean run has after step 1, bit for bit, and the run goes on."""
    clean = train(tiny_cfg(tmp_path / "clean", steps=1, grad_clip=grad_clip), progress=False)
    poison_calls(monkeypatch, lambda n: n == 2)
    run = train(tiny_cfg(tmp_path, steps=4, ckpt_every=2, grad_clip=grad_clip), progress=False)
    before = read_checkpoint_files(clean / "ckpt" / "step-0000001")
    after = read_checkpoint_files(run / "ckpt" / "step-0000002")
    assert before["weights"].keys() == after["weights"].keys()
    assert all(torch.equal(before["weights"][k], v) for k, v in after["weights"].items())
    states = [c["optim"]["optimizers"]["model"]["state"] for c in (before, after)]
    assert states[0].keys() == states[1].keys()
    for key, state in states[1].items():
        assert all(torch.equal(states[0][key][name], v) for name, v in state.items())
    rows = {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").open())}
    assert rows[2]["skipped"] == 1 and rows[2]["loss"] is None
    assert not any("skipped" in rows[s] for s in (1, 3, 4))
    assert all(rows[s]["loss"] is not None for s in (1, 3, 4))
    assert isinstance(load_pretrained(run / "export"), VideoFlow)


def test_a_checkpoint_of_a_foreach_adam_resumes_fused_and_skips(tmp_path, monkeypatch):
    """Regression: a CPU checkpoint written before Adam was fused everywhere carries
    ``fused: None`` in its parameter groups; loading it switched the optimizer back to foreach,
    which refuses the skip flag (an AssertionError at the first step)."""
    cfg = tiny_cfg(tmp_path, steps=2, ckpt_every=2)
    run = train(cfg, progress=False)
    optim_file = latest_checkpoint(run) / "optim.pt"
    saved = torch.load(optim_file, weights_only=False)
    for group in saved["optimizers"]["model"]["param_groups"]:
        group["fused"], group["foreach"] = None, None
    torch.save(saved, optim_file)
    poison_calls(monkeypatch, lambda n: n == 1)  # the first step after resuming
    cfg.train.steps = 4
    train(cfg, progress=False)
    rows = {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").open())}
    assert rows[3]["skipped"] == 1 and "skipped" not in rows[4]


def test_a_run_that_ends_while_skipping_does_not_finish(tmp_path, monkeypatch):
    poison_calls(monkeypatch, lambda n: n == 3)
    with pytest.raises(TrainingError, match="in the last steps before step 3, where the run"):
        train(tiny_cfg(tmp_path, steps=3, ckpt_every=2), progress=False)
    assert latest_checkpoint(tmp_path / "run").name == "step-0000002"
    assert not (tmp_path / "run" / "export").exists()


def test_non_finite_steps_in_a_row_stop_the_run(tmp_path, monkeypatch):
    poison_calls(monkeypatch, lambda n: n > 4)
    with pytest.raises(
        TrainingError, match="non-finite gradients in 2 steps in a row before step 6"
    ):
        train(tiny_cfg(tmp_path, steps=8, skip_nonfinite=2), progress=False)
    assert latest_checkpoint(tmp_path / "run").name == "step-0000003"


def test_ctrl_c_saves_a_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = VideoFlow.loss

    def interrupted(self, video, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_loss(self, video, **kw)

    monkeypatch.setattr(VideoFlow, "loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(tmp_path, steps=8, ckpt_every=100), progress=False)
    assert latest_checkpoint(tmp_path / "run").name == "step-0000002"


def test_a_half_written_checkpoint_is_never_the_latest(tmp_path):
    run = train(tiny_cfg(tmp_path, steps=3), progress=False)
    # a kill during the next write leaves only a hidden temporary folder behind
    (run / "ckpt" / ".tmp-step-0000006").mkdir()
    (run / "ckpt" / ".tmp-step-0000006" / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(run).name == "step-0000003"


def training_process(tmp_path, **settings):
    """``videogen train`` of the tiny VideoFlow on digits with 2 loader workers, endless, in a
    subprocess of its own process group (as a shell's job); ``settings`` override the train
    section. Returns the process and its run folder."""
    import os
    import subprocess
    import sys

    run = tmp_path / "run"
    values = {
        "method": "videoflow",
        "data.name": "moving-digits",
        "data.frames": 3,
        "data.size": 16,
        "data.channels": 1,
        "data.num_workers": 2,
        "train.steps": 100000,
        "train.batch_size": 4,
        "train.log_every": 1,
        "train.sample_every": 0,
        "train.out": str(run),
        **{f"train.{k}": v for k, v in settings.items()},
    }
    overrides = [f"{k}={v}" for k, v in values.items()]
    overrides += [f"model.{k}={v}" for k, v in TINY.items()]
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "videogen", "train", "--quiet", str(config), *overrides],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc, run


def test_sigterm_to_the_process_group_checkpoints_with_loader_workers(tmp_path):
    """Regression: `timeout` signals the whole process group; the DataLoader workers used to
    die first and the run ended without a checkpoint."""
    import os
    import signal
    import time

    proc, run = training_process(tmp_path)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, output
    assert latest_checkpoint(run) is not None, output


def test_resume_on_another_number_of_processes_reseeds_every_rank():
    """Regression: a checkpoint of one process resumed on two gave rank 1 rank 0's RNG state,
    so both ranks drew the same noise, timesteps and masks."""
    torch.manual_seed(1)
    one = [{"torch": torch.get_rng_state(), "python": __import__("random").getstate()}]
    states = []
    for rank in (0, 1):
        note = restore_rank_rng(one, rank=rank, world=2, seed=3, step=6, batch_size=(4, 2))
        assert "written by 1 processes and this run has 2" in note
        assert "global batch stays 4 (2 x 2)" in note
        states.append(torch.get_rng_state())
    assert not torch.equal(states[0], states[1])
    assert not any(torch.equal(s, one[0]["torch"]) for s in states)
    # the same rank at the same step is seeded the same way every time
    restore_rank_rng(one, rank=1, world=2, seed=3, step=6, batch_size=(4, 2))
    assert torch.equal(torch.get_rng_state(), states[1])
    # two processes' states resumed on one: the global batch halves unless batch_size doubles
    two = [{"torch": s, "python": one[0]["python"]} for s in states]
    note = restore_rank_rng(two, rank=0, world=1, seed=3, step=6, batch_size=(4, 4))
    assert "changes from 8 (2 x 4) to 4 (1 x 4): set train.batch_size=8 to keep it" in note
    assert "1 x train.batch_size=4" in restore_rank_rng(
        two, rank=0, world=1, seed=3, step=6, batch_size=(None, 4)
    )
    # as many processes as wrote it: each rank gets its own state back, and no message
    assert restore_rank_rng(two, rank=1, world=2, seed=3, step=6, batch_size=(4, 4)) is None
    assert torch.equal(torch.get_rng_state(), states[1])


def test_two_processes_write_once_seed_each_rank_and_resume_across_world_sizes(tmp_path, capsys):
    """`torchrun` with two CPU processes (gloo): rank 0 alone writes the log and checkpoints,
    every rank keeps its own RNG state, losses are averaged over ranks. The run then resumes
    on one process (at the same global batch) and back on two, each rank reseeded."""
    import os
    import subprocess
    import sys

    run = tmp_path / "run"
    config = tmp_path / "ddp.yaml"
    config.write_text("method: videoflow\n")
    overrides = [f"model.{k}={v}" for k, v in TINY.items()] + [
        "data.name=moving-digits",
        "data.frames=3",
        "data.size=16",
        "data.channels=1",
        "train.log_every=1",
        "train.ckpt_every=2",
        "train.sample_every=0",
        f"train.out={run}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}

    def two_processes(steps: int) -> str:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        cmd += ["-m", "videogen", "train", "--quiet", str(config), *overrides]
        cmd += [f"train.steps={steps}", "train.batch_size=2"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def saved(name: str) -> tuple[list, dict]:
        ckpt = run / "ckpt" / name
        state = json.loads((ckpt / "state.json").read_text())
        return torch.load(ckpt / "rng.pt", weights_only=True), state

    out = two_processes(4)
    assert out.count("run folder:") == 1
    assert sorted(losses(run)) == [1, 2, 3, 4]
    rng, state = saved("step-0000004")
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])
    assert state == {"step": 4, "processes": 2, "batch_size": 2}

    from videogen.config import load_config

    cfg = load_config(config, [*overrides, "train.steps=6", "train.batch_size=4"])
    train(cfg, progress=False)  # one process, the same global batch of 4
    assert "written by 2 processes and this run has 1" in capsys.readouterr().out
    assert sorted(losses(run)) == [1, 2, 3, 4, 5, 6]
    rng, state = saved("step-0000006")
    assert len(rng) == 1 and state["processes"] == 1 and state["batch_size"] == 4

    out = two_processes(8)
    assert "written by 1 processes and this run has 2" in out
    assert "global batch stays 4 (2 x 2)" in out
    assert sorted(losses(run)) == [1, 2, 3, 4, 5, 6, 7, 8]
    rng, _ = saved("step-0000008")
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])


TEARDOWN_WORKER = """
import json, os, sys, time
import videogen.train as trainer
from videogen.config import Config, from_dict

real_export = trainer.export

def slow_export(*args, **kwargs):  # rank 0 is still writing when the other rank is done
    time.sleep(3)
    path = real_export(*args, **kwargs)
    open(os.path.join(sys.argv[1], "export_done"), "w").write(repr(time.time()))
    return path

trainer.export = slow_export
cfg = from_dict(Config, json.loads(sys.argv[2]))
trainer.train(cfg, progress=False)
rank = os.environ["RANK"]
open(os.path.join(sys.argv[1], f"returned_{rank}"), "w").write(repr(time.time()))
"""


def test_no_rank_leaves_training_before_rank_0_has_exported(tmp_path):
    """Destroying the process group is collective: every rank waits until rank 0 has written
    the export before the group goes (the other rank used to destroy it seconds earlier)."""
    import os
    import subprocess
    import sys

    from videogen.config import to_dict

    script = tmp_path / "worker.py"
    script.write_text(TEARDOWN_WORKER)
    cfg = to_dict(tiny_cfg(tmp_path, steps=2, batch_size=2, ckpt_every=0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*cmd, str(script), str(tmp_path), json.dumps(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    exported = float((tmp_path / "export_done").read_text())
    assert float((tmp_path / "returned_1").read_text()) >= exported


BLOCKED_TEARDOWN_WORKER = """
import json, os, sys, time
from accelerate import Accelerator
import videogen.train as trainer
from videogen.config import Config, from_dict

real_end = Accelerator.end_training

def blocked_end(self):  # torch's teardown that never returns, on rank 1
    if os.environ["RANK"] == "1":
        time.sleep(600)
    real_end(self)

Accelerator.end_training = blocked_end
cfg = from_dict(Config, json.loads(sys.argv[1]))
trainer.train(cfg, progress=False, exit_grace=float(sys.argv[2]))
"""


def test_a_rank_whose_teardown_blocks_ends_itself_after_the_grace(tmp_path):
    """A finished two-process run whose rank 1 blocks in the process group's teardown (as gloo
    now and then does) still ends, with status 0, the stack of the blocked thread on stderr, and
    the run complete."""
    import os
    import subprocess
    import sys
    import time

    from videogen.config import to_dict

    script = tmp_path / "worker.py"
    script.write_text(BLOCKED_TEARDOWN_WORKER)
    cfg = to_dict(tiny_cfg(tmp_path, steps=2, batch_size=2, ckpt_every=0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    started = time.perf_counter()
    done = subprocess.run(
        [*cmd, str(script), json.dumps(cfg), "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.perf_counter() - started < 200  # not the 600 s the teardown would block
    assert "rank 1 of a finished run: the work is written" in done.stderr
    assert "in blocked_end" in done.stderr  # the blocked thread's stack
    assert "rank 0 of a finished run" not in done.stderr
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()


def test_end_within_leaves_a_process_that_ends_in_time_alone(tmp_path):
    import subprocess
    import sys

    quick = "from videogen.exit_guard import end_within; end_within(30, 'x'); print('done')"
    done = subprocess.run([sys.executable, "-c", quick], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "done\n", "")


def test_end_now_skips_a_shutdown_that_would_block():
    import subprocess
    import sys

    # a non-daemon thread that sleeps 600 s holds a normal interpreter shutdown for 600 s
    blocked = (
        "import threading, time; from videogen.exit_guard import end_now\n"
        "threading.Thread(target=time.sleep, args=(600,)).start()\n"
        "print('written', end='')\n"
        "end_now()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "written")  # flushed, though _exit skips atexit


def test_one_process_keeps_its_minutes_between_log_steps(tmp_path):
    """Regression (H200, session 8): a slow model logging every 100 steps took its 1- and
    2-minute snapshots together at 2.4 minutes and ran 2 minutes past train.max_minutes."""
    cfg = tiny_cfg(tmp_path, steps=2000, log_every=1000, ckpt_every=1000)
    cfg.train.max_minutes, cfg.train.snapshot_minutes = 0.002, [0.0]  # 0.12 s
    run = train(cfg, progress=False)
    info = json.loads((run / "snapshots" / "0min" / "snapshot.json").read_text())
    assert info["step"] == 1  # due at once, not at step 1000
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert last["step"] < 1000 and last["minutes"] < 0.002 + 0.05, rows
    # finished as at train.steps: a checkpoint of the last step, and the export
    assert latest_checkpoint(run).name == f"step-{last['step']:07d}"
    assert (run / "export" / "model.safetensors").is_file()


def test_snapshots_export_the_ema_weights_at_their_minutes(tmp_path):
    run = train(tiny_cfg(tmp_path, steps=3, snapshot_minutes=[0.0, 600.0]), progress=False)
    snaps = sorted(p.name for p in (run / "snapshots").iterdir())
    assert snaps == ["0min"]  # 600 minutes never came
    info = json.loads((run / "snapshots" / "0min" / "snapshot.json").read_text())
    assert info["step"] == 1 and info["due_minutes"] == 0.0 and info["minutes"] >= 0.0
    snap = load_pretrained(run / "snapshots" / "0min")
    final = load_pretrained(run)
    # taken after step 1: not the final weights
    assert any(
        not torch.equal(a, b)
        for a, b in zip(snap.state_dict().values(), final.state_dict().values())
    )
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["minutes"] >= 0 for r in rows)
    # a resumed run keeps the snapshot it has
    first = (run / "snapshots" / "0min" / "model.safetensors").read_bytes()
    train(tiny_cfg(tmp_path, steps=5, snapshot_minutes=[0.0]), progress=False)
    assert (run / "snapshots" / "0min" / "model.safetensors").read_bytes() == first


def test_cosine_schedule_warms_up_then_follows_half_a_cosine_to_zero(tmp_path):
    """``train.lr_schedule=cosine``: the learning rate logged after step s (the one the next
    update uses) is lr·(s+1)/warmup during warm-up, then lr·(1 + cos(π·d))/2 with d the part of
    the post-warm-up updates done; ``constant`` stays at lr after warm-up."""
    import math

    run = train(tiny_cfg(tmp_path, steps=8, warmup=3, lr_schedule="cosine"), progress=False)
    logged = [
        (row["step"], row["lr"])
        for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    ]
    for s, lr in logged:
        if s + 1 < 3:
            want = 1e-3 * (s + 1) / 3
        else:
            want = 1e-3 * 0.5 * (1 + math.cos(math.pi * min(1.0, (s + 1 - 3) / (8 - 3 + 1))))
        assert lr == pytest.approx(want, rel=1e-6), s
    assert logged[-2][1] > 0  # the last update still had a learning rate
    flat = train(tiny_cfg(tmp_path / "c", steps=4, warmup=2), progress=False)
    rates = [json.loads(line)["lr"] for line in (flat / "metrics.jsonl").read_text().splitlines()]
    assert rates == pytest.approx([1e-3] * 4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_non_finite_step_is_skipped_under_cuda_graphs_on_gpu(tmp_path, monkeypatch):
    """The fast recipes' setting (bf16 autocast, the step compiled with CUDA graphs, fused Adam
    on the GPU): a NaN gradient in step 3 is skipped, and the run finishes."""
    from method_zoo import tiny_config

    from videogen.methods.base import VideoMethod

    cfg = tiny_config(
        "mcvd",
        data={"name": "moving-digits"},
        train={
            "steps": 5,
            "batch_size": 2,
            "log_every": 1,
            "ckpt_every": 0,
            "sample_every": 0,
            "compile": True,
            "compile_mode": "reduce-overhead",
            "out": str(tmp_path / "run"),
        },
    )
    real_setup = VideoMethod.setup_training
    backward = {"n": 0}

    def poison_third_backward(grad):
        backward["n"] += 1
        return grad * float("nan") if backward["n"] == 3 else grad

    def setup_with_hook(self):
        next(self.parameters()).register_hook(poison_third_backward)
        return real_setup(self)

    monkeypatch.setattr(VideoMethod, "setup_training", setup_with_hook)
    run = train(cfg, progress=False)
    rows = {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").open())}
    assert backward["n"] == 5
    assert [s for s, r in rows.items() if "skipped" in r] == [3]
    assert isinstance(load_pretrained(run / "export"), VideoMethod)
