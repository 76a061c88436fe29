"""Claim 7's inference side: BN folded away, proven equal, and timed.

Trains the seed network with BN (one member), folds BN into the dense layer before it
(``models.fold``), and reports the largest output difference on the whole test set and
the eval-mode latency of three models of the same shape: without BN, with BN (running
statistics), and with BN folded.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from normlab.data.prepare import Splits
from normlab.models.fold import fold_batchnorm
from normlab.models.stack import MLPSpec, StackedMLP
from normlab.train.loop import evaluate, train_stack
from normlab.train.optim import Adam

LATENCY_BATCHES = (1, 256)
# claim 7's budgets: (seeds, epochs of training before folding)
OVERHEAD_BUDGETS = {"quick": (5, 1), "standard": (8, 3), "full": (12, 5)}


@dataclass(frozen=True)
class FoldReport:
    """What folding changed: output differences, accuracies and latencies."""

    max_abs_diff: float
    max_logit: float
    test_acc_bn: float
    test_acc_folded: float
    # batch size -> model ("none", "batch", "folded") -> median seconds per forward
    latency: dict[int, dict[str, float]]


def _latency(model: StackedMLP, x: torch.Tensor, reps: int) -> float:
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(reps):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def fold_report(
    splits: Splits,
    *,
    hidden: Sequence[int] = (512,),
    epochs: int = 1,
    batch_size: int = 128,
    seed: int = 0,
    reps: int = 200,
) -> FoldReport:
    """Train a BN network on ``splits``, fold it, and measure the difference and latency."""
    spec = MLPSpec(splits.n_features, tuple(hidden), splits.n_classes, norm="batch", dropout=0.2)
    model = StackedMLP(spec, [seed]).to(splits.train.x.device)
    train_stack(model, Adam(), splits, seeds=[seed], lrs=[1e-3], batch_size=batch_size,
                epochs=epochs)  # fmt: skip
    folded = fold_batchnorm(model)
    model.eval()
    with torch.no_grad():
        want, got = model(splits.test.x), folded(splits.test.x)
    plain = StackedMLP(folded.spec, [seed]).to(splits.train.x.device).eval()
    latency = {
        b: {
            name: _latency(m, splits.test.x[:b], reps)
            for name, m in (("none", plain), ("batch", model), ("folded", folded))
        }
        for b in LATENCY_BATCHES
    }
    return FoldReport(
        max_abs_diff=float((got - want).abs().max()),
        max_logit=float(want.abs().max()),
        test_acc_bn=float(evaluate(model, splits.test)[1][0]),
        test_acc_folded=float(evaluate(folded, splits.test)[1][0]),
        latency=latency,
    )


def inference_overhead(
    splits: Splits, budget: str
) -> tuple[dict[str, dict[str, dict[int, float]]], float]:
    """Claim 7's measurements: for each inference batch size, log latency of the BN
    network (running statistics) and of the same network with BN folded, per seed;
    and the largest output difference folding made, relative to the largest logit."""
    seeds, epochs = OVERHEAD_BUDGETS[budget]
    arms: dict[str, dict[str, dict[int, float]]] = {
        f"batch={b}": {"batch": {}, "folded": {}} for b in LATENCY_BATCHES
    }
    worst = 0.0
    for seed in range(seeds):
        r = fold_report(splits, epochs=epochs, seed=seed)
        worst = max(worst, r.max_abs_diff / max(1.0, r.max_logit))
        for b, times in r.latency.items():
            for name in ("batch", "folded"):
                arms[f"batch={b}"][name][seed] = math.log(times[name])
    return arms, worst
