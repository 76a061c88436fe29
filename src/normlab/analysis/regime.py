"""The regime a verdict describes: the data, models, training length and seeds of the
runs it rests on. A verdict from one epoch of a small network may not hold after five
epochs of the seed's; stating the regime beside it says which one a reader has."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from normlab.analysis.records import RunRecord


@dataclass(frozen=True)
class Regime:
    """Distinct values over a verdict's runs (each sorted), and how many seeds."""

    datasets: tuple[str, ...]
    models: tuple[str, ...]
    epochs: tuple[int, ...]
    steps: tuple[int, ...]  # optimizer steps of a whole run
    seeds: int

    def text(self) -> str:
        """E.g. "mnist, MLP 1×512, 1 epoch (429 steps), 3 seeds"."""
        if not self.steps:
            return "no runs"
        epochs = _span(self.epochs)
        steps = _span(self.steps)
        plural = "" if self.epochs == (1,) else "s"
        return (
            f"{_span(self.datasets)}, {_span(self.models)}, {epochs} epoch{plural} "
            f"({steps} steps), {self.seeds} seed{'' if self.seeds == 1 else 's'}"
        )

    def as_json(self) -> dict[str, object]:
        """The regime as ``claims --json`` gives it."""
        return {
            "datasets": list(self.datasets),
            "models": list(self.models),
            "epochs": list(self.epochs),
            "steps": list(self.steps),
            "seeds": self.seeds,
        }


def _span(values: Sequence[object]) -> str:
    """One value, two joined, or the first and last of more."""
    text = [f"{v:,}" if isinstance(v, int) else str(v) for v in values]
    if len(text) <= 2:
        return "/".join(text)
    return f"{text[0]}–{text[-1]}" if isinstance(values[0], int) else f"{text[0]} … {text[-1]}"


def _natural(text: str) -> list[object]:
    """A sort key that orders "MLP 2×128" before "MLP 16×128"."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def regime(runs: Sequence[RunRecord]) -> Regime:
    """The regime of ``runs``."""
    configs = [r.config for r in runs]
    return Regime(
        datasets=tuple(sorted({c.dataset for c in configs})),
        models=tuple(sorted({c.family.describe(c) for c in configs}, key=_natural)),
        epochs=tuple(sorted({c.epochs for c in configs})),
        steps=tuple(sorted({r.steps_per_epoch * r.config.epochs for r in runs})),
        seeds=len({c.seed for c in configs}),
    )
