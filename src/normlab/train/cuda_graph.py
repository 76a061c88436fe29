"""A stack's training step captured once as a CUDA graph and replayed every step.

On the H100 measured (BENCHMARKS.md), a step of the seed network is ~95 kernel launches
that cost ~3 ms of host time while the GPU computes for ~0.3 ms: the eager loop runs at
the speed of Python and the launch API. A replayed graph is one launch. For that the step
must not need the host: the batch position, the step count (and from it the dropout
keys, ``dropout.step_keys_tensor``), the learning rates and the members' divergence
flags all live in device tensors that the graph reads and advances itself, and the
optimizer is its tensor-op form (``Optimizer.device_step``).

A diverged member is frozen inside the graph at the step its loss stops being finite,
as on a CPU; the host reads the flags only every ``SYNC_EVERY`` steps, to report them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from normlab.models.dropout import key_bases, step_keys_tensor
from normlab.models.stack import StackedMLP, member_losses
from normlab.train.optim import AdamState, Optimizer, SGDState

WARMUP_STEPS = 3  # eager steps on a side stream before capture, as CUDA graphs require


class CapturedStep:
    """One training step of ``model`` as a replayable CUDA graph.

    ``set_epoch(order)`` loads an epoch's data order ([K, n_train] indices into the
    training split) and clears the epoch's sums; ``replay()`` takes the next step. The
    epoch's per-step losses [steps, K], loss sums and correct counts [K] and the
    divergence flags ``first_bad`` [K] (0, or the step at which the member diverged)
    are device tensors, read when the caller wants them.
    """

    def __init__(
        self,
        model: StackedMLP,
        optimizer: Optimizer,
        opt_state: AdamState | SGDState,
        x_all: torch.Tensor,
        y_all: torch.Tensor,
        *,
        dropout_bases: Sequence[int],
        lrs: Sequence[float],
        batch_size: int,
        steps_per_epoch: int,
        dropout_layers: int,
        first_bad: torch.Tensor,
    ) -> None:
        device, k = x_all.device, model.k
        self.model, self.optimizer, self.opt_state = model, optimizer, opt_state
        self.x_all, self.y_all, self.batch_size = x_all, y_all, batch_size
        self.dropout_layers, self.first_bad = dropout_layers, first_bad
        self.params = list(model.parameters())
        self.order = torch.zeros(k, len(x_all), dtype=torch.long, device=device)
        self.positions = torch.arange(batch_size, device=device)
        self.keys = key_bases(dropout_bases, device)
        self.lrs = torch.tensor(list(lrs), dtype=torch.float32, device=device)
        self.i = torch.zeros((), dtype=torch.long, device=device)  # step within the epoch
        self.step = torch.zeros((), dtype=torch.long, device=device)  # steps taken
        self.t = torch.zeros((), dtype=torch.float32, device=device)  # optimizer's count
        self.loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
        self.correct = torch.zeros(k, dtype=torch.long, device=device)
        self.losses = torch.zeros(steps_per_epoch, k, device=device)
        self.graph = self._capture()

    def _step(self) -> None:
        k, b = self.model.k, self.batch_size
        idx = self.order.index_select(1, self.i * b + self.positions).reshape(-1)
        x = self.x_all.index_select(0, idx).view(k, b, -1)
        y = self.y_all.index_select(0, idx).view(k, b)
        keys = step_keys_tensor(self.keys, self.step, self.dropout_layers)
        logits = self.model(x, keys if self.dropout_layers else None)
        losses = member_losses(logits, y)
        grads = torch.autograd.grad(losses.sum(), self.params)
        with torch.no_grad():
            self.step += 1
            self.t += 1
            newly_bad = ~torch.isfinite(losses) & (self.first_bad == 0)
            self.first_bad.copy_(torch.where(newly_bad, self.step, self.first_bad))
            self.optimizer.device_step(
                self.opt_state, self.params, grads, self.lrs, self.first_bad == 0, self.t
            )
            self.loss_sum += losses
            self.correct += (logits.argmax(-1) == y).sum(1)
            self.losses.index_copy_(0, self.i.view(1), losses.view(1, k))
            self.i += 1

    def _capture(self) -> torch.cuda.CUDAGraph:
        # Warm-up steps really train, so everything they change is put back afterwards.
        state = [
            *self.params,
            *self.model.buffers(),
            *self.opt_state.tensors(),
            self.first_bad,
            self.step,
        ]
        with torch.no_grad():  # a clone with a grad_fn would keep old autograd nodes alive
            saved = [t.clone() for t in state]
        side = torch.cuda.Stream(self.x_all.device)
        side.wait_stream(torch.cuda.current_stream(self.x_all.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.i.zero_()
                self._step()
        torch.cuda.current_stream(self.x_all.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step()
        with torch.no_grad():
            for t, s in zip(state, saved, strict=True):
                t.copy_(s)
            self.t.zero_()
        return graph

    def set_epoch(self, order: torch.Tensor) -> None:
        """Start an epoch that visits the training split in ``order`` [K, n_train]."""
        self.order.copy_(order)
        self.i.zero_()
        self.loss_sum.zero_()
        self.correct.zero_()

    def replay(self) -> None:
        """Take the next training step."""
        self.graph.replay()
