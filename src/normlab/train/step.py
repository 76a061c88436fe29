"""The training step, written once: the eager loop calls it, a CUDA graph replays it.

Everything a step reads or advances lives in device tensors (``StepState``): the data
order, the position in the epoch, the step count (and from it the dropout keys), the
members' divergence flags and the epoch's sums. So a step never needs the host: on a
GPU it can be captured once and replayed (``train.graph``), and on a CPU the same
function runs eagerly.

A member whose loss stops being finite is marked at that step (``first_bad``) and is no
longer active: the optimizer leaves it where it was. The others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from normlab.models.dropout import key_bases, step_keys_tensor
from normlab.models.stack import StackedModel
from normlab.train.optim import Optimizer, OptimizerState, Rates


@dataclass
class StepState:
    """The device tensors of one stack's training: data order [K, n_train], the step
    within the epoch ``i`` and the steps taken ``step`` (0-d), the dropout-stream bases
    [K], divergence flags ``first_bad`` [K] (0, or the step at which the member
    diverged), and the epoch's loss sums and correct counts [K] and per-step losses
    [steps per epoch, K]."""

    order: torch.Tensor
    positions: torch.Tensor
    i: torch.Tensor
    step: torch.Tensor
    key_bases: torch.Tensor
    first_bad: torch.Tensor
    loss_sum: torch.Tensor
    correct: torch.Tensor
    losses: torch.Tensor

    @classmethod
    def create(
        cls,
        k: int,
        n_train: int,
        batch_size: int,
        dropout_bases: Sequence[int],
        device: torch.device,
    ) -> StepState:
        def zeros(*shape: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        return cls(
            order=zeros(k, n_train),
            positions=torch.arange(batch_size, device=device),
            i=zeros(),
            step=zeros(),
            key_bases=key_bases(dropout_bases, device),
            first_bad=zeros(k),
            loss_sum=zeros(k, dtype=torch.float64),
            correct=zeros(k),
            losses=zeros(n_train // batch_size, k, dtype=torch.float32),
        )

    def start_epoch(self, order: torch.Tensor) -> None:
        """Visit the training split in ``order`` [K, n_train]; clear the epoch's sums."""
        self.order.copy_(order)
        self.i.zero_()
        self.loss_sum.zero_()
        self.correct.zero_()


@dataclass(frozen=True)
class Batch:
    """What one step trained on and computed, for the instruments that look inside it:
    inputs [K, B, D], labels [K, B], dropout keys [layers, K] (or None), per-member
    losses [K] and the gradients of every parameter, before the update."""

    x: torch.Tensor
    y: torch.Tensor
    keys: torch.Tensor | None
    losses: torch.Tensor
    grads: list[torch.Tensor]


def train_step(
    model: StackedModel,
    optimizer: Optimizer,
    opt_state: Sequence[OptimizerState],
    state: StepState,
    data: tuple[torch.Tensor, torch.Tensor],
    rates: Rates,
    before_update: Callable[[Batch], None] | None = None,
) -> None:
    """Take one step of every member: gather its batch, then for each phase of the
    model's objective (a classifier has one; a GAN's discriminator, then generator)
    forward, backward, flag divergence and update the active members with that phase's
    optimizer state; add to the epoch's sums.

    ``before_update`` (eager only, one-phase models) sees the step after backward and
    before the update, so the instruments measure the gradients that this step's update
    will use. The epoch's loss is the last phase's.
    """
    x_all, y_all = data
    k, b = model.k, len(state.positions)
    idx = state.order.index_select(1, state.i * b + state.positions).reshape(-1)
    x = x_all.index_select(0, idx).view(k, b, -1)
    y = y_all.index_select(0, idx).view(k, b)
    n_keys = model.step_keys
    keys = step_keys_tensor(state.key_bases, state.step, n_keys) if n_keys else None
    with torch.no_grad():
        state.step += 1
    for phase, (params, phase_state) in enumerate(
        zip(model.parameter_groups(), opt_state, strict=True)
    ):
        losses, correct = model.phase_loss(phase, x, y, keys)
        grads = list(torch.autograd.grad(losses.sum(), params))
        with torch.no_grad():
            newly_bad = ~torch.isfinite(losses) & (state.first_bad == 0)
            state.first_bad.copy_(torch.where(newly_bad, state.step, state.first_bad))
            if before_update is not None:
                before_update(Batch(x, y, keys, losses.detach(), grads))
            optimizer.update(phase_state, params, grads, rates, state.first_bad == 0)
            if correct is not None:
                state.correct += correct
    with torch.no_grad():
        state.loss_sum += losses
        state.losses.index_copy_(0, state.i.view(1), losses.view(1, k))
        state.i += 1
