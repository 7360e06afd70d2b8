"""Clip sources and the two datasets built on them: a training stream and a fixed test set.

A ``ClipSource`` knows how to make ``uint8 (T, H, W, C)`` clips: random ones for training
(``sample(rng, n)``) and the ``i``-th clip of the fixed test set (``test_clip(i, seed)``).
``TrainClips`` streams random clips forever (an ``IterableDataset``; each DataLoader worker
draws from its own seed), ``TestClips`` is a finite map-style dataset that returns the same
clips on every call and every machine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from videogen.data.errors import DatasetError, SkipLog
from videogen.io import VideoError, match_channels, resize_crop

TEST_STREAM = 0x7E57  # mixed into test-clip seeds so they never coincide with a training stream


def test_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of test clip ``index``: a function of (seed, index) alone."""
    return np.random.default_rng([seed, TEST_STREAM, index])


@dataclass
class ClipShape:
    """What every clip of a dataset looks like: ``frames`` frames, each ``stride`` source
    frames apart, ``size`` x ``size`` pixels, ``channels`` channels."""

    frames: int
    size: int
    channels: int
    stride: int = 1

    def __post_init__(self) -> None:
        if self.frames < 1 or self.size < 1 or self.stride < 1:
            raise DatasetError(
                f"clips need frames >= 1, size >= 1 and stride >= 1, got frames={self.frames}, "
                f"size={self.size}, stride={self.stride}"
            )
        if self.channels not in (1, 3):
            raise DatasetError(f"data.channels must be 1 or 3, got {self.channels}")

    @property
    def span(self) -> int:
        """Source frames one clip covers."""
        return (self.frames - 1) * self.stride + 1

    def fit(self, clip: np.ndarray) -> np.ndarray:
        """Resize/crop ``(T, H, W, C)`` to ``size`` and convert to ``channels``."""
        if clip.shape[1:3] != (self.size, self.size):
            clip = resize_crop(clip, self.size)
        return np.ascontiguousarray(match_channels(clip, self.channels))


class ClipSource(ABC):
    """Makes clips of one ``ClipShape``; ``skips`` records the videos it had to leave out."""

    default_test_length: int = 256

    def __init__(self, shape: ClipShape) -> None:
        self.shape = shape
        self.skips = SkipLog()

    @abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` random training clips, ``uint8 (n, T, H, W, C)``."""

    @abstractmethod
    def test_clip(self, index: int, seed: int) -> np.ndarray:
        """Test clip ``index`` (a function of ``index`` and ``seed`` only), ``(T, H, W, C)``."""


class GeneratedSource(ClipSource):
    """A synthetic source: ``render(rng, n, frames)`` draws whole clips from a generator."""

    chunk = 64  # clips rendered per call while streaming: vectorised work amortises better

    @abstractmethod
    def render(self, rng: np.random.Generator, n: int, frames: int) -> np.ndarray:
        """``uint8 (n, frames, size, size, C)`` at the source frame rate."""

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.render(rng, n, self.shape.span)[:, :: self.shape.stride]

    def test_clip(self, index: int, seed: int) -> np.ndarray:
        return self.render(test_rng(seed, index), 1, self.shape.span)[0, :: self.shape.stride]


@dataclass
class VideoRef:
    """One video of a file-backed source: a name for messages, its frame count and, for
    class-labelled data (UCF-101's classes, say), its class index."""

    name: str
    frames: int
    label: int | None = None


class FileSource(ClipSource):
    """A source over a list of videos on disk. Subclasses implement ``read``.

    Training picks a video uniformly, then a uniform start; test clip ``i`` takes video
    ``i mod N`` and a start drawn from (seed, i), or frame 0 with ``test_start="first"``.
    A video that fails to read is recorded in ``skips`` (one warning) and another is drawn.
    """

    chunk = 1

    def __init__(
        self,
        shape: ClipShape,
        videos: Sequence[VideoRef],
        test_start: str = "random",
        skips: SkipLog | None = None,
    ) -> None:
        super().__init__(shape)
        if skips is not None:
            self.skips = skips  # carries what indexing already left out
        if test_start not in ("random", "first"):
            raise DatasetError(f"option test_start must be 'random' or 'first', got {test_start!r}")
        self.test_start = test_start
        self.videos: list[VideoRef] = []
        for video in videos:
            if video.frames < shape.span:
                self.skips.add(
                    video.name,
                    f"{video.frames} frames, a clip needs {shape.span} "
                    f"({shape.frames} frames at stride {shape.stride})",
                )
            else:
                self.videos.append(video)
        self.default_test_length = len(self.videos)
        self._failed = 0  # videos of self.videos that failed to read

    @abstractmethod
    def read(self, index: int, start: int) -> np.ndarray:
        """``uint8 (T, h, w, c)`` frames ``start, start+stride, ...`` of video ``index``.

        Raises ``VideoError`` (or ``OSError``) when the video cannot be read.
        """

    def require_videos(self, where: str) -> None:
        if not self.videos:
            raise DatasetError(
                f"{where}: no video with at least {self.shape.span} readable frames "
                f"({self.skips.count} skipped)"
            )

    def _try_read(self, index: int, start: int) -> np.ndarray | None:
        video = self.videos[index]
        if video.name in self.skips:
            return None
        try:
            return self.shape.fit(self.read(index, start))
        except (VideoError, OSError) as err:
            self._failed += 1
            self.skips.add(video.name, str(err))
            return None

    def _all_failed(self) -> DatasetError:
        first = self.skips.paths[0]
        return DatasetError(
            f"every video of this dataset failed to read ({self.skips.count} skipped); "
            f"first: {first}: {self.skips.reasons[first]}"
        )

    @property
    def labelled(self) -> bool:
        """Whether the videos carry class labels (then the datasets yield (clip, label))."""
        return any(v.label is not None for v in self.videos)

    def sample_labelled(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random clips and the class label of the video each came from."""
        clips, labels = [], []
        while len(clips) < n:
            if self._failed == len(self.videos):
                raise self._all_failed()
            index = int(rng.integers(len(self.videos)))
            start = int(rng.integers(self.videos[index].frames - self.shape.span + 1))
            clip = self._try_read(index, start)
            if clip is not None:
                clips.append(clip)
                labels.append(self.videos[index].label)
        return np.stack(clips), np.asarray(labels)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.sample_labelled(rng, n)[0]

    def test_item(self, index: int, seed: int) -> tuple[np.ndarray, int | None]:
        """Test clip ``index`` and the label of its video."""
        rng = test_rng(seed, index)
        for step in range(len(self.videos)):
            # a broken video hands its slot to the next one: still a function of (seed, index)
            v = (index + step) % len(self.videos)
            room = self.videos[v].frames - self.shape.span + 1
            start = 0 if self.test_start == "first" else int(rng.integers(room))
            clip = self._try_read(v, start)
            if clip is not None:
                return clip, self.videos[v].label
        raise self._all_failed()

    def test_clip(self, index: int, seed: int) -> np.ndarray:
        return self.test_item(index, seed)[0]


class TrainClips(IterableDataset):
    """Random training clips ``uint8 (T, H, W, C)`` from ``source``, forever (or ``length``);
    ``(clip, label)`` pairs when the source is class-labelled.

    Worker ``w`` of a DataLoader draws from ``seed`` and ``w``, so workers never repeat each
    other and a run is reproducible for a fixed worker count. Iterating again restarts the
    same stream; give a new ``seed`` (e.g. seed + step) to continue elsewhere after a resume.
    """

    def __init__(self, source: ClipSource, seed: int = 0, length: int | None = None) -> None:
        self.source, self.seed, self.length = source, seed, length

    @property
    def skipped(self) -> SkipLog:
        return self.source.skips

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        left = None
        if self.length is not None:
            left = self.length // workers + (worker < self.length % workers)
        for item, _ in clip_stream(self.source, self.seed, worker, limit=left):
            yield item


def clip_stream(
    source: ClipSource,
    seed: int,
    worker: int,
    *,
    limit: int | None = None,
    position: dict | None = None,
) -> Iterator[tuple[torch.Tensor | tuple[torch.Tensor, torch.Tensor], dict]]:
    """The clips worker ``worker`` of a ``TrainClips(source, seed)`` stream yields (``limit``
    of them, or forever), each with the stream's position after it.

    A position is ``{"rng": numpy bit-generator state, "offset": clips taken}``: the
    generator's state before the chunk being read and how many of that chunk's clips are
    used. Starting at ``position`` renders that one chunk again and continues after its
    ``offset`` clips: the same clips as the stream that was not stopped.
    """
    rng = np.random.default_rng([seed, worker])
    skip = 0
    if position is not None:
        rng.bit_generator.state = position["rng"]
        skip = position["offset"]
    chunk = getattr(source, "chunk", 1)
    labelled = getattr(source, "labelled", False)
    while limit is None or limit > 0:
        n = chunk if limit is None else min(chunk, limit)
        before = rng.bit_generator.state
        if labelled:
            clips, labels = source.sample_labelled(rng, n)
            items = [(torch.from_numpy(c), torch.tensor(int(y))) for c, y in zip(clips, labels)]
        else:
            items = [torch.from_numpy(c) for c in source.sample(rng, n)]
        after = rng.bit_generator.state
        for i in range(skip, len(items)):
            done = i + 1 == len(items)  # a used-up chunk: continue from the state after it
            yield items[i], {"rng": after if done else before, "offset": 0 if done else i + 1}
        skip = 0
        if limit is not None:
            limit -= n


class TestClips(Dataset):
    """The fixed test set: ``length`` clips (``(clip, label)`` pairs for labelled sources),
    clip ``i`` a function of (seed, i) only."""

    def __init__(self, source: ClipSource, seed: int = 0, length: int | None = None) -> None:
        self.source, self.seed = source, seed
        self.length = source.default_test_length if length is None else length
        if self.length < 1:
            raise DatasetError(f"a test set needs length >= 1, got {self.length}")

    @property
    def skipped(self) -> SkipLog:
        return self.source.skips

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"test clip {index} of {self.length}")
        if getattr(self.source, "labelled", False):
            clip, label = self.source.test_item(index % self.length, self.seed)
            return torch.from_numpy(clip), torch.tensor(int(label))
        return torch.from_numpy(self.source.test_clip(index % self.length, self.seed))
