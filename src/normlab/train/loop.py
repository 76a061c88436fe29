"""The stacked training loop: K members, one batched forward/backward per step.

Each member has its own seed (initial weights, data order, dropout masks) and its own
learning rate; members share only the architecture, the batch size and the clock. The
step is ``train.step.train_step``; on a GPU without instruments a CUDA graph replays it.
Instruments (probes, evaluations within epochs, progress) are hooks the loop calls when
they are due; the time of probes and evaluations is left out of the epoch's time.

Divergence is handled in the step itself (a member's ``first_bad`` flag freezes it on
the device at the step its loss stops being finite); the loop reads the flags when an
instrument needs them and at each epoch's end, and records what they say.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from normlab.data.prepare import Split, Splits
from normlab.models.stack import StackedModel
from normlab.models.statistics import precise_batches, precise_statistics, running_norms
from normlab.runtime import synchronize
from normlab.seeding import derive_seed
from normlab.train.graph import CapturedStep
from normlab.train.optim import Optimizer, Rates
from normlab.train.step import Batch, StepState, train_step
from normlab.types import WHOLE, EpochMetrics, EvalPoint, ProbeRow, RunResult, StepLoss


@dataclass(frozen=True)
class Schedule:
    """How a stack trains: batch size and epochs; ``log_every`` keeps every n-th step's
    loss; ``stream`` selects fresh random streams for data order and dropout (for one
    model carried through several trainings). ``patience`` > 0 stops a member once its
    validation accuracy has not improved for that many epochs (``epochs`` is the cap);
    ``evaluation`` is "running" (held-out data are evaluated with BN's running
    statistics) or "precise" (with statistics recomputed for the weights at hand)."""

    batch_size: int
    epochs: int
    log_every: int = 1
    stream: int = 0
    patience: int = 0
    evaluation: str = "running"


@torch.no_grad()
def evaluate(model: StackedModel, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss [K] and accuracy [K] of every member on ``split``, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(model.k, dtype=torch.float64, device=split.x.device)
    correct = torch.zeros(model.k, dtype=torch.long, device=split.x.device)
    shared, rows = model.shared_input(), model.eval_chunk
    for start in range(0, len(split), rows):
        x, y = split.x[start : start + rows], split.y[start : start + rows]
        losses, right = model.held_out(x, y, shared)
        loss_sum += losses.double() * len(y)
        correct += right
    model.train(was_training)
    n = max(len(split), 1)
    return (loss_sum / n).float(), correct.double() / n


@dataclass
class StackRun:
    """What the hooks see of a stack in training."""

    model: StackedModel
    optimizer: Optimizer
    opt_state: list[object]  # one optimizer state per phase of the model's objective
    rates: Rates
    splits: Splits
    state: StepState
    schedule: Schedule
    steps_per_epoch: int
    results: list[RunResult]
    total_steps: int
    step: int = 0
    train_clock: float = 0.0  # training seconds so far, instruments left out
    epoch_start: float = 0.0
    paused: float = 0.0  # seconds of this epoch spent in instruments
    # each member's plateau watch: its best validation accuracy, the epochs since it,
    # and whether it has stopped (it trains on with the stack, but nothing is recorded)
    best: list[float] = field(default_factory=list)
    since_best: list[int] = field(default_factory=list)
    stopped: list[bool] = field(default_factory=list)

    def active(self) -> list[bool]:
        """Which members have neither diverged (read from the device) nor stopped."""
        ok = (self.state.first_bad == 0).tolist()
        return [on and not stop for on, stop in zip(ok, self.stopped, strict=True)]

    def held_out(self, *splits: Split) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Loss and accuracy [K] of every member on each of ``splits``, with the BN
        statistics the schedule's ``evaluation`` names (the running ones stay as they
        are)."""
        if self.schedule.evaluation == "running" or not running_norms(self.model):
            return [evaluate(self.model, s) for s in splits]
        batch = self.schedule.batch_size
        with self.model.frozen_statistics():
            precise_statistics(self.model, self.splits.train, batch, precise_batches(batch))
            return [evaluate(self.model, s) for s in splits]

    def watch(self, m: int, val_acc: float) -> None:
        """Note member ``m``'s validation accuracy after an epoch; stop it once it has
        not improved for ``patience`` epochs."""
        if val_acc > self.best[m]:
            self.best[m], self.since_best[m] = val_acc, 0
        else:
            self.since_best[m] += 1
        patience = self.schedule.patience
        self.stopped[m] = bool(patience) and self.since_best[m] >= patience

    def finished(self) -> bool:
        """Whether every member has stopped or diverged."""
        return not any(self.active())

    def clock(self) -> float:
        """This member's share of the training seconds so far (instruments left out)."""
        now = self.train_clock + time.perf_counter() - self.epoch_start - self.paused
        return now / self.model.k


class Hook(Protocol):
    """Something the loop calls after a step when ``due``. ``inside_step`` hooks run
    between backward and update and get the step's ``Batch``; ``instrument`` hooks have
    their time left out of the epoch's."""

    inside_step: bool
    instrument: bool

    def due(self, step: int, end_of_epoch: bool, end_of_run: bool) -> bool: ...

    def __call__(self, run: StackRun, batch: Batch | None) -> None: ...


@dataclass
class EvalHook:
    """Evaluates the validation split every ``every`` steps, for time to target."""

    every: int
    inside_step = False
    instrument = True

    def due(self, step: int, end_of_epoch: bool, end_of_run: bool) -> bool:
        return step % self.every == 0

    def __call__(self, run: StackRun, batch: Batch | None) -> None:
        if not len(run.splits.val):
            return
        clock = run.clock()
        loss, acc = (v.tolist() for v in run.held_out(run.splits.val)[0])
        for m, on in enumerate(run.active()):
            if on:
                point = EvalPoint(run.step, run.step / run.steps_per_epoch, clock, loss[m], acc[m])
                run.results[m].evals.append(point)


@dataclass
class ProgressHook:
    """Reports the steps done, every ``every`` steps and at each epoch's end."""

    report: Callable[[int], None]
    every: int = 100
    inside_step = False
    instrument = False
    _reported: int = 0

    def due(self, step: int, end_of_epoch: bool, end_of_run: bool) -> bool:
        return step % self.every == 0 or end_of_epoch

    def __call__(self, run: StackRun, batch: Batch | None) -> None:
        self.report(run.step - self._reported)
        self._reported = run.step


def train_stack(
    model: StackedModel,
    optimizer: Optimizer,
    splits: Splits,
    seeds: Sequence[int],
    lrs: Sequence[float],
    schedule: Schedule,
    hooks: Sequence[Hook] = (),
    cuda_graph: bool = True,
) -> list[RunResult]:
    """Train every member of ``model`` on ``splits``; one result per member.

    Each epoch visits the training split in a fresh random order per member, in
    ``len(train) // batch_size`` full batches (the incomplete last batch is dropped so
    that every step normalizes over exactly ``batch_size`` examples). A member whose
    loss becomes NaN/inf is marked diverged at that step and its parameters are frozen;
    the others go on. On a GPU the step is captured once as a CUDA graph and replayed,
    unless ``cuda_graph`` is off or a hook must look inside the step. With
    ``schedule.patience`` a member stops at its validation plateau, and the stack once
    every member has stopped.
    """
    run = _prepare(model, optimizer, splits, seeds, lrs, schedule)
    data = (splits.train.x, splits.train.y)
    inside = [h for h in hooks if h.inside_step]
    after = [h for h in hooks if not h.inside_step]
    captured = None
    if cuda_graph and splits.train.x.device.type == "cuda" and not inside:
        captured = CapturedStep(model, optimizer, run.opt_state, run.state, data, run.rates)
    order_gens = [
        torch.Generator().manual_seed(derive_seed(s, "data_order", schedule.stream)) for s in seeds
    ]
    model.train()
    for epoch in range(1, schedule.epochs + 1):
        # Orders are drawn on the CPU whatever the device, so that a GPU run sees the same
        # batches as a CPU run of the same seeds (its dropout masks are the same too).
        order = torch.stack([torch.randperm(len(splits.train), generator=g) for g in order_gens])
        run.state.start_epoch(order.to(splits.train.x.device))
        run.epoch_start, run.paused = time.perf_counter(), 0.0
        for i in range(run.steps_per_epoch):
            run.step += 1
            end_of_epoch = i == run.steps_per_epoch - 1
            ends = (end_of_epoch, end_of_epoch and epoch == schedule.epochs)
            _take_step(run, captured, data, [h for h in inside if h.due(run.step, *ends)])
            _call([h for h in after if h.due(run.step, *ends)], run, None)
        synchronize(splits.train.x.device)
        train_seconds = time.perf_counter() - run.epoch_start - run.paused
        run.train_clock += train_seconds
        _end_epoch(run, epoch, schedule, train_seconds)
        if run.finished():
            break
    return run.results


def _prepare(model, optimizer, splits, seeds, lrs, schedule: Schedule) -> StackRun:
    k, device = model.k, splits.train.x.device
    if len(seeds) != k or len(lrs) != k:
        raise ValueError(f"need {k} seeds and lrs, got {len(seeds)} and {len(lrs)}")
    n_train = len(splits.train)
    steps_per_epoch = n_train // schedule.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size {schedule.batch_size} exceeds the {n_train} training examples"
        )
    dropout_bases = [derive_seed(s, "dropout", schedule.stream) for s in seeds]
    state = StepState.create(k, n_train, schedule.batch_size, dropout_bases, device)
    opt_state = [optimizer.init([p.detach() for p in group]) for group in model.parameter_groups()]
    results = [RunResult() for _ in range(k)]
    return StackRun(model, optimizer, opt_state, Rates.of(lrs, device), splits, state, schedule,
                    steps_per_epoch, results, steps_per_epoch * schedule.epochs,
                    best=[-math.inf] * k, since_best=[0] * k, stopped=[False] * k)  # fmt: skip


def _take_step(
    run: StackRun,
    captured: CapturedStep | None,
    data: tuple[torch.Tensor, torch.Tensor],
    looking: Sequence[Hook],
) -> None:
    """One step: the captured graph's replay, or the eager step with the hooks that look
    inside it."""
    if captured is not None:
        captured.replay()
        return
    look = functools.partial(_call, looking, run) if looking else None
    train_step(run.model, run.optimizer, run.opt_state, run.state, data, run.rates, look)


def _call(hooks: Sequence[Hook], run: StackRun, batch: Batch | None) -> None:
    for hook in hooks:
        start = time.perf_counter()
        hook(run, batch)
        if hook.instrument:
            run.paused += time.perf_counter() - start


def _end_epoch(run: StackRun, epoch: int, schedule: Schedule, train_seconds: float) -> None:
    """Evaluate after the epoch and record each member's numbers; a member that diverged
    in an earlier epoch, or stopped at its plateau, gets nothing more. A precise
    evaluation keeps the running statistics' figures beside it, as rows of the
    ``evaluation`` measurement."""
    model, splits, steps = run.model, run.splits, run.steps_per_epoch
    k, device = model.k, splits.train.x.device
    t1 = time.perf_counter()
    nan = torch.full((k,), math.nan)
    held_out = [splits.val, splits.test] if len(splits.val) else [splits.test]
    evaluated = run.held_out(*held_out)
    running = _running_figures(run, held_out)
    (val_loss, val_acc), (test_loss, test_acc) = ([(nan, nan)] * (2 - len(held_out))
                                                  + evaluated)  # fmt: skip
    synchronize(device)
    eval_seconds = time.perf_counter() - t1
    first = run.step - steps
    logged = [s for s in range(first + 1, run.step + 1) if s % schedule.log_every == 0]
    losses = run.state.losses[[s - first - 1 for s in logged]].T.tolist() if logged else [[]] * k
    train_loss = (run.state.loss_sum / steps).tolist()
    train_acc = (run.state.correct.double() / (steps * schedule.batch_size)).tolist()
    columns = zip(train_loss, train_acc, val_loss.tolist(), val_acc.tolist(),
                  test_loss.tolist(), test_acc.tolist(), strict=True)  # fmt: skip
    seconds = (train_seconds + eval_seconds) / k
    for m, (r, bad, metrics, member_losses_) in enumerate(
        zip(run.results, run.state.first_bad.tolist(), columns, losses, strict=True)
    ):
        if run.stopped[m]:
            continue  # it stopped at its plateau: what it does later is not its run's
        if bad and r.diverged_step is None:
            r.diverged_step = bad
        if r.diverged_step is not None and r.diverged_step <= first:
            continue  # it diverged in an earlier epoch: nothing after that is meaningful
        r.epochs.append(EpochMetrics(epoch, *metrics, seconds, eval_seconds / k))
        r.step_losses.extend(
            StepLoss(s, loss)
            for s, loss in zip(logged, member_losses_, strict=True)
            if r.diverged_step is None or s <= r.diverged_step
        )
        r.probes.extend(ProbeRow(run.step, "evaluation", WHOLE, name, values[m])
                        for name, values in running.items())  # fmt: skip
        r.seconds += seconds
        if r.diverged_step is None:
            run.watch(m, r.epochs[-1].val_acc)


def _running_figures(run: StackRun, held_out: list[Split]) -> dict[str, list[float]]:
    """Loss and accuracy with the running statistics on ``held_out`` (validation, test),
    for a precisely evaluated run with running statistics; empty otherwise."""
    if run.schedule.evaluation == "running" or not running_norms(run.model):
        return {}
    names = ("val", "test")[-len(held_out):]
    out = {}
    for name, (loss, acc) in zip(names, (evaluate(run.model, s) for s in held_out), strict=True):
        out[f"running_{name}_loss"], out[f"running_{name}_acc"] = loss.tolist(), acc.tolist()
    return out
