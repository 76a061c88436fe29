"""The CPU's autograd-free MLP step (``train.direct`` with ``train.input_layer``'s sweep)
against the autograd step it replaces, on real MNIST.

Tolerance: both steps compute the same sums in different orders, so a member's
trajectory differs by float rounding that Adam's normalised steps carry forward. Over
one epoch of 62 steps (lr 1e-3 to 3e-3) the per-step losses agree to rtol 1e-4; 99.9 %
of the parameters to 5e-5 and all of them to 1e-3, a third of one step at lr 3e-3 (a
few weights whose gradient is near zero take Adam steps of different sign). Measured:
at most 1.9e-4; 99.9 % within 1.1e-5 (input layer) and 2.4e-5 (BN's shifts). A bias
right before BN is left out (see ``_cancelled``). Every other norm kind keeps the
autograd step, which is today's step itself.
"""

import os

import pytest
import torch
from torch.optim.adam import adam as adam_kernel

from normlab.models.mlp.spec import MLPSpec
from normlab.models.mlp.stack import StackedMLP
from normlab.models.registry import NORMS
from normlab.models.settings import NormSettings
from normlab.runtime import set_threads
from normlab.train import direct, input_layer
from normlab.train.loop import Schedule, train_stack
from normlab.train.optim import SGD, Adam

RTOL = 1e-4  # per-step losses
TYPICAL_DIFF, MAX_DIFF = 5e-5, 1e-3  # parameters: 99.9 % of them, and all


def _train(spec, splits, seeds, lrs, *, use_direct, optimizer=None, monkeypatch, epochs=1):
    taken = []

    def applies(*args):
        taken.append(use_direct and original(*args))
        return taken[-1]

    original = direct.applies
    monkeypatch.setattr(direct, "applies", applies)
    model = StackedMLP(spec, seeds)
    results = train_stack(
        model, optimizer or Adam(), splits, seeds, lrs, Schedule(32, epochs, evaluation="running")
    )
    monkeypatch.setattr(direct, "applies", original)
    return model, results, any(taken)


def _losses(result):
    return torch.tensor([loss for _, loss in result.step_losses])


def _assert_same(a, b):
    (model_a, results_a, _), (model_b, results_b, _) = a, b
    for ra, rb in zip(results_a, results_b, strict=True):
        torch.testing.assert_close(_losses(ra), _losses(rb), rtol=RTOL, atol=1e-5, equal_nan=True)
        assert ra.diverged_step == rb.diverged_step
        assert ra.epochs[-1].val_acc == pytest.approx(rb.epochs[-1].val_acc, abs=4e-3, nan_ok=True)
    healthy = [m for m, r in enumerate(results_a) if not r.diverged]
    state_b = model_b.state_dict()
    for name, pa in model_a.state_dict().items():
        if _cancelled(model_a, name):
            continue
        diff = pa - state_b[name]
        diff = (diff[healthy] if diff.dim() else diff).abs().flatten().double()
        assert diff.max() < MAX_DIFF, name
        assert diff.quantile(0.999) < TYPICAL_DIFF, name


def _cancelled(model, name: str) -> bool:
    """A bias right before BN (and the running mean that follows it): BN subtracts it
    again, so its true gradient is zero and both steps feed Adam float rounding noise,
    which Adam normalizes into full steps in directions that differ between the two."""
    layer = name.split(".")[1]
    norms = [n.kind.name for n in model.norms]
    before_bn = (
        name.startswith("biases.") and int(layer) < len(norms) and norms[int(layer)] != "none"
    )
    return before_bn or name.endswith("running_mean")


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_the_direct_step_trains_as_the_autograd_step_on_real_mnist(norm, mnist_small, monkeypatch):
    spec = MLPSpec(784, (128,), 10, norm=norm, dropout=0.2)
    seeds, lrs = [3, 4, 5], [1e-3, 3e-3, 1e-3]
    fast = _train(spec, mnist_small, seeds, lrs, use_direct=True, monkeypatch=monkeypatch)
    slow = _train(spec, mnist_small, seeds, lrs, use_direct=False, monkeypatch=monkeypatch)
    assert fast[2] and not slow[2]
    _assert_same(fast, slow)
    assert fast[1][0].epochs[-1].val_acc > 0.8


OTHER_NORMS = [n for n in NORMS.names() if n not in ("none", "batch", "virtual_batch")]


@pytest.mark.parametrize("norm", OTHER_NORMS)
def test_every_other_norm_keeps_the_autograd_step(norm, mnist_small):
    settings = NormSettings(groups=4)
    model = StackedMLP(MLPSpec(784, (16,), 10, norm=norm, norm_settings=settings), [0])
    assert not direct.applies(model.train(), Adam(), mnist_small.train.x)


@pytest.mark.parametrize("keras", [True, False])
def test_deeper_mlps_keras_epsilon_and_a_diverging_member(keras, mnist_small, monkeypatch):
    spec = MLPSpec(784, (64, 32), 10, norm="batch", dropout=0.1)
    opt = Adam(eps=1e-7, eps_before_bias_correction=keras)
    seeds, lrs = [1, 2, 3], [1e-3, 1e38, 2e-3]  # member 1 overflows to inf
    fast = _train(spec, mnist_small, seeds, lrs, use_direct=True, optimizer=opt,
                  monkeypatch=monkeypatch)  # fmt: skip
    slow = _train(spec, mnist_small, seeds, lrs, use_direct=False, optimizer=opt,
                  monkeypatch=monkeypatch)  # fmt: skip
    assert fast[2]
    assert fast[1][1].diverged and not fast[1][0].diverged
    _assert_same(fast, slow)


def test_sgd_dense_inputs_and_other_activations_keep_the_autograd_step(mnist_small):
    relu = MLPSpec(784, (16,), 10)
    x = mnist_small.train.x
    assert direct.applies(StackedMLP(relu, [0]).train(), Adam(), x)
    assert not direct.applies(StackedMLP(relu, [0]).train(), SGD(), x)
    assert not direct.applies(StackedMLP(relu, [0]).train(), Adam(), x - x.mean(0))
    tanh = MLPSpec(784, (16,), 10, activation="tanh")
    assert not direct.applies(StackedMLP(tanh, [0]).train(), Adam(), x)


def test_the_sweep_is_the_gradient_adam_and_next_forward(mnist_small):
    """One sweep against a batched matmul gradient, PyTorch's fused Adam and a matmul,
    with an inactive member left exactly as it was."""
    k, b, d, f = 3, 32, 784, 64
    x = mnist_small.train.x[: 2 * k * b].view(2, k, b, d)
    g = torch.Generator().manual_seed(0)
    grad_h = torch.randn(k, b, f, generator=g) * 1e-2
    w = torch.randn(k, d, f, generator=g) * 0.05
    bias = torch.randn(k, f, generator=g)
    m, v = torch.rand(k, d, f, generator=g) * 1e-3, torch.rand(k, d, f, generator=g) * 1e-6
    want_w, want_m, want_v = w.clone(), m.clone(), v.clone()
    adam_kernel(
        [want_w[:2]], [torch.bmm(x[0].transpose(1, 2), grad_h)[:2]], [want_m[:2]],
        [want_v[:2]], [], [torch.tensor(4.0)], fused=True, amsgrad=False, beta1=0.9,
        beta2=0.999, lr=1e-3, weight_decay=0.0, eps=1e-8, maximize=False,
    )  # fmt: skip
    adam = input_layer.AdamStep.of([1e-3] * k, [True, True, False], 5, 0.9, 0.999, 1e-8)
    ahead = input_layer.update(
        input_layer.transposed(x[0]), grad_h, w, m, v, adam, input_layer.transposed(x[1]), bias
    )
    torch.testing.assert_close(w, want_w, rtol=0, atol=1e-7)
    torch.testing.assert_close(m, want_m, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(v, want_v, rtol=1e-4, atol=1e-12)
    assert torch.equal(w[2], want_w[2]) and torch.equal(m[2], want_m[2])
    want_ahead = torch.baddbmm(bias.unsqueeze(1), x[1], w)
    torch.testing.assert_close(ahead, want_ahead, rtol=1e-5, atol=1e-4)
    alone = input_layer.forward(input_layer.transposed(x[1]), w, bias)
    torch.testing.assert_close(alone, ahead, rtol=1e-6, atol=1e-4)


def _steps(model, splits, use_direct: bool, change_at: int, steps: int = 6) -> list[float]:
    from normlab.train.optim import Rates
    from normlab.train.step import StepState, train_step

    state = StepState.create(model.k, len(splits.train), 32, [7] * model.k, torch.device("cpu"))
    state.direct = None if use_direct else False
    state.start_epoch(torch.arange(len(splits.train)).repeat(model.k, 1))
    opt = Adam()
    opt_state = [opt.init([p.detach() for p in model.parameters()])]
    losses = []
    for step in range(steps):
        if step == change_at:
            with torch.no_grad():
                model.weights[0].mul_(0.5)  # as a restored checkpoint would change them
        train_step(model, opt, opt_state, state, (splits.train.x, splits.train.y), Rates.of([1e-3]))
        losses.append(float(state.losses[step, 0]))
    assert bool(state.direct) == use_direct
    return losses


def test_weights_changed_between_steps_are_not_read_from_the_look_ahead(mnist_small):
    spec = MLPSpec(784, (32,), 10, norm="batch", dropout=0.2)
    fast = _steps(StackedMLP(spec, [0]).train(), mnist_small, True, change_at=3)
    slow = _steps(StackedMLP(spec, [0]).train(), mnist_small, False, change_at=3)
    unchanged = _steps(StackedMLP(spec, [0]).train(), mnist_small, True, change_at=-1)
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(slow), rtol=RTOL, atol=1e-6)
    assert fast[:3] == unchanged[:3] and abs(fast[3] - unchanged[3]) > 1e-3


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to compare 1 and 2 threads")
def test_a_run_is_the_same_on_one_thread_as_on_two(mnist_small, monkeypatch):
    spec = MLPSpec(784, (128,), 10, norm="batch", dropout=0.2)
    runs, before = [], set_threads(None)
    try:
        for threads in (1, 2):
            set_threads(threads)
            runs.append(_train(spec, mnist_small, [1, 2, 3], [1e-3] * 3, use_direct=True,
                               monkeypatch=monkeypatch))  # fmt: skip
    finally:
        set_threads(before)
    (model_1, results_1, taken), (model_2, results_2, _) = runs
    assert taken
    for r1, r2 in zip(results_1, results_2, strict=True):
        assert torch.equal(_losses(r1), _losses(r2))
    state_2 = model_2.state_dict()
    for name, p1 in model_1.state_dict().items():
        assert torch.equal(p1, state_2[name]), name


def test_fashion_mnist_pixels_are_too_dense_for_the_sweep(tmp_path, debian_fashion, mnist_small):
    # Fashion-MNIST's pixels are ~51% zeros, where the direct step was no faster at
    # B=32 and slower at B=256 (BENCHMARKS.md); MNIST's are ~81%.
    from normlab.data.locate import load
    from normlab.data.prepare import prepare

    fashion = prepare(load("fashion-mnist", tmp_path, download=False), "raw").train.x
    model = StackedMLP(MLPSpec(784, (16,), 10), [0]).train()
    assert 0.4 < float((fashion[:1000] == 0).float().mean()) < direct.SPARSE
    assert not direct.applies(model, Adam(), fashion)
    assert direct.applies(model, Adam(), mnist_small.train.x)
