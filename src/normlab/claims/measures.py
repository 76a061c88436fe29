"""The outcomes the claims are about, measured from stored runs.

A measure takes one run (or, for claims with ``across``, one seed's runs over a factor)
and returns a number; NaN means "no value" (the run diverged, failed or never finished),
and the comparison drops that seed from both arms and says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from normlab.analysis.records import RunRecord, accuracy_curve
from normlab.models.registry import FOLD_TOLERANCE
from normlab.spec.config import RunConfig
from normlab.types import FINISHED, WHOLE, Status


def chance(run: RunRecord) -> float:
    """The accuracy of guessing uniformly among the classes of ``run``'s dataset."""
    return 1.0 / run.config.source.classes


def final_test_accuracy(run: RunRecord) -> float:
    """Test accuracy after the last epoch (NaN for a run that did not finish)."""
    return run.final("test_acc")


def final_val_accuracy(run: RunRecord) -> float:
    """Validation accuracy after the last epoch (NaN for a run that did not finish)."""
    return run.final("val_acc")


def difference_in_differences(
    measure: Callable[[RunRecord], float], field: str, treated: str, control: str
) -> Callable[[list[RunRecord]], float]:
    """(BN − none where ``field`` is ``treated``) − (BN − none where it is ``control``)
    of ``measure``, from one seed's runs over norm × ``field``: how much BN's effect
    changes between the two (NaN unless all four runs have a value)."""

    def measure_did(runs: list[RunRecord]) -> float:
        return bn_effect(measure, field, treated)(runs) - bn_effect(measure, field, control)(runs)

    return measure_did


def bn_effect(
    measure: Callable[[RunRecord], float], field: str, value: str
) -> Callable[[list[RunRecord]], float]:
    """BN − none of ``measure`` among one seed's runs whose ``field`` is ``value``."""

    def measure_effect(runs: list[RunRecord]) -> float:
        by_norm = {r.config.norm: r for r in runs if str(getattr(r.config, field)) == value}
        if "batch" not in by_norm or "none" not in by_norm:
            return math.nan
        return measure(by_norm["batch"]) - measure(by_norm["none"])

    return measure_effect


def against_best(
    measure: Callable[[RunRecord], float], is_default: Callable[[RunConfig], bool]
) -> Callable[[list[RunRecord]], float]:
    """``measure`` of a seed's default run minus that of its other run with the best
    reported validation accuracy (the selection reads validation only, so a measure on
    test is not biased by it); NaN unless every run of the seed finished."""

    def measure_against_best(runs: list[RunRecord]) -> float:
        if any(r.status not in FINISHED for r in runs):
            return math.nan
        default = [r for r in runs if is_default(r.config)]
        others = [r for r in runs if not is_default(r.config) and r.reported is not None]
        if len(default) != 1 or not others:
            return math.nan
        best = max(others, key=lambda r: r.final("val_acc"))
        return measure(default[0]) - measure(best)

    return measure_against_best


def train_test_gap(run: RunRecord) -> float:
    """The reported epoch's training accuracy (train mode, epoch mean) minus its test
    accuracy."""
    epoch = run.reported
    return epoch.train_acc - epoch.test_acc if epoch is not None else math.nan


def largest_usable_lr(tolerance: float) -> Callable[[list[RunRecord]], float]:
    """log10 of the largest learning rate whose run finished within ``tolerance`` of the
    best reported validation accuracy over the rates tried (diverged runs never
    qualify); +inf when that is the top of the grid (censored: the largest usable rate
    is at least that, unknown how much larger; a ranked comparison orders it last);
    NaN when none of the seed's runs finished (the seed is then dropped)."""

    def measure(runs: list[RunRecord]) -> float:
        finished = [(r.config.lr, r.final("val_acc")) for r in runs
                     if r.reported is not None]  # fmt: skip
        if not finished:
            return math.nan
        best = max(acc for _, acc in finished)
        largest = max(lr for lr, acc in finished if acc >= best - tolerance)
        return math.inf if largest == max(r.config.lr for r in runs) else math.log10(largest)

    return measure


def spread_of_final_accuracy(runs: list[RunRecord]) -> float:
    """Standard deviation of final test accuracy over the runs. A diverged run counts
    as chance level, one over its dataset's classes (not converging is the worst
    dependence on the init); a run without an outcome (failed, or not trained yet)
    leaves the seed without a value."""
    if any(r.status not in FINISHED for r in runs):
        return math.nan
    accs = [final_test_accuracy(r) if r.status == Status.DONE else chance(r) for r in runs]
    return float(np.std(accs, ddof=1)) if len(accs) > 1 else math.nan


def covariate_shift(run: RunRecord) -> float:
    """Mean of 1 − cos(G, G') over the measurements and the layers that have layers
    before them (Santurkar et al.'s ICS, made independent of the gradients' scale)."""
    per_layer = run.probe("ics", "cosine")
    values = [1 - c for layer, cs in per_layer.items() if layer > 0 for c in cs]
    return float(np.mean(values)) if values and run.status == Status.DONE else math.nan


def gradient_imbalance(run: RunRecord) -> float:
    """Mean over the measurements of |log10(‖∇W_first‖ / ‖∇W_last hidden‖)|: 0 when the
    first and the last hidden layer get gradients of equal size, 1 for a factor of 10."""
    norms = run.probe("layers", "grad_norm")
    hidden = sorted(norms)[:-1]  # the output layer aside
    if run.status != Status.DONE or len(hidden) < 2:
        return math.nan
    pairs = zip(norms[hidden[0]], norms[hidden[-1]], strict=True)
    return float(np.mean([abs(math.log10(a / b)) for a, b in pairs if a > 0 and b > 0]))


def first_step_ratio(run: RunRecord) -> float:
    """log10(‖∇W_first‖ / ‖∇W_last hidden‖) of the first step (NaN without two hidden
    layers' gradient norms at step 1)."""
    norms = run.probe("layers", "grad_norm", step=1)
    hidden = sorted(norms)[:-1]  # the output layer aside
    if len(hidden) < 2 or not norms[hidden[0]] or not norms[hidden[-1]]:
        return math.nan
    first, last = norms[hidden[0]][0], norms[hidden[-1]][0]
    return math.log10(first / last) if first > 0 and last > 0 else math.nan


MIN_DEPTHS = 3  # depths a slope over depth rests on


def init_gradient_growth(runs: list[RunRecord]) -> float:
    """How fast, over depth, the first hidden layer's gradient outgrows the last one's at
    initialization: the least-squares slope of ``first_step_ratio`` against the number of
    hidden layers (decades per layer; NaN with fewer than ``MIN_DEPTHS`` depths, since
    two points always lie on a line). Yang et al. (2019) predict a positive slope for
    BN."""
    points = [(len(r.config.hidden), first_step_ratio(r)) for r in runs]
    points = [(depth, ratio) for depth, ratio in points if not math.isnan(ratio)]
    if len({depth for depth, _ in points}) < MIN_DEPTHS:
        return math.nan
    depth, ratio = np.array(points).T
    return float(np.polyfit(depth, ratio, 1)[0])


def bn_probe_difference(
    first: str, second: str, step: int | None = None
) -> Callable[[RunRecord], float]:
    """The ``bn`` probe's ``first`` minus its ``second`` at its last measurement (at
    ``step``, if given: NaN where it has none) (e.g. accuracy with running statistics
    minus accuracy with batch statistics)."""

    def measure(run: RunRecord) -> float:
        if step is None:
            return run.last("bn", first) - run.last("bn", second)
        at = [run.probe("bn", name, step).get(WHOLE, [math.nan])[0] for name in (first, second)]
        return at[0] - at[1] if run.status == Status.DONE else math.nan

    return measure


def variance_shift(run: RunRecord) -> float:
    """Li et al.'s variance shift at the last measurement, mean over the BN layers (1:
    the running variances match inference)."""
    return run.last("bn", "variance_shift")


def steps_to(target: float) -> Callable[[RunRecord], float]:
    """Steps until validation accuracy first reaches ``target`` (+inf if never), from
    the evaluations within epochs and at each epoch's end."""

    def measure(run: RunRecord) -> float:
        reached = [s for s, acc in accuracy_curve(run).items() if acc >= target]
        return float(min(reached)) if reached else math.inf

    return measure


def epochs_to(target: float) -> Callable[[RunRecord], float]:
    """Epochs (of the run's own batch size) until validation accuracy first reaches
    ``target`` (+inf if never): ``steps_to`` over the steps of one epoch."""

    def measure(run: RunRecord) -> float:
        return steps_to(target)(run) / run.steps_per_epoch

    return measure


def log_mean_probe(probe: str, name: str) -> Callable[[RunRecord], float]:
    """log10 of the mean over training of a whole-network probe value, the measurement
    at initialization aside (NaN for an unfinished run, or a mean that is not positive)."""

    def measure(run: RunRecord) -> float:
        values = [v for step, v in _whole(run, probe, name) if step > 1]
        if run.status != Status.DONE or not values or not np.mean(values) > 0:
            return math.nan
        return math.log10(float(np.mean(values)))

    return measure


def _whole(run: RunRecord, probe: str, name: str) -> list[tuple[int, float]]:
    """A whole-network probe value's measurements, as (step, value)."""
    return [(r.step, r.value) for r in run.probes if (r.probe, r.name, r.layer) ==
            (probe, name, WHOLE) and r.value is not None]  # fmt: skip


def _noise_ratio(run: RunRecord, steps: Callable[[int], bool]) -> float:
    """log10(mean tr Σ_B / mean |G|²) over the ``noise`` measurements at the ``steps``
    kept; NaN for an unfinished run, or without measurements or a positive mean signal."""
    trace = [v for step, v in _whole(run, "noise", "trace") if steps(step)]
    signal = [v for step, v in _whole(run, "noise", "signal") if steps(step)]
    if run.status != Status.DONE or not trace or not signal or not np.mean(signal) > 0:
        return math.nan
    return math.log10(float(np.mean(trace)) / float(np.mean(signal)))


def gradient_noise(run: RunRecord) -> float:
    """log10 of one step's gradient noise over training (probe ``noise``: tr Σ_B over
    |G|² at the run's batch size), the measurement at initialization aside: the ratio of
    the mean of tr Σ_B to the mean of |G|² over the measurements, so that a measurement
    whose unbiased signal estimate came out negative (the noisiest ones) is weighed,
    never dropped. NaN for an unfinished run, or one whose mean signal is not positive
    (a seed without a value, counted under the verdict)."""
    return _noise_ratio(run, lambda step: step > 1)


def phase_gradient_noise(low: float, high: float) -> Callable[[RunRecord], float]:
    """``gradient_noise`` over the measurements taken while the training loss on the
    probe's batches (``loss``) was within [``low``, ``high``]: one phase of training,
    the same for every batch size and norm however fast each gets there. NaN for a run
    with no measurement in that phase."""

    def measure(run: RunRecord) -> float:
        loss = dict(_whole(run, "noise", "loss"))
        return _noise_ratio(run, lambda step: step > 1 and low <= loss.get(step, -1.0) <= high)

    return measure


# A GAN whose images are mostly not digits the reference classifier recognizes (below
# this fraction; real MNIST test digits: 98.6%) failed to train: it did not collapse onto a
# few modes, it never learned the data, and its KL says nothing about collapse.
TRAINED_FROM = 0.5


def failed_to_train(run: RunRecord) -> float:
    """1 if a GAN diverged or drew fewer than ``TRAINED_FROM`` recognizable digits, else
    0 (NaN: unfinished)."""
    if run.status == Status.DIVERGED:
        return 1.0
    if run.status != Status.DONE:
        return math.nan
    return float(run.last("modes", "recognizable") < TRAINED_FROM)


def _trained(run: RunRecord, value: Callable[[RunRecord], float]) -> float:
    """``value`` of a GAN that trained; NaN (no value) for one that failed to."""
    return value(run) if failed_to_train(run) == 0.0 else math.nan


def mode_kl(run: RunRecord) -> float:
    """KL(generated mode distribution ‖ uniform) after a GAN's training, in nats; no
    value for a GAN that failed to train (``failed_to_train``: its KL is near log M
    whether or not it collapsed)."""
    return _trained(run, lambda r: r.last("modes", "kl"))


def modes_missed(run: RunRecord) -> float:
    """The fraction of the dataset's modes a GAN's images never hit (no value for a GAN
    that failed to train)."""
    return _trained(run, lambda r: 1.0 - r.last("modes", "modes") / r.config.source.classes)


def sample_correlation(run: RunRecord) -> float:
    """Within-batch minus between-batch correlation of a GAN's images (NaN if none)."""
    return run.last("modes", "batch_correlation") if run.status == Status.DONE else math.nan


def collapse_note(runs: list[RunRecord]) -> str:
    """How many GANs failed to train (diverged, or drew few recognizable digits) and how
    many of the rest collapsed totally (their images all one mode), in which arms."""
    failed = [r for r in runs if failed_to_train(r) == 1.0]
    collapsed = [r for r in runs if r not in failed and r.status == Status.DONE
                 and r.last("modes", "modes") <= 1]  # fmt: skip
    if not collapsed and not failed:
        return f"every one of {len(runs)} GANs trained; none collapsed totally"
    diverged = sum(r.status == Status.DIVERGED for r in failed)
    parts = [f"{len(failed)} failed to train ({diverged} diverged; the rest drew under "
             f"{TRAINED_FROM:.0%} recognizable digits), no value"] if failed else []  # fmt: skip
    parts += [f"{len(collapsed)} collapsed totally (one mode)"] if collapsed else []
    arms = sorted({f"{r.config.dataset} G={r.config.norm} D={r.config.discriminator_norm}"
                   f"{' joint' if r.config.arch.discriminator_batch == 'joint' else ''}"
                   for r in collapsed + failed})  # fmt: skip
    return f"of {len(runs)} GANs {' and '.join(parts)}: {'; '.join(arms)}"


def latency_log_ratio(batch: int) -> Callable[[RunRecord], float]:
    """log(latency with BN / latency with BN folded) of one model at inference batch
    ``batch`` (probe ``inference``; positive = BN slower)."""

    def measure(run: RunRecord) -> float:
        bn, folded = (
            run.last("inference", f"latency_bn_b{batch}"),
            run.last("inference", f"latency_folded_b{batch}"),
        )
        return math.log(bn / folded) if bn > 0 and folded > 0 else math.nan

    return measure


def fold_note(runs: list[RunRecord]) -> str:
    """Whether folding kept every run's outputs (probe ``inference``'s ``fold_diff``)."""
    diffs = [r.last("inference", "fold_diff") for r in runs]
    worst = max((d for d in diffs if not math.isnan(d)), default=math.nan)
    if math.isnan(worst):
        return "no run measured folding"
    verdict = "identical to float rounding" if worst <= FOLD_TOLERANCE else "DIFFERENT"
    return (
        f"folded outputs differ from BN's by at most {worst:.1e} of the largest logit "
        f"(tolerance {FOLD_TOLERANCE:g}): {verdict}"
    )
