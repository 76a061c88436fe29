import numpy as np
import pytest
import torch

from normlab.data.prepare import prepare, validation_indices


def test_validation_split_is_fixed_by_seed_and_disjoint():
    t1, v1 = validation_indices(100, 10, data_seed=3)
    _, v2 = validation_indices(100, 10, data_seed=3)
    _, v3 = validation_indices(100, 10, data_seed=4)
    np.testing.assert_array_equal(v1, v2)
    assert not np.array_equal(v1, v3)
    assert len(np.intersect1d(t1, v1)) == 0 and len(t1) + len(v1) == 100


def test_bad_val_size():
    with pytest.raises(ValueError, match="val_size"):
        validation_indices(10, 10, 0)


def test_preprocessing_modes_on_real_mnist(mnist_raw):
    raw = prepare(mnist_raw, "raw")
    scaled = prepare(mnist_raw, "scaled")
    std = prepare(mnist_raw, "standardized")
    assert raw.train.x.shape == (55000, 784) and raw.val.x.shape == (5000, 784)
    assert raw.test.x.shape == (10000, 784) and raw.n_classes == 10
    assert raw.train.x.max() == 255.0
    torch.testing.assert_close(scaled.train.x, raw.train.x / 255.0)
    assert abs(std.train.x.mean().item()) < 1e-4 and abs(std.train.x.std().item() - 1) < 1e-3
    # validation is held out of train: same images in the same order under every mode
    torch.testing.assert_close(scaled.val.x, raw.val.x / 255.0)
    assert raw.train.y.dtype == torch.int64


def test_unknown_inputs_mode(mnist_raw):
    with pytest.raises(ValueError, match="inputs must be one of raw, scaled, standardized"):
        prepare(mnist_raw, "whitened")
