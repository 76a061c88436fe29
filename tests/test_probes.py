"""Each instrument against an independent computation: plain tensors, autograd, numpy."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from normlab.app.api import run_study
from normlab.data.prepare import Split
from normlab.models.mlp.spec import MLPSpec
from normlab.models.mlp.stack import StackedMLP
from normlab.models.settings import NormSettings
from normlab.models.statistics import precise_statistics
from normlab.probes.bn import discrepancy, variance_shift
from normlab.probes.ics import internal_covariate_shift
from normlab.probes.layers import fixed_units, layer_norms, preactivation_stats
from normlab.probes.noise import gradient_noise
from normlab.probes.schedule import Measurement, ProbeContext, When
from normlab.probes.smoothness import smoothness
from normlab.spec.probes import PROBES, ProbeKind
from normlab.spec.study import StudySpec
from normlab.store.db import Store
from normlab.train.loop import Schedule, evaluate, train_stack
from normlab.train.optim import SGD, Adam, Rates
from normlab.types import WHOLE, ProbeRow


def _plain_forward(params, x):
    """Member forward of a ReLU MLP without norm or dropout, from a flat parameter list."""
    h = x
    for i in range(0, len(params) - 2, 2):
        h = torch.relu(h @ params[i] + params[i + 1])
    return h @ params[-2] + params[-1]


def _member_params(model, k):
    out = []
    for w, b in zip(model.weights, model.biases, strict=True):
        out += [w[k].detach().clone().requires_grad_(), b[k].detach().clone().requires_grad_()]
    return out


def _batch(k=2, b=24, d=10, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, b, d, generator=g), torch.randint(0, classes, (k, b), generator=g)


def test_layer_norms_match_a_member_trained_alone():
    model = StackedMLP(MLPSpec(10, (8, 6), 3), [0, 1])
    x, y = _batch()
    F.cross_entropy(model(x).reshape(-1, 3), y.reshape(-1), reduction="sum").backward()
    got = layer_norms(model, [w.grad for w in model.weights])
    for k in range(2):
        params = _member_params(model, k)
        F.cross_entropy(_plain_forward(params, x[k]), y[k], reduction="sum").backward()
        for layer in range(3):
            w = params[2 * layer]
            assert got["grad_norm"][layer, k].item() == pytest.approx(w.grad.norm().item(), 1e-5)
            assert got["weight_norm"][layer, k].item() == pytest.approx(w.norm().item(), 1e-6)
    torch.testing.assert_close(got["ratio"], got["grad_norm"] / got["weight_norm"])


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_preactivation_stats_against_numpy(activation):
    spec = MLPSpec(10, (12,), 3, activation=activation, norm="batch", dropout=0.3)
    model = StackedMLP(spec, [0, 1])
    with torch.no_grad():
        model.norms[0].weight.mul_(3.0)  # push some units into saturation
    x = torch.randn(40, 10)
    running = model.norms[0].running_mean.clone()
    (stats,) = preactivation_stats(model, x)
    assert torch.equal(model.norms[0].running_mean, running)  # statistics untouched
    eps = model.norms[0].settings.eps
    for k in range(2):
        h = (x @ model.weights[0][k] + model.biases[0][k]).detach().numpy()
        pre = (h - h.mean(0)) / np.sqrt(h.var(0) + eps) * model.norms[0].weight[k].detach().numpy()
        pre = pre + model.norms[0].bias[k].detach().numpy()
        units = fixed_units(12)
        want = np.percentile(pre[:, units], [15, 50, 85], axis=0).T
        np.testing.assert_allclose(stats["percentiles"][k].numpy(), want, rtol=1e-4, atol=1e-5)
        assert stats["mean"][k].item() == pytest.approx(pre.mean(), abs=1e-5)
        assert stats["std"][k].item() == pytest.approx(pre.std(), rel=1e-4)
        if activation == "relu":
            assert stats["dead"][k].item() == pytest.approx((pre <= 0).all(0).mean())
        elif activation == "tanh":
            assert stats["saturated"][k].item() == pytest.approx(
                (np.abs(np.tanh(pre)) > 0.99).mean()
            )
        else:
            s = 1 / (1 + np.exp(-pre))
            assert stats["saturated"][k].item() == pytest.approx(((s > 0.99) | (s < 0.01)).mean())
    assert fixed_units(12) == [0, 6, 11] and fixed_units(1) == [0]


def test_ics_matches_a_hand_computation_with_autograd():
    lr = 0.5
    model = StackedMLP(MLPSpec(10, (8, 6), 3), [0])
    x, y = _batch(k=1)
    before = [p.detach().clone() for p in model.parameters()]
    got = internal_covariate_shift(model, SGD(), SGD().init(list(model.parameters())), x, y,
                                   None, Rates.of([lr]))  # fmt: skip
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    params = _member_params(model, 0)
    loss = F.cross_entropy(_plain_forward(params, x[0]), y[0])
    grads = torch.autograd.grad(loss, params)
    for layer in range(3):
        moved = [
            (p - lr * g if j < 2 * layer else p).detach().requires_grad_()
            for j, (p, g) in enumerate(zip(params, grads, strict=True))
        ]
        g_after = torch.autograd.grad(
            F.cross_entropy(_plain_forward(moved, x[0]), y[0]), moved[2 * layer]
        )[0]
        g = grads[2 * layer]
        distance = (g - g_after).norm().item()
        cosine = F.cosine_similarity(g.flatten(), g_after.flatten(), dim=0).item()
        assert got["distance"][layer, 0].item() == pytest.approx(distance, rel=1e-4, abs=1e-7)
        assert got["cosine"][layer, 0].item() == pytest.approx(cosine, rel=1e-5)
    assert got["distance"][1, 0] > 0  # with lr 0.5 the earlier layer really moved


def test_smoothness_matches_a_hand_computation():
    lrs = [0.1, 0.3]
    model = StackedMLP(MLPSpec(10, (8,), 3), [0, 1])
    x, y = _batch()
    got = smoothness(model, x, y, None, lrs, multiples=(0.5, 2.0))
    for k, lr in enumerate(lrs):
        params = _member_params(model, k)

        def loss_grad(ps, k=k):
            loss = F.cross_entropy(_plain_forward(ps, x[k]), y[k])
            return loss.item(), torch.autograd.grad(loss, ps)

        loss0, g0 = loss_grad(params)
        g0_norm = math.sqrt(sum(g.pow(2).sum().item() for g in g0))
        losses, pred, beta = [loss0], [], []
        for m in (0.5, 2.0):
            eta = lr * m
            moved = [
                (p - eta * g).detach().requires_grad_() for p, g in zip(params, g0, strict=True)
            ]
            loss, g = loss_grad(moved)
            change = math.sqrt(sum((a - b).pow(2).sum().item() for a, b in zip(g0, g, strict=True)))
            losses.append(loss)
            pred.append(change)
            beta.append(change / (eta * g0_norm))
        assert got["loss_variation"][k].item() == pytest.approx(max(losses) - min(losses), rel=1e-4)
        assert got["grad_predictiveness"][k].item() == pytest.approx(max(pred), rel=1e-4)
        assert got["beta_smoothness"][k].item() == pytest.approx(max(beta), rel=1e-4)


def _bn_model():
    model = StackedMLP(MLPSpec(10, (8,), 3, norm="batch", dropout=0.2), [0, 1])
    with torch.no_grad():
        model.norms[0].running_mean.normal_()
        model.norms[0].running_var.uniform_(0.5, 2.0)
    return model


def test_discrepancy_batch_statistics_by_hand_and_running_as_evaluate():
    model = _bn_model()
    g = torch.Generator().manual_seed(1)
    split = Split(torch.randn(50, 10, generator=g), torch.randint(0, 3, (50,), generator=g))
    running_var = model.norms[0].running_var.clone()
    got = discrepancy(model, split, batch_size=20)  # 2 batches; the last 10 left out
    assert torch.equal(model.norms[0].running_var, running_var) and model.training
    loss, acc = evaluate(model, Split(split.x[:40], split.y[:40]))
    torch.testing.assert_close(got["running_loss"], loss)
    torch.testing.assert_close(got["running_acc"], acc)
    norm, eps = model.norms[0], model.norms[0].settings.eps
    for k in range(2):
        total, correct = 0.0, 0
        for start in (0, 20):
            xb, yb = split.x[start : start + 20], split.y[start : start + 20]
            h = xb @ model.weights[0][k] + model.biases[0][k]
            h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + eps)
            logits = torch.relu(h * norm.weight[k] + norm.bias[k]) @ model.weights[1][k]
            logits = logits + model.biases[1][k]
            total += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
        assert got["batch_loss"][k].item() == pytest.approx(total / 40, rel=1e-5)
        assert got["batch_acc"][k].item() == pytest.approx(correct / 40)


def test_precise_statistics_average_the_batch_statistics():
    model = _bn_model()
    x = torch.randn(60, 10)
    precise_statistics(model, Split(x, torch.zeros(60, dtype=torch.long)), 30, batches=5)
    assert model.norms[0].settings.momentum == pytest.approx(0.01)  # restored
    for k in range(2):
        h = (x @ model.weights[0][k] + model.biases[0][k]).detach()
        halves = h[:30], h[30:]  # only 2 batches exist
        mean = sum(b.mean(0) for b in halves) / 2
        var = sum(b.var(0, unbiased=False) for b in halves) / 2
        torch.testing.assert_close(model.norms[0].running_mean[k], mean)
        torch.testing.assert_close(model.norms[0].running_var[k], var)
    with pytest.raises(ValueError, match="no batch normalization"):
        precise_statistics(StackedMLP(MLPSpec(10, (8,), 3), [0]), Split(x, x[:, 0]), 30, 1)


def test_variance_shift_by_hand():
    model = StackedMLP(MLPSpec(10, (8, 6), 3, norm="batch", dropout=0.5), [0, 1])
    with torch.no_grad():
        for norm in model.norms:
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(40, 10)
    saved = [b.clone() for b in model.buffers()]
    got = variance_shift(model, x)
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), saved, strict=True))
    assert model.training  # the mode is restored
    for k in range(2):
        h, shifts = x, []
        for i, norm in enumerate(model.norms):
            h = h @ model.weights[i][k] + model.biases[i][k]
            eps = norm.settings.eps
            r = (norm.running_var[k] + eps) / (h.var(0, unbiased=False) + eps)
            shifts.append(torch.maximum(r, 1 / r).mean())
            h = (h - norm.running_mean[k]) / torch.sqrt(norm.running_var[k] + eps)
            h = torch.relu(h * norm.weight[k] + norm.bias[k]).detach()
        for layer, want in enumerate(shifts):
            assert got[layer][k].item() == pytest.approx(want.item(), rel=1e-5)
    with torch.no_grad():  # running statistics equal to inference's: no shift
        h = x @ model.weights[0] + model.biases[0].unsqueeze(1)
        model.norms[0].running_var.copy_(h.var(1, unbiased=False))
    torch.testing.assert_close(variance_shift(model, x)[0], torch.ones(2))


def test_dropout_before_bn_shifts_the_variance_on_real_mnist(mnist_small):
    """Li et al. (2019): dropout feeding BN leaves running variances that inference does
    not see; after the activation (no BN downstream) it does not. Momentum 0.1 lets the
    running statistics catch up within the ~120 steps."""
    shift = {}
    fast = NormSettings(momentum=0.1)
    for pos in ("before", "after"):
        spec = MLPSpec(784, (64,), 10, norm="batch", dropout=0.5, dropout_position=pos,
                       norm_settings=fast)  # fmt: skip
        model = StackedMLP(spec, [0, 1])
        train_stack(model, Adam(), mnist_small, [0, 1], [1e-3, 1e-3], Schedule(32, 2))
        precise = copy.deepcopy(model)
        precise_statistics(precise, mnist_small.train, batch_size=32, batches=30)
        shift[pos] = variance_shift(model, mnist_small.val.x)[0]
        # precise BN (dropout off) recomputes the statistics inference sees
        assert torch.all(variance_shift(precise, mnist_small.val.x)[0] < 1.2)
    assert torch.all(shift["before"] > 1.5) and torch.all(shift["after"] < 1.3)


def test_probes_on_a_trained_stack_on_real_mnist(mnist_small):
    spec = MLPSpec(784, (64, 32), 10, norm="batch", dropout=0.1)
    model = StackedMLP(spec, [0, 1])
    opt = Adam()
    train_stack(model, opt, mnist_small, [0, 1], [3e-3, 1e-2], Schedule(64, 1))
    x, y = mnist_small.val.x[:128], mnist_small.val.y[:128]
    stats = preactivation_stats(model, x)
    assert len(stats) == 2
    for layer in stats:  # BN before the activation: batch-normalized pre-activations
        assert torch.all(layer["std"] < 3) and torch.all(layer["dead"] < 1)
    xs, ys = x.expand(2, 128, 784), y.expand(2, 128)
    state = opt.init([p.detach() for p in model.parameters()])
    ics = internal_covariate_shift(model, opt, state, xs, ys, None, Rates.of([3e-3, 1e-2]))
    smooth = smoothness(model, xs, ys, None, [3e-3, 1e-2])
    for values in (*ics.values(), *smooth.values()):
        assert torch.isfinite(values).all()
    # After ~30 steps the running statistics (momentum 0.01) are still mostly their
    # initial values: eval mode lags batch statistics until precise BN recomputes them.
    gap = discrepancy(model, mnist_small.val, batch_size=64)
    assert torch.all(gap["batch_acc"] > 0.8)
    assert torch.all(gap["running_acc"] < gap["batch_acc"])
    precise_statistics(model, mnist_small.train, batch_size=64, batches=30)
    fixed = discrepancy(model, mnist_small.val, batch_size=64)
    assert torch.all(fixed["running_acc"] > gap["running_acc"])
    assert torch.all((fixed["running_acc"] - fixed["batch_acc"]).abs() < 0.03)


def test_gradient_noise_by_hand_and_its_one_over_batch_law():
    """The estimates by hand for one member; and without BN (per-example noise) tr Σ_B
    falls as 1/B, so noise at batch 8 is about 4× that at 32 (McCandlish et al.)."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4096, 10, generator=g), torch.randint(0, 3, (4096,), generator=g)
    model = StackedMLP(MLPSpec(10, (16,), 3), [0, 1])
    out = gradient_noise(model, x, y, batch=64, batches=8)
    params = _member_params(model, 1)
    grads = []
    for i in range(8):
        rows = slice(i * 64, (i + 1) * 64)
        loss = F.cross_entropy(_plain_forward(params, x[rows]), y[rows])
        grads.append(torch.cat([t.flatten() for t in torch.autograd.grad(loss, params)]))
    stacked = torch.stack(grads)
    trace = ((stacked - stacked.mean(0)) ** 2).sum(1).mean() * 8 / 7
    signal = stacked.mean(0).pow(2).sum() - trace / 8
    assert signal > 0
    torch.testing.assert_close(out["trace"][1], trace, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(out["noise"][1], trace / signal, rtol=1e-3, atol=1e-6)
    losses = [F.cross_entropy(_plain_forward(params, x[i * 64 : (i + 1) * 64]),
                              y[i * 64 : (i + 1) * 64]) for i in range(8)]  # fmt: skip
    torch.testing.assert_close(out["loss"][1], torch.stack(losses).mean(), rtol=1e-5, atol=1e-6)
    small, large = (gradient_noise(model, x, y, b, batches=4096 // b)["trace"] for b in (8, 32))
    assert torch.all((small / large - 4).abs() < 0.6), small / large
    norm = StackedMLP(MLPSpec(10, (16,), 3, norm="batch"), [0])
    before = norm.norms[0].running_mean.clone()
    gradient_noise(norm, x, y, batch=8)
    assert torch.equal(norm.norms[0].running_mean, before)  # running statistics untouched


class ParameterCountProbe:
    """An instrument declared in a test: each member's parameter count, once trained."""

    name = "parameters"
    when = When.END

    def measure(self, context: ProbeContext):
        count = sum(p[0].numel() for p in context.model.parameters())
        yield Measurement(WHOLE, "count", torch.full((context.model.k,), float(count)))


def test_a_probe_declared_once_is_recorded_by_a_real_study(monkeypatch, data_root, tmp_path):
    """A new instrument is its class and one registry entry: a study lists it, trains on
    the real MNIST and the store holds its rows (784·16 + 16 + 16·10 + 10 parameters)."""
    kind = ProbeKind("parameters", f"{__name__}:ParameterCountProbe")
    monkeypatch.setitem(PROBES._entries, kind.name, kind)
    spec = StudySpec(name="counted", seeds=2, fixed={
        "hidden": [16], "epochs": 1, "inputs": "scaled", "val_size": 1000,
        "probes": ["parameters"]})  # fmt: skip
    report = run_study(spec, db=tmp_path / "p.db", data_dir=data_root)
    assert report.trained == 2
    last = (60000 - 1000) // 32
    with Store(tmp_path / "p.db") as store:
        rows = store.probes("counted")
    assert list(rows.values()) == [[ProbeRow(last, "parameters", WHOLE, "count", 12730.0)]] * 2
