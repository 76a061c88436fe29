"""Where each dataset's files are found: the user's own copies first, then system
folders and the MNIST normlab ships, then a download; every copy checked on load."""

import gzip
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from normlab.data import idx
from normlab.data.locate import data_root, find_file, load
from normlab.data.sources import EMBEDDED, MNIST, ROLES

REPO = Path(__file__).resolve().parents[1]
CLOSED = "http://127.0.0.1:9/"  # the discard port: nothing listens, a download fails


@pytest.fixture
def fresh_machine(tmp_path, monkeypatch):
    """No $NORMLAB_DATA, an empty home and cache, and no mirror that answers."""
    monkeypatch.delenv("NORMLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home" / ".cache"))
    monkeypatch.setenv("NORMLAB_MIRRORS", CLOSED)
    return tmp_path


def test_mnist_ships_inside_normlab_and_is_read_with_nothing_configured(fresh_machine):
    root = data_root()
    assert str(root).startswith(str(fresh_machine / "home"))  # the user cache
    for role in ROLES:
        assert find_file(MNIST, role, root).parent == EMBEDDED
    raw = load("mnist")  # no download was tried: the only mirror is closed
    assert raw.x_train.shape == (60000, 28, 28) and raw.y_test.shape == (10000,)
    assert not (root / "mnist").exists()  # nothing copied or fetched into the cache
    stacked = load("stacked-mnist")  # built from the same files
    assert stacked.x_train.shape == (60000, 3, 28, 28)
    # each channel a permutation of MNIST's test images: its digits are the test labels
    assert np.array_equal(np.sort(stacked.y_test // 100), np.sort(raw.y_test))
    assert (EMBEDDED / "NOTICE").read_text().count("CC BY-SA 3.0") == 1


def test_a_users_own_copy_comes_first_and_is_checked_like_any_other(fresh_machine, monkeypatch):
    """--data-dir, then $NORMLAB_DATA, then the user cache, each before the shipped
    copy; a corrupt copy of the user's is an error naming it, never a silent fallback."""
    name = MNIST.files["test_labels"][0]
    mine = fresh_machine / "mine"
    (mine / "mnist").mkdir(parents=True)
    shutil.copy(EMBEDDED / f"{name}.gz", mine / "mnist")
    assert find_file(MNIST, "test_labels", data_root(mine)) == mine / "mnist" / f"{name}.gz"
    monkeypatch.setenv("NORMLAB_DATA", str(mine))
    assert data_root() == mine and data_root(fresh_machine / "other") != mine
    content = gzip.decompress((EMBEDDED / f"{name}.gz").read_bytes())
    (mine / "mnist" / f"{name}.gz").write_bytes(gzip.compress(content[:-1] + b"\x07"))
    with pytest.raises(idx.IdxError, match=rf"{mine / 'mnist' / name}\.gz.*SHA-256"):
        load("mnist")


@pytest.mark.slow
def test_the_wheel_carries_mnist_and_its_notice(tmp_path):
    """A wheel built from this checkout holds the four MNIST files and the NOTICE, byte
    for byte, and stays near their size (README states it)."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(tmp_path), str(REPO)], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("normlab-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = {Path(n).name: n for n in z.namelist() if n.startswith("normlab/data/mnist/")}
        assert set(names) == {"NOTICE", *(f"{MNIST.files[r][0]}.gz" for r in ROLES)}
        for name, member in names.items():
            assert z.read(member) == (EMBEDDED / name).read_bytes(), name
    shipped = sum(f.stat().st_size for f in EMBEDDED.iterdir())
    assert shipped < wheel.stat().st_size < shipped + 2_000_000
