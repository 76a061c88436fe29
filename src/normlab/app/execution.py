"""``Execution``: where and how the application layer's calls train and record, as one
value the command line builds once and every call takes.

Each call also takes the fields as keywords (``normlab.run_study(path, db="bn.db")``),
laid over the ``Execution`` it is given, if any, so a notebook writes only what differs
from the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from normlab.experiments.plan import DEFAULT_MAX_STACK
from normlab.experiments.progress import Observer

if TYPE_CHECKING:  # torch: reading calls (summary) take an Execution without loading it
    from normlab.experiments.executors import Executor


@dataclass(frozen=True)
class Execution:
    """The results database ``db``; the datasets' folder ``data_dir`` (default
    ``$NORMLAB_DATA``, then normlab's own); the ``device`` (cpu, cuda, cuda:N, auto)
    with ``threads`` CPU threads per unit; at most ``max_stack`` runs in one stack; the
    ``executor`` ("local", "pool", "ray" or an ``Executor``) and a Ray cluster's
    ``address``; the ``observer`` told of progress (default: nobody)."""

    db: Path | str = "normlab.db"
    data_dir: Path | str | None = None
    device: str = "cpu"
    threads: int | None = None
    max_stack: int = DEFAULT_MAX_STACK
    executor: Executor | str = "local"
    address: str | None = None
    observer: Observer | None = None

    @classmethod
    def of(cls, execution: Execution | None, options: ExecutionOptions) -> Execution:
        """``execution`` (default: every default) with ``options`` laid over it; a
        TypeError names an option that is not a field."""
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown execution option(s): {', '.join(unknown)}")
        return replace(execution or cls(), **options)

    @property
    def watch(self) -> Observer:
        """The observer, or one that hears nothing."""
        return self.observer or Observer()


class ExecutionOptions(TypedDict, total=False):
    """``Execution``'s fields as keywords of a call."""

    db: Path | str
    data_dir: Path | str | None
    device: str
    threads: int | None
    max_stack: int
    executor: Executor | str
    address: str | None
    observer: Observer | None
