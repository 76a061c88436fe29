"""The report page of the claims: the verdict table, then one section per claim with the
figure of its evidence, its comparisons, the rule that judged it and what the numbers
say."""

from __future__ import annotations

from normlab.analysis.verdict import Reading, Verdict
from normlab.claims.claim import Claim
from normlab.claims.judge import ClaimResult
from normlab.claims.stored import StoredClaim
from normlab.registry import load
from normlab.report.gallery import GALLERY
from normlab.report.header import run_facts
from normlab.report.plots import number
from normlab.report.style import Colors, arm_name
from normlab.report.tables import (
    READING_WORDS,
    comparisons_table,
    divergence,
    grid_table,
    interval,
    looks_table,
    sequential_sentence,
    verdict_table,
    verdict_words,
)
from normlab.report.views import Header, Page, Section
from normlab.spec.settings import SEED, Setting


def _arm(claim: Claim, value: str) -> str:
    """An arm as a sentence names it: "BN" for a norm, "batch_size=1024" for another
    single factor, as it stands for several."""
    single = isinstance(claim.factor, str) and claim.factor != "norm"
    return f"{claim.factor}={value}" if single else arm_name(value)


def rule_sentence(sc: StoredClaim) -> str:
    """The verdict rule of one claim, in its own terms."""
    c = sc.claim
    rule = c.rule
    arm = _arm(c, c.arm) if c.factor else "the measure"
    base = " and ".join(_arm(c, b) for b in c.baselines) if c.factor else "0"
    if len(c.baselines) > 3:
        base = f"each of {len(c.baselines)} others (the comparisons below)"
    sign = {1: "above", -1: "below", 0: "apart from"}[rule.direction]
    shown = (
        f"a comparison shows an effect when its Holm-corrected p < {rule.alpha:g}, and "
        f"rules out one that matters when its 95% interval stops short of "
        f"{rule.min_effect:g} that way"
    )
    if rule.absent:
        return (
            f"Rule: the claim predicts {arm} not {sign} {base} by {rule.min_effect:g} or "
            f"more in {c.outcome}; {shown}; supported when every comparison rules such "
            "an effect out, refuted when one shows it, else inconclusive."
        )
    return (
        f"Rule: the claim predicts {arm} {sign} {base} by {rule.min_effect:g} or more in "
        f"{c.outcome}; {shown}; supported when comparisons show the effect the claimed "
        "way and none the other way, refuted when they show it the other way or every "
        "one rules an effect that matters out (no effect that matters), else "
        "inconclusive."
    )


def evidence_sentences(r: ClaimResult, sc: StoredClaim) -> list[str]:
    """What the numbers show: the comparison the verdict leans on, and what each of the
    claim's comparisons says."""
    if not r.comparisons:
        return ["No comparison could be made: the study has no finished runs in both arms."]
    lead = r.leading or r.comparisons[0]
    c, p = lead.comparison, lead.p_corrected
    where = f"At {lead.group}, " if lead.group else ""
    effect = (
        f"{interval(c.effect, c.ci_low, c.ci_high)} ({c.test}, Holm-corrected p {number(p, 2)})"
    )
    claim = sc.claim
    if claim.factor is None:  # a measure within each run, set against no effect
        first = (
            f"{where}the measure is {number(c.arm_center)} on average over {c.n_arm} "
            f"runs, where 0 would be no effect: {effect}."
        )
    else:
        first = (
            f"{where}{_arm(claim, claim.arm)} {number(c.arm_center)} against "
            f"{_arm(claim, lead.baseline)} {number(c.baseline_center)}: a difference of "
            f"{effect} over {c.n_arm} seeds."
        )
    tally = f"Of {len(r.comparisons)} comparisons, " + ", ".join(
        f"{n} {READING_WORDS[reading]}"
        for reading in Reading
        if (n := sum(j.reading == reading for j in r.comparisons))
    )
    detectable = number(r.detectable.get(r.lead, float("nan")), 3)
    power = f"With its seeds the study detects an effect of {detectable} with 80% power" + (
        f"; {r.power}." if r.power else "."
    )
    dropped = f" {r.dropped} value(s) had no outcome and were left out." if r.dropped else ""
    return [first, f"{tally}: {verdict_words(r)}.{dropped}", power]


def claim_section(sc: StoredClaim, colors: Colors) -> Section:
    """One claim's section (or what to run when its study is not in the database)."""
    c, r = sc.claim, sc.result
    title, label = f"{c.id}. {c.claim}", f"{c.id}. {c.title}"
    if r is None and sc.study is not None:  # a live view: its study is still running
        done = len(sc.runs) - len(sc.unfinished)
        return Section(f"claim-{c.id}", title, [
            f"Its study is running: {done} of {len(sc.runs)} runs finished. The verdict "
            "appears when every run has its outcome."], badge=("running", "running"),
            label=label)  # fmt: skip
    if r is None:
        return Section(
            f"claim-{c.id}",
            title,
            [
                f"Not run at the {sc.budget} budget: `normlab claims --budget {sc.budget} --only "
                f"{c.part_of or c.id}` runs its study ({sc.study_name})."
            ],
            badge=("not run", "queued"),
            label=label,
        )
    if r.verdict == Verdict.NOT_APPLICABLE:
        return Section(f"claim-{c.id}", title, [f"Not applicable: {r.notes[0]}."],
                       badge=("n/a", "queued"), label=label)  # fmt: skip
    sentences = evidence_sentences(r, sc)
    if sc.unfinished:
        sentences.append(
            f"{len(sc.unfinished)} of {len(sc.runs)} runs of its study are not "
            "finished: the verdict is from the finished ones."
        )
    notes = [rule_sentence(sc)]
    if r.diverged:
        notes.append(f"Diverged: {divergence(r.diverged)}.")
    notes += r.notes
    try:
        # a claim without a figure of its own still gets its verdict and tables
        figures = load(c.evidence)(sc, colors) if sc.runs and c.evidence else []
    except ValueError as err:  # evidence that cannot be drawn never hides the verdict
        figures, notes = [], [*notes, f"no figure: {err}"]
    figures = [f for f in figures if f.points]
    images = GALLERY[c.id](sc) if c.id in GALLERY and sc.runs else []
    if r.looks:
        sentences.append(sequential_sentence(r))
    return Section(
        f"claim-{c.id}",
        title,
        sentences,
        figures,
        [comparisons_table(r), *([looks_table(r)] if r.looks else [])],
        notes,
        [v for v in images if v.tiles],
        badge=(r.verdict, r.verdict),
        label=label,
    )


def claims_page(
    stored: list[StoredClaim],
    budget: str,
    db: str,
    only: str = "",
    setting: Setting = SEED,
    grid: dict[Setting, list[StoredClaim]] | None = None,
) -> Page:
    """The report of the claims ``stored`` at ``budget`` in ``setting``, with the verdict
    ``grid`` of every setting (setting -> its stored claims) when given."""
    na = Verdict.NOT_APPLICABLE
    judged = [sc.result for sc in stored if sc.result and sc.result.verdict != na]
    runs = {r.run_id: r for sc in stored for r in sc.runs}
    studies = {sc.study_name: sc.study for sc in stored if sc.study_name}
    present = [s for s in studies.values() if s is not None]
    facts = [
        ("budget", budget),
        ("setting", setting.label),
        ("claims", f"{len(judged)} judged of {len(stored)}"),
        ("studies", f"{len(present)} of {len(studies)} in {db}"),
    ]
    if present:
        facts.append(
            (
                "recorded",
                f"{min(s.created_at for s in present)} to "
                f"{max(s.updated_at for s in present)} (UTC)",
            )
        )
    facts += run_facts(list(runs.values()))
    flags = "" if setting.is_seed else f" --model {setting.model} --dataset {setting.dataset}"
    command = f"normlab claims --budget {budget}{flags}" + (f" --only {only}" if only else "")
    header = Header(facts, f"{command} --db {db}")
    by_verdict = {
        v: sum(r.verdict == v for r in judged) for v in ("supported", "refuted", "inconclusive")
    }
    missing = [sc.claim.id for sc in stored if sc.result is None and sc.study is None]
    running = [sc.claim.id for sc in stored if sc.result is None and sc.study is not None]
    apart = [sc.claim.id for sc in stored if sc.result and sc.result.verdict == na]
    lead = [
        ", ".join(f"{n} {v}" for v, n in by_verdict.items()) + f" of {len(judged)} claims judged."
    ]
    if running:
        lead.append(f"Running: claim(s) {', '.join(map(str, running))}.")
    if missing:
        lead.append(f"Not run yet: claim(s) {', '.join(map(str, missing))}.")
    if apart:
        lead.append(f"Not applicable to {setting.label}: claim(s) {', '.join(map(str, apart))}.")
    tables = [verdict_table([sc.result for sc in stored if sc.result], budget)]
    notes = [
        "Effect: the comparison the verdict leans on most (smallest corrected p; for a "
        "claim that an effect is absent, the comparison that comes closest to it), in the "
        "claim's own units; see each claim below. Detectable: the smallest effect that "
        "comparison detects with 80% power at its number of seeds (docs/STATISTICS.md). "
        "Regime: the data, models, training length and seeds the verdict rests on."
    ]
    if grid:
        tables.append(grid_table(grid))
        notes.append(
            "Across settings: each claim's verdict with the seed's MLP and a small CNN, on "
            "MNIST and Fashion-MNIST (`normlab claims --model cnn --dataset fashion-mnist`); "
            f"the sections below are those of {setting.label}."
        )
    colors = Colors()
    sections = [Section("verdicts", "Verdicts", lead, tables=tables, notes=notes)]
    sections += [claim_section(sc, colors) for sc in stored]
    unfinished = [
        f"claim {sc.claim.id}: {len(sc.unfinished)} of {len(sc.runs)} runs not finished"
        for sc in stored
        if sc.unfinished
    ]
    return Page(
        f"normlab claims report: {budget} budget",
        f"the seed notebook's claims about BN, judged on {setting.label}",
        header,
        sections,
        [*(f"claim {n}: not run" for n in missing), *unfinished],
    )
