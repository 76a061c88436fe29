"""The Ray executor: each unit a Ray task, on a local Ray instance or a cluster.

Imported only when a study asks for it (``pip install "normlab[ray]"``). The driver
claims a unit (``experiments.driver``) just before submitting it, keeps as many units
in flight as the cluster has room for, and writes what comes back: workers never touch
the database. A worker process reads each dataset once and keeps it for the units that
follow. A worker that dies mid-unit (killed, out of memory, its node lost) has its task
retried by Ray up to ``max_retries`` times; then the unit is recorded failed with the
reason, and the study goes on.

Each task asks for ``threads`` CPUs (and a GPU when the study trains on one) and trains
with that many threads, so a unit gives the same numbers on Ray as in a local run with
the same thread count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import ray
import torch

from normlab import runtime
from normlab.data.locate import data_root
from normlab.data.prepare import Splits
from normlab.errors import InputError
from normlab.experiments.executors import UNIT_ERRORS, Progress, UnitOutcome, in_flight
from normlab.experiments.plan import Unit
from normlab.experiments.runner import DataCache, train_unit
from normlab.spec.config import RunConfig
from normlab.types import RunResult

MAX_RETRIES = 2  # tries after the first when a worker dies mid-unit
_WAIT_SECONDS = 0.5  # how often the driver collects progress while units train


@ray.remote(num_cpus=0)
class _Steps:
    """Counts the optimizer steps the workers report per unit (by its first run's id),
    for the driver's progress bar."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}

    def add(self, key: str, steps: int) -> None:
        self.steps[key] = self.steps.get(key, 0) + steps

    def take(self) -> dict[str, int]:
        steps, self.steps = self.steps, {}
        return steps


_CACHES: dict[tuple[str, str], DataCache] = {}  # one per worker process, filled on use


def _train(
    unit: Unit, data_dir: str, device: str, threads: int, steps: ray.actor.ActorHandle
) -> tuple[list[RunResult] | None, str | None]:
    """A worker's task: train ``unit``; its results, or the error it raised."""
    runtime.configure(threads)
    key = (data_dir, device)
    if key not in _CACHES:
        _CACHES[key] = DataCache(data_dir, torch.device(device))
    first = unit.run_ids[0]
    try:
        return train_unit(unit, _CACHES[key], lambda n: steps.add.remote(first, n)), None
    except UNIT_ERRORS as err:
        return None, f"{type(err).__name__}: {err}"


def _first_line(err: Exception) -> str:
    """Ray's errors run to many lines; a failure is recorded in one."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _token_auth() -> None:
    """Connect with Ray's token authentication when a token is at hand ($RAY_AUTH_TOKEN,
    $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and $RAY_AUTH_MODE does not say otherwise:
    ``ray start`` protects a cluster whenever it finds a token, and ``ray.init`` looks for
    one when it starts Ray itself, but not when given HOST:PORT. A token sent to a cluster
    without authentication is ignored, so this never stops a connection that would work.
    Ray's own function does it, as it refreshes the configuration Ray read at import."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available as enable,
        )
    except ImportError:  # a Ray from before token authentication
        return
    enable(warn_if_disabled=False)


class RayExecutor:
    """Trains units as Ray tasks on the cluster at ``address`` ("auto" or HOST:PORT:
    one started with ``ray start --head``), or on a Ray instance it starts on this
    machine when ``address`` is None, with ``threads`` threads per unit."""

    def __init__(
        self,
        device: torch.device,
        data_dir: Path | str | None = None,
        address: str | None = None,
        threads: int = 1,
        max_retries: int = MAX_RETRIES,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.device, self.threads, self.max_retries = device, threads, max_retries
        # The workers may not share this shell's $NORMLAB_DATA: tell them the folder.
        self.data_dir = str(data_root(data_dir).resolve())
        self.local = DataCache(data_dir, device, log=log)
        self.started = not ray.is_initialized()
        if self.started:
            _token_auth()
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)  # fmt: skip
            except (ConnectionError, RuntimeError, ValueError) as err:
                reason = _first_line(err)
                raise InputError(
                    f"address {address!r}: no Ray cluster there ({reason})", "address"
                ) from None
        self.address = address or "local"
        self.task = ray.remote(_train).options(
            num_cpus=threads, num_gpus=1 if device.type == "cuda" else 0, max_retries=max_retries
        )

    def environment(self) -> dict[str, object]:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        env = runtime.environment(self.device)
        env.update(executor="ray", address=self.address, nodes=len(nodes), threads=self.threads)
        return env

    def prepare(self, config: RunConfig) -> Splits:
        """Read ``config``'s data here first: a missing file fails before any task."""
        return self.local.splits(config)

    def capacity(self) -> int:
        """Units the cluster can train at once."""
        resources = ray.cluster_resources()
        if self.device.type == "cuda":
            return max(1, int(resources.get("GPU", 1)))
        return max(1, int(resources.get("CPU", 1) // self.threads))

    def run(
        self,
        units: Sequence[Unit],
        claim: Callable[[Unit], bool],
        progress: Progress | None = None,
    ) -> Iterator[UnitOutcome]:
        steps = _Steps.remote()
        device = self.device.type
        by_key = {unit.run_ids[0]: unit for unit in units}

        def submit(unit: Unit) -> ray.ObjectRef:
            return self.task.remote(unit, self.data_dir, device, self.threads, steps)

        def landed(refs: list[ray.ObjectRef]) -> list[ray.ObjectRef]:
            done, _ = ray.wait(refs, num_returns=1, timeout=_WAIT_SECONDS)
            if progress is not None:
                for key, n in ray.get(steps.take.remote()).items():
                    progress(by_key[key], n)
            return done

        try:
            for unit, ref in in_flight(units, claim, self.capacity(), submit, landed,
                                       lambda ref: ray.cancel(ref, force=True)):  # fmt: skip
                yield self._outcome(unit, ref)
        finally:
            ray.kill(steps)

    def _outcome(self, unit: Unit, ref: ray.ObjectRef) -> UnitOutcome:
        try:
            results, error = ray.get(ref)
        except ray.exceptions.RayError as err:  # the worker died, after every retry
            error = f"{type(err).__name__} after {1 + self.max_retries} tries: {_first_line(err)}"
            return UnitOutcome(unit, error=error)
        return UnitOutcome(unit, results=results, error=error)

    def close(self) -> None:
        """Stop the Ray instance this executor started (a cluster is left running)."""
        if self.started:
            ray.shutdown()
