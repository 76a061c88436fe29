"""The downloader against a real HTTP server on 127.0.0.1, serving real MNIST bytes."""

import gzip
import http.server
import threading
from functools import partial

import pytest

from normlab.data import idx
from normlab.data.download import DownloadError, download_file
from normlab.data.locate import load
from normlab.data.sources import MNIST, DatasetSource

NAME, DIGEST = MNIST.files["test_labels"]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        if self.path.startswith("/short/"):  # promises more bytes than it sends
            body = (self.server.root / "good" / self.path.split("/")[-1]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path, mnist_dir):
    real = (mnist_dir / f"{NAME}.gz").read_bytes()
    for folder, content in {
        "good": real,
        "corrupt": gzip.compress(gzip.decompress(real)[:-10] + b"\x01" * 10),
        "truncated": real[: len(real) // 2],
    }.items():
        (tmp_path / "www" / folder).mkdir(parents=True)
        (tmp_path / "www" / folder / f"{NAME}.gz").write_bytes(content)
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_Handler, directory=str(tmp_path / "www"))
    )
    httpd.root = tmp_path / "www"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _fetch(server, tmp_path, *folders):
    return download_file(
        NAME,
        DIGEST,
        tmp_path / "cache",
        [f"{server}/{f}/" for f in folders],
        retries=2,
        backoff_s=0.0,
        timeout_s=5.0,
    )


def test_downloads_and_verifies(server, tmp_path):
    path = _fetch(server, tmp_path, "good")
    assert idx.sha256(idx.read_bytes(path)) == DIGEST
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"{NAME}.gz"]


@pytest.mark.parametrize("bad", ["corrupt", "truncated", "short", "missing"])
def test_bad_mirror_falls_through_to_good_one(server, tmp_path, bad):
    path = _fetch(server, tmp_path, bad, "good")
    assert idx.sha256(idx.read_bytes(path)) == DIGEST


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("corrupt", "checksum mismatch"),
        ("truncated", "gzip"),
        ("short", "incomplete: received"),
        ("missing", "404"),
    ],
)
def test_all_mirrors_bad_leaves_no_file(server, tmp_path, bad, reason):
    with pytest.raises(DownloadError, match=reason) as info:
        _fetch(server, tmp_path, bad)
    assert str(info.value).count(f"/{bad}/") == 1  # the mirror, named once
    assert "(2 attempts)" in str(info.value)  # both tries are counted
    assert list((tmp_path / "cache").iterdir()) == []  # no partial or corrupt file kept


def test_load_downloads_into_cache_then_reuses_it(server, tmp_path, mnist_dir, monkeypatch):
    """A whole dataset fetched through load(): served files, cached, verified on reuse."""
    for role in MNIST.files:
        name = MNIST.files[role][0]
        (tmp_path / "www" / "good" / f"{name}.gz").write_bytes(
            (mnist_dir / f"{name}.gz").read_bytes()
        )
    source = DatasetSource("mnist", MNIST.files, mirrors=(f"{server}/missing/", f"{server}/good/"))
    raw = load(source, tmp_path / "root", retries=1, backoff_s=0.0)
    assert raw.x_train.shape == (60000, 28, 28)
    offline = DatasetSource("mnist", MNIST.files, mirrors=())
    again = load(offline, tmp_path / "root", download=False)
    assert (again.y_test == raw.y_test).all()
    monkeypatch.setenv("NORMLAB_MIRRORS", f"{server}/good/")  # in place of the source's
    closed = DatasetSource("mnist", MNIST.files, mirrors=("http://127.0.0.1:9/",))
    assert load(closed, tmp_path / "env-root", retries=1).x_test.shape == (10000, 28, 28)
    assert len(list((tmp_path / "env-root" / "mnist").glob("*.gz"))) == 4
