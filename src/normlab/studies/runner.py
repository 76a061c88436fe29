"""Running a set of run configs against a store: skip what is finished, train the rest.

Each unit (a stack or a chain) is marked running, trained, and its runs' results are
committed as it finishes, so an interrupted study loses at most the unit in flight.
A unit that raises is recorded as failed (with the error) and the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from normlab import runtime
from normlab.data.locate import RawDataset, load
from normlab.data.prepare import Splits, prepare
from normlab.models.semantics import get_semantics
from normlab.models.stack import MLPSpec, StackedMLP
from normlab.probes.schedule import ProbeSet
from normlab.store.db import FINISHED, Store
from normlab.studies.config import RunConfig
from normlab.studies.plan import DEFAULT_MAX_STACK, Unit, plan
from normlab.train.loop import MemberResult, train_stack
from normlab.train.optim import SGD, Adam, Optimizer


def mlp_spec(config: RunConfig, splits: Splits) -> MLPSpec:
    """The architecture ``config`` asks for, on ``splits``'s input and class counts."""
    return MLPSpec(
        n_inputs=splits.n_features,
        hidden=config.hidden,
        n_classes=splits.n_classes,
        activation=config.activation,
        norm=config.norm,
        norm_position=config.norm_position,
        dropout=config.dropout,
        dropout_position=config.dropout_position,
        init=config.init,
        init_scale=config.init_scale,
        norm_settings=config.norm_settings(),
    )


def make_optimizer(config: RunConfig) -> Optimizer:
    """A fresh stacked optimizer of ``config``'s kind and semantics."""
    if config.optimizer == "sgd":
        return SGD(momentum=config.momentum, nesterov=config.nesterov)
    sem = get_semantics(config.semantics)
    return Adam(eps=sem.adam_eps, eps_before_bias_correction=sem.adam_eps_before_bias_correction)


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


def train_unit(
    unit: Unit, splits: Splits, progress: Callable[[int], None] | None = None
) -> list[MemberResult]:
    """Train one unit and return a result per run, in ``unit.configs`` order."""
    first, device = unit.configs[0], splits.train.x.device
    instruments: dict[str, Any] = {"eval_every": first.eval_every}
    if first.probes:
        held_out = splits.val if len(splits.val) else splits.test
        instruments["probes"] = ProbeSet(
            first.probes, first.probe_every, held_out, first.batch_size, splits.train
        )
    if not unit.chain:
        model = StackedMLP(mlp_spec(first, splits), [c.seed for c in unit.configs]).to(device)
        return train_stack(
            model,
            make_optimizer(first),
            splits,
            seeds=[c.seed for c in unit.configs],
            lrs=[c.lr for c in unit.configs],
            batch_size=first.batch_size,
            epochs=first.epochs,
            log_every=first.log_every,
            progress=progress,
            **instruments,
        )
    # A chain: one model carried through every leg, each leg with a fresh optimizer (as
    # the notebook recompiles its model), fresh data-order and dropout streams.
    spec = mlp_spec(first, splits)
    model = StackedMLP(spec, [first.seed]).to(device)
    results = []
    for leg in unit.configs:
        if mlp_spec(leg, splits) != spec:
            raise ValueError(f"run {leg.run_id} changes the architecture of the model it carries")
        results += train_stack(
            model,
            make_optimizer(leg),
            splits,
            seeds=[leg.seed],
            lrs=[leg.lr],
            batch_size=leg.batch_size,
            epochs=leg.epochs,
            log_every=leg.log_every,
            stream=leg.stream,
            progress=progress,
            **instruments,
        )
    return results


@dataclass
class RunReport:
    """What one invocation did."""

    trained: int = 0
    diverged: int = 0
    failures: list[str] = field(default_factory=list)


def pending_units(
    store: Store,
    configs: Sequence[RunConfig],
    max_stack: int = DEFAULT_MAX_STACK,
    device_type: str = "cpu",
) -> tuple[list[Unit], int]:
    """Units still to train on a ``device_type`` device (a chain is redone whole if any
    leg is unfinished) and the number of runs already finished."""
    status = store.statuses(c.run_id for c in configs)
    done = {rid for rid, s in status.items() if s in FINISHED}
    chained = {c.run_id for c in configs if c.carried_from} | {
        c.carried_from for c in configs if c.carried_from
    }
    todo = [c for c in configs if c.run_id not in done or c.run_id in chained]
    units = [u for u in plan(todo, max_stack, device_type) if not set(u.run_ids) <= done]
    pending = {rid for u in units for rid in u.run_ids}
    return units, sum(1 for c in configs if c.run_id not in pending)


def run_units(
    store: Store,
    units: Sequence[Unit],
    data: DataCache,
    *,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> RunReport:
    """Train ``units`` in order, committing each unit's results as it finishes."""
    report = RunReport()
    for unit in units:
        splits = data.splits(unit.configs[0])
        store.mark_running(unit.run_ids, len(unit.configs), runtime.environment(data.device))
        try:
            results = train_unit(unit, splits, progress)
        except (ValueError, RuntimeError) as err:
            message = f"{type(err).__name__}: {err}"
            store.mark_failed(unit.run_ids, message)
            report.failures.append(f"runs {', '.join(unit.run_ids)}: {message}")
            if log:
                log(f"[red]failed[/red] {message}")
            continue
        for config, result in zip(unit.configs, results, strict=True):
            store.save_result(config.run_id, result)
            report.trained += 1
            report.diverged += result.diverged
    return report
