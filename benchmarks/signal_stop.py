"""Ctrl-C / SIGTERM against a training run with DataLoader workers, N times (issue 18).

    PYTHONPATH=src python benchmarks/signal_stop.py [--trials 100] [--max-delay 6]
        [--within 10] [--workers 2] [--resume-steps 3] [--json results.json]
        [--src OTHER/src]   # the runs use another checkout's videogen (a before/after)

Each trial starts ``videogen train`` on a tiny VideoFlow over moving digits (3x16x16,
``data.num_workers=2``, a checkpoint every 3 steps, so the stream's loader is shut down and
rebuilt often), waits for the first logged step, sleeps a random 0..``--max-delay`` seconds
and sends SIGINT or SIGTERM (chosen at random) to the run's whole process group, as Ctrl-C or
``timeout`` do. A trial **stops** when the run exits with 130 within ``--within`` seconds of
the signal with a checkpoint that reads back (every file, finite values). It then **resumes**
exactly when running again for ``--resume-steps`` more steps logs the same losses, bit for
bit, as one uninterrupted reference run at those steps. Prints one table; the seed fixes the
delays and signals.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from videogen.checkpoint import CheckpointError, latest_checkpoint, read_checkpoint

TINY = {
    "levels": 2,
    "steps_per_level": 1,
    "coupling_width": 8,
    "prior_depth": 1,
    "prior_width": 8,
    "cond_frames": 1,
    "context_frames": 1,
}


# one thread per process in every run: the reference and the trials compute alike
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def overrides(run: Path, steps: int, workers: int) -> list[str]:
    settings = {
        "method": "videoflow",
        "data.name": "moving-digits",
        "data.frames": 3,
        "data.size": 16,
        "data.channels": 1,
        "data.num_workers": workers,
        "train.steps": steps,
        "train.batch_size": 4,
        "train.log_every": 1,
        "train.ckpt_every": 3,
        "train.sample_every": 0,
        "train.seed": 7,
        "train.out": str(run),
    }
    return [f"{k}={v}" for k, v in settings.items()] + [f"model.{k}={v}" for k, v in TINY.items()]


def command(config: Path, run: Path, steps: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "videogen", "train", "--quiet", str(config)] + overrides(
        run, steps, workers
    )


def logged(run: Path) -> dict[int, float]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in rows}


def trial(
    index: int, folder: Path, config: Path, args: argparse.Namespace, reference: dict, rng
) -> dict:
    run = folder / f"trial-{index:03d}"
    delay = rng.uniform(0, args.max_delay)
    sig = rng.choice([signal.SIGINT, signal.SIGTERM])
    proc = subprocess.Popen(
        command(config, run, 100_000, args.workers),
        env=ENV,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 180
    while not logged(run) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    os.killpg(proc.pid, sig)
    sent = time.time()
    try:
        output = proc.communicate(timeout=args.within)[0].decode(errors="replace")
        seconds = time.time() - sent
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0].decode(errors="replace")
        seconds = float("inf")
    result = {
        "trial": index,
        "signal": signal.Signals(sig).name,
        "delay": round(delay, 3),
        "rc": proc.returncode,
        "seconds": round(seconds, 3),
        "step": None,
        "stopped": False,
        "resumed": False,
    }
    ckpt = latest_checkpoint(run)
    if ckpt is not None:
        try:
            result["step"] = read_checkpoint(ckpt)["step"]
            readable = True
        except CheckpointError as err:
            result["error"] = str(err)
            readable = False
        result["stopped"] = proc.returncode == 130 and seconds <= args.within and readable
    if not result["stopped"]:
        result["output"] = output[-2000:]
        return result
    target = result["step"] + args.resume_steps
    if target > max(reference):
        result["error"] = f"stopped at {result['step']}, past the reference run"
        return result
    done = subprocess.run(
        command(config, run, target, args.workers), env=ENV, capture_output=True, timeout=300
    )
    after = logged(run)
    steps = range(result["step"] + 1, target + 1)
    result["resumed"] = done.returncode == 0 and all(after.get(s) == reference[s] for s in steps)
    if not result["resumed"]:
        result["output"] = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--max-delay", type=float, default=6.0)
    parser.add_argument("--within", type=float, default=10.0, help="seconds allowed to stop")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--resume-steps", type=int, default=3)
    parser.add_argument("--reference-steps", type=int, default=0, help="0: from --max-delay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write every trial here")
    parser.add_argument("--src", type=Path, default=None, help="videogen source the runs use")
    args = parser.parse_args()
    if args.src is not None:
        ENV["PYTHONPATH"] = str(args.src.resolve())
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "empty.yaml"
        config.write_text("{}\n")
        # time the steps once, to size the reference run to the longest trial: the fastest
        # logged rate, doubled (other processes on the machine may slow down meanwhile)
        ref_run = folder / "reference"
        subprocess.run(
            command(config, ref_run, 30, args.workers), env=ENV, check=True, capture_output=True
        )
        rows = (ref_run / "metrics.jsonl").read_text().splitlines()
        fastest = max(json.loads(line)["steps_per_s"] for line in rows)
        steps = args.reference_steps or int(2 * fastest * (args.max_delay + 1)) + 50
        shutil.rmtree(ref_run)
        subprocess.run(
            command(config, ref_run, steps, args.workers), env=ENV, check=True, capture_output=True
        )
        reference = logged(ref_run)
        results = []
        for i in range(args.trials):
            r = trial(i, folder, config, args, reference, rng)
            results.append(r)
            print(
                f"trial {i:3d}  {r['signal']:7s} after {r['delay']:5.2f}s  rc {r['rc']}  "
                f"{r['seconds']:6.2f}s  step {r['step']}  stopped {r['stopped']}  "
                f"resumed {r['resumed']}",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    n = len(results)
    stopped = sum(r["stopped"] for r in results)
    resumed = sum(r["resumed"] for r in results)
    slowest = max((r["seconds"] for r in results if r["stopped"]), default=float("nan"))
    print()
    print(
        f"| trials | stopped within {args.within:g} s with a loadable checkpoint | "
        "resumed exactly | slowest stop (s) |"
    )
    print("|---|---|---|---|")
    print(f"| {n} | {stopped} | {resumed} | {slowest:.2f} |")
    for r in results:
        if not (r["stopped"] and r["resumed"]):
            print(f"\ntrial {r['trial']}: {r.get('error', '')}\n{r.get('output', '')}")


if __name__ == "__main__":
    main()
