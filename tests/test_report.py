"""The report: views from real stored runs, one self-contained HTML page, static
figures, and the terminal tables that render the same views."""

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from normlab.analysis.records import RunRecord, StudyRecord, accuracy_curve, records, study_record
from normlab.analysis.stats import Comparison
from normlab.claims.claim import claim_study
from normlab.claims.definitions import CLAIMS
from normlab.claims.judge import ClaimResult, judge_runs
from normlab.claims.stored import StoredClaim
from normlab.cli import app
from normlab.report import console, html
from normlab.report.build import study_report, write_report
from normlab.report.claim_figures import FactorFigure, final
from normlab.report.claims_page import claims_page
from normlab.report.evidence import percentile_curves
from normlab.report.header import reproduce_command
from normlab.report.plots import downsample, number
from normlab.report.tables import divergence, interval
from normlab.spec.study import StudySpec, load_study
from normlab.store.db import Store
from normlab.types import EpochMetrics, EvalPoint, ProbeRow, SampleImage, Status

STUDY = """
name = "fig1"
seeds = 2
[fixed]
inputs = "scaled"
hidden = [20, 20]
activation = "sigmoid"
dropout = 0.0
batch_size = 1000
epochs = 2
probes = ["activations"]
probe_every = 10
eval_every = 20
[grid]
norm = ["none", "batch"]
"""
STUDIES = sorted((Path(__file__).parents[1] / "src/normlab/claims/studies").glob("*.toml"))


@pytest.fixture(scope="module")
def study_db(tmp_path_factory, data_root):
    """A real 2-epoch study of 4 runs (sigmoid MLPs with and without BN) on MNIST."""
    folder = tmp_path_factory.mktemp("study")
    (folder / "fig1.toml").write_text(STUDY)
    done = CliRunner().invoke(
        app,
        [
            "run",
            str(folder / "fig1.toml"),
            "--db",
            str(folder / "f.db"),
            "--data-dir",
            str(data_root),
        ],
    )
    assert done.exit_code == 0, done.output
    return folder / "f.db"


def test_activation_percentiles_from_a_real_study(study_db):
    with Store(study_db) as store:
        runs = records(store, "fig1")
    assert len(runs) == 4
    # 55 steps per epoch: an evaluation every 20 steps, and at each epoch's end
    assert list(accuracy_curve(runs[0])) == [20, 40, 55, 60, 80, 100, 110]
    unit, steps, values = percentile_curves(runs[0])
    assert unit == 10 and list(steps)[:4] == [1, 10, 20, 30]  # middle of 0, 10, 19
    assert np.all(values[:, 0] <= values[:, 1]) and np.all(values[:, 1] <= values[:, 2])
    with pytest.raises(ValueError, match="no activation percentiles"):
        percentile_curves(runs[0].__class__(runs[0].config, "done", [], [], []))


def test_study_report_from_real_runs(study_db, tmp_path):
    out = tmp_path / "r.html"
    result = write_report(study_db, out=out, assets=tmp_path / "assets")
    page = out.read_text()
    assert result.bytes == out.stat().st_size and result.missing == []
    # every script inline: no tag loads anything from elsewhere
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    figures = json.loads(re.search(r"const FIGURES=(\{.*?\});\n", page, re.S)[1])
    assert set(figures) == {"curves-step", "curves-seconds", "factor-norm", "step-loss"}
    assert result.figures == 4
    # hover names the run: each of the 4 run ids appears in the step-loss tooltips
    with Store(study_db) as store:
        ids = [r.id for r in store.runs("fig1")]
    tips = " ".join(trace.get("hovertemplate", "") for trace in figures["step-loss"]["data"])
    assert all(f"run {i}" in tips for i in ids)
    # the page reproduces itself: the command and the study file, read back to its runs
    assert "normlab run fig1.toml --db f.db" in page
    text = re.search(r'href="data:text/plain;charset=utf-8,([^"]+)"', page)[1]
    from urllib.parse import unquote

    spec = StudySpec(**tomllib.loads(unquote(text)))
    assert [c.run_id for c in spec.runs()] == ids
    for view in study_report(study_db).figures:  # static copies for papers
        _assert_drawn(view, tmp_path / "assets")


def _assert_drawn(view, folder: Path) -> None:
    """The PNG of ``view`` has its grid of panels and shows every opaque series in its
    own colour (a line's inner pixels are drawn in it exactly); its SVG strokes each."""
    image = matplotlib.image.imread(folder / f"{view.key}.png")[..., :3]
    cols = min(view.columns, len(view.panels))
    rows = -(-len(view.panels) // cols)
    assert image.shape[:2] == (round((3.4 * rows + 0.9) * 130), round(4.6 * cols * 130))
    svg = (folder / f"{view.key}.svg").read_text()
    colors = {t.color for p in view.panels for t in p.traces if t.opacity == 1 and t.y}
    assert colors, view.key
    for color in colors:
        near = np.abs(image - np.array(matplotlib.colors.to_rgb(color))).max(-1) < 0.02
        assert near.sum() >= 20, (view.key, color, near.sum())
        assert f"stroke: {color.lower()}" in svg.lower() or f"fill: {color.lower()}" in svg.lower()


def test_an_unfinished_study_reports_what_is_missing(study_db, tmp_path):
    db = tmp_path / "partial.db"
    db.write_bytes(study_db.read_bytes())
    spec = StudySpec(**tomllib.loads(STUDY)).model_copy(update={"seeds": 3})
    study = spec.study()
    with Store(db) as store:  # a third seed registered, as by an interrupted `normlab run`
        store.register_study(study.name, study.spec, study.configs)
    done = CliRunner().invoke(app, ["report", "--db", str(db), "--out", str(tmp_path / "p.html")])
    assert done.exit_code == 0, done.output
    assert "missing: 2 of 6 runs not finished" in done.output
    page = (tmp_path / "p.html").read_text()
    assert "2 of 6 runs have no outcome yet (2 queued)" in page
    assert "4 done, 2 not trained yet" in page


def test_report_errors_are_one_line_and_exit_2(study_db, tmp_path):
    runner = CliRunner()
    cases = [
        (["--db", str(tmp_path / "none.db")], "none.db: no such database"),
        (["--db", str(study_db), "--study", "nope"], "no study named 'nope'"),
        (["--db", str(study_db), "--claims"], "holds no claim study at the quick budget"),
        (["--db", str(study_db), "--claims", "--budget", "big"], "--budget: 'big' is not one"),
        (["--db", str(study_db), "--claims", "--only", "x"], "--only: expected comma-separated"),
    ]
    for args, message in cases:
        done = runner.invoke(app, ["report", *args, "--out", str(tmp_path / "x.html")])
        assert done.exit_code == 2 and message in done.output, (args, done.output)
    blocked = tmp_path / "file"
    blocked.write_text("")
    done = runner.invoke(app, ["report", "--db", str(study_db), "--out", str(blocked / "r.html")])
    assert done.exit_code == 2 and "cannot write" in done.output


def test_every_builtin_study_writes_back_as_a_study_file():
    for path in STUDIES:
        spec = load_study(path)
        for variant in (spec, spec.with_budget("quick")):
            again = StudySpec(**tomllib.loads(variant.to_toml()))
            assert again == variant and again.runs() == variant.runs()


def test_reproduce_commands_name_the_procedure(study_db):
    with Store(study_db) as store:
        record = study_record(store, "fig1")
    claim = record.__class__("claim-04-regularization-quick", {}, "", "", [])
    assert reproduce_command(claim, "c.db") == (
        "normlab claims --budget quick --only 4 --db c.db",
        None,
    )
    procedure = {
        "procedure": "reproduce",
        "seeds": 2,
        "epochs": 1,
        "batch_sizes": [32, 64],
        "inputs": "raw",
        "semantics": "keras",
    }
    seed = record.__class__("x", procedure, "", "", [])
    assert reproduce_command(seed, "r.db")[0] == (
        "normlab reproduce --seeds 2 --epochs 1 --batch-sizes 32,64 --inputs raw "
        "--semantics keras --db r.db"
    )


def test_numbers_read_as_people_write_them():
    assert [number(v) for v in (0.98123, 1240.0, 3.1e-05, float("inf"), float("nan"))] == [
        "0.9812",
        "1,240",
        "3.100e-5",
        "∞",
        "—",
    ]
    assert interval(-0.0123, -0.0201, -0.00496) == "-0.012 [-0.020, -0.005]"
    assert interval(-125.0, -162.0, -100.0) == "-125 [-162, -100]"
    assert interval(float("-inf"), float("nan"), float("nan")) == "−∞"
    assert divergence({"none": (0, 3), "batch": (0, 3)}) == "none of 6 runs"
    assert divergence({"none": (2, 3), "batch": (0, 3)}) == "no norm 2 of 3 (2 of 6 runs)"
    x, y = downsample(list(range(1000)), [float(i) for i in range(1000)], 50)
    assert len(x) == 50 and x[0] == 0 and x[-1] == 999 and y[-1] == 999
    assert y[1] == pytest.approx(np.mean(range(20, 40)))  # a bucket's mean


def _result(n: int, verdict: str) -> ClaimResult:
    c = Comparison(-0.01234, -0.02011, -0.00496, 1.2e-05, "paired t", 8, 8, True, 0.98, 0.99)
    return ClaimResult(
        n,
        "a claim",
        verdict,
        "outcome",
        c.effect,
        c.ci_low,
        c.ci_high,
        c.p,
        1280,
        [("", c, c.p)],
        title="normalized-input clash",
    )


def test_the_claims_table_fits_80_columns():
    """Every claim's short title beside the widest effect a row shows, "inconclusive"
    and a three-digit id: one line each at 80 columns."""
    results = [replace(_result(n, "inconclusive"), id=100 + n, title=c.title)
               for n, c in CLAIMS.items()]  # fmt: skip
    term = Console(width=80, record=True, color_system=None)
    term.print(console.claims_table(results, "standard"))
    lines = term.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    for c in CLAIMS.values():
        (line,) = [line for line in lines if c.title in line]  # no wrap
        assert "-0.012 [-0.020, -0.005]" in line and "1280" in line, line


def test_html_escapes_what_it_shows():
    from normlab.report.views import Cell, Header, Page, Section, TableView

    table = TableView("t", "<b>", ("a",), [(Cell("<script>x</script>"),)])
    page = Page(
        "<title>", "", Header([("k", "<v>")], "cmd </script>"), [Section("s", "s", tables=[table])]
    )
    text = html.render(page)
    assert "<script>x</script>" not in text and "&lt;script&gt;x&lt;/script&gt;" in text


def test_bad_study_file_errors_stay_one_line_when_piped(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "bad.toml"
    deep.parent.mkdir()
    deep.write_text('[grid]\nnorm = ["none", "batch", "group", "layer", "batch_renorm"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "normlab", "run", str(deep)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(deep) in lines[0] and "name: Field required" in lines[0]


def test_study_page_of_real_runs_has_every_section(study_db):
    page = study_report(study_db)
    assert [s.key for s in page.sections] == ["summary", "curves", "factors", "steps", "runs"]
    assert page.sections[0].sentences[0].startswith("Highest final test accuracy: norm=")
    assert all(f.points for f in page.figures)


# -- in a real browser ---------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).parent))
import browser  # noqa: E402  (the test helper beside this file)

needs_browser = pytest.mark.skipif(
    not browser.chromium_available() or not browser.playwright_available(),
    reason="no Chromium binary (Debian: apt-get install chromium) or no playwright",
)

DRAWN = """() => Array.from(document.querySelectorAll('.plot')).map(div => [div.id,
  div.querySelectorAll('path.js-line, path.point, .bars path, path.js-fill').length])"""


def _hover_tooltips(page, figure: str, tries: int = 12) -> list[str]:
    """Move the mouse over the data points of ``figure`` as a reader would; the text of
    each tooltip that appears."""
    seen = []
    points = page.locator(f"#fig-{figure} path.point")
    for i in range(min(points.count(), tries)):
        points.nth(i).scroll_into_view_if_needed()
        box = points.nth(i).bounding_box()
        if not box:
            continue
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        tip = page.locator(f"#fig-{figure} .hoverlayer .hovertext")
        try:
            tip.first.wait_for(timeout=1000)
        except Exception:  # no tooltip at this point (hidden under another)
            continue
        seen.append(tip.first.text_content())
    return seen


def _check_page(page, visit, shot: Path) -> dict[str, int]:
    drawn = dict(page.evaluate(DRAWN))
    page.screenshot(path=str(shot), full_page=True)
    assert visit.console_errors == [], visit.console_errors
    assert visit.requests == [], visit.requests  # nothing fetched: the file is all there is
    assert drawn and all(n > 0 for n in drawn.values()), drawn
    return drawn


@pytest.mark.slow
def test_claims_report_says_what_is_not_run(claims_db, tmp_path):
    db, _ = claims_db
    done = CliRunner().invoke(app, ["report", "--claims", "--db", str(db), "--out",
                                    str(tmp_path / "all.html")])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "missing: claim 1: not run" in done.output and "claim 4" not in done.output
    page = (tmp_path / "all.html").read_text()
    assert "3 judged of 25" in page
    assert "<code>normlab claims --budget quick --only 3</code> runs its study" in page


@pytest.mark.slow
@needs_browser
def test_claims_report_in_chromium(claims_db, tmp_path):
    from playwright.sync_api import sync_playwright

    db, verdicts = claims_db
    out = tmp_path / "claims.html"
    args = ["report", "--claims", "--only", "4,9", "--db", str(db), "--out", str(out)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    with sync_playwright() as p:
        chromium, page, visit = browser.open_page(p, out)
        drawn = _check_page(page, visit, tmp_path / "claims.png")
        assert set(drawn) == {"fig-c4", "fig-c12", "fig-c9"}
        rows = page.locator("#table-verdicts tbody tr")
        cells = [rows.nth(i).locator("td") for i in range(rows.count())]
        shown = [(int(c.nth(0).text_content()), c.nth(2).text_content()) for c in cells]
        assert shown == [(v["id"], v["verdict"]) for v in verdicts]
        assert any(re.match(r"run [0-9a-f]{16}", t) for t in _hover_tooltips(page, "c9"))
        chromium.close()


@pytest.mark.slow
@needs_browser
def test_study_report_in_chromium(study_db, tmp_path):
    from playwright.sync_api import sync_playwright

    out = write_report(study_db, out=tmp_path / "study.html").path
    with Store(study_db) as store:
        ids = {r.id for r in store.runs("fig1")}
    with sync_playwright() as p:
        chromium, page, visit = browser.open_page(p, out)
        _check_page(page, visit, tmp_path / "study.png")
        tips = _hover_tooltips(page, "factor-norm")
        shown = {m[1] for t in tips if (m := re.match(r"run ([0-9a-f]{16})", t))}
        assert shown and shown <= ids, tips
        # the runs table sorts on a click and filters as one types
        table = page.locator("#table-runs")
        table.locator("th", has_text="test acc").click()
        accs = [float(t) for t in table.locator("tbody td:nth-child(9)").all_text_contents()]
        assert accs == sorted(accs)
        table.locator("input.filter").fill("batch")
        assert table.locator("tbody tr:visible").count() == 2
        # a legend click hides that arm's lines in the figure
        before = page.locator("#fig-step-loss .scatterlayer path.js-line").count()
        legend = page.locator("#fig-step-loss .legend .traces", has_text="BN").first
        legend.locator(".legendtoggle").click()
        page.wait_for_function(  # fails by timing out if the lines stay
            "n => document.querySelectorAll('#fig-step-loss .scatterlayer path.js-line')"
            ".length < n",
            arg=before,
            timeout=10_000,
        )
        chromium.close()


@pytest.mark.slow
def test_report_of_a_real_cnn_study(tmp_path, data_root):
    (tmp_path / "cnn.toml").write_text(
        'name = "cnn-tiny"\nseeds = 2\n[fixed]\nmodel = "cnn"\nchannels = [4, 8]\n'
        'hidden = [16]\ninputs = "scaled"\nbatch_size = 500\nepochs = 1\n'
        '[grid]\nnorm = ["none", "batch"]\n'
    )
    db, runner = tmp_path / "cnn.db", CliRunner()
    args = ["--db", str(db), "--data-dir", str(data_root)]
    assert runner.invoke(app, ["run", str(tmp_path / "cnn.toml"), *args]).exit_code == 0
    done = runner.invoke(app, ["report", "--db", str(db), "--out", str(tmp_path / "c.html")])
    assert done.exit_code == 0 and "4 figures" in done.output, done.output
    page = (tmp_path / "c.html").read_text()
    assert "mnist (scaled inputs), cnn, keras semantics" in page and "channels = [4, 8]" in page


def test_diverged_runs_are_marked_and_counted(tmp_path, data_root):
    (tmp_path / "d.toml").write_text(
        'name = "diverging"\nseeds = 1\n[fixed]\nhidden = [16]\noptimizer = "sgd"\n'
        "batch_size = 1000\nepochs = 1\n[grid]\nlr = [0.001, 1e12]\n"
    )
    db = tmp_path / "d.db"
    args = ["run", str(tmp_path / "d.toml"), "--db", str(db), "--data-dir", str(data_root)]
    assert CliRunner().invoke(app, args).exit_code == 0
    page = study_report(db)
    with Store(db) as store:
        (stopped,) = [r for r in store.runs("diverging") if r.status == "diverged"]
    (figure,) = [f for f in page.figures if f.key == "step-loss"]
    assert figure.caption.startswith("1 of 2 runs diverged")
    (mark,) = [t for t in figure.panels[0].traces if t.name == "diverged"]
    assert mark.x == [stopped.diverged_step] and stopped.id in mark.hover[0]
    assert "1 run(s) diverged" in " ".join(page.sections[0].sentences)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # made-up ties: inf − inf medians
def _made_up(claim, rng) -> StoredClaim:
    """``claim`` judged on runs of its quick study with made-up epochs and evaluations
    (a GAN's modes and images too)."""
    runs = []
    for c in claim_study(claim, "quick").runs():
        acc = float(rng.uniform(0.85, 0.99))
        epochs = [EpochMetrics(e, 0.3, acc, 0.3, acc, 0.3, acc, 1.0, 0.1)
                  for e in range(1, c.epochs + 1)]  # fmt: skip
        evals = [EvalPoint(s, 0.5, 1.0, 0.4, acc) for s in (20, 40)]
        probes, samples = [], []
        if c.model == "gan":  # what a GAN's judging records: its modes and images
            modes = {"modes": 9.0, "kl": acc, "batch_correlation": acc - 0.9}
            probes = [ProbeRow(9, "modes", -1, n, v) for n, v in modes.items()]
            channels = c.source.image_shape[0]
            samples = [SampleImage(9, i, channels,
                                   rng.integers(0, 256, channels * 784, np.uint8).tobytes())
                       for i in range(16)]  # fmt: skip
        runs.append(RunRecord(c, Status.DONE, epochs, evals, probes, samples, run_id=c.run_id))
    study = StudyRecord(claim.study, {}, "2026-01-01", "2026-01-02", runs)
    return StoredClaim(claim, "quick", claim.study, study, judge_runs(claim, runs))


# A new claim's evidence figure, declared where the claim is (here: in this test).
NEW_FIGURE = FactorFigure("Test accuracy by batch size", "batch_size", [final("test_acc")])


def test_a_claim_declared_once_gets_its_section_and_its_own_figure():
    """A new claim is one declaration (here on claim 4's study) that names its figure:
    the page judges it and shows its verdict, comparisons and that figure; one that
    names none gets its section without a figure."""
    new = replace(CLAIMS[4], id=99, title="a new claim", evidence=f"{__name__}:NEW_FIGURE")
    bare = replace(new, id=98, evidence="")
    rng = np.random.default_rng(1)
    page = claims_page([_made_up(new, rng), _made_up(bare, rng)], "quick", "made-up.db")
    sections = {s.key: s for s in page.sections}
    assert sections["claim-99"].badge[0] in ("supported", "refuted", "inconclusive")
    (figure,) = sections["claim-99"].figures
    assert figure.title == "Test accuracy by batch size" and figure.points
    assert sections["claim-98"].figures == [] and sections["claim-98"].tables[0].rows


def test_every_claims_section_builds_from_made_up_runs():
    """Each claim's section (evidence figure included) from runs of its quick study
    with made-up epochs and evaluations: no builder may fail on the records it reads;
    those that need only accuracies draw points."""
    rng = np.random.default_rng(0)
    stored = [_made_up(claim, rng) for claim in CLAIMS.values()]
    page = claims_page(stored, "quick", "made-up.db")
    sections = {s.key: s for s in page.sections}
    for claim in CLAIMS.values():
        section = sections[f"claim-{claim.id}"]
        assert section.tables, claim.id
        if claim.id in (1, 2, 4, 5, 6, 9, 10, 12, 13, 14, 17, 18, 19, 20, 21, 22):
            assert section.figures and all(f.points for f in section.figures), claim.id
        if claim.id in (13, 22):  # a tile of images per dataset and arm
            arms = 3 if claim.id == 13 else 2
            assert [len(v.tiles) for v in section.images] == [2 * arms], claim.id
            assert section.images[0].tiles[0][1].startswith("data:image/png;base64,")
