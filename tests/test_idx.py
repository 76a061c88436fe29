import gzip

import numpy as np
import pytest

from normlab.data import idx
from normlab.data.locate import load
from normlab.data.sources import MNIST, DatasetSource


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parse_roundtrip_raw_and_gzip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(a))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(a)))
    for name in ("a", "a.gz"):
        np.testing.assert_array_equal(idx.read(tmp_path / name), a)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x1f\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc", "wrong magic number"),
        (b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc", "unsupported IDX type"),
        (b"\x00\x00\x08\x02" + (3).to_bytes(4, "big"), "truncated header"),
        (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc", "truncated"),
        (b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"abc", "beyond the declared shape"),
        (b"\x00\x00", "too short"),
    ],
)
def test_parse_errors_name_the_file_and_the_problem(content, message):
    with pytest.raises(idx.IdxError, match=message) as info:
        idx.parse(content, source="some/file")
    assert str(info.value).startswith("some/file: ")
    assert "\n" not in str(info.value)


def test_truncated_gzip_is_reported(tmp_path):
    data = gzip.compress(idx_bytes(np.zeros((100, 10))))
    (tmp_path / "x.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(idx.IdxError, match="corrupt or truncated gzip"):
        idx.read(tmp_path / "x.gz")


def test_checksum_mismatch_is_reported(tmp_path):
    (tmp_path / "x").write_bytes(idx_bytes(np.zeros(3)))
    with pytest.raises(idx.IdxError, match="checksum mismatch"):
        idx.read(tmp_path / "x", expected_sha256="0" * 64)


def synthetic_source(tmp_path, n_train_images: int, n_train_labels: int) -> DatasetSource:
    arrays = {
        "train_images": np.zeros((n_train_images, 28, 28)),
        "train_labels": np.zeros(n_train_labels),
        "test_images": np.zeros((2, 28, 28)),
        "test_labels": np.zeros(2),
    }
    files = {}
    (tmp_path / "synthetic").mkdir()
    for role, a in arrays.items():
        content = idx_bytes(a)
        (tmp_path / "synthetic" / role).write_bytes(content)
        files[role] = (role, idx.sha256(content))
    return DatasetSource("synthetic", files, mirrors=())


def test_count_mismatch_between_images_and_labels(tmp_path):
    source = synthetic_source(tmp_path, 3, 2)
    with pytest.raises(idx.IdxError, match="counts must match"):
        load(source, tmp_path, download=False)


def test_missing_file_without_download(tmp_path):
    source = synthetic_source(tmp_path, 2, 2)
    (tmp_path / "synthetic" / "test_labels").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_labels.*downloading is off"):
        load(source, tmp_path, download=False)


def test_real_mnist_digests_shapes_and_labels(mnist_raw):
    assert mnist_raw.x_train.shape == (60000, 28, 28)
    assert mnist_raw.x_test.shape == (10000, 28, 28)
    assert set(np.unique(mnist_raw.y_train)) == set(range(10))
    assert mnist_raw.x_train.max() == 255
    assert len(MNIST.files) == 4


def test_real_fashion_mnist_from_debian_path(tmp_path, debian_fashion):
    raw = load("fashion-mnist", tmp_path, download=False)  # empty root: found at Debian's path
    assert raw.x_train.shape == (60000, 28, 28)
    assert raw.y_test.shape == (10000,)
    assert set(np.unique(raw.y_train)) == set(range(10))
