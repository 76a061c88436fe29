"""Every verdict's p-values recomputed with scipy alone from the values `normlab export
--table measures` writes, as a reader of docs/STATISTICS.md would: nothing here imports
normlab's statistics."""

import csv
import itertools
import math
import random
from collections import defaultdict

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from normlab.claims.claim import claim_study
from normlab.claims.definitions import CLAIMS
from normlab.claims.judge import judge_values
from normlab.claims.values import COLUMNS, rows_of
from normlab.cli import app
from normlab.spec.settings import SETTINGS
from normlab.store.db import FINISHED, Store
from normlab.store.leases import Owner
from normlab.types import EpochMetrics, EvalPoint, ProbeRow, RunResult


def _exact(x: np.ndarray, scale: float) -> np.ndarray:
    """Values rounded to 10 significant digits of the largest (docs/STATISTICS.md)."""
    decimals = 9 - math.floor(math.log10(scale)) if scale > 0 else 10
    return np.where(np.isfinite(x), np.round(x, decimals), x)


def _signed_rank_cdf(n: int) -> np.ndarray:
    """P(T <= t) by enumerating the 2^n sign patterns of the ranks 1..n."""
    signs = np.array(list(itertools.product([0, 1], repeat=n)))
    t = signs @ np.arange(1, n + 1)
    return np.array([np.mean(t <= v) for v in range(n * (n + 1) // 2 + 1)])


def _one(a: np.ndarray, b: np.ndarray, kind: str) -> tuple[float, float, float, float]:
    """docs/STATISTICS.md's effect, 95% interval and p of one paired comparison."""
    if len(a) < 2:
        return (math.nan,) * 4
    finite = np.abs(np.concatenate([a, b])[np.isfinite(np.concatenate([a, b]))])
    scale = float(finite.max()) if len(finite) else 1.0
    a, b = _exact(a, scale), _exact(b, scale)
    d = _exact(a - b, scale) if kind == "continuous" else None
    if d is not None and np.ptp(d) > 0:
        t = stats.ttest_rel(a, b)
        low, high = t.confidence_interval(0.95)
        return float(np.mean(a - b)), float(low), float(high), float(t.pvalue)
    big = 16.0 * (scale + 1.0)  # +inf: beyond every finite value, equal to another +inf
    d = np.where(np.isinf(a), big, a) - np.where(np.isinf(b), big, b)
    walsh = np.sort([(d[i] + d[j]) / 2 for i in range(len(d)) for j in range(i, len(d))])
    cdf, total = _signed_rank_cdf(len(d)), len(walsh)
    p = min(1.0, 2 * cdf[total - max(np.sum(walsh > 0), np.sum(walsh < 0))])
    k = int(np.sum(2 * cdf <= 0.05 + 1e-12))

    def shown(x):
        return math.copysign(math.inf, x) if abs(x) > 2 * scale else float(x)

    if k == 0:
        return shown(np.median(walsh)), -math.inf, math.inf, float(p)
    return shown(np.median(walsh)), shown(walsh[k - 1]), shown(walsh[total - k]), float(p)


def _holm(p: list[float]) -> list[float]:
    order = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    out, running = [math.nan] * len(p), 0.0
    for rank, (v, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * v))
        out[i] = running
    return out


def _verdict(found: list[tuple], direction: int, min_effect: float, absent: bool) -> str:
    """docs/STATISTICS.md's rule over (effect, low, high, Holm p) of a claim."""
    signs = (direction,) if direction else (1, -1)
    readings = []
    for effect, low, high, p in found:
        shown = p < 0.05 and effect != 0
        aligned = abs(effect) if direction == 0 else effect * direction
        small = all(math.isfinite(e) and e < min_effect
                    for e in (max(low * s, high * s) for s in signs))  # fmt: skip
        readings.append("against" if shown and aligned < 0 else "negligible" if small
                        else "for" if shown else "open")  # fmt: skip
    quiet = bool(readings) and all(r in ("negligible", "against") for r in readings)
    if absent:
        return "refuted" if "for" in readings else "supported" if quiet else "inconclusive"
    if "for" in readings and "against" not in readings:
        return "supported"
    if ("against" in readings and "for" not in readings) or quiet:
        return "refuted"
    return "inconclusive"


def recompute(rows: list[dict[str, str]]) -> dict[int, dict]:
    """Each claim's comparisons (effect, interval, p and Holm p, by group and baseline)
    and verdict, from exported rows (strings)."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    arms: dict = defaultdict(dict)
    rules = {}
    for r in rows:
        claim = int(r["claim"])
        values[claim][r["group"]][r["arm"]][int(r["seed"])] = float(r["value"])
        arms[claim][r["arm"]] = (r["role"], r["kind"])
        rules[claim] = (int(r["direction"]), float(r["min_effect"]), r["absent"] == "True")
    out = {}
    for claim, groups in values.items():
        arm = next(a for a, (role, _) in arms[claim].items() if role == "arm")
        kind = arms[claim][arm][1]
        found = {}
        for group, by_arm in groups.items():
            for base in (b for b in by_arm if arms[claim][b][0] == "baseline"):
                seeds = sorted(set(by_arm.get(arm, {})) | set(by_arm[base]))
                pairs = [(by_arm[arm].get(s, math.nan), by_arm[base].get(s, math.nan))
                         for s in seeds]  # fmt: skip
                kept = np.array([(a, b) for a, b in pairs if not (math.isnan(a) or math.isnan(b))])
                found[(group, base)] = (_one(kept[:, 0], kept[:, 1], kind) if len(kept)
                                        else (math.nan,) * 4)  # fmt: skip
        corrected = _holm([f[3] for f in found.values()])
        found = {k: (*f[:3], p) for (k, f), p in zip(found.items(), corrected, strict=True)}
        out[claim] = {
            "comparisons": found,
            "verdict": _verdict(list(found.values()), *rules[claim]),
        }
    return out


def _synthetic(claim, seeds=5) -> dict:
    """Made-up values over seeds in the layout ``judge_values`` takes, for ``claim``'s
    arms; ranked claims get some +inf (a target never reached)."""
    rng = random.Random(claim.id)
    arms = (claim.arm, *claim.baselines)
    groups = ["batch_size=32", "batch_size=128"] if claim.by else [""]
    out = {}
    for g in groups:
        out[g] = {}
        for i, a in enumerate(arms):
            shift = 0.01 * i
            censored = [claim.kind == "ranked" and rng.random() < 0.2 for _ in range(seeds)]
            out[g][a] = {
                s: math.inf if censored[s] else 0.9 + shift + rng.gauss(0, 0.01)
                for s in range(seeds)
            }
    return out


@pytest.mark.parametrize("number", sorted(CLAIMS))
def test_every_claims_p_values_recompute_from_its_rows(number):
    claim = CLAIMS[number]
    result = judge_values(claim, _synthetic(claim), runs=0)
    rows = [{k: str(v) for k, v in r.items()} for r in rows_of(claim, result)]
    assert {k for r in rows for k in r} == set(COLUMNS)
    again = recompute(rows)[number]
    assert again["verdict"] == result.verdict
    mine = {(j.group, j.baseline): j for j in result.comparisons}
    assert set(again["comparisons"]) == set(mine)
    for key, (effect, low, high, p) in again["comparisons"].items():
        c = mine[key].comparison
        np.testing.assert_allclose([effect, low, high, p], [c.effect, c.ci_low, c.ci_high,
                                   mine[key].p_corrected], rtol=1e-9, equal_nan=True)  # fmt: skip


@pytest.mark.slow
def test_exported_measures_recompute_the_verdicts_of_real_claims(claims_db, tmp_path):
    db, verdicts = claims_db
    rows = []
    for study in ("claim-04-regularization-quick", "claim-12-dropout-before-bn-quick",
                  "claim-09-normalization-conflicts-quick"):  # fmt: skip
        out = tmp_path / f"{study}.csv"
        args = [
            "export",
            "--table",
            "measures",
            "--study",
            study,
            "--db",
            str(db),
            "--out",
            str(out),
        ]
        done = CliRunner().invoke(app, args)
        assert done.exit_code == 0, done.output
        with out.open() as f:
            rows += list(csv.DictReader(f))
    again = recompute(rows)
    assert sorted(again) == sorted(v["id"] for v in verdicts) == [4, 9, 12]
    for v in verdicts:  # the verdict, and its p among its claim's, recomputed
        assert again[v["id"]]["verdict"] == v["verdict"]
        ps = [f[3] for f in again[v["id"]]["comparisons"].values()]
        assert any(math.isclose(p, v["p_corrected"], rel_tol=1e-9) for p in ps)


def _made_up(config, rng) -> RunResult:
    """A finished run's numbers in the form training writes them (accuracies drawn at
    random; a GAN's judged modes too), for tests of what reads them back."""
    acc = float(rng.uniform(0.85, 0.99))
    epochs = [EpochMetrics(e, 0.3, acc, 0.3, acc, 0.3, acc, 1.0, 0.1)
              for e in range(1, config.epochs + 1)]  # fmt: skip
    evals = [EvalPoint(s, s / config.steps_per_epoch, 1.0, 0.4, acc) for s in (20, 40)]
    probes = []
    if config.model == "gan":
        modes = {"modes": 9.0, "kl": acc, "batch_correlation": acc - 0.9, "recognizable": acc}
        probes = [ProbeRow(9, "modes", -1, n, v) for n, v in modes.items()]
    return RunResult(epochs=epochs, evals=evals, probes=probes, seconds=1.0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # made-up ties: inf − inf medians
def test_measures_export_from_every_claims_study_in_every_setting(tmp_path):
    """`normlab export --table measures` on each claims study of each setting (quick
    budget), from a real database of made-up finished runs: every claim judged on the
    study has its arm's rows, and its baselines' where it has baselines."""
    rng = np.random.default_rng(0)
    db, owner, judged = tmp_path / "made-up.db", Owner.this_process(), defaultdict(set)
    with Store(db) as store:
        for setting in SETTINGS:
            for claim in (c for c in CLAIMS.values() if not c.not_applicable(setting)):
                study = claim_study(claim, "quick", setting).study()
                judged[study.name].add(claim.id)
                store.register_study(study.name, study.spec, study.configs)
                done = store.statuses(c.run_id for c in study.configs)  # runs are shared
                todo = [c for c in study.configs if done[c.run_id] not in FINISHED]
                if todo:
                    assert store.claim([c.run_id for c in todo], owner, 60.0, {})
                    assert store.save_results(owner, [(c.run_id, _made_up(c, rng)) for c in todo])
    assert len(judged) == 21 + 16 + 18 + 16  # MLP/MNIST, CNN/MNIST, MLP/Fashion, CNN/Fashion
    for name, claims in judged.items():
        out = tmp_path / f"{name}.csv"
        done = CliRunner().invoke(app, ["export", "--table", "measures", "--study", name,
                                        "--db", str(db), "--out", str(out)])  # fmt: skip
        assert done.exit_code == 0, (name, done.output)
        with out.open() as f:
            rows = list(csv.DictReader(f))
        assert {int(r["claim"]) for r in rows} == claims, name
        for n in claims:
            roles = {r["role"] for r in rows if int(r["claim"]) == n}
            assert roles == ({"arm", "baseline"} if CLAIMS[n].baselines else {"arm"}), (name, n)
