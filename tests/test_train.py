"""The stacked loop: independence of members, agreement with a plain PyTorch loop,
divergence handling and determinism; on synthetic data and on real MNIST."""

import itertools
import math

import pytest
import torch
from torch import nn

from normlab.data.prepare import Split, Splits
from normlab.models.mlp.spec import MLPSpec
from normlab.models.mlp.stack import StackedMLP
from normlab.models.settings import NormSettings
from normlab.seeding import derive_seed
from normlab.train.loop import EvalHook, Schedule, evaluate, train_stack
from normlab.train.optim import SGD, Adam

TORCH_BN = NormSettings(eps=1e-5, momentum=0.1, unbiased_running_var=True)


def synthetic_splits(n=512, d=12, classes=3, seed=0) -> Splits:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, :classes] * torch.arange(1, classes + 1)).argmax(1)
    cut = n // 4
    return Splits(
        Split(x[2 * cut :], y[2 * cut :]),
        Split(x[:cut], y[:cut]),
        Split(x[cut : 2 * cut], y[cut : 2 * cut]),
        "raw",
        classes,
    )


def _train(spec, splits, seeds, lrs, optimizer=None, epochs=2, batch=16):
    model = StackedMLP(spec, seeds)
    results = train_stack(model, optimizer or Adam(), splits, seeds, lrs, Schedule(batch, epochs))
    return model, results


def _losses(result):
    return torch.tensor([loss for _, loss in result.step_losses])


@pytest.mark.parametrize(
    "norm", ["none", "batch", "ghost_batch", "batch_renorm", "group", "noisy_batch"]
)
def test_member_alone_equals_member_in_stack_of_8(norm):
    spec = MLPSpec(
        12,
        (32, 16),
        3,
        norm=norm,
        dropout=0.2,
        norm_settings=NormSettings(groups=4, ghost_batch_size=8),
    )
    splits = synthetic_splits()
    seeds, lrs = list(range(8)), [1e-3 * (1 + m % 3) for m in range(8)]
    _, stacked = _train(spec, splits, seeds, lrs)
    _, alone = _train(spec, splits, [seeds[5]], [lrs[5]])
    torch.testing.assert_close(_losses(stacked[5]), _losses(alone[0]), rtol=1e-5, atol=1e-6)
    assert stacked[5].epochs[-1].test_acc == pytest.approx(alone[0].epochs[-1].test_acc)
    assert not torch.equal(_losses(stacked[4]), _losses(stacked[5]))


def test_member_alone_equals_member_in_stack_on_real_mnist(mnist_small):
    spec = MLPSpec(784, (128,), 10, norm="batch", dropout=0.2)
    seeds = [10, 11, 12, 13, 14, 15, 16, 17]
    _, stacked = _train(spec, mnist_small, seeds, [1e-3] * 8, epochs=1, batch=32)
    _, alone = _train(spec, mnist_small, [13], [1e-3], epochs=1, batch=32)
    torch.testing.assert_close(_losses(stacked[3]), _losses(alone[0]), rtol=1e-4, atol=1e-5)
    assert stacked[3].epochs[0].val_acc == pytest.approx(alone[0].epochs[0].val_acc, abs=2e-3)
    assert alone[0].epochs[0].val_acc > 0.8  # it really learns MNIST


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_stacked_training_matches_plain_pytorch_loop(optimizer, mnist_small):
    """One member of the stack vs nn.Sequential + torch.optim on the same batches."""
    seed, lr, batch = 4, (1e-3 if optimizer == "adam" else 0.05), 64
    spec = MLPSpec(784, (64,), 10, norm="batch", norm_settings=TORCH_BN, init="torch_default")
    stacked_opt = Adam() if optimizer == "adam" else SGD(momentum=0.9, nesterov=True)
    model, results = _train(spec, mnist_small, [seed], [lr], stacked_opt, epochs=2, batch=batch)

    fresh = StackedMLP(spec, [seed])
    ref = nn.Sequential(nn.Linear(784, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
    with torch.no_grad():
        for layer, i in ((ref[0], 0), (ref[3], 1)):
            layer.weight.copy_(fresh.weights[i][0].T)
            layer.bias.copy_(fresh.biases[i][0])
    opt = (
        torch.optim.Adam(ref.parameters(), lr=lr)
        if optimizer == "adam"
        else torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9, nesterov=True)
    )
    order = torch.Generator().manual_seed(derive_seed(seed, "data_order", 0))
    x, y = mnist_small.train.x, mnist_small.train.y
    losses = []
    for _ in range(2):
        perm = torch.randperm(len(y), generator=order)
        for i in range(len(y) // batch):
            idx = perm[i * batch : (i + 1) * batch]
            loss = nn.functional.cross_entropy(ref(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    torch.testing.assert_close(_losses(results[0]), torch.tensor(losses), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.weights[1][0], ref[3].weight.detach().T, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        model.norms[0].running_var[0], ref[1].running_var, rtol=1e-4, atol=1e-5
    )


def test_diverging_member_is_recorded_and_frozen_others_unaffected():
    spec = MLPSpec(12, (32,), 3)
    splits = synthetic_splits()
    model, results = _train(
        spec, splits, [0, 1, 2], [0.01, 1e12, 0.01], SGD(momentum=0.9), epochs=3
    )
    bad = results[1]
    assert bad.diverged and bad.diverged_step is not None
    assert all(math.isfinite(loss) for s, loss in bad.step_losses if s < bad.diverged_step)
    assert bad.step_losses[-1][0] == bad.diverged_step
    # its epochs stop with the one it diverged in (16 steps each); the others go on
    assert len(bad.epochs) == (bad.diverged_step - 1) // 16 + 1 < 3
    assert not results[0].diverged and len(results[0].epochs) == 3
    assert all(torch.isfinite(w[1]).all() for w in model.weights)  # frozen before NaN
    _, without = _train(spec, splits, [0, 2], [0.01, 0.01], SGD(momentum=0.9), epochs=3)
    torch.testing.assert_close(_losses(results[2]), _losses(without[1]))


def test_same_study_twice_gives_identical_numbers(mnist_small):
    spec = MLPSpec(784, (64,), 10, norm="batch", dropout=0.2)
    runs = [
        _train(spec, mnist_small, [1, 2], [1e-3, 2e-3], epochs=1, batch=50)[1] for _ in range(2)
    ]
    for a, b in zip(*runs, strict=True):
        assert a.step_losses == b.step_losses
        assert [(e.val_loss, e.test_acc) for e in a.epochs] == [
            (e.val_loss, e.test_acc) for e in b.epochs
        ]


def test_evaluate_counts_correctly_over_several_chunks():
    spec = MLPSpec(12, (8,), 3, norm="batch")
    model = StackedMLP(spec, [0, 1])
    with torch.no_grad():
        model.norms[0].running_mean.normal_()
    split = synthetic_splits(n=10000).train  # 5,000 examples: five evaluation chunks
    loss, acc = evaluate(model, split)
    assert model.training  # the mode is restored
    model.eval()
    for k in range(2):
        logits = model(split.x.expand(2, -1, -1))[k]  # each member on every example, at once
        want_loss = nn.functional.cross_entropy(logits, split.y).item()
        assert loss[k].item() == pytest.approx(want_loss, rel=1e-5)
        want_acc = (logits.argmax(-1) == split.y).double().mean().item()
        assert acc[k].item() == pytest.approx(want_acc, abs=2 / len(split))  # a near tie
    assert loss[0] != loss[1]


def test_batch_larger_than_data_is_an_error():
    with pytest.raises(ValueError, match="exceeds the 256 training examples"):
        _train(MLPSpec(12, (8,), 3), synthetic_splits(), [0], [1e-3], batch=1000)


def _on_cuda(splits: Splits) -> Splits:
    return Splits(
        *(Split(s.x.cuda(), s.y.cuda()) for s in (splits.train, splits.val, splits.test)),
        splits.inputs,
        splits.n_classes,
    )


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


@needs_cuda
@pytest.mark.parametrize("norm", ["none", "batch", "ghost_batch", "noisy_batch"])
def test_cuda_graph_matches_cpu(norm):
    # Same seeds give the same data order and dropout masks on both devices, so the
    # losses differ only by float rounding. Batch renorm is left out: its shift d depends
    # on the pre-norm bias, whose gradient is rounding noise that Adam scales up to full
    # steps, so a 1e-7 change of the initial weights moves its losses by 4e-3 within 32
    # steps on one device already (the SGD test below covers its graph).
    spec = MLPSpec(12, (32, 16), 3, norm=norm, dropout=0.2)
    cpu = synthetic_splits()
    runs = []
    for splits, device in ((cpu, "cpu"), (_on_cuda(cpu), "cuda")):
        model = StackedMLP(spec, [0, 1]).to(device)
        runs.append(train_stack(model, Adam(), splits, [0, 1], [1e-3, 3e-3], Schedule(16, 2)))
    for r_cpu, r_gpu in zip(*runs, strict=True):
        assert [s for s, _ in r_gpu.step_losses] == list(range(1, 33))
        torch.testing.assert_close(
            [loss for _, loss in r_gpu.step_losses],
            [loss for _, loss in r_cpu.step_losses],
            rtol=1e-4,
            atol=1e-5,
        )
        for e_gpu, e_cpu in zip(r_gpu.epochs, r_cpu.epochs, strict=True):
            # Eval uses running statistics still near their start, which magnify rounding.
            torch.testing.assert_close(e_gpu.test_loss, e_cpu.test_loss, rtol=1e-2, atol=1e-5)
            torch.testing.assert_close(e_gpu.train_acc, e_cpu.train_acc)


@needs_cuda
@pytest.mark.parametrize("norm", ["none", "batch", "batch_renorm"])
def test_cuda_graph_matches_eager_and_freezes_diverged_members(norm):
    spec = MLPSpec(12, (32,), 3, norm=norm, dropout=0.2)
    splits = _on_cuda(synthetic_splits())
    runs = []
    for graph in (True, False):
        model = StackedMLP(spec, [0, 1]).cuda()
        runs.append(
            train_stack(
                model,
                SGD(momentum=0.9),
                splits,
                [0, 1],
                [0.05, 1e6],
                Schedule(16, 2, log_every=3),
                cuda_graph=graph,
            )
        )
    (g_ok, g_bad), (e_ok, e_bad) = runs
    assert g_bad.diverged and g_bad.diverged_step == e_bad.diverged_step
    assert not g_ok.diverged
    assert [s for s, _ in g_ok.step_losses] == list(range(3, 33, 3))
    torch.testing.assert_close(g_ok.step_losses, e_ok.step_losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_ok.epochs[-1].test_loss, e_ok.epochs[-1].test_loss)


def test_probes_and_mid_epoch_evaluation_leave_training_unchanged():
    from normlab.probes.schedule import ProbeSet

    spec = MLPSpec(12, (16, 8), 3, norm="batch", dropout=0.2)
    splits = synthetic_splits()
    _, plain = _train(spec, splits, [0, 1], [1e-3, 1e-2], epochs=2)
    names = ("layers", "activations", "ics", "smoothness", "bn")
    probes = ProbeSet(names, 5, splits.val, 16, splits.train)
    model = StackedMLP(spec, [0, 1])
    probed = train_stack(model, Adam(), splits, [0, 1], [1e-3, 1e-2], Schedule(16, 2),
                         [probes, EvalHook(4)])  # fmt: skip
    for a, b in zip(plain, probed, strict=True):
        assert a.step_losses == b.step_losses
        assert [e.test_acc for e in a.epochs] == [e.test_acc for e in b.epochs]
    rows = probed[0].probes
    assert {r[0] for r in rows} == {1, *range(5, 33, 5), 32}  # the first, every 5th, the last
    assert {r[1] for r in rows} == {"layers", "activations", "ics", "smoothness", "bn"}
    assert all(math.isfinite(r[4]) for r in rows)
    assert {r[3] for r in rows if r[1] == "bn"} == {
        "batch_loss", "batch_acc", "running_loss", "running_acc", "precise_loss", "precise_acc",
        "variance_shift",
    }  # fmt: skip
    evals = probed[1].evals
    assert [e[0] for e in evals] == list(range(4, 33, 4))
    assert [e[1] for e in evals][:2] == [0.25, 0.5]
    assert all(b[2] > a[2] for a, b in itertools.pairwise(evals))  # time only grows


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_frozen_gain_and_shift_stay_while_learned_ones_move(activation):
    """``norm_affine=False`` keeps γ at its initial gain and β at 0 through training (no
    optimizer sees them); learned ones start at the gain and move. Both paths: ReLU's
    fused CPU kernel and PyTorch's ops (tanh)."""
    splits = synthetic_splits()
    for affine in (False, True):
        settings = NormSettings(affine=affine, gain=0.5)
        spec = MLPSpec(
            12, (32,), 3, activation=activation, norm="batch", dropout=0.2, norm_settings=settings
        )
        model, results = _train(spec, splits, [0, 1], [1e-2, 1e-2])
        norm = model.norms[0]
        assert [n for n, _ in norm.named_parameters()] == (["weight", "bias"] if affine else [])
        if affine:
            assert not torch.allclose(norm.weight, torch.full_like(norm.weight, 0.5))
        else:
            assert torch.equal(norm.weight, torch.full_like(norm.weight, 0.5))
            assert torch.equal(norm.bias, torch.zeros_like(norm.bias))
        assert results[0].epochs[-1].val_acc > 0.6
