"""The instruments by name, with what a run needs to record them (torch-free: the run
configuration lists and checks them from here).

Each entry names a ``probes.schedule.Probe`` class (``"module:Class"``) and, if the
instrument cannot measure every run, the check that says why not; adding an
instrument is one module plus one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from normlab.models.registry import NORMS
from normlab.registry import Registry


class ProbedRun(Protocol):
    """What an instrument's check reads of a run (``RunConfig`` has it)."""

    norm: str
    norm_position: str
    patience: int


@dataclass(frozen=True)
class ProbeKind:
    """An instrument: its class, and ``check`` (what stops a run from recording it;
    None: nothing) when it cannot measure every run. ``family``: a model family's own
    instrument, which that family records on every run (a study does not list it).
    ``at_end``: it measures once, at the last step, which a run that stops at a
    validation plateau does not know in advance."""

    name: str
    target: str
    check: Callable[[ProbedRun], str | None] | None = None
    family: bool = False
    at_end: bool = False

    def problem(self, run: ProbedRun) -> str | None:
        """Why ``run`` cannot record this instrument, if it cannot."""
        if self.family:
            return f"probe {self.name!r} is a model family's own: it is recorded, not listed"
        if self.at_end and run.patience:
            return (f"probe {self.name!r} measures at the last step, which a run stopped at "
                    f"a validation plateau (patience {run.patience}) cannot know in advance")
        return self.check(run) if self.check else None


def _foldable(run: ProbedRun) -> str | None:
    if NORMS[run.norm].foldable and run.norm_position == "before":
        return None
    return (
        f"probe 'inference' folds the norm: it needs a foldable norm (batch, batch_renorm, "
        f"ghost_batch) before the activation, got {run.norm!r} {run.norm_position!r}"
    )


PROBES: Registry[ProbeKind] = Registry("probe")
for _kind in (
    ProbeKind("layers", "normlab.probes.layers:LayersProbe"),
    ProbeKind("activations", "normlab.probes.layers:ActivationsProbe"),
    ProbeKind("ics", "normlab.probes.ics:CovariateShiftProbe"),
    ProbeKind("smoothness", "normlab.probes.smoothness:SmoothnessProbe"),
    ProbeKind("bn", "normlab.probes.bn:BatchNormProbe"),
    ProbeKind("inference", "normlab.probes.inference:InferenceProbe", _foldable, at_end=True),
    ProbeKind("noise", "normlab.probes.noise:NoiseProbe"),
    ProbeKind("modes", "normlab.probes.modes:ModesProbe", family=True, at_end=True),
):
    PROBES.register(_kind.name, _kind)
