"""The seed notebook's claims about BN, and how normlab judges each.

Claims 1-10 and 13-17 are the seed's; 11, 12, 18, 19, 20, 21 and 22 are parts of claims
3, 4, 14, 15, 16 and 13 that the literature adds (Yang et al.'s counter-hypothesis, Li
et al.'s variance shift, Keskar et al.'s large-batch gap, BN in a GAN's discriminator)
or that split a claim in two. Each claim names
its study (``claims/studies/<study>.toml``), the outcome it is about, the factors that
split it into comparisons, and the verdict rule (``analysis.verdict``): which sign of
the effect the claim predicts and what size matters. Every comparison sets an arm
(usually BN) against a baseline (no normalization, GroupNorm, ...) with all other
factors equal; the arms share seeds, so the comparison is paired by seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from normlab.analysis.verdict import Rule
from normlab.claims.claim import Claim, claim_study
from normlab.claims.measures import (
    against_best,
    bn_effect,
    bn_probe_difference,
    collapse_note,
    covariate_shift,
    difference_in_differences,
    epochs_to,
    failed_to_train,
    final_test_accuracy,
    final_val_accuracy,
    fold_note,
    gradient_imbalance,
    gradient_noise,
    init_gradient_growth,
    largest_usable_lr,
    latency_log_ratio,
    log_mean_probe,
    mode_kl,
    modes_missed,
    phase_gradient_noise,
    sample_correlation,
    spread_of_final_accuracy,
    steps_to,
    train_test_gap,
    variance_shift,
)
from normlab.errors import InputError
from normlab.spec.settings import SEED, Setting
from normlab.spec.study import StudySpec

_FIGURES = "normlab.report.evidence:"  # where the claims' figures are (``Claim.evidence``)

# Target validation accuracies: claim 1's per dataset (reached within quick's single
# epoch by BN), and claims 20 and 21's per setting, near what the quick budget's network
# converges to at both batch sizes (so that the claims are about converging, not the
# first epoch; measured in issue 23's session: the quick MLP plateaus at 96.6-97.6% on
# MNIST).
TARGETS = {"mnist": (0.93, 0.95), "fashion-mnist": (0.8, 0.84)}
NEAR_CONVERGED = {
    ("mlp", "mnist"): 0.97,
    ("cnn", "mnist"): 0.985,
    ("mlp", "fashion-mnist"): 0.86,
    ("cnn", "fashion-mnist"): 0.87,
}

# Claims 15 and 16: the phase of training their gradient noise is compared in, a band of
# training loss per dataset that every batch size and norm of the quick budget passes
# through after its first measurement (measured in issue 23's session: see
# docs/STATISTICS.md); the mean over all of training, phases unmatched, is context.
LOSS_PHASE = {"mnist": (0.2, 0.5), "fashion-mnist": (0.45, 0.8)}


def _in_phase(setting: Setting) -> dict[str, Callable[..., float]]:
    low, high = LOSS_PHASE[setting.dataset]
    return {f"training loss {low}–{high}": phase_gradient_noise(low, high)}


_UNMATCHED = {"mean over training (phases unmatched)": gradient_noise}

# Claim 23: the step its lag is measured at (the quick CNN's running statistics trail
# its weights at steps 100-200 in real Keras too).
LAG_STEP = 200

# Claims 14 and 18: BN's hyperparameters, its momentum (Keras's convention), ε and γ's
# initial value; Keras's defaults (0.99, 1e-3, 1) are the arm.
BN_HYPERPARAMETERS = ("bn_momentum", "bn_eps", "norm_gain")
_LEVELS = ((0.9, 0.99), (1e-05, 0.001), (0.5, 1.0, 2.0))
_KERAS_BN = (0.99, 0.001, 1.0)


def _bn_arm(values: tuple[float, ...]) -> str:
    """Claim 14's arm of a setting of its hyperparameters, as ``Claim.arm_of`` names it."""
    return ", ".join(f"{f}={v}" for f, v in zip(BN_HYPERPARAMETERS, values, strict=True))


_SETTINGS = [_bn_arm(values) for values in itertools.product(*_LEVELS)]
_DEFAULT_BN = _bn_arm(_KERAS_BN)
# Claims 20 and 21: batch 16 against 256 per norm, ranked (a target never reached).
SMALL_VS_LARGER_BATCH = {
    "by": ("norm",),
    "kind": "ranked",
    "factor": "batch_size",
    "arm": "16",
    "baselines": ("256",),
    "part_of": 16,
}
# Claims 13 and 22: the KL of a GAN's mode distribution to uniform, per dataset (MNIST
# and stacked MNIST); the GAN's networks are MLPs and its judge reads MNIST digits, so
# they belong to the seed's setting only.
MODE_COVERAGE = {
    "measures": {"": mode_kl},
    "rule": Rule(direction=1, min_effect=0.1),
    "by": ("dataset",),
    "note": collapse_note,
    "models": ("mlp",),
    "datasets": ("mnist",),
}

CLAIMS: dict[int, Claim] = {
    c.id: c
    for c in (
        Claim(
            1,
            "BN makes training converge faster",
            "01-faster-convergence",
            "steps to a validation accuracy, 93% and 95% (Fashion: 80% and 84%), each arm at "
            "its best learning rate, scaled inputs (BN − none; negative = BN faster); raw "
            "inputs, where BN also normalizes the pixels, are trained but not judged",
            {},
            Rule(direction=-1, min_effect=50),
            by=("inputs", "batch_size"),
            where=lambda c: c.inputs == "scaled",
            tune=("lr",),
            kind="ranked",
            title="faster convergence",
            measures_by_setting=lambda s: {
                f"target={t}": steps_to(t) for t in TARGETS[s.dataset]
            },
            evidence=_FIGURES + "convergence",
        ),
        Claim(
            2,
            "BN allows higher learning rates",
            "02-higher-learning-rates",
            "log10 of the largest learning rate within 1 point of the best validation "
            "accuracy, without diverging, on a grid of quarter decades; the grid's top is "
            "censored (at least that: ranked last) (BN − none; positive = BN tolerates "
            "higher)",
            {"": largest_usable_lr(0.01)},
            Rule(direction=1, min_effect=0.4),
            by=("optimizer",),
            across="lr",
            kind="ranked",
            title="higher learning rates",
            evidence=_FIGURES + "learning_rates",
        ),
        Claim(
            3,
            "BN stabilizes gradients and prevents vanishing gradients in deep networks",
            "03-deep-gradients",
            "|log10| of the first / last hidden layer's gradient-norm ratio, mean over "
            "training (BN − none; negative = more even gradients)",
            {"": gradient_imbalance},
            Rule(direction=-1, min_effect=0.1),
            by=("activation", "hidden"),
            # deep: 8 hidden layers or more (the study's shallower nets serve claim 11)
            where=lambda c: len(c.hidden) >= 8,
            title="even deep gradients",
            models=("mlp",),
            evidence=_FIGURES + "GRADIENT_IMBALANCE",
        ),
        Claim(
            4,
            "BN has a regularizing effect",
            "04-regularization",
            "train − test accuracy gap without dropout at the best-validation epoch of a run "
            "trained to its plateau, each arm at its best learning rate (BN − none; "
            "negative = smaller gap)",
            {"": train_test_gap},
            Rule(direction=-1, min_effect=0.002),
            by=("batch_size",),
            tune=("lr",),
            title="regularization",
            evidence=_FIGURES + "GAP_BY_BATCH",
        ),
        Claim(
            5,
            "BN makes training less dependent on the initialization",
            "05-initialization",
            "standard deviation of final test accuracy over init scales ×0.1 to ×10 "
            "(BN − none; negative = less dependent)",
            {"": spread_of_final_accuracy},
            Rule(direction=-1, min_effect=0.005),
            by=("init",),
            across="init_scale",
            tune=("lr",),
            title="less init dependence",
            evidence=_FIGURES + "INIT_SCALE",
        ),
        Claim(
            6,
            "BN makes training unstable at very small batch sizes",
            "06-small-batches",
            "final test accuracy, BN − GroupNorm and BN − LayerNorm (which do not depend "
            "on the batch), at batch sizes 2 to 8 (negative = BN worse)",
            {"": final_test_accuracy},
            Rule(direction=-1, min_effect=0.002),
            by=("batch_size",),
            where=lambda c: c.batch_size in (2, 4, 8),
            baselines=("group", "layer"),
            context=("batch_renorm", "ghost_batch", "none"),
            tune=("lr",),
            context_measures={
                "train/eval discrepancy (running − batch statistics accuracy)": (
                    bn_probe_difference("running_acc", "batch_acc")
                ),
            },
            title="unstable tiny batches",
            evidence=_FIGURES + "ACCURACY_BY_BATCH",
        ),
        Claim(
            7,
            "BN adds computational overhead at inference",
            "07-inference-overhead",
            "log of the latency ratio of one model, BN with running statistics vs the "
            "same network with BN folded into its dense layer, per inference batch "
            "(positive = BN slower; folding's outputs equal BN's to float rounding)",
            {f"batch={b}": latency_log_ratio(b) for b in (1, 256)},
            Rule(direction=1, min_effect=0.05),
            by=(),
            factor=None,
            baselines=("folded",),
            note=fold_note,
            title="inference overhead",
            evidence=_FIGURES + "latency",
        ),
        Claim(
            8,
            "BN reduces internal covariate shift",
            "08-internal-covariate-shift",
            "1 − cos(G, G') of a layer's gradient before and after the earlier layers' "
            "update, mean over layers and training (BN − none; negative = less shift)",
            {"": covariate_shift},
            Rule(direction=-1, min_effect=0.01),
            by=("batch_size",),
            title="less covariate shift",
            evidence=_FIGURES + "covariate_shift",
        ),
        Claim(
            10,
            "Ioffe & Szegedy's MNIST experiment: BN trains faster to a higher accuracy",
            "10-ioffe-szegedy-mnist",
            "test accuracy of 3×100 sigmoid networks, batch 60, SGD (BN − none)",
            {"": final_test_accuracy},
            Rule(direction=1, min_effect=0.005),
            by=("batch_size",),
            title="Ioffe & Szegedy MNIST",
            models=("mlp",),
            datasets=("mnist",),
            evidence=_FIGURES + "ioffe_szegedy",
        ),
        Claim(
            9,
            "BN may not work well on data that are already well normalized",
            "09-normalization-conflicts",
            "difference in differences of final test accuracy, each arm at its best learning "
            "rate: (BN − none with standardized inputs) − (BN − none with scaled or raw "
            "inputs) (negative = BN helps less once the data are normalized)",
            {
                f"standardized vs {control}": difference_in_differences(
                    final_test_accuracy, "inputs", "standardized", control
                )
                for control in ("scaled", "raw")
            },
            Rule(direction=-1, min_effect=0.002),
            by=(),
            factor=None,
            across=("norm", "inputs"),
            baselines=("none",),
            context_measures={
                f"BN − none with {inputs} inputs": bn_effect(final_test_accuracy, "inputs", inputs)
                for inputs in ("raw", "scaled", "standardized")
            },
            tune=("lr",),
            title="normalized-input clash",
            evidence=_FIGURES + "PREPROCESSING",
        ),
        Claim(
            11,
            "BN networks' gradients grow with depth at initialization (Yang et al. 2019; "
            "counter-hypothesis to 3)",
            "03-deep-gradients",
            "slope over depth (three depths or more) of log10(first / last hidden layer's "
            "gradient norm) at the first step, in decades per hidden layer, of the BN "
            "networks themselves, against 0 (positive = BN's gradients grow toward the "
            "input; Yang et al. predict about +0.08 for ReLU)",
            {"": init_gradient_growth},
            Rule(direction=1, min_effect=0.02),
            by=("activation",),
            across="hidden",
            where=lambda c: c.norm == "batch",
            factor=None,
            baselines=("0",),
            part_of=3,
            title="grads grow with depth",
            models=("mlp",),
            evidence=_FIGURES + "FIRST_STEP_RATIO",
        ),
        Claim(
            24,
            "BN makes the loss landscape smoother (Santurkar et al. 2018; part of 8)",
            "24-smoothness",
            "log10 of the effective β-smoothness along the gradient (the largest "
            "‖∇L(θ) − ∇L(θ − ηg)‖ / ‖ηg‖ over η of 0.5 to 4 learning rates), mean over "
            "training (BN − none; negative = smoother)",
            {"": log_mean_probe("smoothness", "beta_smoothness")},
            Rule(direction=-1, min_effect=0.1),
            by=("batch_size",),
            context_measures={
                "log10 loss variation": log_mean_probe("smoothness", "loss_variation"),
                "log10 gradient predictiveness": log_mean_probe(
                    "smoothness", "grad_predictiveness"
                ),
            },
            part_of=8,
            title="smoother landscape",
        ),
        Claim(
            25,
            "BN helps because it reduces internal covariate shift: BN with noise injected "
            "after it (more shift) loses its benefit (Santurkar et al. 2018; part of 8)",
            "25-noise-injection",
            "final test accuracy at each arm's best learning rate, trained to a plateau "
            "(noisy BN − BN; negative = the injected shift hurts, as the claim predicts)",
            {"": final_test_accuracy},
            Rule(direction=-1, min_effect=0.005),
            by=(),
            arm="noisy_batch",
            baselines=("batch",),
            context=("none",),
            context_measures={"covariate shift (1 − cos), the step's noise held": covariate_shift},
            tune=("lr",),
            part_of=8,
            title="shift explains BN",
        ),
        Claim(
            12,
            "Dropout before BN hurts through a variance shift (Li et al. 2019; part 2 of 4)",
            "12-dropout-before-bn",
            "BN networks with dropout right before the norm vs at the block's end: final "
            "test accuracy, and accuracy with the running statistics minus after precise "
            "BN recomputes them without dropout (before − after; negative = worse)",
            {
                "test accuracy": final_test_accuracy,
                "running − precise BN accuracy": bn_probe_difference("running_acc", "precise_acc"),
            },
            Rule(direction=-1, min_effect=0.002),
            by=("batch_size", "dropout"),
            factor="dropout_position",
            arm="before",
            baselines=("after",),
            context_measures={"variance shift (1 = none)": variance_shift},
            part_of=4,
            title="dropout before BN",
            evidence=_FIGURES + "DROPOUT_BEFORE_BN",
        ),
        Claim(
            14,
            "BN's hyperparameters need tuning: the choice matters",
            "14-bn-hyperparameters",
            "final test accuracy of BN networks, Keras's defaults (momentum 0.99, ε 1e-3, γ "
            "from 1) − each other setting of momentum (0.9), ε (1e-5) and γ's initial value "
            "(0.5, 2); either sign counts. γ and β themselves are learned parameters, not "
            "hyperparameters",
            {"": final_test_accuracy},
            Rule(direction=0, min_effect=0.002),
            by=(),
            factor=BN_HYPERPARAMETERS,
            arm=_DEFAULT_BN,
            baselines=tuple(a for a in _SETTINGS if a != _DEFAULT_BN),
            title="BN settings matter",
            evidence=_FIGURES + "GAMMA",
        ),
        Claim(
            18,
            "… though the defaults work well: no worse than the best other setting (part 2 "
            "of 14)",
            "14-bn-hyperparameters",
            "final test accuracy of BN networks, Keras's defaults − the best other setting "
            "of momentum, ε and γ's initial value, chosen per seed on validation accuracy "
            "(an equivalence test: supported when the defaults are shown to lose less than "
            "the size that matters)",
            {"defaults − best other": against_best(
                final_test_accuracy,
                lambda c: tuple(getattr(c, f) for f in BN_HYPERPARAMETERS) == _KERAS_BN,
            )},
            Rule(direction=-1, min_effect=0.002, absent=True),
            by=(),
            factor=None,
            across=BN_HYPERPARAMETERS,
            arm="defaults",
            baselines=("best other",),
            part_of=14,
            title="BN defaults work",
            evidence=_FIGURES + "GAMMA",
        ),
        Claim(
            15,
            "Large batches give more stable gradients",
            "15-batch-size-dynamics",
            "log10 of one step's gradient noise (tr Σ_B / |G|²) while the training loss is "
            "within one band (the same phase of training for every batch size), batch 1024 "
            "− batch 16 and 64 (negative = large batches quieter)",
            {},
            Rule(direction=-1, min_effect=0.3),
            by=("norm",),
            factor="batch_size",
            arm="1024",
            baselines=("16", "64"),
            measures_by_setting=_in_phase,
            context_measures=_UNMATCHED,
            title="large-batch stability",
            evidence=_FIGURES + "NOISE",
        ),
        Claim(
            19,
            "… but large batches may reach a worse solution (Keskar et al. 2017; part 2 of 15)",
            "19-large-batch-gap",
            "test accuracy at the best-validation epoch of a run trained to its plateau, "
            "batch 5,120 (≈10% of the training set) − batch 256, Keskar et al.'s F1 network "
            "with BN and without (negative = large worse; they report −0.22 points at "
            "convergence); ghost BN shown alongside",
            {"": final_test_accuracy},
            Rule(direction=-1, min_effect=0.002),
            by=("norm",),
            where=lambda c: c.norm in ("none", "batch"),
            factor="batch_size",
            arm="5120",
            baselines=("256",),
            part_of=15,
            title="large-batch gap",
            models=("mlp",),
            evidence=_FIGURES + "KESKAR",
        ),
        Claim(
            16,
            "Small batches give noisier, more erratic updates, which BN mitigates",
            "15-batch-size-dynamics",
            "log10 of one step's gradient noise (tr Σ_B / |G|²) while the training loss is "
            "within one band (the same phase of training, though BN gets there sooner) at "
            "batch sizes 16 and 64 (BN − none; negative = BN quieter)",
            {},
            Rule(direction=-1, min_effect=0.1),
            by=("batch_size",),
            where=lambda c: c.batch_size in (16, 64),
            measures_by_setting=_in_phase,
            context_measures=_UNMATCHED,
            title="BN calms small batches",
            evidence=_FIGURES + "NOISE",
        ),
        Claim(
            20,
            "Small batches need more iterations to converge (part 2 of 16)",
            "20-batch-size-convergence",
            "optimizer steps until validation accuracy first reaches a target near "
            "convergence (MLP: 97% on MNIST, 86% on Fashion; CNN: 98.5%, 87%; trained to a "
            "plateau), batch 16 − batch 256 (ranked: never "
            "reached is slowest; positive = small batches need more steps)",
            {},
            Rule(direction=1, min_effect=50),
            **SMALL_VS_LARGER_BATCH,
            title="small-batch iterations",
            measures_by_setting=lambda s: {
                f"target={NEAR_CONVERGED[s.model, s.dataset]}": steps_to(
                    NEAR_CONVERGED[s.model, s.dataset]
                )
            },
            evidence=_FIGURES + "convergence_by_batch",
        ),
        Claim(
            21,
            "… but small batches adapt faster: fewer epochs to a target (part 3 of 16)",
            "20-batch-size-convergence",
            "epochs until validation accuracy first reaches claim 20's target, resolved "
            "to a tenth of an epoch at both batch sizes, batch 16 − batch 256 (ranked: never "
            "reached is slowest; negative = small batches need fewer epochs)",
            {},
            Rule(direction=-1, min_effect=0.1),
            **SMALL_VS_LARGER_BATCH,
            title="small-batch adaptation",
            measures_by_setting=lambda s: {
                f"target={NEAR_CONVERGED[s.model, s.dataset]}": epochs_to(
                    NEAR_CONVERGED[s.model, s.dataset]
                )
            },
            evidence=_FIGURES + "convergence_by_batch",
        ),
        Claim(
            13,
            "BN in a GAN's generator can lead to mode collapse: it draws a subset of modes",
            "13-mode-collapse",
            "KL(generated mode distribution ‖ uniform), nats, judged by normlab's reference "
            "MNIST classifier, on MNIST (10 modes) and stacked MNIST (1,000), of GANs that "
            "trained (a GAN that diverged or drew under half recognizable digits failed, "
            "and has no value): generator with BN − without (positive = BN collapses "
            "more); virtual BN shown beside it",
            **MODE_COVERAGE,
            context=("virtual_batch",),
            context_measures={
                "failed to train (1 = failed)": failed_to_train,
                "modes missed (fraction)": modes_missed,
                "within − between-batch image correlation": sample_correlation,
            },
            title="GAN mode collapse",
            evidence=_FIGURES + "GENERATOR_COVERAGE",
        ),
        Claim(
            22,
            "BN in a GAN's discriminator also narrows what the generator draws (part of 13)",
            "22-discriminator-bn",
            "KL(generated mode distribution ‖ uniform), nats, on MNIST and stacked MNIST, "
            "of GANs that trained (as 13): discriminator with BN − without, generator "
            "without, the discriminator seeing real and generated images as separate "
            "batches (as the seed's) or as one joint batch (positive = more collapse)",
            **{**MODE_COVERAGE, "by": ("dataset", "discriminator_batch")},
            factor="discriminator_norm",
            context_measures={
                "failed to train (1 = failed)": failed_to_train,
                "modes missed (fraction)": modes_missed,
            },
            part_of=13,
            title="GAN discriminator BN",
            evidence=_FIGURES + "DISCRIMINATOR_COVERAGE",
        ),
        Claim(
            23,
            "With Keras's BN momentum (0.99) the running statistics lag behind the weights "
            "early in training: evaluated with them, a network is worse than its weights are",
            "23-running-statistics-lag",
            f"accuracy on 512 validation images with the running statistics − with precise "
            f"BN's (recomputed for the weights), at step {LAG_STEP}, BN momentum 0.99 − 0.9 "
            "(Keras's convention; negative = the running statistics lag more)",
            {f"step {LAG_STEP}": bn_probe_difference("running_acc", "precise_acc", LAG_STEP)},
            Rule(direction=-1, min_effect=0.01),
            by=(),
            factor="bn_momentum",
            arm="0.99",
            baselines=("0.9",),
            context_measures={
                "running − batch statistics accuracy": bn_probe_difference(
                    "running_acc", "batch_acc", LAG_STEP
                ),
            },
            title="running-statistics lag",
        ),
        Claim(
            17,
            "BN gives better generalization: higher validation and test accuracy",
            "17-generalization",
            "validation and test accuracy at the best-validation epoch of a run trained to its "
            "plateau, each arm at its best learning rate (BN − none; positive = BN higher) "
            "with scaled inputs, the fair setting; raw inputs (the seed's, where BN also "
            "normalizes the pixels) run alongside, shown but not judged",
            {"test accuracy": final_test_accuracy, "validation accuracy": final_val_accuracy},
            Rule(direction=1, min_effect=0.002),
            by=("inputs", "batch_size"),
            where=lambda c: c.inputs == "scaled",
            tune=("lr",),
            title="better generalization",
            evidence=_FIGURES + "FINAL_BY_BATCH",
        ),
    )
}


def selected(numbers: list[int]) -> list[int]:
    """The claims ``numbers`` name with their parts (``--only 4`` is 4 and 12), each part
    right after its claim; InputError names the first unknown number (option ``ids``)."""
    for n in numbers:
        if n not in CLAIMS:
            claims = ", ".join(map(str, sorted(CLAIMS)))
            raise InputError(f"no claim {n} (claims: {claims})", "ids")
    chosen = [c for c in CLAIMS.values() if c.id in numbers or c.part_of in numbers]
    return [c.id for c in sorted(chosen, key=lambda c: (c.part_of or c.id, c.id))]


def claim_studies(
    numbers: list[int], budget: str, setting: Setting = SEED
) -> dict[int, StudySpec]:
    """The built-in study of each claim ``selected(numbers)`` names that applies to
    ``setting``, at ``budget`` (two claims may share one)."""
    return {n: claim_study(CLAIMS[n], budget, setting) for n in selected(numbers)
            if not CLAIMS[n].not_applicable(setting)}  # fmt: skip
