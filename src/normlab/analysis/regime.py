"""The regime a verdict describes: the data, models, training length and seeds of the
runs it rests on, and its protocol: how the learning rate was set, when training
stopped and which BN statistics evaluated it. A verdict from one epoch of a small
network at one shared rate may not hold after training to a plateau at each arm's best
rate; stating the regime beside it says which one a reader has."""

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
    steps: tuple[int, ...]  # optimizer steps of a whole run (at the cap, if it stops early)
    seeds: int
    # the protocol, in words: e.g. "fixed 0.001" or "tuned per arm on validation over
    # [0.0003, 0.001, 0.003, 0.01]"; "5 epochs" or "validation plateau, patience 2, cap
    # 20 epochs"; "running statistics" or "precise BN"
    lr: str = ""
    stopping: str = ""
    evaluation: str = ""

    def text(self) -> str:
        """E.g. "mnist, MLP 1×512, 1 epoch (429 steps), 3 seeds; lr fixed 0.001;
        running statistics"."""
        if not self.steps:
            return "no runs"
        epochs = _span(self.epochs)
        steps = _span(self.steps)
        plural = "" if self.epochs == (1,) else "s"
        length = f"{epochs} epoch{plural} ({steps} steps)"
        if self.stopping.startswith("validation plateau"):
            length = self.stopping
        protocol = "; ".join(t for t in (f"lr {self.lr}" if self.lr else "", self.evaluation)
                             if t)  # fmt: skip
        return (
            f"{_span(self.datasets)}, {_span(self.models)}, {length}, "
            f"{self.seeds} seed{'' if self.seeds == 1 else 's'}"
            + (f"; {protocol}" if protocol else "")
        )

    def as_json(self) -> dict[str, object]:
        """The regime as ``claims --json`` gives it."""
        return {
            "datasets": list(self.datasets),
            "models": list(self.models),
            "epochs": list(self.epochs),
            "steps": list(self.steps),
            "seeds": self.seeds,
            "lr": self.lr,
            "stopping": self.stopping,
            "evaluation": self.evaluation,
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


def regime(runs: Sequence[RunRecord], tuned: Sequence[str] = ()) -> Regime:
    """The regime of ``runs`` (all of a tuned study's grid: ``tuned`` names the fields
    each arm's selection tuned)."""
    configs = [r.config for r in runs]
    return Regime(
        datasets=tuple(sorted({c.dataset for c in configs})),
        models=tuple(sorted({c.family.describe(c) for c in configs}, key=_natural)),
        epochs=tuple(sorted({c.epochs for c in configs})),
        steps=tuple(sorted({r.steps_per_epoch * r.config.epochs for r in runs})),
        seeds=len({c.seed for c in configs}),
        lr=_rates(runs, tuned),
        stopping=_stopping(runs),
        evaluation=" / ".join(sorted({EVALUATIONS[c.evaluation] for c in configs})),
    )


EVALUATIONS = {"running": "running statistics", "precise": "precise BN"}


def _rates(runs: Sequence[RunRecord], tuned: Sequence[str]) -> str:
    """How the runs' learning rates were set, in words."""
    rates = sorted({r.config.lr for r in runs})
    listed = "[" + ", ".join(f"{lr:g}" for lr in rates) + "]"
    if len(rates) > 4:  # a long grid in a table's cell: its size and ends
        listed = f"{len(rates)} rates, {rates[0]:g}–{rates[-1]:g}"
    if "lr" in tuned:
        return f"tuned per arm on validation over {listed}"
    return f"fixed {rates[0]:g}" if len(rates) == 1 else f"each of {listed}"


def _stopping(runs: Sequence[RunRecord]) -> str:
    """When the runs stopped, in words."""
    configs = [r.config for r in runs]
    patience = sorted({c.patience for c in configs})
    epochs = _span(sorted({c.epochs for c in configs}))
    if patience == [0]:
        return f"{epochs} epoch{'' if epochs == '1' else 's'}"
    trained = sorted({len(r.epochs) for r in runs if r.epochs})
    done = f", trained {_span(trained)}" if trained else ""
    return (
        f"validation plateau, patience {_span(patience)}, cap {epochs} epochs{done}; "
        "best-validation epoch reported"
    )
