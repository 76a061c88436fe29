"""Folding BN into the dense layer before it gives the same outputs."""

import pytest
import torch

from normlab.models.mlp.spec import MLPSpec
from normlab.models.mlp.stack import StackedMLP
from normlab.train.loop import Schedule, evaluate, train_stack
from normlab.train.optim import Adam


def test_folded_model_gives_the_same_outputs_on_real_mnist(mnist_small):
    spec = MLPSpec(784, (64, 32), 10, activation="tanh", norm="batch", dropout=0.1)
    model = StackedMLP(spec, [0, 1])
    train_stack(model, Adam(), mnist_small, [0, 1], [1e-3, 3e-3], Schedule(64, 1))
    assert (model.norms[0].running_var != 1).any()  # real statistics, not the initial ones
    folded = model.fold()
    assert folded.spec.norm == "none" and all(n.kind.name == "none" for n in folded.norms)
    model.eval()
    with torch.no_grad():
        want, got = model(mnist_small.test.x), folded(mnist_small.test.x)
    assert (got - want).abs().max().item() < 1e-4
    torch.testing.assert_close(
        evaluate(folded, mnist_small.test), evaluate(model, mnist_small.test)
    )
    assert model.spec.norm == "batch"  # the original is untouched


def test_only_a_foldable_norm_before_the_activation_folds():
    assert not StackedMLP(MLPSpec(4, (8,), 2, norm="layer"), [0]).can_fold()
    assert not StackedMLP(MLPSpec(4, (8,), 2), [0]).can_fold()  # nothing to fold
    after = StackedMLP(MLPSpec(4, (8,), 2, norm="batch", norm_position="after"), [0])
    with pytest.raises(ValueError, match="only a foldable norm placed before the activation"):
        after.fold()


@pytest.mark.parametrize("norm", ["batch_renorm", "ghost_batch"])
def test_bn_variants_fold_too(norm, mnist_small):
    # In eval mode batch renorm and ghost BN are BN with running statistics.
    spec = MLPSpec(784, (32,), 10, norm=norm, dropout=0.1)
    model = StackedMLP(spec, [0, 1])
    train_stack(model, Adam(), mnist_small, [0, 1], [1e-3, 3e-3], Schedule(64, 1))
    assert model.can_fold()
    folded, x = model.fold(), mnist_small.test.x
    model.eval()
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max().item() < 1e-4
