"""The trainer: any ``VideoMethod`` on any dataset, one GPU or many (accelerate).

Read top to bottom: set up the run folder, the method, the optimizer, EMA and data; resume from
the latest checkpoint if there is one; then loop: batch -> ``method(batch)`` (its loss) ->
backward -> clip -> step -> EMA, logging every ``log_every`` steps, sampling preview GIFs every
``sample_every`` and checkpointing every ``ckpt_every``. At the end the EMA weights are exported.

Things worth knowing:
- No host sync per step: losses are summed on the device and read once per log interval; a
  non-finite loss is noticed then (and before every checkpoint), and the run stops with the
  last good checkpoint kept.
- The training stream is reseeded from (seed, rank, step) at the start and after every
  checkpoint, so a resumed run draws exactly the batches the uninterrupted run would have.
- Only rank 0 writes files; every rank seeds itself with ``seed + rank``.
- Ctrl-C (or SIGTERM) saves a checkpoint before exiting; ``train.max_minutes`` ends the run
  on time instead, with the checkpoint and export of a finished run.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, TorchDynamoPlugin, set_seed
from torch import Tensor
from tqdm.auto import tqdm

from videogen.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    save_pretrained,
    set_rng_state,
)
from videogen.compile_options import inductor_options, uses_cuda_graphs
from videogen.config import Config, save_config
from videogen.methods import build_method, method_class
from videogen.methods.base import VideoMethod


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, bad data); the message says why."""


# --------------------------------------------------------------------------- small pieces


class EMA:
    """Exponential moving average of the trainable parameters: ``s <- d s + (1 - d) p``.

    The average starts at the weights after the first optimizer step, not at construction:
    data-dependent initialisation (VideoFlow's actnorm) happens in the first forward pass, and
    an average that began before it would carry the uninitialised values.
    """

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = False) -> None:
        self.decay = decay
        self.warmup = warmup
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.shadow: list[Tensor] | None = None

    def decay_at(self, step: int) -> float:
        """The decay of update ``step`` (0-based); with warm-up ``(1 + n) / (10 + n)`` caps it,
        so the average of a short run is not dominated by its first weights."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        params = dict(model.named_parameters())
        current = [params[n].detach().float() for n in self.names]
        if self.shadow is None:
            self.shadow = [p.clone() for p in current]
        else:
            torch._foreach_lerp_(self.shadow, current, 1.0 - self.decay_at(step))

    def state_dict(self) -> dict[str, Tensor] | None:
        return None if self.shadow is None else dict(zip(self.names, self.shadow))

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.shadow = [state[name].float().clone() for name in self.names]


def resolve_mixed_precision(setting: str) -> str:
    """``auto`` is bf16 on a GPU that has it, else full precision."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def make_optimizer(method: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    t = cfg.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    params = [p for p in method.parameters() if p.requires_grad]
    kwargs: dict[str, Any] = {
        "lr": t.lr,
        "betas": t.betas,
        "eps": t.eps,
        "weight_decay": t.weight_decay,
    }
    if torch.cuda.is_available():
        kwargs["fused"] = True
    return cls(params, **kwargs)


def warmup_schedule(optimizer: torch.optim.Optimizer, warmup: int):
    """Linear warm-up from 0 over ``warmup`` steps, then constant (as MCVD and RaMViD train)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    )


def set_memory_format(model: torch.nn.Module) -> None:
    """Channels-last for 4D weights, channels-last-3d for 5D weights."""
    for p in model.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
        elif p.dim() == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)


def dynamo_plugin(cfg: Config) -> TorchDynamoPlugin:
    """How accelerate compiles the training module: inductor in ``train.compile_mode``."""
    t = cfg.train
    if not t.compile:
        return TorchDynamoPlugin(backend="no")
    options = inductor_options(t.compile_mode, channels_last=t.channels_last)
    return TorchDynamoPlugin(backend="inductor", options=options)


def split_batch(batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
    """A loader batch is uint8 clips ``(B, T, H, W, C)``, or ``(clips, labels)``."""
    if isinstance(batch, (tuple, list)):
        return batch[0], {"labels": batch[1]}
    if isinstance(batch, dict):
        return batch["video"], {k: v for k, v in batch.items() if k != "video"}
    return batch, {}


def data_stream(
    cfg: Config, seed: int, dataset: Iterable | None = None
) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
    """Endless batches of uint8 clips from the configured dataset (or ``dataset``)."""
    from videogen.data import build_dataset

    ds = dataset if dataset is not None else build_dataset(cfg.data, "train", seed=seed)
    is_iterable = isinstance(ds, torch.utils.data.IterableDataset)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        ds,
        worker_init_fn=_ignore_stop_signals,
        batch_size=cfg.train.batch_size,
        shuffle=not is_iterable,
        generator=None if is_iterable else generator,
        num_workers=cfg.data.num_workers,
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield split_batch(batch)
        if empty:
            raise TrainingError(
                f"dataset {cfg.data.name!r} gave no full batch of {cfg.train.batch_size} clips"
            )


def _ignore_stop_signals(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's signature
    # Ctrl-C and `timeout`/`kill` reach the whole process group. Workers ignore them and stop
    # when the main process shuts the loader down, so the main process can save a checkpoint
    # instead of dying of "DataLoader worker killed by signal".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stream_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**31 - 1)


# --------------------------------------------------------------------------- the loop


def train(
    cfg: Config,
    *,
    out: str | Path | None = None,
    resume: bool = True,
    dataset: Iterable | None = None,
    progress: bool = True,
) -> Path:
    """Train ``cfg`` and return the run folder (``cfg.train.out`` unless ``out`` is given).

    With ``resume`` a run folder that holds a checkpoint continues from it. ``dataset``
    replaces the configured data (any dataset of uint8 ``(T, H, W, C)`` clips).
    """
    t = cfg.train
    run_dir = Path(out if out is not None else t.out)
    method_cls = method_class(cfg.method)
    plugin = dynamo_plugin(cfg)
    acc = Accelerator(
        cpu=not torch.cuda.is_available(),  # lets `torchrun` / `accelerate launch` run on CPUs
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=method_cls.ddp_find_unused)
        ],
        mixed_precision=resolve_mixed_precision(t.mixed_precision),
        gradient_accumulation_steps=t.grad_accum,
        log_with="tensorboard",
        project_dir=str(run_dir),
        dynamo_plugin=plugin,
    )
    main = acc.is_main_process
    set_seed(t.seed, device_specific=True)  # seed + rank on every process
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        acc.init_trackers("tb")

    method = build_method(cfg)
    if t.channels_last:
        set_memory_format(method)
    optimizer = make_optimizer(method, cfg)
    scheduler = warmup_schedule(optimizer, t.warmup)
    ema = EMA(method, t.ema_decay, t.ema_warmup) if t.ema_decay else None

    step = 0
    ckpt = latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt, model=method, optimizer=optimizer, scheduler=scheduler)
        step = state["step"]
        if ema is not None and state["ema"] is not None:
            ema.load_state_dict(state["ema"])
        rngs = state["rng"]
        set_rng_state(rngs[min(acc.process_index, len(rngs) - 1)])
        acc.print(f"resumed from {ckpt} at step {step}")

    model, optimizer, scheduler = acc.prepare(method, optimizer, scheduler)
    # the module itself, without DDP or torch.compile wrappers (whose parameter names carry a
    # prefix): what the EMA, checkpoints, previews and the export read
    plain = acc.unwrap_model(model, keep_torch_compile=False)
    if ema is not None and ema.shadow is not None:
        ema.shadow = [s.to(acc.device) for s in ema.shadow]
    rank = acc.process_index
    batches = data_stream(cfg, stream_seed(t.seed, rank, step), dataset)
    log_file = run_dir / "metrics.jsonl"

    def checkpoint(at: int) -> None:
        rngs = acc.gather_for_metrics([rng_state()], use_gather_object=True)
        if main:
            save_checkpoint(
                run_dir / "ckpt",
                at,
                model=plain,
                ema=ema.state_dict() if ema else None,
                optimizer=optimizer,
                scheduler=scheduler,
                rank_rng=rngs,
            )

    interrupted = False

    def on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm) if main else None
    sums: dict[str, Tensor] = {}
    count = 0
    bad = torch.zeros((), dtype=torch.bool, device=acc.device)
    bar = tqdm(
        total=t.steps,
        initial=step,
        disable=not (progress and main),
        desc="train",
        dynamic_ncols=True,
    )
    last_log = started = time.perf_counter()
    snapshots = pending_snapshots(run_dir, t.snapshot_minutes)
    graphed = uses_cuda_graphs(plugin.options)
    model.train()
    try:
        while step < t.steps:
            for _ in range(t.grad_accum):
                if graphed:
                    # the previous pass's outputs are consumed: its graph memory may be reused
                    torch.compiler.cudagraph_mark_step_begin()
                clips, extra = next(batches)
                video = to_model_input(clips, acc.device)
                extra = {k: v.to(acc.device) for k, v in extra.items()}
                with acc.accumulate(model):
                    out = model(video, **extra)
                    loss = out["loss"]
                    acc.backward(loss)
                    if t.grad_clip is not None and acc.sync_gradients:
                        out["grad_norm"] = acc.clip_grad_norm_(model.parameters(), t.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                bad |= ~torch.isfinite(loss.detach())
                for k, v in out.items():
                    if torch.is_tensor(v) and v.dim() == 0:
                        sums[k] = sums.get(k, 0) + v.detach().float()
                count += 1
            if ema is not None:
                ema.update(plain, step)
            step += 1
            bar.update(1)

            if step % t.log_every == 0 or step == t.steps:
                # one collective and one host sync per log interval: losses averaged over
                # ranks, and a non-finite loss on any rank stops every rank
                names = sorted(sums)
                now = time.perf_counter()
                out_of_time = t.max_minutes is not None and now - started > 60 * t.max_minutes
                flags = [bad.float(), torch.tensor(float(out_of_time), device=acc.device)]
                values = acc.reduce(torch.stack([sums[k] for k in names] + flags), "mean")
                *losses, non_finite, time_up = values.tolist()  # the one host sync
                if non_finite > 0:
                    raise TrainingError(
                        f"non-finite loss before step {step}; the run stopped and the last good "
                        f"checkpoint in {run_dir / 'ckpt'} is kept. Lower train.lr, raise "
                        "train.warmup or set train.grad_clip."
                    )
                record = {k: v / count for k, v in zip(names, losses)}
                minutes = (now - started) / 60
                record.update(
                    step=step,
                    lr=scheduler.get_last_lr()[0],
                    steps_per_s=t.log_every / max(now - last_log, 1e-9),
                    minutes=minutes,
                )
                last_log, sums, count = now, {}, 0
                acc.log({k: v for k, v in record.items() if k != "step"}, step=step)
                if main:
                    with log_file.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                    while snapshots and minutes >= snapshots[0]:
                        write_snapshot(plain, ema, run_dir, snapshots.pop(0), step, minutes)
                if time_up > 0:
                    acc.print(f"\ntrain.max_minutes={t.max_minutes} reached at step {step}")
                    break
            if t.sample_every and step % t.sample_every == 0 and main:
                write_preview(plain, ema, cfg, run_dir / "samples" / f"step-{step:07d}.gif")
            if t.ckpt_every and step % t.ckpt_every == 0 and step < t.steps:
                if acc.reduce(bad.float(), reduction="sum").item() > 0:
                    raise TrainingError(f"non-finite loss before step {step}; checkpoint skipped")
                checkpoint(step)
                batches = data_stream(cfg, stream_seed(t.seed, rank, step), dataset)
    except KeyboardInterrupt:
        interrupted = True
        bar.close()
        batches.close()  # shut the loader's workers down before writing
        if not bad.item():
            acc.print(f"\ninterrupted at step {step}: saving a checkpoint")
            checkpoint(step)
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

    if not interrupted:
        checkpoint(step)
        if main:
            export(plain, ema, run_dir / "export")
    acc.end_training()
    if interrupted:
        raise KeyboardInterrupt
    return run_dir


def pending_snapshots(run_dir: Path, minutes: list[float]) -> list[float]:
    """The snapshot times of ``train.snapshot_minutes`` not yet written, in order (a resumed
    run keeps the snapshots it has; its clock restarts at zero)."""
    return [m for m in sorted(minutes) if not (run_dir / "snapshots" / f"{m:g}min").is_dir()]


def write_snapshot(
    method: VideoMethod, ema: EMA | None, run_dir: Path, due: float, step: int, minutes: float
) -> Path:
    """Export the EMA weights to ``<run>/snapshots/<due>min/`` with ``snapshot.json`` (the step
    and the minutes actually trained when it was taken)."""
    path = export(method, ema, run_dir / "snapshots" / f"{due:g}min")
    info = {"due_minutes": due, "minutes": minutes, "step": step}
    (path / "snapshot.json").write_text(json.dumps(info) + "\n")
    return path


def to_model_input(clips: Tensor, device: torch.device) -> Tensor:
    """uint8 ``(B, T, H, W, C)`` -> float ``(B, T, C, H, W)`` in [-1, 1] on ``device``."""
    from videogen.data import to_model

    return to_model(clips.to(device, non_blocking=True))


@contextlib.contextmanager
def ema_weights(method: torch.nn.Module, ema: EMA | None):
    """Temporarily swap the EMA weights into ``method``."""
    if ema is None or ema.shadow is None:
        yield method
        return
    params = dict(method.named_parameters())
    saved = [params[n].detach().clone() for n in ema.names]
    with torch.no_grad():
        for n, s in zip(ema.names, ema.shadow):
            params[n].copy_(s)
    try:
        yield method
    finally:
        with torch.no_grad():
            for n, s in zip(ema.names, saved):
                params[n].copy_(s)


def export(method: VideoMethod, ema: EMA | None, path: Path) -> Path:
    return save_pretrained(method, path, ema=ema.state_dict() if ema is not None else None)


@torch.no_grad()
def write_preview(
    method: VideoMethod, ema: EMA | None, cfg: Config, path: Path, count: int = 4
) -> None:
    """Sample the method's main task on the first test clips and write a GIF grid."""
    from videogen.data import build_dataset, to_model
    from videogen.io import write_grid

    test = build_dataset(cfg.data, "test", seed=cfg.train.seed, length=count)
    clips = torch.stack([c if torch.is_tensor(c) else c[0] for c in test][:count])
    video = to_model(clips.to(method.device))
    known = method.default_known(video.shape[0])
    was_training = method.training
    method.eval()
    with ema_weights(method, ema):
        gen = torch.Generator(device=method.device).manual_seed(cfg.train.seed)
        sample = method.generate(video, known, generator=gen)
    method.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_grid(path, [video, sample], known=known[0].cpu())
