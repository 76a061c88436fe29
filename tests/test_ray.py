"""The Ray executor on a real Ray cluster started on 127.0.0.1 (`ray start --head`): a
study gives the same numbers as the local executor, a worker killed mid-unit is retried,
and one that dies more often than the retries allow fails its unit alone."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from drills import RUNS, finish, numbers, runs, start, write_study

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

LONG = """
name = "long"
seeds = 2
[fixed]
hidden = [256]
epochs = 3
inputs = "scaled"
[grid]
norm = ["batch"]
batch_size = [100]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head node with 2 CPUs on 127.0.0.1, protected by Ray's token authentication
    as `ray get-auth-token --generate` then `ray start --head` would set it up; its
    address. The drivers the tests start find the token but are not told the mode:
    normlab must connect with the token by itself."""
    temp = tmp_path_factory.mktemp("ray")
    token = temp / "auth_token"
    token.write_text(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)  # ~/.ray/auth_token, kept out of $HOME
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    started = subprocess.run([*ray, "start", "--head", "--node-ip-address=127.0.0.1",
                              f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                              "--disable-usage-stats", f"--temp-dir={temp}"],
                             env=env, capture_output=True, text=True)  # fmt: skip
    assert started.returncode == 0, started.stderr[-2000:]
    yield f"127.0.0.1:{port}"
    subprocess.run([*ray, "stop", "--force"], env=env, capture_output=True)
    del os.environ["RAY_AUTH_TOKEN_PATH"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, data_root) -> Path:
    folder = tmp_path_factory.mktemp("study")
    write_study(folder, data_root)
    (folder / "long.toml").write_text(LONG)
    return folder


def test_a_study_on_ray_gives_the_local_executors_numbers(cluster, folder):
    study = folder / "drill.toml"
    finish(study, folder / "local.db")
    out = finish(study, folder / "ray.db", "--executor", "ray", "--address", cluster)
    assert "results in" in out
    assert set(runs(folder / "ray.db").values()) == {("done", 1)}
    assert len(runs(folder / "ray.db")) == RUNS
    assert numbers(folder / "ray.db") == numbers(folder / "local.db")


def _kill_a_training_worker(timeout: float = 120.0) -> int:
    """Kill -9 the first Ray worker seen running a unit (its title is ray::_train)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                title = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            except OSError:
                continue
            if title.startswith(b"ray::_train"):
                os.kill(int(entry.name), signal.SIGKILL)
                return int(entry.name)
        time.sleep(0.01)
    raise AssertionError("no Ray worker ran a unit")


def test_a_worker_killed_mid_unit_is_retried_and_the_study_completes(cluster, folder):
    study = folder / "long.toml"
    finish(study, folder / "long-local.db")
    driver = start(study, folder / "long-ray.db", "--executor", "ray", "--address", cluster)
    _kill_a_training_worker()
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    assert set(runs(folder / "long-ray.db").values()) == {("done", 1)}  # one claim each
    assert numbers(folder / "long-ray.db") == numbers(folder / "long-local.db")


RETRIES_SPENT = """
import sys
from normlab.app.api import run_study
from normlab.experiments.cluster import RayExecutor
from normlab.runtime import resolve_device

executor = RayExecutor(resolve_device("cpu"), sys.argv[3], address=sys.argv[4], max_retries=0)
report = run_study(sys.argv[1], db=sys.argv[2], max_stack=1, executor=executor)
print(report.trained, "|".join(report.failures))
"""


def test_a_worker_dying_past_its_retries_fails_its_unit_and_no_other(cluster, folder):
    db = folder / "spent.db"
    command = [sys.executable, "-c", RETRIES_SPENT, str(folder / "long.toml"), str(db),
               str(folder / "data"), cluster]  # fmt: skip
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_a_training_worker()
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    trained, failures = out.strip().splitlines()[-1].split(" ", 1)
    assert trained == "1" and "WorkerCrashedError after 1 tries" in failures
    assert sorted(s for s, _ in runs(db).values()) == ["done", "failed"]
    finish(folder / "long.toml", db)  # a rerun trains the failed unit
    assert numbers(db) == numbers(folder / "long-local.db")
