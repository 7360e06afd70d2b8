"""The trainer: any ``VideoMethod`` on any dataset, one GPU or many (accelerate).

Read top to bottom: build the method (sub-models given by path resolved into its config), set
up the run folder, one optimizer and LR schedule per parameter group the method declares, EMA
and data; resume from the latest checkpoint if there is one; then loop: for each phase the
method asks for this step (default: one, "model") -> ``method(batch, phase=...)`` (its loss) ->
backward -> clip -> that group's step -> EMA, logging every ``log_every`` steps, writing the
method's preview GIFs every ``sample_every`` and checkpointing every ``ckpt_every``. At the end
the EMA weights are exported.

Things worth knowing:
- No host sync per step: losses are summed on the device and read once per log interval; a
  non-finite loss is noticed then (and before every checkpoint), and the run stops with the
  last good checkpoint kept.
- The training stream is reseeded from (seed, rank, step) at the start and after every
  checkpoint, so a resumed run draws exactly the batches the uninterrupted run would have.
- Only rank 0 writes files; every rank seeds itself with ``seed + rank``. ``train.batch_size``
  is per process: N processes train on a global batch of N x batch_size. A checkpoint resumes
  on another number of processes with fresh per-rank random states (``restore_rank_rng``).
- Ctrl-C (or SIGTERM) saves a checkpoint before exiting; ``train.max_minutes`` ends the run
  on time instead, with the checkpoint and export of a finished run.
"""

from __future__ import annotations

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
from videogen.ema import EMA, ema_weights
from videogen.methods.base import ParamGroup, VideoMethod
from videogen.registry import build_method, method_class


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, bad data); the message says why."""


# --------------------------------------------------------------------------- small pieces


def resolve_mixed_precision(setting: str) -> str:
    """``auto`` is bf16 on a GPU that has it, else full precision."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def make_optimizer(group: ParamGroup, cfg: Config) -> torch.optim.Optimizer:
    """Adam(W) over one parameter group; the group's settings override the ``train`` section."""
    t = cfg.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    kwargs: dict[str, Any] = {
        "lr": t.lr if group.lr is None else group.lr,
        "betas": t.betas if group.betas is None else group.betas,
        "eps": t.eps,
        "weight_decay": t.weight_decay if group.weight_decay is None else group.weight_decay,
    }
    if torch.cuda.is_available():
        kwargs["fused"] = True
    return cls(group.params, **kwargs)


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


def split_batch(batch: Any) -> tuple[Tensor | None, dict[str, Tensor]]:
    """A loader batch is uint8 clips ``(B, T, H, W, C)``, ``(clips, labels)``, or a dict with
    ``video`` and other inputs of the loss (no ``video``: a method's own training data, such
    as cached latents)."""
    if isinstance(batch, (tuple, list)):
        return batch[0], {"labels": batch[1]}
    if isinstance(batch, dict):
        return batch.get("video"), {k: v for k, v in batch.items() if k != "video"}
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


def restore_rank_rng(
    saved: list[dict[str, Any]],
    *,
    rank: int,
    world: int,
    seed: int,
    step: int,
    batch_size: tuple[int | None, int],
) -> str | None:
    """Restore this rank's RNG state from a checkpoint's per-rank states ``saved``.

    With as many processes as wrote the checkpoint each rank takes its own state back (the run
    continues exactly). With another number no saved state belongs to this rank: handing one
    rank's state to several would give them the same noise, timesteps and masks, so every
    rank is seeded afresh from ``(seed, rank, step)`` instead, and the returned message says so
    and what became of the global batch (``batch_size`` = (saved, now), per process; the saved
    one is None in older checkpoints). Returns None when nothing changed."""
    if len(saved) == world:
        set_rng_state(saved[rank])
        return None
    # a seed apart from the data stream's (seeded with stream_seed itself)
    set_seed((stream_seed(seed, rank, step) + 104_729) % (2**31 - 1))
    then, now = batch_size
    note = (
        f"the checkpoint was written by {len(saved)} processes and this run has {world}; "
        f"each rank's random state is reseeded from (train.seed, rank, step), so the run goes "
        "on with independent noise per rank but does not repeat an uninterrupted run's draws"
    )
    if then is None:
        return note + f"; the global batch is now {world} x train.batch_size={now}"
    old_global, new_global = len(saved) * then, world * now
    if old_global == new_global:
        return note + f"; the global batch stays {new_global} ({world} x {now})"
    keep = f"train.batch_size={old_global // world}" if old_global % world == 0 else None
    return note + (
        f"; the global batch changes from {old_global} ({len(saved)} x {then}) to "
        f"{new_global} ({world} x {now})" + (f": set {keep} to keep it" if keep else "")
    )


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
    plugin = dynamo_plugin(cfg)
    acc = Accelerator(
        cpu=not torch.cuda.is_available(),  # lets `torchrun` / `accelerate launch` run on CPUs
        kwargs_handlers=[
            DistributedDataParallelKwargs(
                find_unused_parameters=method_class(cfg.method).ddp_find_unused
            )
        ],
        mixed_precision=resolve_mixed_precision(t.mixed_precision),
        gradient_accumulation_steps=t.grad_accum,
        log_with="tensorboard",
        project_dir=str(run_dir),
        dynamo_plugin=plugin,
    )
    main = acc.is_main_process
    set_seed(t.seed, device_specific=True)  # seed + rank on every process
    method = build_method(cfg)
    cfg = method.cfg  # sub-models given by path resolved: what the run folder records
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        acc.init_trackers("tb")

    if t.channels_last:
        set_memory_format(method)
    groups = method.param_groups()
    optimizers = {name: make_optimizer(group, cfg) for name, group in groups.items()}
    schedulers = {name: warmup_schedule(opt, t.warmup) for name, opt in optimizers.items()}
    averaged = [p for g in groups.values() if g.ema for p in g.params]
    ema = EMA(method, t.ema_decay, t.ema_warmup, averaged) if t.ema_decay else None

    step = 0
    ckpt = latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt, model=method, optimizers=optimizers, schedulers=schedulers)
        step = state["step"]
        if ema is not None and state["ema"] is not None:
            ema.load_state_dict(state["ema"])
        note = restore_rank_rng(
            state["rng"],
            rank=acc.process_index,
            world=acc.num_processes,
            seed=t.seed,
            step=step,
            batch_size=(state["batch_size"], t.batch_size),
        )
        acc.print(f"resumed from {ckpt} at step {step}" + (f": {note}" if note else ""))

    group_names = list(optimizers)
    model, *prepared = acc.prepare(method, *optimizers.values(), *schedulers.values())
    optimizers = dict(zip(group_names, prepared[: len(group_names)]))
    schedulers = dict(zip(group_names, prepared[len(group_names) :]))
    # with several groups each phase logs under "phase/"; values are averaged over the
    # micro-batches of the step's first phase
    # the module itself, without DDP or torch.compile wrappers (whose parameter names carry a
    # prefix): what the EMA, checkpoints, previews and the export read
    plain = acc.unwrap_model(model, keep_torch_compile=False)
    if ema is not None and ema.shadow is not None:
        ema.shadow = [s.to(acc.device) for s in ema.shadow]
    rank = acc.process_index
    own_data = plain.setup_training()  # e.g. PVDM's LPIPS weights and latent cache
    if dataset is None:
        dataset = own_data
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
                optimizers=optimizers,
                schedulers=schedulers,
                rank_rng=rngs,
                batch_size=t.batch_size,
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
            micro: list[tuple[Tensor | None, dict[str, Tensor]]] = []  # this step's batches
            for i, phase in enumerate(plain.training_phases(step)):
                for j in range(t.grad_accum):
                    if graphed:
                        # the previous pass's outputs are consumed: its graph memory may be reused
                        torch.compiler.cudagraph_mark_step_begin()
                    if i == 0:  # later phases of the step see the same batches
                        clips, extra = next(batches)
                        extra = {k: v.to(acc.device) for k, v in extra.items()}
                        video = None if clips is None else to_model_input(clips, acc.device)
                        micro.append((video, extra))
                    video, extra = micro[j]
                    out = train_phase(
                        acc,
                        model,
                        (phase, video, extra),
                        groups[phase].params,
                        optimizers,
                        schedulers[phase],
                        t.grad_clip if groups[phase].grad_clip is None else groups[phase].grad_clip,
                    )
                    bad |= ~torch.isfinite(out["loss"].detach())
                    for k, v in out.items():
                        if torch.is_tensor(v) and v.dim() == 0:
                            key = f"{phase}/{k}" if len(group_names) > 1 else k
                            sums[key] = sums.get(key, 0) + v.detach().float()
                    count += i == 0
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
                    lr=schedulers[group_names[0]].get_last_lr()[0],
                    steps_per_s=t.log_every / max(now - last_log, 1e-9),
                    minutes=minutes,
                )
                last_log, sums, count = now, {}, 0
                acc.log({k: v for k, v in record.items() if k != "step"}, step=step)
                if main:
                    with log_file.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                    bar.set_postfix(
                        loss=f"{record.get('loss', record.get(f'{group_names[0]}/loss')):.4f}"
                    )
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
    # every rank tears the process group down together (destroying it is collective: NCCL's
    # communicators abort together), not while rank 0 is still exporting
    acc.wait_for_everyone()
    acc.end_training()
    if interrupted:
        raise KeyboardInterrupt
    return run_dir


def train_phase(
    acc: Accelerator,
    model: torch.nn.Module,
    batch: tuple[str, Tensor | None, dict[str, Tensor]],
    params: list[torch.nn.Parameter],
    optimizers: dict[str, torch.optim.Optimizer],
    scheduler: Any,
    grad_clip: float | None,
) -> dict[str, Tensor]:
    """One micro-batch ``(phase, video, extra)``: the method's loss for ``phase`` (through the
    prepared module, so DDP, autocast and compile apply), backward, and at the accumulation
    boundary clipping and the step of that phase's group. Every gradient is cleared after the
    step: a phase's loss may reach another group's parameters (a generator loss through the
    discriminator), and the next phase must not see those gradients."""
    phase, video, extra = batch
    with acc.accumulate(model):
        out = model(video, phase=phase, **extra)
        acc.backward(out["loss"])
        if grad_clip is not None and acc.sync_gradients:
            out["grad_norm"] = acc.clip_grad_norm_(params, grad_clip)
        optimizers[phase].step()
        scheduler.step()
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
    return out


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


def export(method: VideoMethod, ema: EMA | None, path: Path) -> Path:
    return save_pretrained(method, path, ema=ema.state_dict() if ema is not None else None)


@torch.no_grad()
def write_preview(
    method: VideoMethod, ema: EMA | None, cfg: Config, path: Path, count: int = 4
) -> None:
    """Write the method's preview (``VideoMethod.preview``: by default its main task) of the
    first test clips as a GIF grid."""
    from videogen.data import build_dataset, to_model
    from videogen.io import write_grid

    test = build_dataset(cfg.data, "test", seed=cfg.train.seed, length=count)
    clips = torch.stack([c if torch.is_tensor(c) else c[0] for c in test][:count])
    video = to_model(clips.to(method.device))
    was_training = method.training
    method.eval()
    with ema_weights(method, ema):
        gen = torch.Generator(device=method.device).manual_seed(cfg.train.seed)
        rows, known = method.preview(video, gen)
    method.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_grid(path, rows, known=None if known is None else known.cpu())
