"""Training one unit of a study: its data, its stacked model, optimizer and instruments.

``train_unit`` is what every executor calls for a unit, in this process or in a worker;
it touches no database (``driver.pending_units`` decides what a study still needs from
what a store holds).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from normlab.data.locate import RawDataset, load
from normlab.data.prepare import Splits, prepare
from normlab.experiments.plan import Unit
from normlab.probes.reference import Reference, reference_classifier
from normlab.probes.schedule import probe_hooks
from normlab.spec.config import RunConfig
from normlab.train.loop import EvalHook, Hook, ProgressHook, Schedule, train_stack
from normlab.train.optimizers import make_optimizer
from normlab.types import RunResult


class DataCache:
    """Datasets read once and prepared once per preprocessing, for a whole session."""

    def __init__(
        self,
        data_dir: Path | str | None,
        device: torch.device,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.data_dir, self.device, self.log = data_dir, device, log
        self._raw: dict[str, RawDataset] = {}
        self._splits: dict[tuple[str, str, int, int], Splits] = {}
        self._reference: Reference | None = None

    def reference(self) -> Reference:
        """The reference MNIST classifier that judges generated images (trained on first
        use if the data folder has none)."""
        if self._reference is None:
            if self.log:
                self.log("loading the reference MNIST classifier (training it if not cached)")
            self._reference = reference_classifier(self.data_dir, self.device)
        return self._reference

    def splits(self, config: RunConfig) -> Splits:
        key = (config.dataset, config.inputs, config.val_size, config.data_seed)
        if key not in self._splits:
            if config.dataset not in self._raw:
                self._raw[config.dataset] = load(config.dataset, self.data_dir, log=self.log)
            self._splits[key] = prepare(
                self._raw[config.dataset],
                config.inputs,
                val_size=config.val_size,
                data_seed=config.data_seed,
                device=self.device,
            )
        return self._splits[key]


def instruments(
    config: RunConfig,
    splits: Splits,
    progress: Callable[[int], None] | None,
    data: DataCache,
    family_instruments: bool = True,
) -> list[Hook]:
    """The hooks a run of ``config`` trains with: its family's own instruments (unless
    ``family_instruments`` is off: a generator's judging), its probes, evaluations
    within epochs, and ``progress``."""
    hooks: list[Hook] = []
    names = (*(config.family.instruments if family_instruments else ()), *config.probes)
    if names:
        held_out = splits.val if len(splits.val) else splits.test
        classify = data.reference().classify if config.family.generative else None
        hooks += probe_hooks(names, config, held_out, splits.train, classify)
    if config.eval_interval:
        hooks.append(EvalHook(config.eval_interval))
    if progress is not None:
        hooks.append(ProgressHook(progress))
    return hooks


def schedule_of(config: RunConfig) -> Schedule:
    """How a run of ``config`` trains: its batches, length, stopping and evaluation."""
    return Schedule(config.batch_size, config.epochs, config.log_every, config.stream,
                    config.patience, config.evaluation)  # fmt: skip


def train_unit(
    unit: Unit, data: DataCache, progress: Callable[[int], None] | None = None
) -> list[RunResult]:
    """Train one unit on its data from ``data`` and return a result per run, in
    ``unit.configs`` order."""
    first = unit.configs[0]
    splits = data.splits(first)
    device = splits.train.x.device
    family, spec = first.family, first.model_spec()
    if not unit.chain:
        model = family.build(spec, [c.seed for c in unit.configs]).to(device)
        return train_stack(
            model,
            make_optimizer(first),
            splits,
            [c.seed for c in unit.configs],
            [c.lr for c in unit.configs],
            schedule_of(first),
            instruments(first, splits, progress, data),
        )
    # A chain: one model carried through every leg, each leg with a fresh optimizer (as
    # the notebook recompiles its model), fresh data-order and dropout streams.
    model = family.build(spec, [first.seed]).to(device)
    results = []
    for leg in unit.configs:
        if leg.model_spec() != spec:
            raise ValueError(f"run {leg.run_id} changes the architecture of the model it carries")
        hooks = instruments(leg, splits, progress, data)
        results += train_stack(model, make_optimizer(leg), splits, [leg.seed], [leg.lr],
                               schedule_of(leg), hooks)  # fmt: skip
    return results
