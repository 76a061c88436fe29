"""``--budget auto``: each claim's built-in study grows by fresh seeds, round by round,
until its comparisons are decided or the cap is reached (``analysis.sequential``).

The runs of a look are the quick budget's design (its networks, lengths and factor
levels, and its protocol: a tuned claim's learning-rate grid, a plateau stop, precise
evaluation) at the look's seeds. A design's seeds are its own: the cap N draws seeds from
1000·N on, so that no run of a fixed budget, or of a design with another cap, enters it
as if new (changing the cap after a look starts a new design, and pays for it). The
verdict is replayed from the stored runs look by look, so it is the same whoever ran
which round, and a report or a later ``claims`` call reads it back unchanged.

GAN claims (13, 22) keep the quick budget's fixed design, judged by the same rule: one
GAN costs about as much as a whole round of every classifier claim together, so rounds
of up to 20 seeds would multiply the costliest study of all.
"""

from __future__ import annotations

import re
from dataclasses import replace

from normlab.analysis.records import RunRecord
from normlab.analysis.sequential import Design, replay
from normlab.analysis.verdict import Reading, conclude
from normlab.claims.claim import Claim, claim_study, study_name
from normlab.claims.judge import ClaimResult, Look, judge_runs
from normlab.errors import InputError
from normlab.spec.settings import Setting
from normlab.spec.study import BUDGETS, StudySpec
from normlab.types import FINISHED

AUTO = "auto"  # the budget name that asks for a sequential design
BASE = "quick"  # the fixed budget whose design the rounds add seeds to
DEFAULT_CAP = 20
SEED_BASE = 1000
GAN_STUDIES = ("13-mode-collapse", "22-discriminator-bn")


def sequential(claim: Claim) -> bool:
    """Whether ``--budget auto`` grows the claim's study by rounds (all but the GAN
    claims, which keep their quick design)."""
    return claim.study not in GAN_STUDIES


def design_of(budget: str, max_seeds: int = DEFAULT_CAP) -> Design | None:
    """The sequential design ``budget`` names: "auto" (a cap of ``max_seeds``) or
    "auto<N>" (a cap of N); None for a fixed budget. ValueError for a cap below 4."""
    if budget == AUTO:
        return Design(max_seeds)
    match = re.fullmatch(r"auto(\d+)", budget)
    return Design(int(match[1])) if match else None


def budget_design(budget: str, max_seeds: int = DEFAULT_CAP) -> Design | None:
    """``design_of`` for a budget a user named: InputError names a budget that is
    neither fixed nor auto (option ``budget``) and a cap below the first look (option
    ``max_seeds`` for "auto", ``budget`` for "auto<N>")."""
    try:
        design = design_of(budget, max_seeds)
    except ValueError as err:
        raise InputError(str(err), "max_seeds" if budget == AUTO else "budget") from None
    if budget not in BUDGETS and design is None:
        raise InputError(f"{budget!r} is not one of {', '.join(BUDGETS)} or auto", "budget")
    return design


def first_seed(design: Design) -> int:
    """The first seed of ``design``: 1000 × its cap."""
    return SEED_BASE * design.cap


def auto_name(claim: Claim, setting: Setting, design: Design) -> str:
    """The name of the claim's study in ``design`` (``<study>-auto<cap>``), without
    expanding or checking its runs."""
    return study_name(claim, BASE, setting).removesuffix(f"-{BASE}") + f"-auto{design.cap}"


def auto_study(claim: Claim, setting: Setting, design: Design, seeds: int) -> StudySpec:
    """The claim's study in ``design`` with its first ``seeds`` seeds (named
    ``<study>-auto<cap>``, whatever the seeds, so that the rounds grow one study)."""
    spec = claim_study(claim, BASE, setting)
    start = first_seed(design)
    return spec.model_copy(
        update={
            "name": auto_name(claim, setting, design),
            "seeds": None,
            "grid": {**spec.grid, "seed": list(range(start, start + seeds))},
        }
    )


def _complete(runs: list[RunRecord], seeds: set[int]) -> bool:
    """Whether every one of ``seeds`` has runs and all of them have their outcome."""
    present = {r.config.seed for r in runs}
    done = all(r.status in FINISHED for r in runs)
    return seeds <= present and done


def judge_auto(claim: Claim, runs: list[RunRecord], design: Design) -> ClaimResult | None:
    """The claim's verdict in ``design`` from its study's stored ``runs``, replayed look
    by look as far as they go; None before the first look's runs are all finished.
    ``stopped`` is "decided", "cap", or "" while more seeds are needed."""
    start = first_seed(design)

    def judge_at(n: int, level: float) -> tuple[ClaimResult, dict[str, Reading]] | None:
        seeds = set(range(start, start + n))
        at = [r for r in runs if r.config.seed in seeds]
        if not _complete(at, seeds):
            return None
        judged = judge_runs(replace(claim, rule=replace(claim.rule, alpha=level)), at)
        return judged, {j.label: j.reading for j in judged.comparisons}

    looks = replay(design, judge_at)
    if not looks:
        return None
    history = []
    for look in looks:
        decision = conclude(list(look.readings.values()), claim.rule)
        j = look.judged
        history.append(Look(look.seeds, look.level, decision.verdict, j.effect, j.ci_low,
                            j.ci_high, j.p_corrected))  # fmt: skip
    last = looks[-1]
    return replace(
        last.judged,
        comparisons=[replace(j, reading=last.readings[j.label]) for j in last.judged.comparisons],
        verdict=history[-1].verdict,
        basis=conclude(list(last.readings.values()), claim.rule).basis,
        seeds_used=last.seeds,
        stopped=last.stopped,
        looks=history,
    )


def seeds_wanted(result: ClaimResult | None, design: Design) -> int | None:
    """The seeds the claim's next round needs (None once it has stopped)."""
    if result is None:
        return design.seeds[0]
    if result.stopped:
        return None
    later = [n for n in design.seeds if n > (result.seeds_used or 0)]
    return later[0] if later else None
