"""The GAN family (claim 13): latent noise, virtual BN, member independence, stacked
MNIST, the mode measures, and a real GAN covering every digit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from normlab.data.locate import RawDataset
from normlab.data.prepare import prepare
from normlab.models.dropout import gaussian, key_bases
from normlab.models.gan.vbn import VirtualBatchNorm
from normlab.models.norms import BatchNorm
from normlab.models.settings import NormSettings
from normlab.probes.modes import batch_correlation, coverage, judge, mode_counts, recognizable
from normlab.spec.config import RunConfig
from normlab.train.loop import Schedule, train_stack
from normlab.train.optimizers import make_optimizer

SMALL = {"hidden": (32, 64), "discriminator_hidden": (64, 32), "latent": 16}


def _gan(seeds, **settings):
    config = RunConfig(model="gan", **{**SMALL, **settings})
    return config, config.family.build(config.model_spec(), seeds)


def test_latent_noise_is_standard_normal_and_a_function_of_the_key():
    keys = key_bases([1, 2], "cpu")
    z = gaussian(keys, 100_000)
    assert z.mean(1).abs().max() < 0.02 and (z.std(1) - 1).abs().max() < 0.02
    assert abs(torch.corrcoef(z)[0, 1]) < 0.02  # members' streams are unrelated
    torch.testing.assert_close(gaussian(keys[1:], 50), z[1:, :50], rtol=0, atol=0)


def test_the_gan_family_has_its_own_defaults_and_checks():
    c = RunConfig(model="gan")
    assert (c.lr, c.beta1, c.inputs, c.dropout, c.batch_size) == (2e-4, 0.5, "symmetric", 0, 64)
    assert RunConfig().lr == 1e-3  # a classifier's defaults are the seed's
    for bad, message in [
        ({"norm": "virtual_batch"}, "only the GAN family's generator"),
        ({"latent": 8}, "latent describes a gan model"),
        ({"model": "gan", "dropout": 0.2}, "dropout: the GAN family has none"),
        ({"model": "gan", "discriminator_norm": "virtual_batch"}, "virtual BN is for the gen"),
        ({"model": "gan", "discriminator_norm": "noisy_batch"}, "noise injection is for cl"),
        ({"model": "gan", "discriminator_batch": "mixed"}, "'separate' or 'joint'"),
        ({"model": "gan", "probes": ("bn",)}, "probes: the instruments measure classifiers"),
        ({"model": "gan", "gan_samples": 100}, r"at least two batches \(2 × 64\), got 100"),
    ]:
        with pytest.raises(ValueError, match=message):
            RunConfig(**bad)


def test_virtual_bn_normalizes_each_example_apart_from_its_batch():
    settings = NormSettings(reference_batch=8)
    torch.manual_seed(0)
    reference, batch = torch.randn(2, 8, 5), torch.randn(2, 6, 5) * 3 + 1
    vbn = VirtualBatchNorm(2, 5, settings)
    out = vbn(torch.cat([reference, batch], 1))[:, 8:]
    changed = batch.clone()
    changed[:, 1:] = torch.randn(2, 5, 5) * 10  # every example but the first changes
    again = vbn(torch.cat([reference, changed], 1))[:, 8:]
    torch.testing.assert_close(out[:, 0], again[:, 0])  # the first does not notice
    # by hand: the reference batch and the example itself, together
    joint = torch.cat([reference[0], batch[0, :1]])
    want = (batch[0, 0] - joint.mean(0)) / torch.sqrt(joint.var(0, unbiased=False) + 1e-3)
    torch.testing.assert_close(out[0, 0], want, rtol=1e-4, atol=1e-5)
    bn = BatchNorm(2, 5, settings)
    assert not torch.allclose(bn(batch)[:, 0], bn(changed)[:, 0])  # BN's first does


@pytest.mark.parametrize("norm", ["batch", "virtual_batch"])
def test_a_gan_member_alone_equals_the_same_member_in_a_stack(mnist_raw, norm):
    raw = RawDataset("mnist", mnist_raw.x_train[:1600], mnist_raw.y_train[:1600],
                     mnist_raw.x_test[:200], mnist_raw.y_test[:200])  # fmt: skip
    splits = prepare(raw, "symmetric", val_size=100)
    seeds = [3, 4, 5]
    runs, models = [], []
    for members in (seeds, [seeds[1]]):
        config, model = _gan(members, norm=norm, discriminator_norm="batch")
        schedule = Schedule(config.batch_size, 2)
        runs.append(train_stack(model, make_optimizer(config), splits, members,
                                [config.lr] * len(members), schedule))  # fmt: skip
        models.append(model)
    stacked, alone = runs[0][1], runs[1][0]
    losses = [torch.tensor([loss for _, loss in r.step_losses]) for r in (stacked, alone)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-5)
    assert stacked.epochs[-1].train_acc == pytest.approx(alone.epochs[-1].train_acc, abs=1e-3)
    torch.testing.assert_close(models[0].sample(64, 32)[1], models[1].sample(64, 32)[0],
                               rtol=1e-3, atol=1e-4)  # fmt: skip
    assert runs[0][0].step_losses != stacked.step_losses  # members really differ


def _losses_of_one_gan(mnist_raw, **settings):
    raw = RawDataset("mnist", mnist_raw.x_train[:640], mnist_raw.y_train[:640],
                     mnist_raw.x_test[:100], mnist_raw.y_test[:100])  # fmt: skip
    splits = prepare(raw, "symmetric", val_size=64)
    config, model = _gan([7], **settings)
    (run,) = train_stack(model, make_optimizer(config), splits, [7], [config.lr],
                         Schedule(config.batch_size, 1))  # fmt: skip
    return torch.tensor([loss for _, loss in run.step_losses])


def test_a_joint_discriminator_batch_matters_only_to_a_norm_over_the_batch(mnist_raw):
    # Without BN the discriminator treats each image alone: one joint batch or two
    # batches give the same losses (to float rounding); with BN its statistics mix
    # real and generated images, and the losses move.
    for norm, same in (("none", True), ("batch", False)):
        apart, joint = (
            _losses_of_one_gan(mnist_raw, discriminator_norm=norm, discriminator_batch=b)
            for b in ("separate", "joint")
        )
        assert torch.allclose(apart, joint, rtol=1e-4, atol=1e-5) == same, norm


def test_stacked_mnist_stacks_three_real_digits(data_root, mnist_raw):
    from normlab.data.locate import load

    stacked = load("stacked-mnist", data_root, download=False)
    assert stacked.x_train.shape == (60000, 3, 28, 28) and stacked.x_test.shape[1] == 3
    assert len(np.unique(stacked.y_train)) == 1000
    # each channel is a real MNIST image whose digit the label spells
    for i in (0, 12345):
        digits = [int(stacked.y_train[i]) // 10 ** (2 - c) % 10 for c in range(3)]
        for c, digit in enumerate(digits):
            match = np.flatnonzero((mnist_raw.x_train == stacked.x_train[i, c]).all(axis=(1, 2)))
            assert match.size and mnist_raw.y_train[match[0]] == digit
    splits = prepare(stacked, "symmetric")
    assert splits.n_features == 2352 and splits.n_classes == 1000


def test_mode_counts_coverage_and_batch_correlation():
    digits = torch.tensor([[[1, 2, 3], [1, 2, 3], [9, 0, 0]]])
    counts = mode_counts(digits, 3)
    assert counts[0, 123] == 2 and counts[0, 900] == 1 and counts.sum() == 3
    uniform = torch.ones(1, 10) * 7
    one = torch.zeros(1, 10)
    one[0, 4] = 70
    modes, kl = coverage(torch.cat([uniform, one]))
    assert modes.tolist() == [10, 1]
    assert kl[0].item() == pytest.approx(0) and kl[1].item() == pytest.approx(math.log(10))
    torch.manual_seed(0)
    independent = torch.randn(1, 256, 50)
    shared = independent + 3 * torch.randn(1, 4, 1, 50).expand(1, 4, 64, 50).reshape(1, 256, 50)
    assert abs(batch_correlation(independent, 64).item()) < 0.01
    assert batch_correlation(shared, 64).item() > 0.5  # images of a batch share a pattern


def test_an_image_is_recognizable_when_as_near_a_real_digit_as_real_digits_are():
    torch.manual_seed(0)
    strokes = (torch.rand(300, 784) > 0.85).float()  # stand-ins for digits: sparse strokes
    pool, held_out = strokes[:200], strokes[200:]
    near = (strokes[:50] + 0.05 * torch.rand(50, 784)).clamp(0, 1)  # a real one, retouched
    blots = torch.rand(50, 784)  # a generator that never learned
    images = torch.stack([near, blots, torch.cat([near[:20], blots[:30]])])
    assert recognizable(images, pool, held_out).tolist() == pytest.approx([1.0, 0.0, 0.4])
    # stacked images: every channel must be near a real digit
    three = torch.cat([near[:10], near[10:20], blots[:10]], 1).unsqueeze(0)
    assert recognizable(three, pool.repeat(1, 3), held_out.repeat(1, 3)).item() == 0.0


def test_judging_a_gan_counts_what_the_classifier_sees():
    _, model = _gan([0, 1])
    seen = []

    def classify(images):  # digits by brightness: a stand-in judge with known answers
        seen.append(images)
        return (images.mean(1) * 10).clamp(0, 9).long()

    j = judge(model, classify, 256, 64, channels=1)
    assert seen[0].shape == (2 * 256, 784) and seen[0].min() >= 0 and seen[0].max() <= 1
    assert j.images.shape == (2, 16, 784)
    assert ((j.modes >= 1) & (j.modes <= 10)).all() and (j.kl >= 0).all()


@pytest.mark.slow
def test_a_stack_of_gans_without_bn_covers_every_digit_on_real_mnist(data_root):
    """With BN in neither network, 8 epochs (6,872 steps at batch 64) of two GANs: each
    draws all ten digits, KL to uniform below 0.1 (four such GANs judged on 2,000 images
    each measured 0.06-0.09)."""
    from normlab.experiments.runner import DataCache
    from normlab.probes.reference import reference_classifier

    config = RunConfig(model="gan", epochs=8)
    splits = DataCache(data_root, torch.device("cpu")).splits(config)
    seeds = [0, 1]
    model = config.family.build(config.model_spec(), seeds)
    train_stack(model, make_optimizer(config), splits, seeds, [config.lr] * 2,
                Schedule(config.batch_size, config.epochs, 100))  # fmt: skip
    reference = reference_classifier(data_root)
    assert reference.test_acc >= 0.99
    real = (splits.train.x[:1280], splits.val.x[:512])
    j = judge(model, reference.classify, 5000, config.batch_size, channels=1, real=real)
    assert j.modes.tolist() == [10, 10]
    assert (j.kl < 0.1).all(), j.kl
    assert (j.recognizable > 0.5).all(), j.recognizable  # they trained: not failures
    untrained = config.family.build(config.model_spec(), seeds)
    failed = judge(untrained, reference.classify, 5000, config.batch_size, 1, real)
    # An untrained generator's blots all land on one digit: KL log 10, as a total
    # collapse's, but none of them is near a real digit.
    assert failed.recognizable.tolist() == [0.0, 0.0]
    assert failed.kl.tolist() == pytest.approx([math.log(10)] * 2)
