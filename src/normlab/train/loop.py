"""The stacked training loop: K members, one batched forward/backward per step.

Each member has its own seed (initial weights, data order, dropout masks) and its own
learning rate; members share only the architecture, the batch size and the clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from normlab.data.prepare import Split, Splits
from normlab.models.stack import StackedMLP, member_losses
from normlab.seeding import derive_seed
from normlab.train.optim import Optimizer

EVAL_CHUNK = 2500


@dataclass
class EpochMetrics:
    """One member's numbers for one epoch.

    ``train_loss``/``train_acc`` average the epoch's training steps (train mode, as
    Keras's ``fit`` reports them); val and test are evaluated after the epoch in eval
    mode (running statistics, no dropout). ``seconds`` is this member's share of the
    stack's wall time for the epoch (training and evaluation), ``eval_seconds`` the
    evaluation part of it.
    """

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    seconds: float
    eval_seconds: float


@dataclass
class MemberResult:
    """Everything one member's training produced."""

    epochs: list[EpochMetrics] = field(default_factory=list)
    step_losses: list[tuple[int, float]] = field(default_factory=list)
    diverged_step: int | None = None
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        return self.diverged_step is not None


@torch.no_grad()
def evaluate(model: StackedMLP, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss [K] and accuracy [K] of every member on ``split``, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(model.k, dtype=torch.float64, device=split.x.device)
    correct = torch.zeros(model.k, dtype=torch.long, device=split.x.device)
    for start in range(0, len(split), EVAL_CHUNK):
        x, y = split.x[start : start + EVAL_CHUNK], split.y[start : start + EVAL_CHUNK]
        logits = model(x)
        loss_sum += member_losses(logits, y).double() * len(y)
        correct += (logits.argmax(-1) == y).sum(1)
    model.train(was_training)
    n = max(len(split), 1)
    return (loss_sum / n).float(), correct.double() / n


def _dropout_masks(
    generators: Sequence[torch.Generator], model: StackedMLP, batch: int, device: torch.device
) -> list[torch.Tensor] | None:
    p = model.spec.dropout
    if p == 0.0:
        return None
    scale = 1.0 / (1.0 - p)
    masks = []
    for width in model.spec.hidden:
        u = torch.stack([torch.rand(batch, width, generator=g, device=device) for g in generators])
        masks.append((u >= p).to(u.dtype) * scale)
    return masks


def train_stack(
    model: StackedMLP,
    optimizer: Optimizer,
    splits: Splits,
    *,
    seeds: Sequence[int],
    lrs: Sequence[float],
    batch_size: int,
    epochs: int,
    log_every: int = 1,
    stream: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[MemberResult]:
    """Train every member of ``model`` for ``epochs`` epochs; one result per member.

    Each epoch visits the training split in a fresh random order per member, in
    ``len(train) // batch_size`` full batches (the incomplete last batch is dropped so
    that every step normalizes over exactly ``batch_size`` examples). A member whose
    loss becomes NaN/inf is marked diverged at that step and its parameters are frozen;
    the others go on. ``stream`` selects fresh random streams for data order and
    dropout (used when one model is carried through several trainings). ``progress``
    is called with the number of steps just done.
    """
    k, device = model.k, splits.train.x.device
    if len(seeds) != k or len(lrs) != k:
        raise ValueError(f"need {k} seeds and lrs, got {len(seeds)} and {len(lrs)}")
    n_train = len(splits.train)
    steps_per_epoch = n_train // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {n_train} training examples")
    order_gens = [
        torch.Generator(device).manual_seed(derive_seed(s, "data_order", stream)) for s in seeds
    ]
    drop_gens = [
        torch.Generator(device).manual_seed(derive_seed(s, "dropout", stream)) for s in seeds
    ]
    params = list(model.parameters())
    opt_state = optimizer.init([p.detach() for p in params])
    results = [MemberResult() for _ in range(k)]
    active = [True] * k
    x_all, y_all = splits.train.x, splits.train.y
    model.train()
    step = 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = torch.stack(
            [torch.randperm(n_train, generator=g, device=device) for g in order_gens]
        )
        loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
        correct = torch.zeros(k, dtype=torch.long, device=device)
        logged_steps: list[int] = []
        logged_losses: list[torch.Tensor] = []
        for i in range(steps_per_epoch):
            idx = order[:, i * batch_size : (i + 1) * batch_size]
            x, y = x_all[idx], y_all[idx]
            logits = model(x, _dropout_masks(drop_gens, model, batch_size, device))
            losses = member_losses(logits, y)
            for p in params:
                p.grad = None
            losses.sum().backward()
            step += 1
            losses = losses.detach()
            finite = torch.isfinite(losses)
            if not bool(finite.all()):
                for m in torch.nonzero(~finite).flatten().tolist():
                    if active[m]:
                        active[m] = False
                        results[m].diverged_step = step
            optimizer.step(opt_state, params, [p.grad for p in params], lrs, active)
            loss_sum += losses.double()
            correct += (logits.detach().argmax(-1) == y).sum(1)
            if step % log_every == 0:
                logged_steps.append(step)
                logged_losses.append(losses)
            if progress and i % 100 == 99:
                progress(100)
        train_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        val_loss, val_acc = (
            evaluate(model, splits.val)
            if len(splits.val)
            else (torch.full((k,), math.nan), torch.full((k,), math.nan))
        )
        test_loss, test_acc = evaluate(model, splits.test)
        eval_seconds = time.perf_counter() - t1
        if progress:
            progress(steps_per_epoch % 100)
        train_loss = (loss_sum / steps_per_epoch).tolist()
        train_acc = (correct.double() / (steps_per_epoch * batch_size)).tolist()
        val_loss_l, val_acc_l = val_loss.tolist(), val_acc.tolist()
        test_loss_l, test_acc_l = test_loss.tolist(), test_acc.tolist()
        logged = torch.stack(logged_losses).T.tolist() if logged_losses else [[]] * k
        for m, r in enumerate(results):
            if r.diverged_step is not None and r.diverged_step <= (epoch - 1) * steps_per_epoch:
                continue  # it diverged in an earlier epoch: nothing after that is meaningful
            r.epochs.append(
                EpochMetrics(
                    epoch=epoch,
                    train_loss=train_loss[m],
                    train_acc=train_acc[m],
                    val_loss=val_loss_l[m],
                    val_acc=val_acc_l[m],
                    test_loss=test_loss_l[m],
                    test_acc=test_acc_l[m],
                    seconds=(train_seconds + eval_seconds) / k,
                    eval_seconds=eval_seconds / k,
                )
            )
            r.step_losses.extend(
                (s, loss)
                for s, loss in zip(logged_steps, logged[m], strict=True)
                if r.diverged_step is None or s <= r.diverged_step
            )
            r.seconds += (train_seconds + eval_seconds) / k
    return results
