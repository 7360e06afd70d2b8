"""Evaluation protocols of the papers, and the files ``videogen eval`` writes.

``evaluate_run(method, clips, ...)`` takes any object with ``generate(video, known, *, steps,
sampler, temperature, guidance, generator)`` (and, for likelihood models, ``log_likelihood``),
and an iterable of test clips (uint8 ``(T, H, W, C)`` clips, uint8 ``(B, T, H, W, C)`` or float
``(B, T, C, H, W)`` batches in [-1, 1]; any of them with class labels, as ``(clip, label)`` pairs,
``(clips, labels)`` batches or dicts with ``video`` and ``labels``). For every test clip it draws
``best_of`` samples with the task's known frames (a class-conditional method, one with
``num_classes``, gets the clip's own class as ``labels=``) and computes:

- FVD / KVD: I3D features of the test clips against those of the first ``fvd_samples`` samples
  per clip, over all frames or only the generated ones (``fvd_include_known``). Real features
  are cached per (data, weight file sha256, protocol), so the real side is computed once.
- IS: C3D probabilities of the first 16 frames of the first sample per clip.
- SSIM / PSNR / LPIPS: per generated frame, against the truth; per test clip and metric, the
  sample with the best mean over the generated frames is kept (best-of-k as SRVP and MCVD
  report it), giving the value and the per-frame curve.
- BPD: ``method.log_likelihood(video)`` averaged over the test clips.

Every value is written with its protocol (weight file and sha256, resize mode, clip counts, k,
frames included, seed). Sharding: with several processes (``accelerate launch``) the batches are
split between processes and the per-clip results gathered and de-duplicated by clip index.

Modules: ``protocol`` (every setting, declared once), ``clips`` (test clips into batches),
``generation`` (sampling and scoring each batch), ``cache`` (real features on disk), ``report``
(``metrics.json``), ``run`` (``evaluate_run``) and ``cli`` (``videogen eval``).
"""

from videogen.evaluate.cli import add_eval_arguments, eval_kwargs, evaluate_path
from videogen.evaluate.clips import iter_batches, iter_labelled_batches, to_float
from videogen.evaluate.generation import NULL_LABEL, TEST_LABELS, BestOf, merge_shards
from videogen.evaluate.protocol import (
    FRAME_METRICS,
    METRICS,
    SETTINGS,
    Protocol,
    ProtocolError,
    Resources,
)
from videogen.evaluate.report import write_outputs
from videogen.evaluate.run import evaluate_run

__all__ = [
    "FRAME_METRICS",
    "METRICS",
    "NULL_LABEL",
    "SETTINGS",
    "TEST_LABELS",
    "BestOf",
    "Protocol",
    "ProtocolError",
    "Resources",
    "add_eval_arguments",
    "eval_kwargs",
    "evaluate_path",
    "evaluate_run",
    "iter_batches",
    "iter_labelled_batches",
    "merge_shards",
    "to_float",
    "write_outputs",
]
