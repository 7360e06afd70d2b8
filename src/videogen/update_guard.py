"""Skipping an update whose gradients are not finite, on the device and without a host sync.

One non-finite step (a rare batch, a numerical corner of the network in bf16) should not end a
run of hours: the update is skipped inside the fused Adam kernel (the ``found_inf`` flag that
``torch.amp.GradScaler`` hands fused optimizers), so the weights, Adam's moments and its step
count keep their values, and the EMA goes on averaging finite weights. A run whose gradients
stay non-finite has diverged: ``train.skip_nonfinite`` steps in a row with a skipped update
stop it, as does a single one with ``train.skip_nonfinite=0``, and a run does not finish while
it is skipping (its last step's update was skipped). Everything is counted on the
device and read at the trainer's log steps.
"""

from __future__ import annotations

import torch
from torch import Tensor


def grad_norm(params: list[torch.nn.Parameter]) -> Tensor:
    """The 2-norm of all gradients of ``params`` (0 when none has one), as a 0-dim tensor."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else "cpu")
    return torch.nn.utils.get_total_norm(grads)


class UpdateGuard:
    """Counts skipped updates and decides when non-finite values must stop the run.

    ``limit``: steps in a row with a skipped update that stop the run (0: the first non-finite
    loss or gradient stops it). All state lives on ``device`` as 0-dim tensors.
    """

    def __init__(self, limit: int, device: torch.device) -> None:
        self.limit = limit
        self.skipped = torch.zeros((), device=device)  # updates skipped since the last log
        self.streak = torch.zeros((), device=device)  # steps in a row with a skipped update
        self.bad = torch.zeros((), dtype=torch.bool, device=device)  # the run must stop
        self._this_step = torch.zeros((), device=device)
        self._ended = False

    def saw_loss(self, loss: Tensor) -> None:
        """A micro-batch's loss: non-finite stops the run only with ``limit`` 0 (with a limit,
        its gradients decide, and they are the same on every rank)."""
        if self.limit == 0:
            self.bad |= ~torch.isfinite(loss.detach())

    def step(self, optimizer: torch.optim.Optimizer, norm: Tensor, scaled: bool) -> None:
        """``optimizer.step()`` unless ``norm`` (of the gradients it is about to apply) is not
        finite. ``optimizer`` may be accelerate's wrapper; the flag goes to the torch optimizer
        inside, which must be fused. ``scaled``: a GradScaler (fp16) already skips overflowed
        steps, and its first steps overflow by design, so it is left to it."""
        if scaled:
            optimizer.step()
            return
        inner = getattr(optimizer, "optimizer", optimizer)
        if not all(group.get("fused") for group in inner.param_groups):
            raise ValueError(f"{type(inner).__name__} must be fused to skip updates on the device")
        found_inf = (~torch.isfinite(norm.detach())).float()
        inner.grad_scale, inner.found_inf = None, found_inf
        try:
            optimizer.step()
        finally:
            del inner.grad_scale, inner.found_inf
        self.skipped += found_inf
        torch.maximum(self._this_step, found_inf, out=self._this_step)

    def end_step(self) -> None:
        """After every phase of a training step: extend or end the run of skipped steps."""
        self.streak.add_(1).mul_(self._this_step)
        self._this_step.zero_()
        self.bad |= self.streak >= max(self.limit, 1)

    def end_of_run(self) -> None:
        """The run is about to finish: one still skipping its updates has not (its weights are
        finite, but the last steps did not train them)."""
        self.bad |= self.streak > 0
        self._ended = True

    def reason(self, step: int) -> str:
        """What stopped the run, for ``non_finite_stop``."""
        if self.limit == 0:
            return f"non-finite loss or gradients before step {step}"
        if self._ended:
            return (
                f"non-finite gradients in the last steps before step {step}, where the run was "
                "to end (their updates were skipped)"
            )
        return (
            f"non-finite gradients in {self.limit} steps in a row before step {step} (their "
            "updates were skipped)"
        )

    def take_skipped(self) -> Tensor:
        """The skipped-update count since the last call, reset to 0 (read at log steps)."""
        skipped, self.skipped = self.skipped, torch.zeros_like(self.skipped)
        return skipped
