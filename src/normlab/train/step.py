"""The training step, written once: the eager loop calls it, a CUDA graph replays it.

Everything a step reads or advances lives in device tensors (``StepState``): the data
order, the position in the epoch, the step count (and from it the dropout keys), the
members' divergence flags and the epoch's sums. So a step never needs the host: on a
GPU it can be captured once and replayed (``train.graph``), and on a CPU the same
function runs eagerly. There, the seed's MLP under Adam takes the step's one other
form: the same forward, loss, flags and update with the backward written out instead of
autograd's (``train.direct``), as fast as the hardware allows; every other model, and
any step an instrument looks inside, takes autograd's.

A member whose loss stops being finite is marked at that step (``first_bad``) and is no
longer active: the optimizer leaves it where it was. The others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from normlab.models.dropout import key_bases, step_keys_tensor
from normlab.models.stack import StackedModel, scored
from normlab.train import direct
from normlab.train.direct import DirectStep
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
    # The CPU's autograd-free step for this stack (``train.direct``), decided on the
    # first step: None until then, False where it does not apply.
    direct: DirectStep | bool | None = None

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
    n_keys = model.step_keys
    keys = step_keys_tensor(state.key_bases, state.step, n_keys) if n_keys else None
    with torch.no_grad():
        state.step += 1
    fast = _direct(model, optimizer, state, data[0]) if before_update is None else None
    if fast is not None:
        losses = _direct_step(fast, opt_state[0], state, data, rates, keys)
    else:
        args = (model, optimizer, opt_state, state, data, rates, keys, before_update)
        losses = _autograd_step(*args)
    with torch.no_grad():
        state.loss_sum += losses
        state.losses.index_copy_(0, state.i.view(1), losses.view(1, model.k))
        state.i += 1


def _autograd_step(model, optimizer, opt_state, state, data, rates, keys, before_update):
    """Each phase's forward, autograd's backward, divergence flags and update; the last
    phase's losses."""
    x, y = _batch(state, data, state.i, model.k)
    for phase, (params, phase_state) in enumerate(
        zip(model.parameter_groups(), opt_state, strict=True)
    ):
        losses, correct = model.phase_loss(phase, x, y, keys)
        grads = list(torch.autograd.grad(losses.sum(), params))
        with torch.no_grad():
            _flag(state, losses)
            if before_update is not None:
                before_update(Batch(x, y, keys, losses.detach(), grads))
            optimizer.update(phase_state, params, grads, rates, state.first_bad == 0)
            if correct is not None:
                state.correct += correct
    return losses


def _batch(
    state: StepState, data: tuple[torch.Tensor, torch.Tensor], i: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs [K, B, D] and labels [K, B] of the epoch's step ``i``."""
    idx = _indices(state, i)
    return _rows(data[0], idx, k), _rows(data[1], idx, k)


def _rows(t: torch.Tensor, idx: torch.Tensor, k: int) -> torch.Tensor:
    """Rows ``idx`` [K·B] of ``t``, member by member: [K, B, ...]."""
    return t.index_select(0, idx).view(k, -1, *t.shape[1:])


def _indices(state: StepState, i: torch.Tensor) -> torch.Tensor:
    """The training examples of the epoch's step ``i``, member by member [K·B]."""
    b = len(state.positions)
    return state.order.index_select(1, i * b + state.positions).reshape(-1)


def _flag(state: StepState, losses: torch.Tensor) -> None:
    """Mark the members whose loss stopped being finite at this step."""
    newly_bad = ~torch.isfinite(losses) & (state.first_bad == 0)
    state.first_bad.copy_(torch.where(newly_bad, state.step, state.first_bad))


def _direct(model, optimizer, state: StepState, x_all: torch.Tensor) -> DirectStep | None:
    if state.direct is None:
        applies = direct.applies(model, optimizer, x_all)
        state.direct = DirectStep(model, optimizer) if applies else False
    return state.direct or None


@torch.no_grad()
def _direct_step(fast: DirectStep, opt_state, state: StepState, data, rates, keys):
    """The step by ``train.direct``: forward, flags, backward and update, and the next
    step's input layer on the way when it is in this epoch; the losses."""
    k, step = fast.model.k, int(state.step)
    idx = _indices(state, state.i)
    logits, xt = fast.forward(step, lambda: _rows(data[0], idx, k), keys)
    y = _rows(data[1], idx, k)
    losses, correct = scored(logits, y)
    _flag(state, losses)
    next_step = None
    if int(state.i) + 1 < state.losses.shape[0]:
        next_step = (step + 1, _rows(data[0], _indices(state, state.i + 1), k))
    fast.backward_update(logits, y, xt, opt_state, rates, state.first_bad == 0, next_step)
    state.correct += correct
    return losses
