"""Leases: which process trains which runs, so that several processes (two terminals,
or machines sharing a filesystem that locks) work through one study in one database
without training a run twice.

A process *claims* a unit's runs in one short transaction (``Store.claim``): it becomes
their owner until ``lease_until``, which a ``Heartbeat`` thread keeps pushing forward
while the process lives. Another process may take a run over when its lease has expired,
or at once when its owner is a process on this machine that no longer exists (so that
rerunning a killed command does not wait out the lease). Results are written only
under a lease still held (``Store.save_results``), so a process that lost its lease
cannot add a second copy of a run. Lease times are wall-clock seconds: machines sharing
a database must keep their clocks within a small fraction of a lease of each other.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

LEASE_SECONDS = 60.0  # how long a claim holds without a heartbeat
_HEARTBEATS_PER_LEASE = 4


@dataclass(frozen=True)
class Owner:
    """A process that claims runs: its machine, its process id and a token unique to one
    call (two calls in one process are two owners)."""

    host: str
    pid: int
    token: str

    @classmethod
    def this_process(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(4))

    @classmethod
    def parse(cls, text: str) -> Owner:
        host, pid, token = text.rsplit("/", 2)
        return cls(host, int(pid), token)

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.token}"

    def alive(self) -> bool:
        """False when the owner was a process on this machine that has gone; True when
        it runs, or runs elsewhere (then only its lease's expiry says it has gone)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, run by another user
            return True
        return True


class Heartbeat:
    """Renews ``owner``'s leases in ``db`` every quarter lease, from a thread with its own
    connection, while the ``with`` block runs (training holds the main thread)."""

    def __init__(self, db: Path | str, owner: Owner, seconds: float = LEASE_SECONDS) -> None:
        self.db, self.owner, self.seconds = Path(db), owner, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="normlab-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        from normlab.store.db import Store

        with Store(self.db) as store:
            while not self._stop.wait(self.seconds / _HEARTBEATS_PER_LEASE):
                try:
                    store.renew(self.owner, self.seconds)
                except sqlite3.Error:
                    # a locked or full database: the next beat tries again; if none
                    # succeeds the lease expires, which is what a lease is for
                    continue
