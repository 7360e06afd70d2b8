"""Data-parallel checks of the trainer and of ``videogen eval``: the measuring pieces behind
``benchmarks/gpu_ddp.sh`` (which runs them on a 2-GPU machine, or on CPU processes with gloo).

Subcommands:

    launch --dir D --procs N [--gpus 0,1] [--accelerate] [--timeout S] -- videogen-args...
        run ``videogen ARGS`` on N processes (``torchrun --standalone``, or ``accelerate
        launch``), sampling ``nvidia-smi`` (utilisation and memory of every GPU, where there is
        one) while it runs; writes D/launch.log and D/launch.json (command, exit status, wall
        seconds, per-GPU mean utilisation while training and peak memory)
    random-i3d PATH
        a TorchScript stand-in for I3D (seeded random features of the pooled video): FVD then
        compares sharded with unsharded evaluation without the real weight file (its values
        mean nothing else)
    summary WORK OUT
        read every run under WORK (the layout ``gpu_ddp.sh`` writes: WORK/<method>/<part>) and
        write OUT/summary.md, OUT/results.json and one loss-curve PNG per method

Layout of WORK/<method>/: ``1gpu`` and ``2gpu`` train the same global batch on 1 and 2
processes (``1gpu`` also gives the 1-process throughput); ``tput2`` trains the per-process
batch of ``1gpu`` on 2 processes; ``resume-2to1`` / ``resume-1to2`` continue copies of ``2gpu`` /
``1gpu`` on the other number of processes; ``eval1`` / ``eval2`` evaluate ``1gpu``'s export on 1
and 2 processes; ``compile2`` trains under ``accelerate launch`` with compile and bf16.

Curve agreement: both loss series are smoothed with a trailing mean over ``window`` log
records; ``mean_abs_delta`` is the mean |smoothed_1 - smoothed_2| after the first window, and
``noise`` the step-to-step noise of one record, std(diff of consecutive records) / sqrt(2) (a
trend cancels in the differences). Two runs that differ only by noise give, for independent
smoothed means, an expected |delta| of 2 / sqrt(pi) * noise / sqrt(window); ``ratio`` is the
measured mean |delta| over that, about 1 when the curves agree within noise (the smoothing
windows overlap, so values up to ~2 are still noise; a systematic gap grows with the run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curves import Panel, draw_curves  # noqa: E402 - the benchmarks folder is not a package

PARTS = ("1gpu", "2gpu", "tput2", "resume-2to1", "resume-1to2", "eval1", "eval2", "compile2")


# --------------------------------------------------------------------------- reading runs


def read_records(run: Path) -> list[dict[str, Any]]:
    """The rows of ``run/metrics.jsonl`` (empty when the run logged nothing)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_series(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """``(step, loss)`` per log record; a method with several groups logs ``<group>/loss``, of
    which the first is taken."""
    out = []
    for r in records:
        key = "loss" if "loss" in r else next((k for k in sorted(r) if k.endswith("/loss")), None)
        if key is not None:
            out.append((int(r["step"]), float(r[key])))
    return out


def trailing_mean(values: list[float], window: int) -> list[float]:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def step_noise(values: list[float]) -> float:
    """Noise of one value, from consecutive differences: std(diff) / sqrt(2)."""
    diffs = [b - a for a, b in zip(values, values[1:])]
    return statistics.pstdev(diffs) / math.sqrt(2) if len(diffs) > 1 else float("nan")


def curve_agreement(a: list[float], b: list[float], window: int) -> dict[str, float]:
    """How far two loss curves of equal log steps lie apart, against their noise (module
    docstring). ``a`` and ``b`` are cut to the shorter one."""
    n = min(len(a), len(b))
    if n <= window + 1:
        raise ValueError(f"{n} log records: need more than window + 1 = {window + 1}")
    sa, sb = trailing_mean(a[:n], window), trailing_mean(b[:n], window)
    deltas = [abs(x - y) for x, y in zip(sa[window:], sb[window:])]
    noise = statistics.mean([step_noise(a[:n]), step_noise(b[:n])])
    expected = 2 / math.sqrt(math.pi) * noise / math.sqrt(window)
    mean_delta = statistics.mean(deltas)
    return {
        "records": n,
        "window": window,
        "mean_abs_delta": mean_delta,
        "noise": noise,
        "expected_abs_delta": expected,
        "ratio": mean_delta / expected if expected > 0 else float("nan"),
        "final_smoothed": [sa[-1], sb[-1]],
    }


def run_config(run: Path) -> dict[str, Any]:
    """The run's saved config (``config.yaml``), as a dict."""
    import yaml

    path = run / "config.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def throughput(run: Path, procs: int, skip: int = 1) -> dict[str, float] | None:
    """Clips/s of a training run: the median steps/s of its log intervals after the first
    ``skip`` (start-up, compilation) times the global batch (``procs`` x train.batch_size)."""
    records = read_records(run)[skip:]
    batch = run_config(run).get("train", {}).get("batch_size")
    if not records or batch is None:
        return None
    steps_per_s = statistics.median(r["steps_per_s"] for r in records)
    return {
        "steps_per_s": steps_per_s,
        "clips_per_s": steps_per_s * batch * procs,
        "batch_per_process": batch,
        "processes": procs,
    }


# --------------------------------------------------------------------------- launching


def gpu_sample() -> list[tuple[int, float, float]] | None:
    """``(index, utilisation %, memory used MiB)`` of every GPU, or None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = "--query-gpu=index,utilization.gpu,memory.used"
    try:
        text = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except subprocess.TimeoutExpired:
        return []
    rows = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and all(p.replace(".", "").isdigit() for p in parts):
            rows.append((int(parts[0]), float(parts[1]), float(parts[2])))
    return rows


def launcher(procs: int, accelerate: bool, port: int) -> list[str]:
    """The command that starts ``procs`` processes of ``python -m videogen``."""
    py = sys.executable
    if accelerate:
        cmd = [py, "-m", "accelerate.commands.launch", "--num_processes", str(procs)]
        cmd += ["--num_machines", "1", "--main_process_port", str(port), "--dynamo_backend", "no"]
        # --multi_gpu starts the processes through torch's elastic launcher, on CPUs too (the
        # trainer's Accelerator then runs them over gloo); --cpu would start a single one.
        # Mixed precision and compilation come from the run config, which overrides
        # the launcher's defaults.
        if procs > 1:
            cmd.append("--multi_gpu")
        return [*cmd, "-m", "videogen"]
    return [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] + [
        "-m",
        "videogen",
    ]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the workers of a launcher), from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def native_stacks(pids: list[int], path: Path) -> None:
    """Every thread's native stack of each process in ``pids``, by gdb where it is installed."""
    if shutil.which("gdb") is None or not pids:
        return
    with path.open("a") as f:
        for pid in pids:
            f.write(f"=== pid {pid}\n")
            f.flush()
            cmd = ["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 30"]
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=60)


def stop(proc: subprocess.Popen, folder: Path) -> None:
    """End a launch that ran out of time or hung at exit, telling why: the native stacks of its
    workers go to ``folder/stacks.log`` (gdb), then every worker gets SIGABRT, which with
    PYTHONFAULTHANDLER set (``launch`` sets it) writes each thread's Python stack into the log;
    then the launcher's process group gets SIGTERM, and SIGKILL 30 s later."""
    workers = child_pids(proc.pid)
    native_stacks(workers, folder / "stacks.log")
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            os.kill(pid, signal.SIGABRT)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


FINISHED = ("export: ", "wrote ")  # the last lines of `videogen train` and `videogen eval`


def finished_line(log: Path) -> bool:
    """Has the command printed its last line (the work is done and written)?"""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return False
    return any(line.startswith(FINISHED) for line in text.splitlines())


def launch(
    folder: Path,
    args: list[str],
    *,
    procs: int,
    gpus: str | None = None,
    accelerate: bool = False,
    timeout: float = 600,
    every: float = 0.5,
    exit_grace: float = 30,
) -> dict[str, Any]:
    """Run ``videogen args`` on ``procs`` processes, sampling the GPUs every ``every`` s; a run
    over ``timeout`` s is stopped with its workers' stacks in the log (``stop``), and so is one
    whose processes have not all ended ``exit_grace`` s after the command printed its last line
    (``finished_line``: the training or evaluation is then complete). Writes
    ``folder/launch.log`` and ``folder/launch.json`` and returns the latter's dict.

    Utilisation is averaged over the samples taken once ``folder/metrics.jsonl`` exists (the
    trainer's first log record: start-up, data and model building excluded) or over all of them
    for a command that logs no metrics; peak memory is the maximum over all samples (CUDA
    context and allocator cache included, as nvidia-smi reports them)."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = launcher(procs, accelerate, free_port()) + args
    env = dict(os.environ)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONFAULTHANDLER"] = "1"  # stacks of a hung worker (see stop)
    had_metrics = (folder / "metrics.jsonl").is_file()  # a resumed copy already has them
    samples: list[tuple[bool, list[tuple[int, float, float]]]] = []
    started = time.perf_counter()
    timed_out = hung_at_exit = False
    finished: float | None = None
    with (folder / "launch.log").open("w") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        while proc.poll() is None:
            now = time.perf_counter()
            if finished is None and finished_line(folder / "launch.log"):
                finished = now
            if finished is not None and now - finished > exit_grace:
                hung_at_exit = True  # the work is done and written; a process does not end
                stop(proc, folder)
                break
            if now - started > timeout:
                timed_out = True
                stop(proc, folder)
                break
            rows = gpu_sample()
            if rows is None:
                time.sleep(every)
                continue
            steady = had_metrics or (folder / "metrics.jsonl").is_file()
            samples.append((steady, rows))
            time.sleep(every)
        rc = proc.wait()
    wall = time.perf_counter() - started
    visible = None if gpus is None else {int(g) for g in gpus.split(",")}
    per_gpu: dict[str, dict[str, float]] = {}
    if samples:
        any_steady = any(s for s, _ in samples)
        for index in sorted({i for _, rows in samples for i, _, _ in rows}):
            if visible is not None and index not in visible:
                continue
            util = [
                u for s, rows in samples for i, u, _ in rows if i == index and (s or not any_steady)
            ]
            mem = [m for _, rows in samples for i, _, m in rows if i == index]
            per_gpu[str(index)] = {
                "util_mean": statistics.mean(util) if util else float("nan"),
                "mem_peak_mib": max(mem),
                "samples": len(util),
            }
    info = {
        "command": cmd,
        "processes": procs,
        "accelerate": accelerate,
        "gpus": gpus,
        "rc": rc,
        "timed_out": timed_out,
        "hung_at_exit": hung_at_exit,
        "wall_s": wall,
        "per_gpu": per_gpu or None,
    }
    (folder / "launch.json").write_text(json.dumps(info, indent=2) + "\n")
    why = " (timed out)" if timed_out else " (hung at exit)" if hung_at_exit else ""
    print(f"{folder}: rc {rc}{why}, {wall:.1f} s", flush=True)
    return info


class RandomFeatures(torch.nn.Module):
    """A stand-in with the call signature of StyleGAN-V's ``i3d_torchscript.pt``: a seeded
    random projection of the video pooled to 4 x 4 x 4 (400 features that follow the content,
    so FVD moves with every clip; cheap at 224 x 224)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.nn.Parameter(torch.randn(3 * 4 * 4 * 4, 400, generator=g))

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = True,
        resize: bool = True,
        return_features: bool = False,
    ) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool3d(x.float(), (4, 4, 4)).flatten(1)
        return pooled @ self.proj


def write_random_i3d(path: Path, seed: int = 0) -> Path:
    """``RandomFeatures`` as TorchScript (load it with ``--trust-torchscript``): for comparing
    two evaluations of one model, not for FVD values to report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(RandomFeatures(seed)), str(path))
    return path


# --------------------------------------------------------------------------- the summary


def launch_info(folder: Path) -> dict[str, Any] | None:
    path = folder / "launch.json"
    return json.loads(path.read_text()) if path.is_file() else None


def resume_check(run: Path, original: Path) -> dict[str, Any] | None:
    """A copy of ``original`` resumed on another number of processes: did it continue at the
    next step, say that it reseeded, and does its loss carry on from the original's? The mean
    loss of its new log records is compared with the mean of as many last records before."""
    info = launch_info(run)
    if info is None:
        return None
    before = loss_series(read_records(original))
    after = loss_series(read_records(run))[len(before) :]
    log = (run / "launch.log").read_text(errors="replace") if (run / "launch.log").is_file() else ""
    n = min(len(after), len(before))
    steps = [s for s, _ in after]
    out: dict[str, Any] = {
        "rc": info["rc"],
        "processes": info["processes"],
        "resumed_message": next(
            (ln.strip() for ln in log.splitlines() if "resumed from" in ln), None
        ),
        "new_steps": [steps[0], steps[-1]] if steps else None,
        "continues": bool(steps) and bool(before) and steps[0] > before[-1][0],
    }
    if n:
        out["loss_before"] = statistics.mean(v for _, v in before[-n:])
        out["loss_after"] = statistics.mean(v for _, v in after[:n])
    return out


def eval_values(path: Path) -> dict[str, float]:
    """Every metric's headline value in an eval folder's ``metrics.json``."""
    file = path / "metrics.json"
    if not file.is_file():
        return {}
    metrics = json.loads(file.read_text()).get("metrics", {})
    return {
        k: float(v["value"]) for k, v in metrics.items() if isinstance(v, dict) and "value" in v
    }


def method_summary(folder: Path, window: int) -> dict[str, Any]:
    """Every number of one method's parts (those that ran)."""
    runs = {p: folder / p for p in PARTS}
    result: dict[str, Any] = {"launches": {}}
    for part, run in runs.items():
        info = launch_info(run)
        if info is not None:
            result["launches"][part] = {
                k: info.get(k)
                for k in ("processes", "rc", "timed_out", "hung_at_exit", "wall_s", "per_gpu")
            }
    one, two = loss_series(read_records(runs["1gpu"])), loss_series(read_records(runs["2gpu"]))
    if one and two:
        try:
            result["agreement"] = curve_agreement(
                [v for _, v in one], [v for _, v in two], window=fitting_window(one, window)
            )
        except ValueError as err:
            result["agreement"] = {"error": str(err)}
    t1, t2 = throughput(runs["1gpu"], 1), throughput(runs["tput2"], 2)
    if t1 and t2:
        result["throughput"] = {"1": t1, "2": t2, "scaling": t2["clips_per_s"] / t1["clips_per_s"]}
    compiled = throughput(runs["compile2"], 2, skip=2)
    if compiled:
        result["compile2"] = compiled
    for part, original in (("resume-2to1", "2gpu"), ("resume-1to2", "1gpu")):
        check = resume_check(runs[part], runs[original])
        if check is not None:
            result[part] = check
    e1, e2 = eval_values(runs["eval1"]), eval_values(runs["eval2"])
    if e1 or e2:
        result["eval"] = {
            k: {
                "1": e1.get(k),
                "2": e2.get(k),
                "abs_diff": abs(e1[k] - e2[k]) if k in e1 and k in e2 else None,
            }
            for k in sorted(set(e1) | set(e2))
        }
    return result


def fitting_window(series: list, window: int) -> int:
    """``window``, or a quarter of a short series (so the agreement has points to average)."""
    return max(1, min(window, len(series) // 4))


def plot_curves(folder: Path, name: str, window: int, out: Path) -> Path | None:
    """Loss against step of ``1gpu`` and ``2gpu`` (log10; raw and trailing mean)."""
    series = {}
    for part, label in (("1gpu", "1 process"), ("2gpu", "2 processes, same global batch")):
        points = [(s, v) for s, v in loss_series(read_records(folder / part)) if v > 0]
        if points:
            series[label] = points
    if not series:
        return None
    window = fitting_window(min(series.values(), key=len), window)
    raw = {k: [(s, math.log10(v)) for s, v in pts] for k, pts in series.items()}
    smooth = {
        k: list(zip([s for s, _ in pts], trailing_mean([v for _, v in pts], window)))
        for k, pts in raw.items()
    }
    panels = [
        Panel(f"{name}: log10 loss per log record", raw, x_label="step", markers=False),
        Panel(f"{name}: trailing mean of {window} records", smooth, x_label="step", markers=False),
    ]
    return draw_curves(out / f"{name}_curves.png", panels, width=480)


def fmt(value: Any, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def markdown(results: dict[str, Any], header: str) -> str:
    lines = [header, ""]
    for name, r in results.items():
        lines += [f"## {name}", ""]
        lines += [
            "| part | processes | rc | wall s | GPU util % (mean, per GPU) | peak MiB per GPU |"
        ]
        lines += ["|---|---:|---:|---:|---|---|"]
        for part, info in r["launches"].items():
            gpus = info["per_gpu"] or {}
            util = ", ".join(fmt(g["util_mean"], ".0f") for g in gpus.values()) or "—"
            mem = ", ".join(fmt(g["mem_peak_mib"], ".0f") for g in gpus.values()) or "—"
            why = " (timed out)" if info["timed_out"] else ""
            why += " (hung at exit: stacks.log)" if info.get("hung_at_exit") else ""
            rc = f"{info['rc']}{why}"
            lines.append(
                f"| {part} | {info['processes']} | {rc} | {info['wall_s']:.1f} | {util} | {mem} |"
            )
        lines.append("")
        if "agreement" in r:
            a = r["agreement"]
            if "error" in a:
                lines.append(f"Curve agreement: not computed ({a['error']}).")
            else:
                lines.append(
                    f"Curve agreement (1 vs 2 processes, same global batch, {a['records']} log "
                    f"records, trailing mean of {a['window']}): "
                    f"mean |Δ| {fmt(a['mean_abs_delta'])}, "
                    f"noise per record {fmt(a['noise'])}, expected |Δ| from noise "
                    f"{fmt(a['expected_abs_delta'])}, **ratio {fmt(a['ratio'], '.2f')}** "
                    f"(≈1: within noise); final smoothed losses {fmt(a['final_smoothed'][0])} / "
                    f"{fmt(a['final_smoothed'][1])}."
                )
        if "throughput" in r:
            t = r["throughput"]
            lines.append(
                f"Throughput at {t['1']['batch_per_process']} clips per process: 1 process "
                f"{fmt(t['1']['clips_per_s'], '.1f')} clips/s, 2 processes "
                f"{fmt(t['2']['clips_per_s'], '.1f')} clips/s: **{fmt(t['scaling'], '.2f')}×**."
            )
        if "compile2" in r:
            c = r["compile2"]
            lines.append(
                f"Compiled + bf16 under `accelerate launch` (2 processes, {c['batch_per_process']} "
                f"per process): {fmt(c['clips_per_s'], '.1f')} clips/s after warm-up."
            )
        for part in ("resume-2to1", "resume-1to2"):
            if part in r:
                c = r[part]
                lines.append(
                    f"{part}: rc {c['rc']}, new steps {c['new_steps']}, continues "
                    f"{c['continues']}, mean loss {fmt(c.get('loss_before'))} before → "
                    f"{fmt(c.get('loss_after'))} after; message: `{c['resumed_message']}`"
                )
        if "eval" in r:
            lines.append("")
            lines += ["| metric | 1 process | 2 processes | abs diff |", "|---|---:|---:|---:|"]
            for k, v in r["eval"].items():
                cells = [fmt(v["1"], ".6g"), fmt(v["2"], ".6g"), fmt(v["abs_diff"], ".3g")]
                lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def summary(
    work: Path, out: Path, window: int = 20, header: str = "# Data-parallel checks"
) -> dict:
    """Write ``out/summary.md``, ``out/results.json`` and the curve PNGs for every method
    folder under ``work``."""
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for folder in sorted(p for p in work.iterdir() if p.is_dir()):
        if not any((folder / part).is_dir() for part in PARTS):
            continue
        results[folder.name] = method_summary(folder, window)
        plot_curves(folder, folder.name, window, out)
    notes = work / "notes.md"
    text = markdown(results, header)
    if notes.is_file():
        text += "\n## Notes\n\n" + notes.read_text()
    (out / "summary.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    la = sub.add_parser("launch", help="run videogen on N processes, sampling the GPUs")
    la.add_argument("--dir", required=True, type=Path, help="where launch.log / launch.json go")
    la.add_argument("--procs", type=int, default=1)
    la.add_argument("--gpus", help="CUDA_VISIBLE_DEVICES for this run, e.g. 0 or 0,1")
    la.add_argument("--accelerate", action="store_true", help="accelerate launch, not torchrun")
    la.add_argument("--timeout", type=float, default=600)
    la.add_argument("args", nargs=argparse.REMAINDER, help="-- then the videogen arguments")
    ri = sub.add_parser("random-i3d", help="write a TorchScript I3D stand-in (random features)")
    ri.add_argument("path", type=Path)
    su = sub.add_parser("summary", help="summary.md, results.json and PNGs of a work folder")
    su.add_argument("work", type=Path)
    su.add_argument("out", type=Path)
    su.add_argument("--window", type=int, default=20, help="log records per trailing mean")
    su.add_argument("--header", default="# Data-parallel checks")
    args = p.parse_args(argv)
    if args.command == "launch":
        rest = args.args[1:] if args.args[:1] == ["--"] else args.args
        info = launch(
            args.dir,
            rest,
            procs=args.procs,
            gpus=args.gpus,
            accelerate=args.accelerate,
            timeout=args.timeout,
        )
        return int(info["rc"] != 0)
    if args.command == "random-i3d":
        print(write_random_i3d(args.path))
        return 0
    results = summary(args.work, args.out, args.window, args.header)
    print((args.out / "summary.md").read_text())
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
