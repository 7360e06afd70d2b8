"""The trainer's stream of batches, and where it stands, so a resume at any step continues it.

The stream is cut into segments. One starts at step 0 (or where a run starts without a
position to continue) and one at every mid-run checkpoint step (multiples of
``train.ckpt_every``); segment ``s`` draws from ``stream_seed(seed, rank, s)`` through its
own DataLoader, whose workers live for the whole segment. That is the stream every
uninterrupted run has drawn (its losses are pinned in ``tests/test_pinned_losses.py``).

``state()`` is the position: the segment's start step, the batches drawn in it, and for the
configured datasets (``TrainClips``) where each worker's clip stream stands after its last
batch used (``videogen.data.clips.clip_stream``). A stream built from that state continues
with the very batches the stopped stream would have given next, at the cost of rendering
one chunk per worker. A dataset given to ``train`` directly has no such positions: it is
rebuilt from the segment's seed and the batches already used are drawn again and dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, default_collate, get_worker_info

from videogen.config import Config
from videogen.data.clips import TrainClips, clip_stream
from videogen.data.errors import DatasetError
from videogen.stop_signal import blocked, ignore_in_worker


def stream_seed(seed: int, rank: int, step: int) -> int:
    """The seed of the segment of rank ``rank`` that starts at ``step``."""
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**31 - 1)


def split_batch(batch: Any) -> tuple[Tensor | None, dict[str, Tensor]]:
    """A loader batch is uint8 clips ``(B, T, H, W, C)``, ``(clips, labels)``, or a dict with
    ``video`` and other inputs of the loss (no ``video``: a method's own training data, such
    as cached latents)."""
    if isinstance(batch, (tuple, list)):
        return batch[0], {"labels": batch[1]}
    if isinstance(batch, dict):
        return batch.get("video"), {k: v for k, v in batch.items() if k != "video"}
    return batch, {}


class PositionedBatches(IterableDataset):
    """The batches ``DataLoader(clips, batch_size)`` yields, each with ``(worker, position)``:
    which worker's clip stream it came from and where that stream stands after it.

    The loader hands batches out round robin from worker 0. A segment continued at its batch
    ``first`` starts with what worker ``first % W`` served, so worker ``w`` here serves the
    stream of worker ``(w + first) % W``, from ``positions`` of that worker when given.
    """

    def __init__(
        self,
        clips: TrainClips,
        batch_size: int,
        first: int = 0,
        positions: list[dict | None] | None = None,
    ) -> None:
        self.clips, self.batch_size = clips, batch_size
        self.first, self.positions = first, positions

    def __iter__(self) -> Iterator[tuple[Any, tuple[int, dict]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        served = (worker + self.first) % workers
        start = self.positions[served] if self.positions else None
        stream = clip_stream(self.clips.source, self.clips.seed, served, position=start)
        while True:
            items, where = [], None
            for _ in range(self.batch_size):
                item, where = next(stream)
                items.append(item)
            yield default_collate(items), (served, where)


class BatchStream:
    """Endless ``(clips uint8 (B, T, H, W, C), extra)`` of the configured data (or
    ``dataset``) for rank ``rank``, starting at ``step`` or continuing ``state``."""

    def __init__(
        self,
        cfg: Config,
        rank: int,
        step: int,
        *,
        dataset: Iterable | None = None,
        state: dict | None = None,
    ) -> None:
        from videogen.data import build_source

        self.cfg, self.rank = cfg, rank
        self.workers = cfg.data.num_workers
        self.dataset = dataset
        # the clip source is opened once; each segment streams from it with its own seed
        self.source = build_source(cfg.data, "train") if dataset is None else None
        self.note = ""  # why a given state could not be continued, for the log
        self._iter: LoaderEpochs | None = None
        self.new_segment(step)
        if state is not None:
            self._continue(step, state)

    def _continue(self, step: int, state: dict) -> None:
        positions = state.get("positions")
        if state.get("workers", self.workers) != self.workers:
            self.note = (
                f"data.num_workers is {self.workers}, the checkpoint's stream ran with "
                f"{state['workers']}: the data stream starts anew at step {step}"
            )
            return
        if (positions is None) != (self.source is None):
            self.note = (
                f"the dataset changed since the checkpoint: the stream starts anew at {step}"
            )
            return
        self.segment, self.batches = int(state["segment"]), int(state["batches"])
        if positions is not None:
            self.positions = list(positions)

    def new_segment(self, step: int) -> None:
        """Shut the current loader down; the next batch starts the segment of ``step``."""
        self.close()
        self.segment, self.batches = step, 0
        self.positions: list[dict | None] = [None] * max(1, self.workers)

    def state(self) -> dict:
        """The position to write into a checkpoint (plain ints, strings and lists)."""
        return {
            "segment": self.segment,
            "batches": self.batches,
            "workers": self.workers,
            "positions": None if self.source is None else list(self.positions),
        }

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> tuple[Tensor | None, dict[str, Tensor]]:
        if self._iter is None:
            self._iter = self._start()
        if self.source is None:
            batch = next(self._iter)
        else:
            batch, (worker, where) = next(self._iter)
            self.positions[worker] = where
        self.batches += 1
        return split_batch(batch)

    def close(self) -> None:
        """Stop the loader's workers now (not whenever the garbage collector runs)."""
        if self._iter is not None:
            self._iter.close()
            self._iter = None

    def _start(self) -> LoaderEpochs:
        t, seed = self.cfg.train, stream_seed(self.cfg.train.seed, self.rank, self.segment)
        continuing = self.batches > 0
        # A DataLoader without a generator draws its workers' base seed from the global torch
        # RNG. A new segment does so, as it always has; a continued one must not, since the
        # global RNG was restored from the checkpoint after that draw.
        private = torch.Generator().manual_seed(seed)
        common = {
            "num_workers": self.workers,
            "worker_init_fn": ignore_in_worker,
            "pin_memory": torch.cuda.is_available(),
        }
        if self.source is not None:
            clips = TrainClips(self.source, seed)
            first = self.batches if continuing else 0
            positions = self.positions if continuing else None
            ds = PositionedBatches(clips, t.batch_size, first, positions)
            loader = DataLoader(
                ds, batch_size=None, generator=private if continuing else None, **common
            )
            return LoaderEpochs(loader, self.cfg.data.name, t.batch_size)
        is_iterable = isinstance(self.dataset, torch.utils.data.IterableDataset)
        loader = DataLoader(
            self.dataset,
            batch_size=t.batch_size,
            shuffle=not is_iterable,
            generator=private if (continuing or not is_iterable) else None,
            drop_last=True,
            **common,
        )
        batches = LoaderEpochs(loader, self.cfg.data.name, t.batch_size)
        for _ in range(self.batches):  # replay what the stopped stream had already given
            next(batches)
        return batches


class LoaderEpochs:
    """The batches of ``loader``, epoch after epoch; ``close`` stops its workers."""

    def __init__(self, loader: DataLoader, name: str, batch_size: int) -> None:
        self.loader, self.name, self.batch_size = loader, name, batch_size
        self._it: Iterator | None = None
        self._empty = True

    def __iter__(self) -> LoaderEpochs:
        return self

    def __next__(self) -> Any:
        while True:
            if self._it is None:
                with blocked():  # workers are forked here: see videogen.stop_signal
                    self._it = iter(self.loader)
                self._empty = True
            try:
                batch = next(self._it)
            except StopIteration:
                if self._empty:
                    raise DatasetError(
                        f"dataset {self.name!r} gave no full batch of {self.batch_size} clips"
                    ) from None
                self._it = None
                continue
            self._empty = False
            return batch

    def close(self) -> None:
        it, self._it = self._it, None
        # the multi-process iterator's own shutdown: join the workers now, at a step
        # boundary, rather than in __del__ whenever the last reference goes
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
