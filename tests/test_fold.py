"""Folding BN into the dense layer before it gives the same outputs."""

import pytest
import torch

from normlab.models.fold import can_fold, fold_batchnorm
from normlab.models.stack import MLPSpec, StackedMLP
from normlab.train.loop import evaluate, train_stack
from normlab.train.optim import Adam


def test_folded_model_gives_the_same_outputs_on_real_mnist(mnist_small):
    spec = MLPSpec(784, (64, 32), 10, activation="tanh", norm="batch", dropout=0.1)
    model = StackedMLP(spec, [0, 1])
    train_stack(model, Adam(), mnist_small, seeds=[0, 1], lrs=[1e-3, 3e-3], batch_size=64,
                epochs=1)  # fmt: skip
    assert (model.norms[0].running_var != 1).any()  # real statistics, not the initial ones
    folded = fold_batchnorm(model)
    assert folded.spec.norm == "none" and not any(
        isinstance(n, type(model.norms[0])) for n in folded.norms
    )
    model.eval()
    with torch.no_grad():
        want, got = model(mnist_small.test.x), folded(mnist_small.test.x)
    assert (got - want).abs().max().item() < 1e-4
    torch.testing.assert_close(
        evaluate(folded, mnist_small.test), evaluate(model, mnist_small.test)
    )
    assert model.spec.norm == "batch"  # the original is untouched


def test_only_bn_before_the_activation_folds():
    assert not can_fold(StackedMLP(MLPSpec(4, (8,), 2, norm="layer"), [0]))
    after = StackedMLP(MLPSpec(4, (8,), 2, norm="batch", norm_position="after"), [0])
    with pytest.raises(ValueError, match="only BN placed before the activation"):
        fold_batchnorm(after)
