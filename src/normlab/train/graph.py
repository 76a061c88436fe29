"""A stack's training step captured once as a CUDA graph and replayed every step.

On the H100 measured (BENCHMARKS.md), a step of the seed network is ~95 kernel launches
that cost ~3 ms of host time while the GPU computes for ~0.3 ms: the eager loop runs at
the speed of Python and the launch API. A replayed graph is one launch. What is replayed
is ``train.step.train_step`` itself, the function the eager loop calls: it reads and
advances only device tensors (``StepState``) and the optimizer's device form, so the
captured step needs nothing from the host.
"""

from __future__ import annotations

import torch

from normlab.models.stack import StackedModel
from normlab.train.optim import Optimizer, OptimizerState, Rates
from normlab.train.step import StepState, train_step

WARMUP_STEPS = 3  # eager steps on a side stream before capture, as CUDA graphs require


class CapturedStep:
    """``train_step`` of one stack as a replayable CUDA graph; ``replay()`` takes the next
    step, reading and advancing ``state``."""

    def __init__(
        self,
        model: StackedModel,
        optimizer: Optimizer,
        opt_state: list[OptimizerState],
        state: StepState,
        data: tuple[torch.Tensor, torch.Tensor],
        rates: Rates,
    ) -> None:
        self.args = (model, optimizer, opt_state, state, data, rates)
        self.graph = self._capture()

    def _capture(self) -> torch.cuda.CUDAGraph:
        model, _, opt_state, state, data, _ = self.args
        # Warm-up steps really train, so everything they change is put back afterwards.
        changed = [
            *model.parameters(),
            *model.buffers(),
            *(t for phase_state in opt_state for t in phase_state.tensors()),
            state.first_bad,
            state.step,
        ]
        with torch.no_grad():  # a clone with a grad_fn would keep old autograd nodes alive
            saved = [t.clone() for t in changed]
        device = data[0].device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                state.i.zero_()
                train_step(*self.args)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            train_step(*self.args)
        with torch.no_grad():
            for t, s in zip(changed, saved, strict=True):
                t.copy_(s)
        return graph

    def replay(self) -> None:
        """Take the next training step."""
        self.graph.replay()
