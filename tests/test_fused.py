"""Fused CPU kernels and counter-based dropout masks against plain PyTorch formulations."""

import numpy as np
import pytest
import torch

from normlab.models import fused
from normlab.models.dropout import GOLDEN, reference_mask, step_keys, threshold
from normlab.models.mlp.spec import MLPSpec
from normlab.models.mlp.stack import StackedMLP
from normlab.models.norms import BatchNorm
from normlab.models.settings import NormSettings


def _keys(k=3, step=7):
    return step_keys([11 * m + 1 for m in range(k)], step, 2)[0]


# SplitMix64's first five outputs for seed 1234567, as published (Rosetta Code,
# "Pseudo-random numbers/Splitmix64", from Steele, Lea & Flood 2014's algorithm).
SEED, PUBLISHED = 1234567, [
    0x599ED017FB08FC85, 0x2C73F08458540FA5, 0x883EBCE5A3F27C77, 0x3FBEF740E9177B3F,
    0xE3B8346708CB5ECD,
]  # fmt: skip


def test_step_keys_are_splitmix64_outputs():
    # step 0's key of layer l is output l of SplitMix64 seeded by the member's base
    assert step_keys([SEED], step=0, layers=5)[:, 0].tolist() == PUBLISHED


@pytest.mark.parametrize("width", [5, 2])  # 5: masks cross row boundaries mid-pair
def test_masks_are_splitmix64_bits(width):
    # A mask's element 2i reads the low and 2i+1 the high 32 bits of SplitMix64 output
    # i+1 after the key; at p = 0.5 an element is kept when its top bit is set.
    key = np.array([(SEED + GOLDEN) % 2**64], dtype=np.uint64)
    lanes = [half for out in PUBLISHED for half in (out & 0xFFFFFFFF, out >> 32)]
    want = torch.tensor([2.0 if lane >= 2**31 else 0.0 for lane in lanes]).view(1, -1, width)
    assert want.sum() > 0 and (want == 0).sum() > 0
    rows = 10 // width
    for got in (fused.mask(key, rows, width, 0.5), reference_mask(key, rows, width, 0.5)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


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
