"""The guard that skips updates with non-finite gradients (``videogen.update_guard``)."""

import math

import pytest
import torch

from videogen.update_guard import UpdateGuard, grad_norm


def adam_with_grad(fused: bool = True) -> tuple[torch.nn.Parameter, torch.optim.Adam]:
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    return p, torch.optim.Adam([p], lr=0.1, fused=fused)


def test_grad_norm_is_the_two_norm_of_every_gradient():
    a, b, c = (torch.nn.Parameter(torch.zeros(n)) for n in (2, 3, 1))
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0, 2.0])  # c has none
    assert grad_norm([a, b, c]).item() == pytest.approx(math.sqrt(9 + 16 + 1 + 4 + 4))
    assert grad_norm([c]).item() == 0.0


def test_a_run_of_skipped_steps_stops_at_the_limit_and_a_finite_step_ends_the_run():
    p, opt = adam_with_grad()
    guard = UpdateGuard(limit=2, device=torch.device("cpu"))
    seen = []
    for value in (1.0, float("inf"), 1.0, float("nan"), float("nan"), 1.0):
        before = p.detach().clone()
        p.grad = torch.full((3,), value)
        guard.step(opt, grad_norm([p]), scaled=False)
        guard.end_step()
        moved = not torch.equal(before, p.detach())
        assert moved == math.isfinite(value)
        seen.append((guard.streak.item(), guard.bad.item()))
    # one skip, a finite step, two skips in a row: the limit; "bad" stays set
    assert seen == [(0, False), (1, False), (0, False), (1, False), (2, True), (0, True)]
    assert guard.take_skipped().item() == 3 and guard.take_skipped().item() == 0
    assert opt.state[p]["step"].item() == 3  # skipped steps do not count for Adam's bias
    assert not hasattr(opt, "found_inf")  # the flag is the GradScaler protocol's, handed back


def test_limit_zero_stops_at_the_first_non_finite_loss_or_gradient():
    guard = UpdateGuard(limit=0, device=torch.device("cpu"))
    guard.saw_loss(torch.tensor(2.0))
    assert not guard.bad.item()
    guard.saw_loss(torch.tensor(float("nan")))
    assert guard.bad.item()
    assert guard.reason(7) == "non-finite loss or gradients before step 7"

    p, opt = adam_with_grad()
    guard = UpdateGuard(limit=0, device=torch.device("cpu"))
    p.grad = torch.full((3,), float("inf"))
    guard.step(opt, grad_norm([p]), scaled=False)
    guard.end_step()
    assert guard.bad.item()


def test_a_run_ending_while_skipping_is_bad_and_says_so():
    p, opt = adam_with_grad()
    guard = UpdateGuard(limit=5, device=torch.device("cpu"))
    p.grad = torch.full((3,), float("nan"))
    guard.step(opt, grad_norm([p]), scaled=False)
    guard.end_step()
    assert not guard.bad.item()
    guard.end_of_run()
    assert guard.bad.item() and "where the run was to end" in guard.reason(9)


def test_an_optimizer_that_is_not_fused_is_refused():
    p, opt = adam_with_grad(fused=False)
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match="Adam must be fused"):
        UpdateGuard(limit=1, device=torch.device("cpu")).step(opt, grad_norm([p]), scaled=False)


def test_under_a_grad_scaler_the_step_is_left_to_it():
    """fp16: the GradScaler sets the flag itself; the guard just steps (and counts nothing)."""
    p, opt = adam_with_grad(fused=False)  # a fused check would refuse this optimizer
    p.grad = torch.ones(3)
    guard = UpdateGuard(limit=1, device=torch.device("cpu"))
    guard.step(opt, torch.tensor(float("inf")), scaled=True)
    guard.end_step()
    assert opt.state[p]["step"].item() == 1 and not guard.bad.item()
