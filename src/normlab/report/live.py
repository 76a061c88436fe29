"""``normlab report --live``: the report of a study (or of the claims) served on this
machine while the study runs in another process, rebuilt from the database whenever its
runs move, and updated in the open browser without a reload.

A watcher thread looks at the database every second (WAL lets it read while the study's
driver writes): where the runs stand is cheap to read and is shown at once, with the
time left at the pace of the work done lately; the page itself is rebuilt only when a
run's status changes (a unit claimed, finished, failed), at most every few seconds. The
server answers three requests: the page (``/``), where the study stands (``/state``,
JSON) and the rebuilt page (``/content``, JSON), which the page's script fetches when the
state's version moves.

It binds to 127.0.0.1 unless told otherwise: anyone who reaches the port can read the
results, and the server asks no one who they are.
"""

from __future__ import annotations

import html
import ipaddress
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from normlab.analysis.progress import Pace, Standing, configs_standing, study_standing
from normlab.claims.auto import auto_name, design_of, sequential
from normlab.claims.claim import ClaimError
from normlab.claims.definitions import CLAIMS, claim_studies
from normlab.errors import InputError
from normlab.report import html as page_html
from normlab.report.build import claims_report, claims_scope, study_report
from normlab.report.header import duration
from normlab.spec.config import RunConfig
from normlab.store.db import Store, StoreError

LOOK_SECONDS = 1.0  # how often the database is read
REBUILD_SECONDS = 2.0  # the least time between two builds of the page

# The page asks its server where the study stands every second,
# and when the runs have moved, fetches the rebuilt page and puts it in place: no reload,
# the reader's scroll position kept. The bar says when the server has gone.
_LIVE_JS = """
const bar = document.getElementById("live");
let shown = LIVE.version;
function standing(s) {
  bar.querySelector(".text").textContent = s.text;
  bar.querySelector(".fill").style.width = (100 * s.fraction).toFixed(1) + "%";
  Object.assign(bar.dataset, {state: s.state, finished: s.finished, runs: s.runs});
  document.title = s.title;
}
async function poll() {
  try {
    const s = await (await fetch("state", {cache: "no-store"})).json();
    standing(s);
    if (s.version !== shown) {
      const c = await (await fetch("content", {cache: "no-store"})).json();
      const main = document.querySelector("main"), y = window.scrollY;
      main.querySelectorAll(".plot").forEach(div => Plotly.purge(div));
      main.innerHTML = c.main;
      shown = c.version;
      wire(main);
      await draw(c.figures);
      window.scrollTo(0, y);
    }
  } catch (err) {
    bar.dataset.state = "stopped";
    bar.querySelector(".text").textContent =
      "disconnected: the live server stopped; the page shows what it last saw";
  }
  setTimeout(poll, LIVE.every);
}
setTimeout(poll, LIVE.every);
"""

_LIVE_CSS = """
#live{position:sticky;top:0;z-index:10;background:#0b3d91;color:#fff;font-size:13.5px;
padding:6px 24px 8px}
#live .text:before{content:"● live · ";color:#7ee787}
#live[data-state=complete] .text:before{content:"✓ done · ";color:#7ee787}
#live[data-state=idle] .text:before,#live[data-state=waiting] .text:before{content:"○ ";
color:#d0d7de}
#live[data-state=stopped]{background:#6e7781}
#live[data-state=stopped] .text:before{content:"✕ ";color:#fff}
#live .track{height:4px;background:rgba(255,255,255,.25);border-radius:2px;margin-top:4px}
#live .fill{height:4px;background:#7ee787;border-radius:2px;width:0}
"""


@dataclass(frozen=True)
class Watched:
    """What a live page shows: the study ``study`` of ``db`` (None: the latest, followed
    as new studies start), or with ``claims`` the claims page at ``budget``."""

    db: Path
    study: str | None = None
    claims: bool = False
    budget: str = "quick"
    ids: list[int] | None = None
    model: str = "mlp"
    dataset: str = "mnist"


@dataclass(frozen=True)
class Shown:
    """The page as last built (``version`` goes up with each build) and the state last
    read; ``state`` is what ``/state`` answers."""

    version: int
    title: str
    main: str
    figures: dict
    state: dict


def _waiting(message: str, version: int) -> Shown:
    main = f'<section id="waiting"><h2>Waiting</h2><p class="lead">{html.escape(message)}</p>'
    state = {"version": version, "state": "waiting", "text": message, "finished": 0, "runs": 0,
             "running": 0, "queued": 0, "failed": 0, "fraction": 0.0, "title": "normlab live"}
    return Shown(version, "normlab live", main + "</section>", {}, state)  # fmt: skip


def standing_text(s: Standing, seconds_left: float | None) -> str:
    """E.g. "12 of 24 runs finished · 3 running · 9 queued · about 2.5 min left"."""
    parts = [f"{s.finished} of {s.runs} runs finished"
             + (f" ({s.diverged} diverged)" if s.diverged else "")]  # fmt: skip
    parts += [f"{n} {what}" for n, what in ((s.running, "running"), (s.queued, "queued"),
                                            (s.failed, "failed")) if n]  # fmt: skip
    if s.ended:
        parts.append("complete" if not s.failed else "ended")
    elif not s.running:
        parts.append("no process is training it now")
    else:
        parts.append(f"about {duration(seconds_left)} left" if seconds_left else "timing…")
    return " · ".join(parts)


class LiveReport:
    """The live page of ``watched`` on http://``host``:``port``/ (port 0: a free one).
    ``start`` serves it from two threads; ``close`` stops both."""

    def __init__(self, watched: Watched, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.watched = watched
        if watched.claims:
            claims_scope(watched.budget, watched.ids, watched.model, watched.dataset)
        try:
            self.server = ThreadingHTTPServer((host, port), _Handler)
        except OSError as err:
            raise InputError(f"cannot serve on {host}:{port} ({err.strerror})", "port") from None
        self.server.live = self  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        self.shown = _waiting(f"waiting for {watched.db}", 0)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, name="normlab-live", daemon=True),
                         threading.Thread(target=self.server.serve_forever, kwargs={
                             "poll_interval": 0.2}, name="normlab-http", daemon=True)]  # fmt: skip
        self._pace = Pace()
        self._configs: list[RunConfig] | None = None  # the claims' runs, expanded once
        self._key: tuple | None = None
        self._built = -REBUILD_SECONDS

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def local(self) -> bool:
        """Whether only this machine can reach the page (a loopback address)."""
        return ipaddress.ip_address(self.server.server_address[0]).is_loopback

    def start(self) -> LiveReport:
        """Start serving (once; a started report is returned as it is)."""
        if not self._threads[0].is_alive():
            for thread in self._threads:
                thread.start()
        return self

    def serve(self, open_url: Callable[[str], object] | None = None) -> None:
        """Serve until Ctrl-C or ``kill`` (SIGINT, SIGTERM; or ``close`` from another
        thread), then stop cleanly; ``open_url`` (a browser launcher) is given the page's
        address first. Called from the main thread, it answers both signals even where
        they were ignored when the process began (a command started in the background by
        a script ignores SIGINT)."""
        if open_url is not None:
            open_url(self.url)
        main = threading.current_thread() is threading.main_thread()
        stops = (signal.SIGINT, signal.SIGTERM) if main else ()
        before = {s: signal.signal(s, _interrupt) for s in stops}
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            for s, handler in before.items():
                signal.signal(s, handler)
            self.close()

    def close(self) -> None:
        """Stop both threads and free the port (a report never started just frees it)."""
        self._stop.set()
        if self._threads[1].is_alive():  # shutdown() waits for a serving loop to end
            self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=10)

    def __enter__(self) -> LiveReport:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the watcher thread ----------------------------------------------------------

    def _watch(self) -> None:
        store = None
        while not self._stop.is_set():
            try:
                if store is None and self.watched.db.is_file():
                    store = Store(self.watched.db)
                if store is None:
                    self._wait(f"waiting for {self.watched.db} to be created")
                else:
                    self._look(store)
            except (InputError, StoreError, ClaimError, sqlite3.Error) as err:
                self._key = None  # rebuild once it reads again
                self._wait(f"waiting: {err}")
            self._stop.wait(LOOK_SECONDS)
        if store is not None:
            store.close()

    def _wait(self, message: str) -> None:
        """Show ``message`` in place of the page (a new version only when it is new)."""
        if self.shown.state["state"] != "waiting" or self.shown.state["text"] != message:
            self.shown = _waiting(message, self.shown.version + 1)

    def _look(self, store: Store) -> None:
        """Read where the runs stand; rebuild the page when their statuses moved."""
        w = self.watched
        if w.claims:
            standing, name = configs_standing(store, self._claims_configs(store)), None
        else:
            name = store.resolve_study(w.study)
            standing = study_standing(store, name)
        key = (name, standing.outcomes)
        now = time.monotonic()
        self._pace.observe(now, standing.work_done)
        shown = self.shown
        # rebuilt at most every few seconds, but at once when the last run lands: the
        # state that says "complete" comes with the page of every run
        if key != self._key and (standing.ended or now - self._built >= REBUILD_SECONDS):
            page = (claims_report(w.db, w.budget, w.ids, w.model, w.dataset, settled=True)
                    if w.claims else study_report(w.db, name))  # fmt: skip
            main, figures = page_html.content(page)
            shown = Shown(shown.version + 1, page.title, main, figures, {})
            self._key, self._built = key, now
        left = self._pace.seconds_left(standing.work_total - standing.work_done)
        self.shown = replace(shown, state=self._state(shown, standing, left))

    def _claims_configs(self, store: Store) -> list[RunConfig]:
        """Every run the watched claims' studies need, whether registered yet or not (a
        sequential design's: the rounds registered so far, which grow)."""
        w = self.watched
        wanted, setting = claims_scope(w.budget, w.ids, w.model, w.dataset)
        design = design_of(w.budget)
        if design:
            known = set(store.study_names())
            names = {auto_name(CLAIMS[n], setting, design)
                     for n in wanted or list(CLAIMS)
                     if sequential(CLAIMS[n]) and not CLAIMS[n].not_applicable(setting)}
            rows = [r for name in names & known for r in store.runs(name)]
            return list({r.id: RunConfig.from_stored(r.config) for r in rows}.values())
        if self._configs is None:
            specs = claim_studies(wanted or list(CLAIMS), w.budget, setting).values()
            studies = {spec.name: spec for spec in specs}  # a study two claims share, once
            self._configs = list({c.run_id: c for s in studies.values() for c in s.runs()}.values())
        return self._configs

    @staticmethod
    def _state(shown: Shown, s: Standing, left: float | None) -> dict:
        state = "complete" if s.ended else "running" if s.running else "idle"
        text = standing_text(s, left)
        return {"version": shown.version, "state": state, "text": text, "finished": s.finished,
                "runs": s.runs, "running": s.running, "queued": s.queued, "failed": s.failed,
                "fraction": round(s.fraction, 4), "seconds_left": left,
                "title": f"({s.finished}/{s.runs}) {shown.title}",
                "updated": datetime.now().strftime("%H:%M:%S")}  # fmt: skip

    # -- what the server answers -----------------------------------------------------

    def page(self) -> str:
        """The whole page as last built, with the bar and the script that follow the
        server from then on."""
        shown, state = self.shown, self.shown.state
        bar = (f'<div id="live" data-state="{html.escape(state["state"])}" data-finished='
               f'"{state["finished"]}" data-runs="{state["runs"]}"><div class="text">'
               f'{html.escape(state["text"])}</div><div class="track"><div class="fill" '
               f'style="width:{100 * state["fraction"]:.1f}%"></div></div></div>')  # fmt: skip
        start = json.dumps({"version": shown.version, "every": int(LOOK_SECONDS * 1000)})
        return page_html.document(shown.title, shown.main, shown.figures, css=_LIVE_CSS,
                                  top=bar, script=f"const LIVE={start};\n{_LIVE_JS}")  # fmt: skip

    def content(self) -> dict:
        shown = self.shown
        return {"version": shown.version, "main": shown.main, "figures": shown.figures}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        live: LiveReport = self.server.live  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        if path == "/":
            self._send(live.page().encode(), "text/html; charset=utf-8")
        elif path == "/state":
            self._send(json.dumps(live.shown.state).encode(), "application/json")
        elif path == "/content":
            self._send(json.dumps(live.content()).encode(), "application/json")
        elif path == "/favicon.ico":  # browsers ask; the page has none
            self.send_response(204)
            self.end_headers()
        else:
            self.send_error(404)

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # a request per second: not worth a line
        pass


def live_report(
    db: Path | str = "normlab.db",
    *,
    study: str | None = None,
    claims: bool = False,
    budget: str = "quick",
    ids: list[int] | None = None,
    model: str = "mlp",
    dataset: str = "mnist",
    host: str = "127.0.0.1",
    port: int = 8765,
) -> LiveReport:
    """Serve the live report of ``study`` (default: the latest, followed as new ones
    start) or, with ``claims``, of the claims at ``budget``, in ``db`` on ``host``:``port``;
    started, its address in ``.url``; ``close()`` stops it. The database may not exist
    yet: the page waits for it. InputError for a bad option or a port in use."""
    watched = Watched(Path(db), study, claims, budget, ids, model, dataset)
    return LiveReport(watched, host, port).start()
