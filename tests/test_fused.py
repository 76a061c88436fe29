"""Fused CPU kernels and counter-based dropout masks against plain PyTorch formulations."""

import numpy as np
import pytest
import torch

from normlab.models import fused
from normlab.models.dropout import reference_mask, step_keys, threshold
from normlab.models.norms import BatchNorm, NormSettings
from normlab.models.stack import MLPSpec, StackedMLP


def _keys(k=3, step=7):
    return step_keys([11 * m + 1 for m in range(k)], step, 2)[0]


@pytest.mark.parametrize("width", [64, 7])  # 7: masks cross row boundaries mid-pair
def test_fused_mask_equals_tensor_reference(width):
    keys = _keys()
    torch.testing.assert_close(fused.mask(keys, 5, width, 0.3), reference_mask(keys, 5, width, 0.3))


def test_mask_keeps_one_minus_p_and_members_and_steps_differ():
    keys = _keys(k=2)
    m = reference_mask(keys, 256, 512, 0.2)
    kept = (m > 0).double().mean().item()
    assert abs(kept - 0.8) < 4 * (0.2 * 0.8 / m.numel()) ** 0.5
    assert set(m.unique().tolist()) == {0.0, 1.25}
    assert not torch.equal(m[0], m[1])
    assert not torch.equal(m, reference_mask(_keys(k=2, step=8), 256, 512, 0.2))
    assert threshold(0.0) == 0 and threshold(0.5) == 2**31


def test_keys_of_a_member_do_not_depend_on_its_stack():
    alone = step_keys([42], 5, 3)
    stacked = step_keys([1, 42, 3], 5, 3)
    np.testing.assert_array_equal(alone[:, 0], stacked[:, 1])
    assert len({int(v) for v in stacked.flatten()}) == 9


@pytest.mark.parametrize("p", [0.0, 0.2])
def test_relu_dropout_matches_autograd_of_plain_ops(p):
    keys = _keys()
    x = torch.randn(3, 6, 10, requires_grad=True)
    g = torch.randn(3, 6, 10)
    out = fused.ReluDropout.apply(x, keys if p else None, p)
    (gx,) = torch.autograd.grad(out, x, g)
    xr = x.detach().clone().requires_grad_()
    ref = torch.relu(xr) * (reference_mask(keys, 6, 10, p) if p else 1.0)
    (gr,) = torch.autograd.grad(ref, xr, g)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(gx, gr)


@pytest.mark.parametrize("p", [0.0, 0.2])
def test_batchnorm_relu_dropout_matches_autograd_of_plain_ops(p):
    keys, k, b, f = _keys(), 3, 16, 70  # 70: more than one 64-feature tile
    x = (torch.randn(k, b, f) * 40 + 100).requires_grad_()  # raw-pixel-like scale
    settings = NormSettings()
    bn = BatchNorm(k, f, settings)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    g = torch.randn(k, b, f)
    out, mean, var = fused.BatchNormReluDropout.apply(x, bn.weight, bn.bias, settings.eps, keys, p)
    grads = torch.autograd.grad(out, (x, bn.weight, bn.bias), g)

    xr = x.detach().clone().requires_grad_()
    ref_bn = BatchNorm(k, f, settings)
    ref_bn.load_state_dict(bn.state_dict())
    ref = torch.relu(ref_bn(xr)) * (reference_mask(keys, b, f, p) if p else 1.0)
    ref_grads = torch.autograd.grad(ref, (xr, ref_bn.weight, ref_bn.bias), g)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mean, xr.detach().mean(1))
    torch.testing.assert_close(var, xr.detach().var(1, unbiased=False), rtol=1e-5, atol=1e-3)


def test_eval_batchnorm_relu_in_place_on_a_strided_view():
    k, b, f = 2, 5, 9
    bn = BatchNorm(k, f, NormSettings()).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
    x = torch.randn(b, k, f).transpose(0, 1)  # the shared-input evaluation layout
    want = torch.relu(bn(x))
    got = fused.bn_relu_eval_(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, 1e-3)
    assert got is x
    torch.testing.assert_close(got, want)


def test_nan_stays_visible_through_the_fused_relu():
    x = torch.tensor([[[float("nan"), -1.0, 2.0, 0.5]]])
    out = fused.ReluDropout.apply(x, None, 0.0)
    assert torch.isnan(out[0, 0, 0]) and out[0, 0, 1] == 0 and out[0, 0, 2] == 2


def test_fused_model_evaluation_equals_per_member_forward(mnist_small):
    """The shared-input evaluation path against each member's own batch, on real MNIST."""
    model = StackedMLP(MLPSpec(784, (64,), 10, norm="batch", dropout=0.2), [0, 1, 2]).eval()
    with torch.no_grad():
        for norm in model.norms:
            norm.running_mean.normal_(0, 50)
            norm.running_var.uniform_(1e3, 1e4)
        x = mnist_small.test.x[:100]
        shared = model(x)
        per_member = model(x.expand(3, -1, -1).contiguous())
    torch.testing.assert_close(shared, per_member, rtol=1e-4, atol=1e-4)
