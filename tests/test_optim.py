"""Stacked optimizers against torch.optim on unstacked parameters, and Keras's Adam formula."""

import math

import pytest
import torch

from normlab.train.optim import SGD, Adam, Rates


def _step(optimizer, state, params, grads, lrs, active):
    optimizer.update(state, params, grads, Rates.of(lrs), torch.tensor(active))


def _run(stacked, make_ref, lrs, steps=6, active=None):
    torch.manual_seed(0)
    k = len(lrs)
    params = [torch.randn(k, 7, 5), torch.zeros(k, 5)]
    refs = [[p[m].clone().requires_grad_() for p in params] for m in range(k)]
    opts = [make_ref(refs[m], lrs[m]) for m in range(k)]
    state = stacked.init(params)
    for _ in range(steps):
        grads = [torch.randn_like(p) for p in params]
        _step(stacked, state, params, grads, lrs, active or [True] * k)
        for m in range(k):
            for r, g in zip(refs[m], grads, strict=True):
                r.grad = g[m].clone()
            opts[m].step()
    return params, refs


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_adam_matches_torch_adam(eps):
    lrs = [1e-3, 3e-2, 1e-3]
    params, refs = _run(Adam(eps=eps), lambda p, lr: torch.optim.Adam(p, lr=lr, eps=eps), lrs)
    for m in range(3):
        for p, r in zip(params, refs[m], strict=True):
            torch.testing.assert_close(p[m], r.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_torch_sgd(momentum, nesterov):
    lrs = [0.1, 0.01]
    params, refs = _run(
        SGD(momentum=momentum, nesterov=nesterov),
        lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=momentum, nesterov=nesterov),
        lrs,
    )
    for m in range(2):
        for p, r in zip(params, refs[m], strict=True):
            torch.testing.assert_close(p[m], r.detach(), rtol=1e-6, atol=1e-7)


def test_adam_keras_epsilon_placement_matches_keras_formula():
    """Keras: p -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps_hat)."""
    torch.manual_seed(0)
    eps_hat, lr, b1, b2 = 1e-3, 0.01, 0.9, 0.999
    p = torch.randn(1, 6)
    mine = [p.clone()]
    opt = Adam(eps=eps_hat, eps_before_bias_correction=True)
    state = opt.init(mine)
    m = torch.zeros(6)
    v = torch.zeros(6)
    ref = p[0].clone().double()
    for t in range(1, 8):
        g = torch.randn(1, 6) * 1e-2  # small gradients: where the placement matters
        _step(opt, state, mine, [g], [lr], [True])
        m = b1 * m + (1 - b1) * g[0].double()
        v = b2 * v + (1 - b2) * g[0].double() ** 2
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        ref = ref - alpha * m / (v.sqrt() + eps_hat)
    torch.testing.assert_close(mine[0][0].double(), ref, rtol=1e-5, atol=1e-7)


def test_inactive_members_are_frozen_even_with_nan_gradients():
    opt = Adam()
    params = [torch.ones(2, 3)]
    state = opt.init(params)
    grads = [torch.stack([torch.ones(3), torch.full((3,), math.nan)])]
    _step(opt, state, params, grads, [0.1, 0.1], [True, False])
    assert (params[0][1] == 1).all()
    assert (params[0][0] < 1).all()


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        SGD(momentum=0.0, nesterov=True)


@pytest.mark.parametrize(
    "optimizer",
    [
        Adam(eps=1e-7),
        Adam(eps=1e-3, eps_before_bias_correction=True),
        SGD(),
        SGD(momentum=0.9),
        SGD(momentum=0.9, nesterov=True),
    ],
    ids=["adam", "adam-keras", "sgd", "momentum", "nesterov"],
)
def test_tensor_ops_match_the_fused_kernels(optimizer):
    # The tensor-op form (what runs off the CPU, in CUDA graphs too) against the fused
    # kernels, with one member diverging (NaN gradients) at step 4 and frozen from then on.
    torch.manual_seed(0)
    lrs = [1e-2, 3e-2, 1e-2]
    shapes = [(3, 7, 5), (3, 5)]
    fused = [torch.randn(shape) for shape in shapes]
    tensor_ops = [p.clone() for p in fused]
    s_fused, s_ops = optimizer.init(fused), optimizer.init(tensor_ops)
    active = [True, True, True]
    for t in range(1, 9):
        grads = [torch.randn(shape) * 1e-2 for shape in shapes]
        if t >= 4:
            active[1] = False
            grads[0][1] = math.nan
        rates, flags = Rates.of(lrs), torch.tensor(active)
        optimizer.update(s_fused, fused, grads, rates, flags, fused=True)
        optimizer.update(s_ops, tensor_ops, grads, rates, flags, fused=False)
    for a, b in zip(tensor_ops, fused, strict=True):
        # Updates are ~1e-2 per step; the two differ by float rounding only.
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert torch.isfinite(a).all()


@pytest.mark.parametrize("optimizer", [Adam(), SGD(momentum=0.9)], ids=["adam", "sgd"])
def test_a_gradient_in_another_memory_layout_meets_the_right_elements(optimizer):
    # A convolution's weight gradient may come channels-last while the weight is not.
    torch.manual_seed(0)
    params = [torch.randn(2, 8, 4, 3, 3)]
    grad = torch.randn(2, 8, 4, 3, 3)
    channels_last = grad.view(16, 4, 3, 3).contiguous(memory_format=torch.channels_last)
    strided = channels_last.view(2, 8, 4, 3, 3)
    assert not strided.is_contiguous() and torch.equal(strided, grad)
    twins = [p.clone() for p in params]
    _step(optimizer, optimizer.init(params), params, [grad], [0.1, 0.1], [True, True])
    _step(optimizer, optimizer.init(twins), twins, [strided], [0.1, 0.1], [True, True])
    torch.testing.assert_close(twins[0], params[0], rtol=0, atol=0)
