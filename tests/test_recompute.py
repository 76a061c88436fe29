"""Every verdict's p-values recomputed with scipy alone from the values `normlab export
--table measures` writes, as a reader of docs/STATISTICS.md would: nothing here imports
normlab's statistics."""

import csv
import math
import random
from collections import defaultdict

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from normlab.claims.definitions import CLAIMS
from normlab.claims.judge import judge_values
from normlab.claims.values import COLUMNS, rows_of
from normlab.cli import app


def _p(a: np.ndarray, b: np.ndarray, kind: str) -> float:
    """docs/STATISTICS.md's test of one paired comparison."""
    if len(a) < 2:
        return math.nan
    if kind == "continuous" and np.ptp(a - b) != 0:
        return float(stats.ttest_rel(a, b).pvalue)
    return 1.0 if np.all(a == b) else float(stats.wilcoxon(a, b).pvalue)


def _holm(p: list[float]) -> list[float]:
    order = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    out, running = [math.nan] * len(p), 0.0
    for rank, (v, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * v))
        out[i] = running
    return out


def recompute(rows: list[dict[str, str]]) -> dict[int, list[float]]:
    """Each claim's Holm-corrected p-values, sorted, from exported rows (strings)."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    arms: dict = defaultdict(dict)
    for r in rows:
        claim = int(r["claim"])
        values[claim][r["group"]][r["arm"]][int(r["seed"])] = float(r["value"])
        arms[claim][r["arm"]] = (r["role"], r["kind"])
    out = {}
    for claim, groups in values.items():
        arm = next(a for a, (role, _) in arms[claim].items() if role == "arm")
        kind = arms[claim][arm][1]
        p = []
        for by_arm in groups.values():
            for base in (b for b in by_arm if arms[claim][b][0] == "baseline"):
                seeds = sorted(set(by_arm.get(arm, {})) | set(by_arm[base]))
                pairs = [(by_arm[arm].get(s, math.nan), by_arm[base].get(s, math.nan))
                         for s in seeds]  # fmt: skip
                kept = np.array([(a, b) for a, b in pairs if not (math.isnan(a) or math.isnan(b))])
                p.append(_p(kept[:, 0], kept[:, 1], kind) if len(kept) else math.nan)
        out[claim] = sorted(_holm(p), key=lambda v: (math.isnan(v), v))
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
    mine = sorted((p for _, _, p in result.comparisons), key=lambda v: (math.isnan(v), v))
    np.testing.assert_allclose(recompute(rows)[number], mine, rtol=1e-12, equal_nan=True)


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
    for v in verdicts:  # the verdict's p is one of its claim's, recomputed
        assert any(math.isclose(p, v["p_corrected"], rel_tol=1e-9) for p in again[v["id"]])
