"""Each dataset's facts, where its files come from and what their content must hash to.

Digests are SHA-256 of the *decompressed* IDX content, so a gzip file and its raw
counterpart verify alike. Everything that depends on a dataset's size or shape (input
width, classes, steps per epoch, stack sizes) reads it from here.

MNIST itself ships inside normlab (``EMBEDDED``, 11 MB; CC BY-SA 3.0, see the NOTICE
there), so that the main job runs offline on a fresh machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from normlab.registry import Registry

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
EMBEDDED = Path(__file__).parent / "mnist"  # the MNIST files normlab ships


@dataclass(frozen=True)
class DatasetSource:
    """One dataset: its facts (image shape as channels × height × width, classes, train
    and test sizes), its four IDX files with digests, download mirrors and the folders
    searched after the user's data root (``system_dirs``: a system package's, or the
    copy inside normlab); or, for a dataset ``stacked_from`` another (stacked MNIST),
    none of its own: each of its images stacks ``image_shape[0]`` of the other's as
    channels."""

    name: str
    files: dict[str, tuple[str, str]]  # role -> (IDX file name without .gz, sha256)
    mirrors: tuple[str, ...]
    system_dirs: tuple[Path, ...] = ()
    image_shape: tuple[int, int, int] = (1, 28, 28)
    classes: int = 10
    train_size: int = 60000
    test_size: int = 10000
    stacked_from: str | None = None

    @property
    def n_features(self) -> int:
        """Values per flattened image."""
        return math.prod(self.image_shape)


MNIST = DatasetSource(
    name="mnist",
    files={
        "train_images": (
            "train-images-idx3-ubyte",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        "train_labels": (
            "train-labels-idx1-ubyte",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        "test_images": (
            "t10k-images-idx3-ubyte",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        "test_labels": (
            "t10k-labels-idx1-ubyte",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    # after the user's own copies ($NORMLAB_DATA, --data-dir, the cache): normlab's
    system_dirs=(EMBEDDED,),
)

FASHION_MNIST = DatasetSource(
    name="fashion-mnist",
    files={
        "train_images": (
            "train-images-idx3-ubyte",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        "train_labels": (
            "train-labels-idx1-ubyte",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        "test_images": (
            "t10k-images-idx3-ubyte",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        "test_labels": (
            "t10k-labels-idx1-ubyte",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    # Debian's dataset-fashion-mnist package installs here.
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
)

STACKED_MNIST = DatasetSource(
    name="stacked-mnist",
    files={},
    mirrors=(),
    image_shape=(3, 28, 28),
    classes=1000,
    stacked_from="mnist",
)

DATASETS: Registry[DatasetSource] = Registry("dataset")
for _source in (MNIST, FASHION_MNIST, STACKED_MNIST):
    DATASETS.register(_source.name, _source)


def get_source(name: str) -> DatasetSource:
    """The source called ``name``, or a ValueError listing the known ones."""
    return DATASETS[name]
