"""The seed notebook's experiment, as written and corrected.

Corrected: the seed's network, optimizer and batch sizes, with BatchNormalization
really applied (after the 512-unit Dense layer, before the ReLU), a fresh model per
configuration, the same data order across arms, several seeds and a validation split.

Faithful (the notebook as written): one seed, all 60,000 training images, no
validation split. Cell 7 trains the plain network at batch 32 for 10 epochs. Cell 12's
"BN" model constructs BatchNormalization but never calls it, so it is the same network;
and its batch-size loop keeps training that one model (recompiled, so with a fresh Adam)
through batch sizes 32, 64, 128, 256 for 5 epochs each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from normlab.spec.config import RunConfig
from normlab.spec.study import Study

SEED_BATCH_SIZES = (32, 64, 128, 256)


def corrected(
    seeds: int = 3,
    epochs: int = 5,
    batch_sizes: Sequence[int] = SEED_BATCH_SIZES,
    inputs: str = "raw",
    semantics: str = "keras",
) -> Study:
    """BN (applied) vs none × ``batch_sizes`` × ``seeds`` seeds, a fresh model for each."""
    spec: dict[str, object] = {
        "procedure": "reproduce",
        "seeds": seeds,
        "epochs": epochs,
        "batch_sizes": list(batch_sizes),
        "inputs": inputs,
        "semantics": semantics,
    }
    configs = [
        RunConfig(
            norm=norm,
            batch_size=b,
            seed=s,
            epochs=epochs,
            inputs=inputs,
            semantics=semantics,
        )
        for norm in ("none", "batch")
        for b in batch_sizes
        for s in range(seeds)
    ]
    name = (
        f"reproduce-{inputs}-{semantics}-{epochs}ep-{seeds}seeds-b{'-'.join(map(str, batch_sizes))}"
    )
    return Study(name, spec, configs)


@dataclass(frozen=True)
class Faithful(Study):
    """The notebook as written: cell 7's run and cell 12's chain of legs."""

    cell7: RunConfig
    cell12: list[RunConfig]


def faithful(inputs: str = "raw", semantics: str = "keras", seed: int = 0) -> Faithful:
    """The notebook's two cells as runs: cell 7, and cell 12 as one carried chain."""
    common = {"val_size": 0, "seed": seed, "inputs": inputs, "semantics": semantics, "norm": "none"}
    cell7 = RunConfig(batch_size=32, epochs=10, **common)
    legs: list[RunConfig] = []
    for i, b in enumerate(SEED_BATCH_SIZES):
        legs.append(
            RunConfig(
                batch_size=b,
                epochs=5,
                stream=i,
                carried_from=legs[-1].run_id if legs else None,
                **common,
            )
        )
    spec: dict[str, object] = {
        "procedure": "faithful",
        "inputs": inputs,
        "semantics": semantics,
        "seed": seed,
    }
    return Faithful(f"faithful-{inputs}-{semantics}", spec, [cell7, *legs], cell7, legs)
