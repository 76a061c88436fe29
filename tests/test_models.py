import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.models.init import init_layer
from normlab.models.mlp.spec import MLPSpec
from normlab.models.mlp.stack import StackedMLP
from normlab.models.norms import make_norm
from normlab.models.semantics import KERAS, TORCH, keras_to_torch_momentum
from normlab.models.settings import NormSettings

TORCH_BN = NormSettings(eps=1e-5, momentum=0.1, unbiased_running_var=True)


def test_momentum_conventions():
    assert keras_to_torch_momentum(0.99) == pytest.approx(0.01)
    assert KERAS.bn_momentum == pytest.approx(0.01) and TORCH.bn_momentum == 0.1
    assert (KERAS.bn_eps, KERAS.adam_eps, TORCH.bn_eps, TORCH.adam_eps) == (1e-3, 1e-7, 1e-5, 1e-8)


@pytest.mark.parametrize(
    ("scheme", "bound", "std"),
    [
        ("glorot_uniform", math.sqrt(6 / (300 + 200)), None),
        ("he_uniform", math.sqrt(6 / 300), None),
        ("torch_default", 1 / math.sqrt(300), None),
        ("glorot_normal", None, math.sqrt(2 / 500)),
        ("he_normal", None, math.sqrt(2 / 300)),
        ("lecun_normal", None, math.sqrt(1 / 300)),
    ],
)
def test_init_schemes(scheme, bound, std):
    w, b = init_layer(scheme, (300, 200), (300, 200), 200, 1.0, torch.Generator().manual_seed(0))
    assert w.shape == (300, 200) and b.shape == (200,)
    if bound is not None:
        assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    else:
        assert w.std().item() == pytest.approx(std, rel=0.03)
    assert (b == 0).all() != (scheme == "torch_default")
    w2, _ = init_layer(scheme, (300, 200), (300, 200), 200, 3.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(w2, 3 * w)


def test_member_init_does_not_depend_on_the_stack():
    spec = MLPSpec(784, (64, 32), 10, norm="batch")
    alone = StackedMLP(spec, [7])
    stacked = StackedMLP(spec, [1, 7, 3])
    for a, s in zip(alone.weights, stacked.weights, strict=True):
        torch.testing.assert_close(a[0], s[1], rtol=0, atol=0)
    assert not torch.equal(stacked.weights[0][0], stacked.weights[0][1])
    # the linear layers of a BN and a plain run with the same seed start alike
    plain = StackedMLP(MLPSpec(784, (64, 32), 10), [7])
    torch.testing.assert_close(plain.weights[1][0], alone.weights[1][0], rtol=0, atol=0)


def _per_member(norm, x, fn):
    return torch.stack([fn(x[k], k) for k in range(x.shape[0])])


def test_batchnorm_matches_torch_per_member():
    torch.manual_seed(0)
    k, b, f = 3, 16, 8
    norm = make_norm("batch", k, f, TORCH_BN)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    refs = [nn.BatchNorm1d(f) for _ in range(k)]
    for m, ref in enumerate(refs):
        ref.weight.data.copy_(norm.weight[m])
        ref.bias.data.copy_(norm.bias[m])
    for _ in range(3):
        x = torch.randn(k, b, f) * 3 + 1
        got = norm(x)
        want = torch.stack([refs[m](x[m]) for m in range(k)])
        torch.testing.assert_close(got, want)
    for m, ref in enumerate(refs):
        torch.testing.assert_close(norm.running_mean[m], ref.running_mean)
        torch.testing.assert_close(norm.running_var[m], ref.running_var)
    norm.eval()
    [r.eval() for r in refs]
    x = torch.randn(k, b, f)
    torch.testing.assert_close(norm(x), torch.stack([refs[m](x[m]) for m in range(k)]))


def test_keras_running_statistics_use_biased_variance_and_momentum_099():
    norm = make_norm("batch", 1, 4, NormSettings(eps=1e-3, momentum=0.01))
    x = torch.randn(1, 10, 4)
    norm(x)
    mean, var = x[0].mean(0), x[0].var(0, unbiased=False)
    torch.testing.assert_close(norm.running_mean[0], 0.99 * 0 + 0.01 * mean)
    torch.testing.assert_close(norm.running_var[0], 0.99 * 1 + 0.01 * var)


@pytest.mark.parametrize("kind", ["layer", "group", "rms"])
def test_per_example_norms_match_reference(kind):
    torch.manual_seed(1)
    k, b, f = 2, 5, 64
    s = NormSettings(eps=1e-5, groups=8)
    norm = make_norm(kind, k, f, s)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        if norm.bias is not None:
            norm.bias.uniform_(-1, 1)
    x = torch.randn(k, b, f) * 2
    for m in range(k):
        w = norm.weight[m]
        if kind == "layer":
            want = F.layer_norm(x[m], (f,), w, norm.bias[m], eps=1e-5)
        elif kind == "group":
            want = F.group_norm(x[m], 8, w, norm.bias[m], eps=1e-5)
        else:
            want = x[m] / torch.sqrt((x[m] ** 2).mean(-1, keepdim=True) + 1e-5) * w
        torch.testing.assert_close(norm(x)[m], want)


def test_ghost_batchnorm_normalizes_each_ghost_batch():
    s = NormSettings(eps=1e-5, ghost_batch_size=4)
    ghost, plain = make_norm("ghost_batch", 2, 3, s), make_norm("batch", 2, 3, s)
    x = torch.randn(2, 12, 3)
    y = ghost(x)
    for g in range(3):
        torch.testing.assert_close(y[:, 4 * g : 4 * g + 4], plain(x[:, 4 * g : 4 * g + 4]))
    with pytest.raises(ValueError, match="must divide the batch size"):
        ghost(torch.randn(2, 10, 3))


def test_ghost_batchnorm_running_statistics_average_the_ghost_batches():
    s = NormSettings(eps=1e-5, momentum=0.1, unbiased_running_var=True, ghost_batch_size=4)
    ghost = make_norm("ghost_batch", 2, 3, s)
    x = torch.randn(2, 12, 3) * 2 + 1
    ghost(x)
    for k in range(2):
        parts = x[k].view(3, 4, 3)  # three ghost batches of 4
        mean, var = parts.mean(1).mean(0), parts.var(1, unbiased=True).mean(0)
        torch.testing.assert_close(ghost.running_mean[k], 0.1 * mean)
        torch.testing.assert_close(ghost.running_var[k], 0.9 + 0.1 * var)


def test_batch_renorm_limits_ramp_linearly():
    # Half-way through a 4-step ramp: rmax = 1 + (3 - 1) / 2 = 2, dmax = 5 / 2 = 2.5.
    s = NormSettings(eps=1e-5, momentum=0.5, renorm_rmax=3.0, renorm_dmax=5.0,
                     renorm_ramp_steps=4)  # fmt: skip
    renorm = make_norm("batch_renorm", 1, 2, s)
    for _ in range(2):
        renorm(torch.randn(1, 8, 2))
    assert int(renorm.steps) == 2
    x = torch.tensor([[[40.0, -60.0]] * 4 + [[20.0, -20.0]] * 4])  # far from the running stats
    rm, rv = renorm.running_mean[0].clone(), renorm.running_var[0].clone()
    got = renorm(x)[0]
    mean, var = x[0].mean(0), x[0].var(0, unbiased=False)
    sigma = torch.sqrt(rv + 1e-5)
    r = (torch.sqrt(var + 1e-5) / sigma).clamp(1 / 2.0, 2.0)
    d = ((mean - rm) / sigma).clamp(-2.5, 2.5)
    assert (r == 2.0).all() and (d.abs() == 2.5).all()  # both limits bind mid-ramp
    torch.testing.assert_close(got, (x[0] - mean) / torch.sqrt(var + 1e-5) * r + d)


def test_batch_renorm_starts_as_bn_and_clips_r_and_d():
    s = NormSettings(eps=1e-5, renorm_rmax=2.0, renorm_dmax=0.5, renorm_ramp_steps=1)
    renorm, plain = make_norm("batch_renorm", 1, 3, s), make_norm("batch", 1, 3, s)
    x = torch.randn(1, 8, 3) * 10 + 5
    torch.testing.assert_close(renorm(x), plain(x))  # step 0: rmax 1, dmax 0
    x = torch.randn(1, 8, 3) * 10 + 5
    mean, var = x[0].mean(0), x[0].var(0, unbiased=False)
    sigma_run = torch.sqrt(renorm.running_var[0] + 1e-5)
    r = (torch.sqrt(var + 1e-5) / sigma_run).clamp(0.5, 2.0)
    d = ((mean - renorm.running_mean[0]) / sigma_run).clamp(-0.5, 0.5)
    want = (x[0] - mean) / torch.sqrt(var + 1e-5) * r + d
    torch.testing.assert_close(renorm(x)[0], want)


def test_stack_member_equals_plain_pytorch_network():
    spec = MLPSpec(20, (16,), 4, norm="batch", norm_settings=TORCH_BN, init="torch_default")
    model = StackedMLP(spec, [3, 4])
    ref = nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        ref[0].weight.copy_(model.weights[0][1].T)
        ref[0].bias.copy_(model.biases[0][1])
        ref[3].weight.copy_(model.weights[1][1].T)
        ref[3].bias.copy_(model.biases[1][1])
    x = torch.randn(2, 9, 20)
    torch.testing.assert_close(model(x)[1], ref(x[1]))
    model.eval(), ref.eval()
    shared = torch.randn(9, 20)
    torch.testing.assert_close(model(shared)[1], ref(shared))
    torch.testing.assert_close(model(shared), model(shared.expand(2, 9, 20)))


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_norm_after_the_activation_by_hand(norm):
    spec = MLPSpec(6, (4,), 2, norm=norm, norm_position="after")
    model = StackedMLP(spec, [0, 1])
    layer = model.norms[0]
    with torch.no_grad():
        layer.weight.uniform_(0.5, 2.0)
        layer.bias.normal_()
    x = torch.randn(2, 5, 6)
    got = model(x)
    for k in range(2):
        h = torch.relu(x[k] @ model.weights[0][k] + model.biases[0][k])
        if norm == "layer":
            h = F.layer_norm(h, (4,), layer.weight[k], layer.bias[k], eps=1e-3)
        else:  # batch statistics over the batch, biased variance
            h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-3)
            h = h * layer.weight[k] + layer.bias[k]
        torch.testing.assert_close(got[k], h @ model.weights[1][k] + model.biases[1][k])


def test_unknown_names_and_bad_groups():
    with pytest.raises(ValueError, match="unknown activation"):
        MLPSpec(6, (4,), 2, activation="gelu")
    with pytest.raises(ValueError, match="unknown norm"):
        MLPSpec(6, (4,), 2, norm="weird")
    with pytest.raises(ValueError, match="groups 3 must divide"):
        StackedMLP(MLPSpec(6, (4,), 2, norm="group", norm_settings=NormSettings(groups=3)), [0])


def test_dropout_before_the_norm_by_hand():
    from normlab.models.dropout import reference_mask, step_keys

    x = torch.randn(2, 16, 6)
    keys = step_keys([11, 12], step=3, layers=1)
    mask = torch.stack([reference_mask(keys[:, k], 16, 5, 0.5)[0] for k in range(2)])
    before = StackedMLP(MLPSpec(6, (5,), 3, norm="batch", dropout=0.5, dropout_position="before"),
                        [0, 1])  # fmt: skip
    norm, eps = before.norms[0], before.norms[0].settings.eps
    for k in range(2):
        h = (x[k] @ before.weights[0][k] + before.biases[0][k]) * mask[k]
        h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + eps)
        want = torch.relu(h * norm.weight[k] + norm.bias[k]) @ before.weights[1][k]
        torch.testing.assert_close(before(x, keys)[k], want + before.biases[1][k])
    # Without a norm the mask commutes with ReLU: both positions are one network, and
    # the unfused path (taps) agrees with the fused kernel.
    plain = {
        pos: StackedMLP(MLPSpec(6, (5,), 3, dropout=0.5, dropout_position=pos), [0, 1])
        for pos in ("before", "after")
    }
    fused_out = plain["after"](x, keys)
    torch.testing.assert_close(plain["before"](x, keys, taps=[]), fused_out)
    torch.testing.assert_close(plain["before"](x, keys), fused_out)
    with pytest.raises(ValueError, match="dropout_position must be before or after"):
        MLPSpec(6, (4,), 2, dropout_position="middle")
