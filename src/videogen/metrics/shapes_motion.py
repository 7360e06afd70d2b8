"""Does a video follow the Stochastic Movement rules? Motion, direction, colour, size, presence.

VideoFlow's ``stochastic-shapes`` clips (``videogen.data.shapes``) show one shape of one palette
colour on a black canvas, moving ``speed`` units per frame (1 unit = width / 10 px) in one of
8 directions (axes and diagonals; a diagonal step is ``speed`` on each axis). A good predictor
keeps all of that in the frames it generates. ``shapes_motion`` measures it per clip from the
pixels alone, no ground truth needed: the known frames (a prefix) set the reference.

Per frame, the shape's *core* is every pixel whose brightest channel (in [0, 1]) exceeds
``threshold``, its *support* the core and the 1-px ring around it (antialiased edge pixels
darker than the threshold). Each support pixel weighs its coverage: its brightness over the
frame's brightest pixel (a fully covered pixel shows the palette colour's peak), clipped to 1.
From these: the centroid (row, col) in px (coverage-weighted), the area in px (the coverage
sum) and the core's mean colour, matched to the nearest palette colour by direction in RGB
(antialiasing scales a colour; it does not turn it).

Checks, for the generated frames of each clip (``known`` False):

* ``motion``: each step (centroid of frame t minus that of frame t-1, the first from the last
  known frame) is within ``tolerance * speed_px`` of one of the 8 ideal displacements.
* ``direction``: each step's nearest ideal displacement is the direction the known frames show
  (their last step, with >= 2 known frames); with 1 known frame, the first generated step sets
  the direction and later steps must keep it.
* ``colour``: the palette colour of every generated frame is the last known frame's (RGB only).
* ``area``: every generated frame's area is within ``area_tolerance`` of the last known frame's.
* ``presence``: the shape does not vanish where it could not have left the canvas, and does not
  come back once it has left.

Leaving the canvas is not a failure: a frame with no shape (area < ``min_area``), or whose
support touches the 1-px border ring (part of the shape is cut off, which biases its centroid
and shrinks its area), is *excluded* from the checks when the shape could have got there:
the last known frame's support lies within ``n * speed_px`` (plus the tolerance) of the
border, ``n`` frames earlier, and the frame is no larger than the size check allows (a shape
that leaves only shrinks). Otherwise such a frame is *lost* and fails ``presence``; a step is
checked only between two frames with the shape fully inside. A clip whose last known frame has
no shape fully inside cannot be checked at all (``checkable`` False) and is left out of the
summary, as is a check with nothing to check in a clip (``n_*`` zero, its boolean True).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from videogen.data.shapes import COLOURS, DIRECTIONS, UNITS

CHECKS = ("motion", "direction", "colour", "area", "presence")


@dataclass
class ShapesMotion:
    """Per-frame measurements ``(B, T, ...)`` and per-clip check results ``(B,)`` (on the CPU).

    ``centroid`` ``float (B, T, 2)`` is (row, col) in px from the top-left pixel's centre, NaN
    without foreground; ``area`` ``float (B, T)`` in px; ``palette`` ``long (B, T)`` indexes
    ``videogen.data.shapes.COLOURS`` (-1 without foreground or for grey video). ``status``
    ``int8 (B, T)``: 0 known, 1 generated with the shape fully inside (checked), 2 excluded
    (left the canvas), 3 lost (vanished or cut off where it could not be), 4 came back after
    leaving. ``step`` ``float (B, T-1, 2)`` is ``centroid[:, 1:] - centroid[:, :-1]``;
    ``step_direction`` ``long (B, T-1)`` the nearest of ``DIRECTIONS`` (an index, -1 without
    both centroids); ``step_ok`` ``bool (B, T-1)`` whether it is within the tolerance of that
    ideal step; ``step_checked`` marks the steps the checks use (into a generated frame, both
    ends fully inside). ``motion`` ... ``presence`` and ``ok`` (all five) are ``bool (B,)``;
    ``n_motion`` ... ``n_presence`` ``long (B,)`` count the steps / frames each check looked at.
    """

    centroid: Tensor
    area: Tensor
    palette: Tensor
    status: Tensor
    step: Tensor
    step_direction: Tensor
    step_ok: Tensor
    step_checked: Tensor
    checkable: Tensor
    motion: Tensor
    direction: Tensor
    colour: Tensor
    area_ok: Tensor
    presence: Tensor
    ok: Tensor
    n_motion: Tensor
    n_direction: Tensor
    n_colour: Tensor
    n_area: Tensor
    n_presence: Tensor

    def passed(self, check: str) -> Tensor:
        """``bool (B,)`` of one of ``CHECKS`` (``"area"`` is the ``area_ok`` field)."""
        return getattr(self, "area_ok" if check == "area" else check)

    def summary(self) -> dict[str, float]:
        """Fractions of clips passing each check, over the checkable clips where the check had
        something to look at (NaN if none); ``all`` needs every check. Also ``clips``,
        ``checkable`` (counts), ``steps`` (fraction of checked steps matching an ideal
        displacement) and ``excluded_frames`` (fraction of generated frames of checkable clips
        left out because the shape had left the canvas)."""
        c = self.checkable
        out: dict[str, float] = {"clips": float(len(c)), "checkable": float(c.sum())}
        for name in CHECKS:
            use = c & (getattr(self, f"n_{name}") > 0)
            out[name] = _fraction(self.passed(name)[use])
        out["all"] = _fraction(self.ok[c])
        # per step: a clip fails ``motion`` on one bad step, this counts the bad steps
        out["steps"] = _fraction(self.step_ok[self.step_checked & c[:, None]])
        generated = self.status[c] > 0
        out["excluded_frames"] = _fraction((self.status[c] == 2)[generated])
        return out


def _fraction(x: Tensor) -> float:
    return float(x.float().mean()) if x.numel() else float("nan")


def _ideal(speed_px: float) -> Tensor:
    """The 8 ideal steps ``(8, 2)`` as (row, col) px: DIRECTIONS are (right, up), rows grow
    downwards."""
    d = torch.as_tensor(DIRECTIONS, dtype=torch.float64)
    return torch.stack([-d[:, 1], d[:, 0]], -1) * speed_px


def shapes_motion(
    video: Tensor,
    known: Tensor,
    *,
    speed_px: float | None = None,
    tolerance: float = 0.5,
    area_tolerance: float = 0.25,
    threshold: float | None = None,
    min_area: float = 1.0,
) -> ShapesMotion:
    """Check generated ``stochastic-shapes`` frames against the dataset's rules (module doc).

    ``video`` is ``float (B, T, C, H, W)`` in [-1, 1], RGB (``C = 3``; ``C = 1`` skips the
    colour check); ``known`` is ``bool (B, T)``, True on a prefix of at least one frame per
    clip (lengths may differ between clips). ``speed_px`` is the step length per axis in px
    (default: the generator's 1 unit per frame, ``W / 10``). ``tolerance`` is the largest
    distance from an ideal step as a fraction of ``speed_px``: the 8 ideal steps are at least
    ``speed_px`` apart, so below 0.5 at most one matches. ``area_tolerance`` is the allowed
    relative change of area; ``threshold`` the foreground's brightness floor in [0, 1] (default
    0.2 for RGB, where the darkest palette colour, green, peaks at 0.5; 0.05 for grey, where
    blue is 0.11); ``min_area`` (px) the least area that counts as a shape.

    Made for the built-in 64 px clips (also exact at 32 px; at 16 px a shape is a few pixels
    and the area check fails a few real clips).
    """
    if video.ndim != 5 or video.shape[2] not in (1, 3):
        raise ValueError(f"shapes_motion takes video (B, T, 1 or 3, H, W), got {video.shape}")
    b, t, c, h, w = video.shape
    if known.shape != (b, t) or known.dtype != torch.bool:
        raise ValueError(f"known must be bool {(b, t)}, got {known.dtype} {tuple(known.shape)}")
    known = known.cpu()
    k = known.sum(1)
    if not torch.equal(known, torch.arange(t) < k[:, None]) or bool((k == 0).any()):
        raise ValueError("shapes_motion needs the known frames to be a prefix of >= 1 frame")
    speed_px = w / UNITS if speed_px is None else float(speed_px)
    tol_px = tolerance * speed_px
    if threshold is None:
        threshold = 0.2 if c == 3 else 0.05

    video = video.detach().float()
    dev = video.device
    # (B, T, H, W) in [0, 1]: the brightest channel, as every palette colour peaks in one
    bright = (video.amax(2) + 1) / 2
    core = bright > threshold
    # antialiased edge pixels below the threshold still hold part of the shape: take the ring
    # around the core too (else a small shape's area jumps with its sub-pixel position)
    support = F.max_pool2d(core.flatten(0, 1).float(), 3, 1, 1).view(b, t, h, w) > 0
    # a fully covered pixel's brightness: the frame's brightest pixel (its palette colour's
    # peak); per frame, so that a change of colour does not read as a change of size
    level = bright.amax((-2, -1), keepdim=True).clamp(min=threshold)
    cover = (bright / level).clamp(max=1) * support
    area = cover.sum((-2, -1))
    ry = torch.arange(h, device=dev, dtype=cover.dtype)
    rx = torch.arange(w, device=dev, dtype=cover.dtype)
    centroid = torch.stack(
        [cover.sum(-1) @ ry / area, cover.sum(-2) @ rx / area], -1
    )  # NaN where area is 0
    margin = _border_margin(support)  # (B, T) px from the shape to the border, inf if none
    if c == 3:
        # mean colour of the core: its direction in RGB (the pixels are coverage x colour)
        colour = torch.einsum("btchw,bthw->btc", video + 1, core.float())
        pal = torch.as_tensor(COLOURS, dtype=colour.dtype, device=dev)
        cosine = F.normalize(colour, dim=-1) @ F.normalize(pal, dim=-1).T
        palette = torch.where(core.any((-2, -1)), cosine.argmax(-1), -1)
    else:
        palette = torch.full((b, t), -1, dtype=torch.long, device=dev)
    centroid, area = centroid.double(), area.double()
    centroid, area, margin, palette = (v.cpu() for v in (centroid, area, margin, palette))

    ar = torch.arange(b)
    last = k - 1
    inside = (area >= min_area) & (margin > 0)  # the whole shape is on the canvas
    ref_area = area[ar, last]
    checkable = inside[ar, last] & (k < t)

    # generated frames whose shape is missing or cut off: left the canvas, or lost?
    gen = ~known
    after = (torch.arange(t) - last[:, None]).clamp(min=0)  # frames since the last known one
    reachable = margin[ar, last][:, None] <= after * speed_px + tol_px
    too_big = area > (1 + area_tolerance) * ref_area[:, None]
    gone = gen & ~inside & reachable & ~too_big
    lost = gen & ~inside & ~gone
    left_before = (torch.cumsum(gone.long(), 1) - gone.long()) > 0
    came_back = gen & inside & left_before
    status = torch.zeros(b, t, dtype=torch.int8)
    status[gen & inside] = 1
    status[gone], status[lost], status[came_back] = 2, 3, 4

    # steps: into a generated frame (the first from the last known one), both ends inside
    step = centroid[:, 1:] - centroid[:, :-1]
    ideal = _ideal(speed_px)
    dist = (step[:, :, None] - ideal).norm(dim=-1)  # (B, T-1, 8)
    nearest, step_direction = dist.nan_to_num(float("inf")).min(-1)
    step_direction = torch.where(step.isnan().any(-1), -1, step_direction)
    step_checked = gen[:, 1:] & inside[:, 1:] & inside[:, :-1] & ~came_back[:, 1:]
    step_good = nearest <= tol_px

    # reference direction: the last known step, else the first checked generated step
    ref_dir = torch.full((b,), -1, dtype=torch.long)
    has_known_step = (k >= 2) & inside[ar, (last - 1).clamp(min=0)] & inside[ar, last]
    known_step = step_direction[ar, (last - 1).clamp(min=0)]
    ref_dir = torch.where(has_known_step, known_step, ref_dir)
    first = torch.where(step_checked.any(1), step_checked.long().argmax(1), 0)
    from_first = ~has_known_step & step_checked.any(1)
    ref_dir = torch.where(from_first, step_direction[ar, first], ref_dir)
    compared = step_checked.clone()
    compared[ar[from_first], first[from_first]] = False  # the step that set the reference

    checked_frames = gen & inside & ~came_back
    colour_cmp = checked_frames & (c == 3)
    colour_ok = palette == palette[ar, last][:, None]
    area_ok = (area / ref_area[:, None] - 1).abs() <= area_tolerance

    def all_of(good: Tensor, use: Tensor) -> Tensor:
        return (good | ~use).all(1)

    motion = all_of(step_good, step_checked)
    direction = all_of(step_direction == ref_dir[:, None], compared)
    colour = all_of(colour_ok, colour_cmp)
    area_pass = all_of(area_ok, checked_frames)
    presence = ~(lost | came_back).any(1)
    return ShapesMotion(
        centroid=centroid,
        area=area,
        palette=palette,
        status=status,
        step=step,
        step_direction=step_direction,
        step_ok=step_good,
        step_checked=step_checked,
        checkable=checkable,
        motion=motion,
        direction=direction,
        colour=colour,
        area_ok=area_pass,
        presence=presence,
        ok=motion & direction & colour & area_pass & presence,
        n_motion=step_checked.sum(1),
        n_direction=compared.sum(1),
        n_colour=colour_cmp.sum(1),
        n_area=checked_frames.sum(1),
        n_presence=gen.sum(1),
    )


def _border_margin(fg: Tensor) -> Tensor:
    """Pixels between the foreground ``bool (..., H, W)`` and the canvas edge: 0 when it touches
    the outermost ring, ``inf`` with no foreground."""
    h, w = fg.shape[-2:]

    def span(any_: Tensor, n: int) -> tuple[Tensor, Tensor]:
        idx = torch.arange(n, device=fg.device)
        lo = torch.where(any_, idx, n).amin(-1)
        hi = torch.where(any_, idx, -1).amax(-1)
        return lo, n - 1 - hi

    top, bottom = span(fg.any(-1), h)
    left, right = span(fg.any(-2), w)
    m = torch.minimum(torch.minimum(top, bottom), torch.minimum(left, right)).to(torch.float64)
    return torch.where(fg.any((-2, -1)), m, float("inf"))
