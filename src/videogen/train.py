"""The trainer: any ``VideoMethod`` on any dataset, one GPU or many (accelerate).

Read top to bottom: build the method (sub-models given by path resolved into its config), set
up the run folder, one optimizer and LR schedule per parameter group the method declares, EMA
and data; resume from the latest checkpoint if there is one; then loop: for each phase the
method asks for this step (default: one, "model") -> ``method(batch, phase=...)`` (its loss) ->
backward -> clip -> that group's step -> EMA, logging every ``log_every`` steps, writing the
method's preview GIFs every ``sample_every`` and checkpointing every ``ckpt_every``. At the end
the EMA weights are exported.

Things worth knowing:
- No host sync per step: losses are summed on the device and read once per log interval. An
  update whose gradients are not finite is skipped on the device (``videogen.update_guard``:
  the weights, Adam's moments and the EMA keep their values; the log row counts it as
  ``skipped``); ``train.skip_nonfinite`` such steps in a row, noticed at a log step or before a
  checkpoint, stop the run. Weights, EMA and optimizer state are checked before every write:
  nothing non-finite is ever saved, and the message names the last good checkpoint, or says
  there is none.
- The data stream (``videogen.batch_stream``) is reseeded from (seed, rank, step) at the start
  and at every mid-run checkpoint; each checkpoint records where the stream stands, so a run
  resumed from any checkpoint draws exactly the batches the uninterrupted run would have.
- Only rank 0 writes files; every rank seeds itself with ``seed + rank``. ``train.batch_size``
  is per process: N processes train on a global batch of N x batch_size. A checkpoint resumes
  on another number of processes with fresh per-rank random states (``rank_rng``).
- Files are staged, fsynced and renamed (``videogen.atomic``); a full disk ends the run with
  one message and the previous checkpoint intact. An unreadable checkpoint is set aside and
  the one before it is used.
- Ctrl-C (or SIGTERM) asks the run to stop (``videogen.stop_signal``): the step in progress
  ends, a checkpoint is saved and the run exits. ``train.max_minutes`` ends the run on time
  instead, with the checkpoint and export of a finished run. ``--fresh`` sets an earlier
  run's files aside (``videogen.run_files``) before it starts.
"""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, TorchDynamoPlugin, set_seed
from torch import Tensor
from tqdm.auto import tqdm

from videogen.atomic import WriteError, append_line, remove_staged, write_error
from videogen.batch_stream import BatchStream
from videogen.checkpoint import (
    NonFiniteError,
    kept_checkpoint,
    load_latest,
    non_finite,
    optimizer_tensors,
    rng_state,
    save_checkpoint,
)
from videogen.compile_options import inductor_options, uses_cuda_graphs
from videogen.config import Config, save_config
from videogen.ema import EMA
from videogen.exit_guard import end_within
from videogen.optim import lr_schedule, make_optimizer
from videogen.rank_rng import restore_rank_rng
from videogen.registry import build_method, method_class
from videogen.run_files import set_aside_previous_run
from videogen.run_outputs import export, pending_snapshots, write_preview, write_snapshot
from videogen.stop_signal import StopSignal
from videogen.train_errors import TrainingError, non_finite_stop
from videogen.update_guard import UpdateGuard, grad_norm

# --------------------------------------------------------------------------- small pieces


def resolve_mixed_precision(setting: str) -> str:
    """``auto`` is bf16 on a GPU that has it, else full precision."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


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
    extra = method_class(cfg.method).inductor_config
    options = inductor_options(t.compile_mode, channels_last=t.channels_last, extra=extra)
    return TorchDynamoPlugin(backend="inductor", options=options)


# --------------------------------------------------------------------------- the loop


def train(
    cfg: Config,
    *,
    out: str | Path | None = None,
    resume: bool = True,
    dataset: Iterable | None = None,
    progress: bool = True,
    exit_grace: float | None = None,
) -> Path:
    """Train ``cfg`` and return the run folder (``cfg.train.out`` unless ``out`` is given).

    With ``resume`` a run folder that holds a checkpoint continues from it. ``dataset``
    replaces the configured data (any dataset of uint8 ``(T, H, W, C)`` clips).
    ``exit_grace``: with several processes, once every rank has reached the end of a finished
    run, this process ends itself (status 0) if it is still alive ``exit_grace`` s later
    (``videogen.exit_guard``: torch's teardown now and then blocks); ``None``, the default,
    leaves the process alone. ``videogen train`` gives 60.
    """
    run_dir = Path(out if out is not None else cfg.train.out)
    with StopSignal() as stop:
        try:
            return _train(cfg, run_dir, resume, dataset, progress, stop, exit_grace)
        except NonFiniteError as err:  # an export or snapshot of non-finite weights
            raise non_finite_stop(str(err), run_dir) from err
        except WriteError as err:
            raise TrainingError(f"{err}. {kept_checkpoint(run_dir)}") from err
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # a full disk met outside the checkpoint writers (config, TensorBoard events)
            where = Path(err.filename) if err.filename else run_dir
            raise TrainingError(f"{write_error(where, err)}. {kept_checkpoint(run_dir)}") from err


def _train(
    cfg: Config,
    run_dir: Path,
    resume: bool,
    dataset: Iterable | None,
    progress: bool,
    stop: StopSignal,
    exit_grace: float | None,
) -> Path:
    t = cfg.train
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
        if not resume:
            aside = set_aside_previous_run(run_dir)
            if aside is not None:
                acc.print(f"--fresh: the earlier run's files are set aside in {aside}")
        for stale in remove_staged(run_dir / "ckpt"):
            acc.print(f"removed {stale}: a checkpoint whose writing was cut off")
        save_config(cfg, run_dir / "config.yaml")
        acc.init_trackers("tb")
    acc.wait_for_everyone()  # the run folder is settled before any rank reads checkpoints

    if t.channels_last:
        set_memory_format(method)
    groups = method.param_groups()
    optimizers = {name: make_optimizer(group, cfg) for name, group in groups.items()}
    schedulers = {name: lr_schedule(opt, t) for name, opt in optimizers.items()}
    averaged = [p for g in groups.values() if g.ema for p in g.params]
    ema = EMA(method, t.ema_decay, t.ema_warmup, averaged) if t.ema_decay else None

    step = 0
    rank = acc.process_index
    stream_state = None
    loaded = None
    if resume:
        targets = {"model": method, "optimizers": optimizers, "schedulers": schedulers}
        loaded = load_latest(run_dir, acc.print, set_aside=main, **targets)
    if loaded is not None:
        ckpt, state = loaded
        step = state["step"]
        if ema is not None and state["ema"] is not None:
            ema.load_state_dict(state["ema"])
        rngs = state["rng"]
        note = restore_rank_rng(
            rngs,
            rank=rank,
            world=acc.num_processes,
            seed=t.seed,
            step=step,
            batch_size=(state["batch_size"], t.batch_size),
        )
        if note is None:  # the same processes: each goes on with its own stream position
            stream_state = rngs[rank].get("stream")
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
    own_data = plain.setup_training()  # e.g. PVDM's LPIPS weights and latent cache
    if dataset is None:
        dataset = own_data
    batches = BatchStream(cfg, rank, step, dataset=dataset, state=stream_state)
    if batches.note:
        acc.print(batches.note)
    log_file = run_dir / "metrics.jsonl"

    def checkpoint(at: int, stream: dict | None = None) -> None:
        # every rank checks (weights, EMA and optimizer state agree across ranks), so all
        # stop together; the first non-finite tensor is never written as a good checkpoint
        named = [(f"weights {k}", v) for k, v in plain.state_dict().items()]
        named += [(f"ema {k}", v) for k, v in (ema.state_dict() or {}).items()] if ema else []
        bad_names = non_finite(named + optimizer_tensors(optimizers))
        if bad_names:
            raise non_finite_stop(f"{NonFiniteError(bad_names)} at step {at}", run_dir)
        mine = {**rng_state(), "stream": stream if stream is not None else batches.state()}
        rngs = acc.gather_for_metrics([mine], use_gather_object=True)
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

    # one process reads the stop flag every step; several agree on it at log steps
    alone = acc.num_processes == 1
    stop_voted = False
    # each logged value is the mean of its finite values over the interval
    sums: dict[str, Tensor] = {}
    counts: dict[str, Tensor] = {}
    guard = UpdateGuard(t.skip_nonfinite, acc.device)
    scaled = acc.scaler is not None  # fp16: the GradScaler skips overflowed steps itself
    bar = tqdm(
        total=t.steps,
        initial=step,
        disable=not (progress and main),
        desc="train",
        dynamic_ncols=True,
    )
    last_log = started = time.perf_counter()
    last_log_step = step
    snapshots = pending_snapshots(run_dir, t.snapshot_minutes)
    graphed = uses_cuda_graphs(plugin.options)
    model.train()
    step_stream = batches.state()
    try:
        while step < t.steps and not (stop_voted or (alone and stop.requested)):
            step_stream = batches.state()  # where a stop inside this step resumes
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
                        (guard, scaled),
                    )
                    for k, v in out.items():
                        if torch.is_tensor(v) and v.dim() == 0:
                            key = f"{phase}/{k}" if len(group_names) > 1 else k
                            v = v.detach().float()
                            finite = torch.isfinite(v)
                            sums[key] = sums.get(key, 0) + torch.where(finite, v, 0.0)
                            counts[key] = counts.get(key, 0) + finite.float()
            guard.end_step()
            if ema is not None:
                ema.update(plain, step)
            step += 1
            bar.update(1)

            # one process reads the clock every step, so a slow model's snapshots and time limit
            # come on time; several ranks agree on the clock at log steps only (a collective)
            now = time.perf_counter()
            out_of_time = t.max_minutes is not None and now - started > 60 * t.max_minutes
            snapshot_due = bool(snapshots) and (now - started) / 60 >= snapshots[0]
            if (
                step % t.log_every == 0
                or step == t.steps
                or (alone and (out_of_time or snapshot_due))
            ):
                # one collective and one host sync per log interval: losses averaged over
                # ranks, and non-finite values that must stop the run on any rank stop every rank
                names = sorted(sums)
                flags = [guard.bad.float(), guard.take_skipped()]
                flags.append(torch.tensor(float(out_of_time), device=acc.device))
                flags.append(torch.tensor(float(stop.requested), device=acc.device))
                values = [sums[k] for k in names] + [counts[k] for k in names] + flags
                values = acc.reduce(torch.stack(values), "mean").tolist()  # the one host sync
                *values, must_stop, skipped, time_up, stop_vote = values
                if must_stop > 0:
                    raise non_finite_stop(guard.reason(step), run_dir)
                stop_voted = stop_vote > 0
                totals, finite = values[: len(names)], values[len(names) :]
                # a value non-finite all interval long is logged as null
                record = {k: v / n if n else None for k, v, n in zip(names, totals, finite)}
                if skipped:
                    record["skipped"] = round(skipped)
                    acc.print(
                        f"\nskipped {round(skipped)} update(s) with non-finite gradients "
                        f"before step {step}; train.skip_nonfinite={t.skip_nonfinite} in a row "
                        "stop the run"
                    )
                minutes = (now - started) / 60
                record.update(
                    step=step,
                    lr=schedulers[group_names[0]].get_last_lr()[0],
                    steps_per_s=(step - last_log_step) / max(now - last_log, 1e-9),
                    minutes=minutes,
                )
                last_log, last_log_step, sums, counts = now, step, {}, {}
                acc.log(
                    {k: v for k, v in record.items() if k != "step" and v is not None}, step=step
                )
                if main:
                    append_line(log_file, json.dumps(record))
                    shown = record.get("loss", record.get(f"{group_names[0]}/loss"))
                    bar.set_postfix(loss="n/a" if shown is None else f"{shown:.4f}")
                    while snapshots and minutes >= snapshots[0]:
                        write_snapshot(plain, ema, run_dir, snapshots.pop(0), step, minutes)
                if time_up > 0:
                    acc.print(f"\ntrain.max_minutes={t.max_minutes} reached at step {step}")
                    break
            if t.sample_every and step % t.sample_every == 0 and main:
                write_preview(plain, ema, cfg, run_dir / "samples" / f"step-{step:07d}.gif")
            if t.ckpt_every and step % t.ckpt_every == 0 and step < t.steps:
                if acc.reduce(guard.bad.float(), reduction="sum").item() > 0:
                    raise non_finite_stop(guard.reason(step), run_dir)
                batches.new_segment(step)  # the checkpoint records the new segment's start
                checkpoint(step)
        if step < t.steps and (stop_voted or (alone and stop.requested)):
            batches.close()  # the workers are joined before anything is written
            bar.close()
            if acc.reduce(guard.bad.float(), reduction="sum").item() > 0:
                raise non_finite_stop(guard.reason(step), run_dir)
            acc.print(f"\n{stop.name or 'stop'} received: saving a checkpoint at step {step}")
            checkpoint(step)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        # raised inside a step (a second signal, or the code itself): the last completed
        # step is saved, with the stream where that step began; the flag path above has
        # saved already
        batches.close()
        bar.close()
        if not stop.requested and not guard.bad.item():
            acc.print(f"\ninterrupted at step {step}: saving a checkpoint")
            checkpoint(step, step_stream)
        acc.end_training()
        raise
    finally:
        batches.close()
        bar.close()

    guard.end_of_run()
    if acc.reduce(guard.bad.float(), reduction="sum").item() > 0:
        raise non_finite_stop(guard.reason(step), run_dir)
    if t.ckpt_every and step % t.ckpt_every == 0:
        # a run that goes on from here starts the segment of this step, as one that never
        # stopped does
        batches.new_segment(step)
    checkpoint(step)
    if main:
        export(plain, ema, run_dir / "export")
    # every rank tears the process group down together (destroying it is collective: NCCL's
    # communicators abort together), not while rank 0 is still exporting
    acc.wait_for_everyone()
    if exit_grace is not None and acc.num_processes > 1:
        end_within(exit_grace, f"rank {acc.process_index} of a finished run")
    acc.end_training()
    return run_dir


def train_phase(
    acc: Accelerator,
    model: torch.nn.Module,
    batch: tuple[str, Tensor | None, dict[str, Tensor]],
    params: list[torch.nn.Parameter],
    optimizers: dict[str, torch.optim.Optimizer],
    scheduler: Any,
    grad_clip: float | None,
    guarded: tuple[UpdateGuard, bool],
) -> dict[str, Tensor]:
    """One micro-batch ``(phase, video, extra)``: the method's loss for ``phase`` (through the
    prepared module, so DDP, autocast and compile apply), backward, and at the accumulation
    boundary clipping and the step of that phase's group, skipped if the gradients are not
    finite (``guarded``: the guard, and whether fp16's GradScaler does that instead). Every
    gradient is cleared after the step: a phase's loss may reach another group's parameters
    (a generator loss through the discriminator), and the next phase must not see those
    gradients."""
    phase, video, extra = batch
    guard, scaled = guarded
    with acc.accumulate(model):
        out = model(video, phase=phase, **extra)
        guard.saw_loss(out["loss"])
        acc.backward(out["loss"])
        if acc.sync_gradients:
            if grad_clip is not None:
                norm = out["grad_norm"] = acc.clip_grad_norm_(params, grad_clip)
            else:
                norm = grad_norm(params)
            guard.step(optimizers[phase], norm, scaled)
        scheduler.step()
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
    return out


def to_model_input(clips: Tensor, device: torch.device) -> Tensor:
    """uint8 ``(B, T, H, W, C)`` -> float ``(B, T, C, H, W)`` in [-1, 1] on ``device``."""
    from videogen.data import to_model

    return to_model(clips.to(device, non_blocking=True))
