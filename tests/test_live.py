"""`normlab report --live`: where a study stands read from its database while it runs,
the page served on 127.0.0.1 and rebuilt as runs land, followed by a real browser."""

import html
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from normlab.analysis.progress import Pace, standing
from normlab.app.api import run_study
from normlab.claims.claim import claim_study
from normlab.claims.definitions import CLAIMS
from normlab.claims.stored import stored_claims
from normlab.cli import app
from normlab.errors import InputError
from normlab.experiments.plan import Unit
from normlab.report.claims_page import claims_page
from normlab.report.live import LiveReport, Watched, live_report
from normlab.spec.config import RunConfig
from normlab.store.db import Store
from normlab.store.leases import Owner

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "examples" / "quick-check.toml"  # 8 runs in 2 stacks, seconds each


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def _state(server) -> dict:
    return json.loads(_get(server.url + "state")[1])


def _until(check, seconds: float = 30.0):
    """``check()`` once it is truthy, polling; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return value


def test_the_pace_is_measured_from_when_the_work_moved():
    pace = Pace(window=60)
    for t, done in ((0, 0.0), (5, 0.0), (10, 0.0)):  # a process starting: no pace yet
        pace.observe(t, done)
    assert pace.seconds_left(1.0) is None
    pace.observe(12, 1.0)
    pace.observe(14, 2.0)  # 2 units of work in the 4 s since the last look at 0
    assert pace.seconds_left(10.0) == pytest.approx(20.0)
    for t in range(20, 201, 10):  # then 0.5 a second, then 1 a second
        pace.observe(t, 2.0 + 0.5 * (t - 14) if t <= 140 else 65.0 + (t - 140))
    assert pace.seconds_left(10.0) == pytest.approx(10.0)  # the last minute's pace only
    pace.observe(210, 5.0)  # work started over (a unit redone): measured afresh
    assert pace.seconds_left(10.0) is None


def test_a_studys_standing_counts_its_runs_and_weighs_their_work():
    cheap, dear = RunConfig(hidden=(32,), seed=0), RunConfig(hidden=(32,), seed=1)
    deep = RunConfig(hidden=(512, 512), seed=2)
    now, steps = 1000.0, cheap.epochs * cheap.steps_per_epoch
    runs = [(cheap, "done", None, None), (dear, "running", steps // 2, now + 30),
            (deep, "running", 10, now - 1),  # its lease ran out: its process is gone
            (RunConfig(seed=3), "diverged", None, None), (RunConfig(seed=4), "failed", None, None),
            (RunConfig(seed=5), None, None, None)]  # fmt: skip
    s = standing(runs, now)
    assert (s.runs, s.finished, s.diverged, s.running, s.queued, s.failed) == (6, 2, 1, 1, 2, 1)
    work = [Unit((c,)).work for c, *_ in runs]
    assert s.work_total == pytest.approx(sum(work))
    assert s.work_done == pytest.approx(work[0] + work[1] / 2 + work[3])
    assert Unit((deep,)).work > 4 * Unit((cheap,)).work  # a run is weighed by its cost
    assert standing(runs[:1], now).outcomes != s.outcomes
    assert standing([(cheap, "running", 5, now + 1)], now).outcomes == standing(
        [(cheap, "running", 9, now + 1)], now).outcomes  # progress alone rebuilds nothing


def test_a_chains_legs_take_their_steps_one_after_another():
    legs = [RunConfig(epochs=1, batch_size=1000), RunConfig(epochs=2, batch_size=1000, seed=1)]
    chain = Unit(tuple(legs), chain=True)  # 55 and 110 steps
    assert list(chain.run_steps(70).values()) == [55, 15]
    assert list(Unit(tuple(legs[:1])).run_steps(70).values()) == [70]


def test_a_running_unit_records_its_steps_only_while_it_holds_them(tmp_path):
    config, me, other = RunConfig(), Owner.this_process(), Owner.this_process()
    with Store(tmp_path / "p.db") as store:
        store.register_study("s", {}, [config])
        assert store.claim([config.run_id], me, 60, {})
        assert store.run_states([config.run_id])[config.run_id].progress == 0
        store.record_progress(me, {config.run_id: 300})
        store.record_progress(other, {config.run_id: 999})  # not its run: ignored
        assert store.run_states([config.run_id])[config.run_id].progress == 300
        store.mark_failed([config.run_id], "boom")
        assert store.run_states([config.run_id])[config.run_id].progress is None


def test_a_live_report_follows_a_study_as_it_trains(tmp_path, data_root):
    """A real study on real MNIST in this process, watched from the start (before its
    database exists) to the end: the state and the page move, the server stops."""
    db = tmp_path / "live.db"
    with live_report(db, port=0) as server:
        assert server.local and server.url.startswith("http://127.0.0.1:")
        first = _state(server)
        assert first["state"] == "waiting" and "to be created" in first["text"]
        status, page = _get(server.url)
        assert status == 200 and b'id="live"' in page and b'data-state="waiting"' in page
        report = run_study(QUICK, db=db, data_dir=data_root)
        assert report.trained == 8
        end = _until(lambda: (s := _state(server))["state"] == "complete" and s)
        assert (end["finished"], end["runs"], end["fraction"]) == (8, 8, 1.0)
        assert end["text"] == "8 of 8 runs finished · complete" and end["version"] > 1
        content = json.loads(_get(server.url + "content")[1])
        assert content["version"] == end["version"] and "Every run" in content["main"]
        assert set(content["figures"]) == {"curves-step", "curves-seconds", "factor-norm",
                                           "step-loss"}  # fmt: skip
        assert b'data-finished="8"' in _get(server.url)[1]
        assert _get(server.url + "nothing")[0] == 404
    with pytest.raises(urllib.error.URLError):  # closed: nobody answers
        urllib.request.urlopen(server.url + "state", timeout=2)


def test_live_report_bad_input_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=f"cannot serve on 127.0.0.1:{port}") as info:
            live_report(tmp_path / "x.db", port=port)
        assert info.value.option == "port"
    LiveReport(Watched(tmp_path / "x.db"), port=port).close()  # never started: frees it
    with live_report(tmp_path / "x.db", port=port) as server:  # the port is free again
        assert server.url.endswith(f":{port}/")
    with pytest.raises(InputError, match="'huge' is not one of") as info:
        live_report(tmp_path / "x.db", claims=True, budget="huge", port=0)
    assert info.value.option == "budget"
    done = CliRunner().invoke(app, ["report", "--live", "--port", str(port), "--only", "x"])
    assert done.exit_code == 2 and "--only: expected comma-separated" in done.output


def test_a_claim_whose_study_still_runs_shows_no_verdict_yet(tmp_path):
    """A live claims page judges a claim once its study has every outcome; before, the
    claim is "running" (a verdict that moves as runs land invites peeking)."""
    study = claim_study(CLAIMS[4], "quick").study()
    with Store(tmp_path / "c.db") as store:
        store.register_study(study.name, study.spec, study.configs)  # queued, as at the start
        settled = stored_claims(store, "quick", [4], settled=True)
        judged = stored_claims(store, "quick", [4])
    four, twelve = settled  # claim 4 and its part 12, whose study is not registered
    assert four.study is not None and four.result is None and judged[0].result is not None
    assert twelve.study is None and twelve.result is None
    page = claims_page(settled, "quick", "c.db", grid={})
    sections = {s.key: s for s in page.sections}
    assert sections["claim-4"].badge == ("running", "running")
    assert "0 of 18 runs finished" in sections["claim-4"].sentences[0]  # 3 rates tuned
    assert sections["claim-12"].badge == ("not run", "queued")
    lead = sections["verdicts"].sentences
    assert "Running: claim(s) 4." in lead and "Not run yet: claim(s) 12." in lead


@pytest.mark.slow
def test_a_live_claims_page_gives_the_verdicts_of_claims_whose_studies_ended(claims_db):
    db, verdicts = claims_db  # claims 4 (with 12) and 9, judged at the quick budget
    with live_report(db, claims=True, ids=[4, 9], port=0) as server:
        end = _until(lambda: (s := _state(server))["state"] == "complete" and s)
        main = json.loads(_get(server.url + "content")[1])["main"]
    assert (end["finished"], end["runs"]) == (78, 78)  # 18 + 6 + 54 runs
    for v in verdicts:  # each claim's badge is the verdict `normlab claims` printed
        title = html.escape(f'{v["id"]}. {CLAIMS[v["id"]].claim}')
        assert f'{title} <span class="tag {v["verdict"]}">{v["verdict"]}</span>' in main


def test_the_command_serves_until_ctrl_c(tmp_path):
    """`normlab report --live` in its own process: it says where, answers, and stops
    cleanly on Ctrl-C (SIGINT) with exit code 0."""
    server = subprocess.Popen([sys.executable, "-m", "normlab", "report", "--live", "--port",
                               "0", "--db", "x.db"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = server.stdout.readline()
        assert line.startswith("live report of x.db at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        assert json.loads(_get(url + "state")[1])["state"] == "waiting"
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    finally:
        server.kill()
    assert server.returncode == 0, err
    assert out.strip() == "stopped" and "Traceback" not in err


# -- in a real browser ---------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).parent))
import browser  # noqa: E402  (the test helper beside this file)

SLOWER = """name = "live-check"
seeds = 2
[fixed]
hidden = [256]
epochs = 1
inputs = "scaled"
batch_size = 50
[grid]
norm = ["none", "batch", "layer", "group"]
"""  # 8 runs in 4 stacks of 2, a few seconds each


@pytest.mark.slow
@pytest.mark.skipif(
    not browser.chromium_available() or not browser.playwright_available(),
    reason="no Chromium binary (Debian: apt-get install chromium) or no playwright",
)
def test_the_live_page_counts_runs_as_they_finish_without_a_reload(tmp_path):
    """A study trains in one process and `normlab report --live` serves it from another;
    in Chromium, the count of finished runs goes up while the page stays the same page
    (no navigation: a mark left on it survives), and when the server stops the page says
    so."""
    from playwright.sync_api import sync_playwright

    (tmp_path / "s.toml").write_text(SLOWER)
    serve = [sys.executable, "-m", "normlab", "report", "--live", "--port", "0", "--db", "s.db"]
    server = subprocess.Popen(serve, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    study = None
    try:
        url = server.stdout.readline().split(" at ")[1].split()[0]
        study = subprocess.Popen([sys.executable, "-m", "normlab", "run", "s.toml", "--db",
                                  "s.db", "--threads", "1"], cwd=tmp_path)  # fmt: skip
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=browser.CHROMIUM, args=browser.FLAGS)
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.goto(url)
            page.wait_for_function("document.getElementById('live').dataset.state == 'running'",
                                   timeout=60_000)  # fmt: skip
            page.evaluate("window.sameDocument = true")
            before = int(page.locator("#live").get_attribute("data-finished"))
            assert before < 8
            page.wait_for_function(
                f"Number(document.getElementById('live').dataset.finished) > {before}",
                timeout=120_000,
            )
            page.wait_for_selector("#table-runs .tag.done", timeout=30_000)  # the page rebuilt
            page.screenshot(path=str(tmp_path / "live.png"))
            assert page.evaluate("window.sameDocument") is True  # never reloaded
            assert study.wait(timeout=300) == 0
            page.wait_for_function("document.getElementById('live').dataset.state == 'complete'",
                                   timeout=30_000)  # fmt: skip
            assert page.locator("#live .text").text_content() == "8 of 8 runs finished · complete"
            assert errors == [], errors
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=30) == 0
            page.wait_for_function("document.getElementById('live').dataset.state == 'stopped'",
                                   timeout=30_000)  # fmt: skip
            page.screenshot(path=str(tmp_path / "live-stopped.png"))
            chromium.close()
    finally:
        for process in (server, study):
            if process is not None and process.poll() is None:
                process.kill()
