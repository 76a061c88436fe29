"""``normlab report``: read a database, build the page view, write one HTML file (and,
if asked, every figure as SVG and PNG). Reads only: nothing trains, torch never loads,
and a study that is still being written reports what is there."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from normlab.analysis.records import step_losses, study_record
from normlab.analysis.summary import summarize
from normlab.claims.definitions import ClaimError, selected
from normlab.claims.stored import stored_claims
from normlab.experiments.errors import InputError, open_store
from normlab.experiments.spec import BUDGETS
from normlab.report import html
from normlab.report.claims_page import claims_page
from normlab.report.study_page import study_page
from normlab.report.views import Page


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


def claims_report(db: Path | str, budget: str = "quick", ids: list[int] | None = None) -> Page:
    """The claims page of ``db`` at ``budget`` (default all claims): verdicts judged
    from the runs there, nothing trained."""
    if budget not in BUDGETS:
        raise InputError(f"{budget!r} is not one of {', '.join(BUDGETS)}", "budget")
    try:
        wanted = selected(ids) if ids is not None else None
    except ValueError as err:
        raise InputError(str(err), "only") from None
    with open_store(db) as store:
        try:
            stored = stored_claims(store, budget, wanted)
        except ClaimError as err:
            raise InputError(str(err)) from None
    if all(sc.study is None for sc in stored):
        raise InputError(
            f"{db}: holds no claim study at the {budget} budget (run `normlab "
            f"claims --budget {budget}` first)"
        )
    only = ",".join(map(str, ids)) if ids else ""
    return claims_page(stored, budget, Path(db).name, only)


def write_report(
    db: Path | str = "normlab.db",
    *,
    study: str | None = None,
    claims: bool = False,
    budget: str = "quick",
    ids: list[int] | None = None,
    out: Path | str = "report.html",
    assets: Path | str | None = None,
) -> ReportResult:
    """Write the report of ``study`` (or, with ``claims``, of the claims at ``budget``)
    in the database ``db`` to the HTML file ``out``; with ``assets``, also each figure
    as SVG and PNG in that folder. InputError for a missing database or study."""
    started = time.perf_counter()
    if not Path(db).is_file():
        raise InputError(f"{db}: no such database")
    page = claims_report(db, budget, ids) if claims else study_report(db, study)
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
