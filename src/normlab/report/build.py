"""``normlab report``: read a database, build the page view, write one HTML file (and,
if asked, every figure as SVG and PNG). Reads only: nothing trains, torch never loads,
and a study that is still being written reports what is there."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from normlab.analysis.records import step_losses, study_record
from normlab.analysis.summary import summarize
from normlab.claims.auto import budget_design
from normlab.claims.claim import ClaimError
from normlab.claims.definitions import selected
from normlab.claims.stored import stored_claims
from normlab.errors import InputError
from normlab.experiments.errors import open_store
from normlab.report import html
from normlab.report.claims_page import claims_page
from normlab.report.study_page import study_page
from normlab.report.views import Page
from normlab.spec.settings import SETTINGS, Setting


@dataclass
class ReportResult:
    """What ``write_report`` wrote: the page, its size, figures, time and gaps."""

    path: Path
    bytes: int
    figures: int
    seconds: float
    title: str
    missing: list[str] = field(default_factory=list)  # what the page says is not there
    assets: list[Path] = field(default_factory=list)


def study_report(db: Path | str, study: str | None = None) -> Page:
    """The page of ``study`` in ``db`` (default: the latest study)."""
    with open_store(db) as store:
        name = store.resolve_study(study)
        record = study_record(store, name)
        summary = summarize(store, name)
        losses = step_losses(store, name)
    return study_page(record, summary, losses, Path(db).name)


def claims_scope(
    budget: str = "quick", ids: list[int] | None = None, model: str = "mlp", dataset: str = "mnist"
) -> tuple[list[int] | None, Setting]:
    """The claims ``ids`` (with their parts; None: all) and the setting of ``model`` on
    ``dataset``, checked: InputError names a bad budget, claim or setting."""
    budget_design(budget)
    return (selected(ids) if ids is not None else None), Setting(model, dataset)


def claims_report(
    db: Path | str,
    budget: str = "quick",
    ids: list[int] | None = None,
    model: str = "mlp",
    dataset: str = "mnist",
    *,
    settled: bool = False,
) -> Page:
    """The claims page of ``db`` at ``budget`` (default all claims): verdicts judged
    from the runs there, nothing trained; each claim's evidence in the setting of
    ``model`` and ``dataset``, and the verdict grid over every setting. With
    ``settled``, a claim whose study still runs shows that instead of a verdict."""
    wanted, setting = claims_scope(budget, ids, model, dataset)
    with open_store(db) as store:
        try:
            grid = {s: stored_claims(store, budget, wanted, s, settled=settled) for s in SETTINGS}
        except ClaimError as err:
            raise InputError(str(err)) from None
    stored = grid[setting]
    if all(sc.study is None for sc in stored):
        flags = "" if setting.is_seed else f" --model {model} --dataset {dataset}"
        raise InputError(
            f"{db}: holds no claim study at the {budget} budget for {setting.label} (run "
            f"`normlab claims --budget {budget}{flags}` first)"
        )
    only = ",".join(map(str, ids)) if ids else ""
    return claims_page(stored, budget, Path(db).name, only, setting, grid)


def write_report(
    db: Path | str = "normlab.db",
    *,
    study: str | None = None,
    claims: bool = False,
    budget: str = "quick",
    ids: list[int] | None = None,
    out: Path | str = "report.html",
    assets: Path | str | None = None,
    model: str = "mlp",
    dataset: str = "mnist",
) -> ReportResult:
    """Write the report of ``study`` (or, with ``claims``, of the claims at ``budget``,
    in detail for ``model`` on ``dataset``) in the database ``db`` to the HTML file
    ``out``; with ``assets``, also each figure as SVG and PNG in that folder.
    InputError for a missing database or study."""
    started = time.perf_counter()
    if not Path(db).is_file():
        raise InputError(f"{db}: no such database")
    page = claims_report(db, budget, ids, model, dataset) if claims else study_report(db, study)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html.render(page), encoding="utf-8")
        written = []
        if assets is not None:
            from normlab.report.assets import write_assets

            written = write_assets(page, Path(assets))
    except OSError as err:
        raise InputError(f"{err.filename or out}: cannot write ({err.strerror})") from None
    return ReportResult(
        out,
        out.stat().st_size,
        len(page.figures),
        time.perf_counter() - started,
        page.title,
        page.missing,
        written,
    )
