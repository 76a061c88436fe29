"""Finding a dataset's files on disk, downloading what is missing, and reading them.

Search order for each file: the data root (``data_dir``, else ``$NORMLAB_DATA``, else
the user cache dir) under a folder named after the dataset, then the dataset's
system folders (Debian's package for Fashion-MNIST, the copy shipped inside normlab
for MNIST); if none has it, it is downloaded into the data root. Every copy, wherever
found, is checked against its SHA-256 as it is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from normlab.data import idx
from normlab.data.download import DownloadError, download_file
from normlab.data.sources import ROLES, DatasetSource, get_source
from normlab.data.stacked import stack_digits

ENV_DATA = "NORMLAB_DATA"
ENV_MIRRORS = "NORMLAB_MIRRORS"


@dataclass(frozen=True)
class RawDataset:
    """A dataset as stored: uint8 images [N, 28, 28] (stacked: [N, C, 28, 28]) and
    integer labels [N]."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def data_root(data_dir: Path | str | None = None) -> Path:
    """The folder that holds one sub-folder per dataset."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if env := os.environ.get(ENV_DATA):
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("normlab")) / "data"


def find_file(source: DatasetSource, role: str, root: Path) -> Path | None:
    """The first existing copy (gzip or raw) of ``role``'s file, or None."""
    file_name = source.files[role][0]
    for folder in (root / source.name, *source.system_dirs):
        for candidate in (folder / f"{file_name}.gz", folder / file_name):
            if candidate.is_file():
                return candidate
    return None


def _mirrors(source: DatasetSource) -> tuple[str, ...]:
    env = os.environ.get(ENV_MIRRORS)
    return tuple(m for m in env.split(",") if m) if env else source.mirrors


def load(
    dataset: str | DatasetSource = "mnist",
    data_dir: Path | str | None = None,
    *,
    download: bool = True,
    log: Callable[[str], None] | None = None,
    **download_options: float,
) -> RawDataset:
    """Load a dataset (by name, or a custom source), verifying every file's SHA-256 and
    that images and labels pair up."""
    source = get_source(dataset) if isinstance(dataset, str) else dataset
    name = source.name
    if source.stacked_from:
        base = load(source.stacked_from, data_dir, download=download, log=log, **download_options)
        arrays = (base.x_train, base.y_train, base.x_test, base.y_test)
        return RawDataset(name, *stack_digits(arrays, source.image_shape[0]))
    root = data_root(data_dir)
    arrays: dict[str, np.ndarray] = {}
    for role in ROLES:
        file_name, digest = source.files[role]
        path = find_file(source, role, root)
        if path is None:
            if not download:
                raise FileNotFoundError(
                    f"{name}: {file_name}(.gz) not found in {root / source.name} and "
                    "downloading is off"
                )
            try:
                path = download_file(file_name, digest, root / source.name, _mirrors(source),
                                     log=log, **download_options)  # fmt: skip
            except DownloadError as err:
                raise DownloadError(
                    f"{name}: {err}. Without a network, copy the four files into "
                    f"{root / source.name} (or point --data-dir / ${ENV_DATA} at a folder "
                    f"holding {source.name}/)"
                ) from None
        arrays[role] = idx.read(path, expected_sha256=digest)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise idx.IdxError(
                f"{name}: {split} images have shape {images.shape} but labels {labels.shape}: "
                "counts must match"
            )
    return RawDataset(
        name=name,
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
    )
