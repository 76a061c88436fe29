"""What a running study tells whoever watches it (torch-free, so that a renderer can
implement it without importing the trainer)."""

from __future__ import annotations

from collections.abc import Sequence

from normlab.experiments.plan import Unit


class Observer:
    """What a study reports while it runs; every method does nothing unless overridden.
    The command line draws a progress bar from it; a notebook may print."""

    def planned(self, study: str, runs: int, finished: int, units: Sequence[Unit]) -> None:
        """Before training: the study's size, what is done, the units to train."""

    def advanced(self, steps: int, work: float) -> None:
        """``steps`` more optimizer steps were taken, worth ``work`` of the planned
        units' ``Unit.work`` (what an ETA should count: units' steps differ in cost)."""

    def message(self, text: str) -> None:
        """Something worth telling (a download, a failed unit)."""

    def done(self) -> None:
        """The study's training is over."""
