"""The contract every method answers, tested once over every registered method (a new method
gets it by adding its tiny config to ``method_zoo.TINY``): save/load round trip, known frames
returned bit-exact, rows independent of each other, resume equal to an uninterrupted run,
refused patterns refused with ``supported_known``'s reason, labels only where it has classes."""

from __future__ import annotations

import json
import re

import pytest
import torch
from method_zoo import TINY, tiny_config
from safetensors.torch import load_file

from videogen import tasks
from videogen.checkpoint import latest_checkpoint, load_pretrained
from videogen.methods import build_method, method_names
from videogen.train import train

METHODS = method_names()


def test_every_registered_method_has_a_tiny_config():
    assert set(METHODS) == set(TINY), "add the new method's tiny config to tests/method_zoo.py"


def tiny(name: str, seed: int = 0):
    torch.manual_seed(seed)
    method = build_method(tiny_config(name))
    # move every weight off its initial value (zero-initialised output layers included), so
    # that what a network computes shows in the samples
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return method.eval()


def clips(method, batch: int, seed: int = 1) -> torch.Tensor:
    d = method.cfg.data
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, method.window, d.channels, d.size, d.size, generator=g) * 2 - 1


def sample(method, video, known, seed: int = 5) -> torch.Tensor:
    return method.generate(video, known, generator=torch.Generator().manual_seed(seed))


def patterns(frames: int, batch: int) -> list[torch.Tensor]:
    """Candidate tasks of one window: each method takes some and refuses the others."""
    return [
        tasks.predict(frames, frames // 2, batch),
        tasks.predict(frames, 0, batch),
        tasks.from_indices(frames, [0, frames - 1], batch),
        tasks.from_indices(frames, [1], batch),
    ]


@pytest.mark.parametrize("name", METHODS)
def test_export_round_trip_gives_the_same_weights_and_samples(name, tmp_path):
    method = tiny(name)
    method.save_pretrained(tmp_path / "export")
    again = load_pretrained(tmp_path / "export")
    assert type(again) is type(method) and not again.training
    mine, theirs = method.state_dict(), again.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    video, known = clips(method, 2), method.default_known(2)
    assert torch.equal(sample(method, video, known), sample(again, video, known))


@pytest.mark.parametrize("name", METHODS)
def test_known_frames_come_back_exactly_and_refusals_give_the_reason(name):
    method = tiny(name)
    video = clips(method, 2)
    taken = 0
    for known in [method.default_known(2), *patterns(method.window, 2)]:
        reason = method.supported_known(known)
        if reason is not None:
            assert isinstance(reason, str) and len(reason) > 20
            with pytest.raises(ValueError, match=re.escape(reason)):
                sample(method, video, known)
            continue
        taken += 1
        out = sample(method, video, known)
        assert out.shape == video.shape and out.dtype == video.dtype
        assert torch.equal(out[known], video[known])
        fills = method.fills(known) & ~known
        assert not torch.equal(out[fills], video[fills])
        assert out.min() >= -1 and out.max() <= 1
    assert taken >= 1  # at least its own default task


@pytest.mark.parametrize("name", METHODS)
def test_every_tensor_of_the_method_moves_with_it(name):
    """``method.to(device)`` moves its process's schedule too (regression: the schedule was
    moved on first use, inside the compiled training step on a GPU, so the compiled step failed
    its guards at step 2 and compiled again, 2.4 minutes of an 11-minute run), and the process
    adds nothing to checkpoints."""
    method = tiny(name)
    keys = set(method.state_dict())
    method.to("meta")
    # a plain tensor attribute of the process (how the schedule was kept) is not moved
    attributes = vars(getattr(method, "diffusion", method)).values()
    assert all(t.device.type == "meta" for t in attributes if isinstance(t, torch.Tensor))
    assert all(b.device.type == "meta" for b in method.buffers())
    assert set(method.state_dict()) == keys


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["mcvd", "ramvid", "videofusion"])
def test_compiled_training_step_compiles_once_on_gpu(name):
    """The GPU side of the test above: once the first step has compiled, later steps of the
    compiled module (CUDA graphs, as the trainer's fast recipes run) compile nothing again."""
    method = tiny(name).train().cuda()
    step = torch.compile(method, mode="reduce-overhead")
    opt = torch.optim.Adam(method.parameters(), lr=1e-4)
    video = clips(method, 4).cuda()

    def train_step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step(video)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    train_step()
    with torch.compiler.set_stance("fail_on_recompile"):
        for _ in range(3):
            train_step()


@pytest.mark.parametrize("name", METHODS)
def test_each_row_is_generated_independently_of_the_others(name):
    """Same noise, different second clip: the first row's sample must not change."""
    method = tiny(name)
    a, b = clips(method, 2, seed=1), clips(method, 2, seed=2)
    b[0] = a[0]
    known = method.default_known(2)
    first, second = sample(method, a, known), sample(method, b, known)
    torch.testing.assert_close(first[0], second[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_labels_are_refused_by_a_method_without_classes(name):
    method = tiny(name)
    if method.num_classes:
        pytest.skip("class-conditional in its tiny config")
    with pytest.raises(ValueError, match="unconditional"):
        method.generate(clips(method, 1), method.default_known(1), labels=torch.tensor([0]))


def _train(name: str, out, steps: int):
    cfg = tiny_config(
        name,
        data={"name": "moving-digits"},
        train={
            "steps": steps,
            "batch_size": 2,
            "lr": 1e-3,
            "log_every": 1,
            "ckpt_every": 2,
            "sample_every": 0,
            "ema_decay": 0.9,
            "out": str(out),
        },
    )
    return train(cfg, progress=False)


@pytest.mark.parametrize("name", METHODS)
def test_resume_equals_an_uninterrupted_run(name, tmp_path):
    full = _train(name, tmp_path / "full", 3)
    _train(name, tmp_path / "cut", 2)
    resumed = _train(name, tmp_path / "cut", 3)

    def losses(run):
        return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]

    assert losses(resumed) == pytest.approx(losses(full), rel=1e-5)
    for file in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(latest_checkpoint(full) / file))
        b = load_file(str(latest_checkpoint(resumed) / file))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
