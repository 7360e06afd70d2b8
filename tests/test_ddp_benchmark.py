"""benchmarks/ddp.py's curve agreement: the number that says whether the loss curves of 1 and 2
processes agree within noise."""

import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from ddp import curve_agreement, step_noise, trailing_mean  # noqa: E402


def noisy_curve(seed: int, n: int = 2000, sigma: float = 0.05, offset: float = 0.0) -> list[float]:
    rng = random.Random(seed)
    return [1.0 / (1 + 0.01 * i) + offset + rng.gauss(0, sigma) for i in range(n)]


def test_trailing_mean_and_step_noise_by_hand():
    assert trailing_mean([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]
    # differences +1, -1, +1, -1: population std 1, over sqrt(2)
    assert step_noise([0, 1, 0, 1, 0]) == pytest.approx(1 / math.sqrt(2))


def test_two_runs_that_differ_by_noise_only_give_a_ratio_near_one():
    # independent noise of sigma 0.05 around one falling trend; the steep start would inflate a
    # noise estimate from residuals, not one from consecutive differences
    a, b = noisy_curve(0), noisy_curve(1)
    agree = curve_agreement(a, b, window=20)
    assert agree["noise"] == pytest.approx(0.05, rel=0.05)
    expected = 2 / math.sqrt(math.pi) * agree["noise"] / math.sqrt(20)
    assert agree["expected_abs_delta"] == pytest.approx(expected)
    assert 0.7 < agree["ratio"] < 1.5
    # a systematic gap of about four expected |deltas| shows up as a ratio far above one
    gap = curve_agreement(a, noisy_curve(1, offset=0.05), window=20)
    assert gap["ratio"] > 3


def test_too_short_a_curve_is_refused_with_the_counts():
    with pytest.raises(ValueError, match="need more than window"):
        curve_agreement([1.0] * 5, [1.0] * 5, window=10)


def test_a_launch_whose_work_is_done_but_does_not_exit_is_stopped(tmp_path, monkeypatch):
    """A worker that hangs at exit after the run printed its last line costs the exit grace,
    not the whole timeout; the launch says so."""
    import ddp

    hang = "import time; print('export: done', flush=True); time.sleep(120)"
    monkeypatch.setattr(ddp, "launcher", lambda procs, accelerate, port: [sys.executable, "-c"])
    info = ddp.launch(tmp_path, [hang], procs=1, timeout=100, every=0.2, exit_grace=1)
    assert info["hung_at_exit"] and not info["timed_out"]
    assert info["wall_s"] < 60
    assert (tmp_path / "launch.log").read_text().startswith("export: done")
