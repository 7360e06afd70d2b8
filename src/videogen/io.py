"""Video files in and out: PyAV for mp4/avi/webm/mkv/gif, Pillow for GIF and PNG grids.

At this edge a video is ``uint8 (T, H, W, C)`` with C = 1 (grey) or 3 (RGB). Reading can
decode just a clip (``start``, ``frames``, ``stride``) and resize it on the way out of the
decoder (short side to ``size``, then a centre crop), which is far cheaper than decoding at
full resolution and resizing afterwards. Writing never loses what a path held before: the
file is written next to it under a temporary name and moved into place only when complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import tokenize
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# Encoders per container, best first; the first one this build of FFmpeg has is used.
_ENCODERS = {
    ".mp4": ("libx264", "h264", "mpeg4"),
    ".m4v": ("libx264", "h264", "mpeg4"),
    ".mov": ("libx264", "h264", "mpeg4"),
    ".mkv": ("libx264", "h264", "mpeg4"),
    ".avi": ("mpeg4", "libx264"),
    ".webm": ("libvpx-vp9", "libvpx"),
}


class VideoError(ValueError):
    """A video file cannot be read or written; the message names the file."""


# --------------------------------------------------------------------------- reading


# What PyAV raises on damaged input: its own errors (av.error.*, all FFmpegError; some are
# also OSError, ValueError, EOFError or LookupError) and ValueError from frame conversion.
AV_ERRORS = (av.FFmpegError, OSError, ValueError)

# Above this rate a header's frame count is taken as damaged and the packets are counted.
MAX_PLAUSIBLE_FPS = 1000


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn PyAV's errors inside the block into one ``VideoError`` naming ``path``."""
    try:
        yield
    except VideoError:
        raise
    except AV_ERRORS as err:
        raise VideoError(f"{path}: {what} ({type(err).__name__}: {err})") from err


def _open(path: Path) -> av.container.InputContainer:
    """The container of ``path`` with a decodable first video stream, or a ``VideoError``."""
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty")
    with _reading(path, "not a readable video"):
        container = av.open(str(path))
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: the file holds no video stream")
    ctx = container.streams.video[0].codec_context
    if ctx is None:  # the codec id is unknown to this FFmpeg build, or damaged
        container.close()
        raise VideoError(
            f"{path}: no decoder for its video codec in this FFmpeg build (damaged header, or "
            "an unsupported codec: re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)"
        )
    return container


def _count_packets(container: av.container.InputContainer) -> int:
    """Frames of the first video stream, counted by demuxing (no decoding). Damage part way
    ends the count there: the frames before it are the ones a reader gets."""
    stream = container.streams.video[0]
    count = 0
    try:
        for packet in container.demux(stream):
            count += packet.size > 0
    except AV_ERRORS:
        if not count:
            raise
    return count


def _header_frames(path: Path, stream: av.VideoStream) -> int | None:
    """The frame count the container header announces, or None where it is missing or
    implausible (more frames than bytes in the file, or above ``MAX_PLAUSIBLE_FPS``)."""
    frames = stream.frames
    if not frames or frames <= 0 or frames > path.stat().st_size:
        return None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
        if seconds <= 0 or frames / seconds > MAX_PLAUSIBLE_FPS:
            return None
    return int(frames)


def video_info(path: str | Path, *, count_frames: bool = False) -> dict:
    """``dict(frames, height, width, fps)`` of a video file (or a ``.npy`` array).

    The first frame is decoded (a file none of whose frames decodes is an error), and
    ``height`` / ``width`` are that frame's. ``frames`` comes from the container header when it
    is plausible, else (and always with ``count_frames``, which reads the whole file but stays
    exact for truncated files) from counting the packets. Raises ``VideoError`` naming the file
    if it is unreadable.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        shape = _npy_video(path, mmap=True).shape
        return {"frames": shape[0], "height": shape[1], "width": shape[2], "fps": None}
    with _reading(path, "cannot read the video stream"):
        with _open(path) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            frames = None if count_frames else _header_frames(path, stream)
            # one frame: a frame-threaded decoder would start threads and wait on several packets
            stream.codec_context.thread_type = "NONE"
            stream.codec_context.thread_count = 1
            with _reading(path, "its first frame does not decode: a truncated or damaged file"):
                first = next(iter(container.decode(stream)), None)
            if first is None:
                raise VideoError(f"{path}: no frame of the video stream decodes")
            height, width = first.height, first.width
        if frames is None:
            with _open(path) as container:
                frames = _count_packets(container)
    if frames <= 0 or not height or not width:
        raise VideoError(f"{path}: the video stream has no frames")
    if rate and not 0 < rate <= MAX_PLAUSIBLE_FPS:
        rate = None  # a damaged header: the rate is unknown
    return {
        "frames": int(frames),
        "height": int(height),
        "width": int(width),
        "fps": float(rate) if rate else None,
    }


def fit_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) with the short side scaled to ``size`` (before a centre crop)."""
    scale = size / min(height, width)
    return max(size, round(height * scale)), max(size, round(width * scale))


def centre_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre ``size`` x ``size`` crop of ``(..., H, W, C)``."""
    h, w = frames.shape[-3:-1]
    top, left = (h - size) // 2, (w - size) // 2
    return frames[..., top : top + size, left : left + size, :]


def _frame_array(frame: av.VideoFrame, shape: tuple[int, int] | None, grey: bool) -> np.ndarray:
    fmt = "gray" if grey else "rgb24"
    # one swscale thread: PyAV 18.1.1 keeps the scaler and its thread pool from one frame to
    # the next, and a data-loader worker forked after the parent had converted a frame waits
    # for ever on pool threads that were not forked. The loader's workers are the parallelism.
    if shape is None:
        array = frame.to_ndarray(format=fmt, threads=1)
    else:
        # swscale's area filter: antialiased downscaling inside the decoder's output step
        array = frame.to_ndarray(
            height=shape[0], width=shape[1], format=fmt, interpolation="AREA", threads=1
        )
    return array[..., None] if grey else array


def _decode(
    container: av.container.InputContainer,
    start: int,
    stop: int | None,
    stride: int,
    shape: tuple[int, int] | None,
    grey: bool,
    seek: bool,
) -> Iterator[np.ndarray]:
    """Frames ``start, start+stride, ... < stop`` of the first video stream."""
    stream = container.streams.video[0]
    rate, time_base = stream.average_rate, stream.time_base
    origin = stream.start_time or 0
    use_pts = seek and start > 0 and rate and time_base
    if use_pts:
        # land on the keyframe at or before the first wanted frame, then count by timestamps
        container.seek(
            origin + int(Fraction(start) / Fraction(rate) / time_base), stream=stream, backward=True
        )
    expected = start
    for i, frame in enumerate(container.decode(stream)):
        if use_pts:
            if frame.pts is None:
                raise _SeekMissed
            index = round(float((frame.pts - origin) * time_base * rate))
            if index > expected:  # the seek overshot: let the caller decode from the start
                raise _SeekMissed
        else:
            index = i
        if stop is not None and index >= stop:
            return
        if index == expected:
            yield _frame_array(frame, shape, grey)
            expected += stride
            if stop is not None and expected >= stop:
                return  # decode no further: a damaged frame after the clip must not fail it


class _SeekMissed(Exception):
    pass


def read_video(
    path: str | Path,
    *,
    start: int = 0,
    frames: int | None = None,
    stride: int = 1,
    size: int | None = None,
    channels: int | None = None,
) -> np.ndarray:
    """Decode a video file (mp4, avi, webm, mkv, mov, gif) or a ``.npy`` array.

    Returns ``uint8 (T, H, W, C)``: frames ``start, start + stride, ...`` (``frames`` of them,
    or up to the end). ``size`` resizes the short side to ``size`` and centre-crops to a square;
    ``channels`` = 1 decodes to grey, 3 to RGB (default: RGB, or the array's own for ``.npy``).
    Raises ``VideoError`` naming the file when it is unreadable or holds too few frames.
    """
    path = Path(path)
    if start < 0 or stride < 1 or (frames is not None and frames < 1):
        raise ValueError(f"read_video: bad clip start={start}, frames={frames}, stride={stride}")
    stop = None if frames is None else start + (frames - 1) * stride + 1
    if path.suffix.lower() == ".npy":
        video = np.asarray(_npy_video(path, mmap=True)[start:stop:stride])
        if not len(video) or (frames is not None and len(video) < frames):
            raise VideoError(
                f"{path}: holds {len(video)} frames from frame {start} at stride {stride}, "
                f"needed {frames or 'any'}"
            )
        out = _fit_array(video, size)
        return out if channels is None else match_channels(out, channels)
    grey = channels == 1
    if channels not in (None, 1, 3):
        raise ValueError(f"read_video: channels must be 1 or 3, got {channels}")
    with _reading(path, "decoding failed"), _open(path) as container:
        ctx = container.streams.video[0].codec_context
        if size and not (ctx.height and ctx.width):
            raise VideoError(f"{path}: the video stream has no frame size (damaged header)")
        shape = fit_size(ctx.height, ctx.width, size) if size else None
        try:
            out = list(_decode(container, start, stop, stride, shape, grey, seek=True))
        except _SeekMissed:
            container.seek(0)
            out = list(_decode(container, start, stop, stride, shape, grey, seek=False))
    if not out or (frames is not None and len(out) < frames):
        want = "any" if frames is None else f"{frames} (stride {stride}) from frame {start}"
        raise VideoError(f"{path}: decoded {len(out)} frames, needed {want}; truncated file?")
    video = np.stack(out)
    return centre_crop(video, size) if size else video


def _npy_video(path: Path, mmap: bool) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError, SyntaxError, tokenize.TokenError) as err:
        # numpy parses the header as Python literals: a mangled one raises the tokenizer's errors
        raise VideoError(f"{path}: not a readable .npy array ({err})") from err
    if array.dtype != np.uint8 or array.ndim not in (3, 4) or 0 in array.shape:
        raise VideoError(
            f"{path}: a video array must be uint8 (T, H, W[, C]), got {array.dtype} {array.shape}"
        )
    if array.ndim == 4 and array.shape[-1] not in (1, 3, 4):
        # (N, T, H, W) and (T, N, H, W) batches look the same: never guess one video out of it
        raise VideoError(
            f"{path}: shape {array.shape} is not one video (T, H, W) or (T, H, W, C) with C in "
            "1, 3, 4; for a file of several videos use it as a dataset (data.name=FILE) and "
            "name its axes with data.options.layout (NTHW, TNHW, ...)"
        )
    return array if array.ndim == 4 else array[..., None]


def _fit_array(video: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or video.shape[1:3] == (size, size):
        return np.ascontiguousarray(video)
    return resize_crop(video, size)


# --------------------------------------------------------------------------- frame helpers


def resize_crop(video: np.ndarray, size: int) -> np.ndarray:
    """``uint8 (T, H, W, C)`` -> ``uint8 (T, size, size, C)``: short side to ``size``
    (antialiased bilinear), then a centre crop."""
    t, h, w, c = video.shape
    if (h, w) == (size, size):
        return video
    new_h, new_w = fit_size(h, w, size)
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(
        x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
    )
    out = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(centre_crop(out, size))


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as PIL's "L"


def match_channels(video: np.ndarray, channels: int) -> np.ndarray:
    """Grey <-> RGB for ``uint8 (..., C)``: grey is repeated, RGB is reduced to BT.601 luma."""
    have = video.shape[-1]
    if have == channels:
        return video
    if have == 1 and channels == 3:
        return np.repeat(video, 3, axis=-1)
    if have == 3 and channels == 1:
        luma = video.astype(np.float32) @ _LUMA
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    if have == 4:  # RGBA: drop alpha
        return match_channels(video[..., :3], channels)
    raise ValueError(f"cannot convert {have}-channel frames to {channels} channels")


def as_uint8_videos(video: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """Normalise what a caller may hand to the writers into a list of ``uint8 (T, H, W, C)``.

    Accepts ``uint8 (T, H, W, C)``, ``uint8 (B, T, H, W, C)``, or a float model batch
    ``(T, C, H, W)`` / ``(B, T, C, H, W)`` in [-1, 1].
    """
    if isinstance(video, torch.Tensor):
        if video.is_floating_point():
            x = video.detach().float().cpu()
            if x.ndim == 4:
                x = x[None]
            if x.ndim != 5:
                raise ValueError(f"a float video batch must be (B, T, C, H, W), got {x.shape}")
            x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            return list(x.permute(0, 1, 3, 4, 2).numpy())
        video = video.detach().cpu().numpy()
    video = np.asarray(video)
    if video.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames or a float tensor in [-1, 1], got {video.dtype}")
    if video.ndim == 4:
        return [video]
    if video.ndim == 5:
        return list(video)
    raise ValueError(f"a uint8 video must be (T, H, W, C), got shape {video.shape}")


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); move it over ``path`` on success.

    On any error the temporary file is removed and ``path`` keeps what it had.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _encoder(suffix: str) -> str:
    for name in _ENCODERS.get(suffix, ()):
        if name in av.codecs_available:
            return name
    raise VideoError(f"no encoder for {suffix} videos in this FFmpeg build (have: write .gif)")


def write_video(
    path: str | Path, video: np.ndarray | torch.Tensor, fps: float = 8.0, quality: int = 18
) -> Path:
    """Write ``uint8 (T, H, W, C)`` (or a float ``(T, C, H, W)`` in [-1, 1]) to a file.

    ``.gif`` goes through Pillow (looping; Pillow merges identical consecutive frames into one
    shown for their summed duration); ``.mp4``/``.mkv``/``.mov`` through PyAV with
    libx264 (``quality`` is its CRF; mpeg4 if x264 is missing), ``.avi`` with mpeg4, ``.webm``
    with VP9; ``.npy`` saves the array. yuv420p needs even sizes: odd heights/widths are padded
    by repeating the last row/column. Grey video is written as RGB.
    """
    path = Path(path)
    videos = as_uint8_videos(video)
    if len(videos) != 1:
        raise ValueError(f"write_video takes one video, got a batch of {len(videos)}")
    frames = videos[0]
    if frames.shape[0] == 0:
        raise ValueError("write_video: the video has no frames")
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            _write_gif(tmp, frames, fps)
        elif suffix == ".npy":
            np.save(tmp, frames)
        elif suffix in _ENCODERS:
            _write_av(tmp, frames, fps, _encoder(suffix), quality)
        else:
            known = ", ".join(sorted([*_ENCODERS, ".gif", ".npy"]))
            raise VideoError(f"{path}: cannot write {suffix or 'no'} suffix; use one of {known}")
    return path


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000 / fps)),
        loop=0,
        optimize=False,
        disposal=1,
    )


def _write_av(path: Path, frames: np.ndarray, fps: float, codec: str, quality: int) -> None:
    frames = match_channels(frames, 3)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(quality), "preset": "medium"}
        elif codec.startswith("libvpx"):
            stream.options = {"crf": str(quality + 12), "b": "0"}
        else:
            stream.bit_rate = max(400_000, frames.shape[1] * frames.shape[2] * int(fps) * 2)
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
