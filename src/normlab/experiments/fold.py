"""``normlab fold``: train a BN network, fold BN away, prove the outputs equal, time it.

The same operations as the ``inference`` probe (claim 7), on one model trained for the
purpose and compared on the whole test set, against a network without BN as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from normlab.data.prepare import Splits
from normlab.models.registry import FOLD_TOLERANCE
from normlab.probes.inference import LATENCY_BATCHES, REPEATS, latency, output_difference
from normlab.spec.config import RunConfig
from normlab.train.loop import Schedule, evaluate, train_stack
from normlab.train.optimizers import make_optimizer

FOLD_BATCH_SIZE = 128


@dataclass(frozen=True)
class FoldReport:
    """What folding changed: output differences, accuracies and latencies."""

    config: RunConfig
    max_abs_diff: float
    max_logit: float
    test_acc_bn: float
    test_acc_folded: float
    # batch size -> model ("none", "batch", "folded") -> median seconds per forward
    latency: dict[int, dict[str, float]]
    images: int  # test images compared
    repeats: int = REPEATS

    @property
    def relative_diff(self) -> float:
        """The largest output difference over the largest logit (at least 1)."""
        return self.max_abs_diff / max(1.0, self.max_logit)

    @property
    def identical(self) -> bool:
        """Whether folding kept the outputs to float rounding (``FOLD_TOLERANCE``)."""
        return self.relative_diff <= FOLD_TOLERANCE


def fold_config(
    hidden: Sequence[int] = (512,), epochs: int = 1, inputs: str = "scaled", seed: int = 0
) -> RunConfig:
    """The seed's network with BN, as ``normlab fold`` trains it (Keras semantics)."""
    return RunConfig(hidden=tuple(hidden), norm="batch", epochs=epochs, inputs=inputs,
                     batch_size=FOLD_BATCH_SIZE, seed=seed)  # fmt: skip


def fold_report(config: RunConfig, splits: Splits) -> FoldReport:
    """Train ``config`` (a foldable network) on ``splits``, fold it, compare the outputs
    on every test image and time one forward pass without BN, with BN and folded."""
    family, spec = config.family, config.model_spec()
    device = splits.train.x.device
    model = family.build(spec, [config.seed]).to(device)
    schedule = Schedule(config.batch_size, config.epochs)
    train_stack(model, make_optimizer(config), splits, [config.seed], [config.lr], schedule)
    folded = model.fold()
    diff, largest = output_difference(model, folded, splits.test.x)
    plain = family.build(folded.spec, [config.seed]).to(device)
    models = {"none": plain, "batch": model, "folded": folded}
    return FoldReport(
        config=config,
        max_abs_diff=float(diff[0]),
        max_logit=float(largest[0]),
        test_acc_bn=float(evaluate(model, splits.test)[1][0]),
        test_acc_folded=float(evaluate(folded, splits.test)[1][0]),
        latency={
            b: {name: latency(m, splits.test.x[:b]) for name, m in models.items()}
            for b in LATENCY_BATCHES
        },
        images=len(splits.test),
    )
