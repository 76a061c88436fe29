"""The stacked training loop: K members, one batched forward/backward per step.

Each member has its own seed (initial weights, data order, dropout masks) and its own
learning rate; members share only the architecture, the batch size and the clock.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from normlab.data.prepare import Split, Splits
from normlab.models.dropout import step_keys
from normlab.models.stack import StackedMLP, member_losses
from normlab.runtime import synchronize
from normlab.seeding import derive_seed
from normlab.train.cuda_graph import CapturedStep
from normlab.train.optim import Optimizer

if TYPE_CHECKING:  # the runner builds the probe set; the loop only calls it
    from normlab.probes.schedule import ProbeSet, Row

EVAL_CHUNK = 1000  # rows per evaluation GEMM: its [rows, K*width] output stays in cache
SYNC_EVERY = 100  # steps between host reads of the divergence flags on a GPU


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
    """Everything one member's training produced.

    ``probes`` holds the probes' rows (step, probe, layer, name, value); ``evals`` the
    validation evaluations within epochs (step, epoch, seconds, val_loss, val_acc),
    where epoch is fractional and seconds is this member's share of the training time
    so far, probes and evaluations excluded.
    """

    epochs: list[EpochMetrics] = field(default_factory=list)
    step_losses: list[tuple[int, float]] = field(default_factory=list)
    probes: list[Row] = field(default_factory=list)
    evals: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    diverged_step: int | None = None
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        return self.diverged_step is not None


@torch.no_grad()
def evaluate(
    model: StackedMLP, split: Split, precision: str = "fp32"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss [K] and accuracy [K] of every member on ``split``, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(model.k, dtype=torch.float64, device=split.x.device)
    correct = torch.zeros(model.k, dtype=torch.long, device=split.x.device)
    first_layer = model.shared_first_layer()
    for start in range(0, len(split), EVAL_CHUNK):
        x, y = split.x[start : start + EVAL_CHUNK], split.y[start : start + EVAL_CHUNK]
        with autocast(split.x.device, precision):
            logits = model(x, first_layer=first_layer).float()
        loss_sum += member_losses(logits, y).double() * len(y)
        correct += (logits.argmax(-1) == y).sum(1)
    model.train(was_training)
    n = max(len(split), 1)
    return (loss_sum / n).float(), correct.double() / n


def _record_divergence(
    first_bad: torch.Tensor, active: list[bool], results: list[MemberResult]
) -> None:
    if not bool(first_bad.any()):
        return
    for m, bad_step in enumerate(first_bad.tolist()):
        if bad_step and active[m]:
            active[m] = False
            results[m].diverged_step = bad_step


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for the matmuls when ``precision`` is bf16; otherwise nothing."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")


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
    precision: str = "fp32",
    progress: Callable[[int], None] | None = None,
    cuda_graph: bool = True,
    probes: ProbeSet | None = None,
    eval_every: int = 0,
) -> list[MemberResult]:
    """Train every member of ``model`` for ``epochs`` epochs; one result per member.

    Each epoch visits the training split in a fresh random order per member, in
    ``len(train) // batch_size`` full batches (the incomplete last batch is dropped so
    that every step normalizes over exactly ``batch_size`` examples). A member whose
    loss becomes NaN/inf is marked diverged at that step and its parameters are frozen;
    the others go on. On a GPU, fp32 steps are captured once as a CUDA graph and
    replayed (``cuda_graph=False`` runs them eagerly, as the benchmark does to compare);
    the host reads the divergence flags only every ``SYNC_EVERY`` steps there, and an
    eager GPU run freezes a diverged member only then. ``stream`` selects fresh random
    streams for data order and dropout (used when one model is carried through several
    trainings). ``precision`` "bf16" runs the matmuls in bfloat16 under autocast while
    weights, optimizer state and normalization statistics stay fp32; it exists for the
    benchmark, which shows it slower than fp32 on the CPU measured, so study files and
    the CLI do not offer it (BENCHMARKS.md). ``progress`` is called with the number of
    steps just done. ``probes`` are measured when due, and ``eval_every`` > 0 evaluates
    the validation split every that many steps; both run the eager loop, and their time
    is left out of the epoch's.
    """
    k, device = model.k, splits.train.x.device
    if len(seeds) != k or len(lrs) != k:
        raise ValueError(f"need {k} seeds and lrs, got {len(seeds)} and {len(lrs)}")
    n_train = len(splits.train)
    steps_per_epoch = n_train // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {n_train} training examples")
    # Orders are drawn on the CPU whatever the device, so that a GPU run sees the same
    # batches as a CPU run of the same seeds (its dropout masks are the same too).
    order_gens = [
        torch.Generator().manual_seed(derive_seed(s, "data_order", stream)) for s in seeds
    ]
    dropout_bases = [derive_seed(s, "dropout", stream) for s in seeds]
    n_hidden = len(model.spec.hidden) if model.spec.dropout > 0 else 0
    # A CPU reads a flag for free; on a GPU reading one waits for the queue to drain, so
    # divergence is tracked on the device and looked at every SYNC_EVERY steps there.
    check_every = 1 if device.type == "cpu" else SYNC_EVERY
    params = list(model.parameters())
    opt_state = optimizer.init([p.detach() for p in params])
    results = [MemberResult() for _ in range(k)]
    active = [True] * k
    first_bad = torch.zeros(k, dtype=torch.long, device=device)
    x_all, y_all = splits.train.x, splits.train.y
    model.train()
    step = 0
    captured = None
    instrumented = probes is not None or eval_every > 0
    train_clock = 0.0  # training seconds of earlier epochs, probes and evaluations excluded
    if cuda_graph and device.type == "cuda" and precision == "fp32" and not instrumented:
        captured = CapturedStep(
            model,
            optimizer,
            opt_state,
            x_all,
            y_all,
            dropout_bases=dropout_bases,
            lrs=lrs,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            dropout_layers=n_hidden,
            first_bad=first_bad,
        )
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        paused = 0.0  # seconds of this epoch spent in probes and evaluations
        order = torch.stack([torch.randperm(n_train, generator=g) for g in order_gens]).to(device)
        logged_steps: list[int] = []
        logged_losses: list[torch.Tensor] = []
        if captured is not None:
            captured.set_epoch(order)
            first_step = step
            for i in range(steps_per_epoch):
                captured.replay()
                step += 1
                if step % SYNC_EVERY == 0 or i == steps_per_epoch - 1:
                    _record_divergence(first_bad, active, results)
                if progress and i % 100 == 99:
                    progress(100)
            loss_sum, correct = captured.loss_sum, captured.correct
            logged_steps = [s for s in range(first_step + 1, step + 1) if s % log_every == 0]
            logged_losses = list(captured.losses[[s - first_step - 1 for s in logged_steps]])
        else:
            loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
            correct = torch.zeros(k, dtype=torch.long, device=device)
            for i in range(steps_per_epoch):
                idx = order[:, i * batch_size : (i + 1) * batch_size].reshape(-1)
                x = x_all.index_select(0, idx).view(k, batch_size, -1)
                y = y_all.index_select(0, idx).view(k, batch_size)
                keys = step_keys(dropout_bases, step, n_hidden) if n_hidden else None
                with autocast(device, precision):
                    logits = model(x, keys)
                losses = member_losses(logits.float(), y)
                for p in params:
                    p.grad = None
                losses.sum().backward()
                step += 1
                losses = losses.detach()
                bad = ~torch.isfinite(losses)
                first_bad.masked_fill_(bad & (first_bad == 0), step)
                if step % check_every == 0 or i == steps_per_epoch - 1:
                    _record_divergence(first_bad, active, results)
                last = epoch == epochs and i == steps_per_epoch - 1
                if probes is not None and probes.due(step, last):
                    t_probe = time.perf_counter()
                    rows = probes.measure(step, model, optimizer, opt_state, (x, y, keys), lrs)
                    for m, member_rows in enumerate(rows):
                        if active[m]:
                            results[m].probes.extend(member_rows)
                    paused += time.perf_counter() - t_probe
                optimizer.step(opt_state, params, [p.grad for p in params], lrs, active)
                loss_sum += losses
                correct += (logits.detach().argmax(-1) == y).sum(1)
                if step % log_every == 0:
                    logged_steps.append(step)
                    logged_losses.append(losses)
                if eval_every and step % eval_every == 0 and len(splits.val):
                    t_eval = time.perf_counter()
                    clock = (train_clock + t_eval - t0 - paused) / k
                    mid_loss, mid_acc = (v.tolist() for v in evaluate(model, splits.val))
                    for m, (vl, va) in enumerate(zip(mid_loss, mid_acc, strict=True)):
                        if active[m]:
                            results[m].evals.append((step, step / steps_per_epoch, clock, vl, va))
                    paused += time.perf_counter() - t_eval
                if progress and i % 100 == 99:
                    progress(100)
        synchronize(device)
        train_seconds = time.perf_counter() - t0 - paused
        train_clock += train_seconds
        t1 = time.perf_counter()
        val_loss, val_acc = (
            evaluate(model, splits.val, precision)
            if len(splits.val)
            else (torch.full((k,), math.nan), torch.full((k,), math.nan))
        )
        test_loss, test_acc = evaluate(model, splits.test, precision)
        synchronize(device)
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
