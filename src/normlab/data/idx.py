"""Reading IDX files (the MNIST format), gzip-compressed or raw.

The format: two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, then one big-endian uint32 per dimension, then the data.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08


class IdxError(ValueError):
    """An IDX file that cannot be read; the message names the file and what is wrong."""


def read_bytes(path: Path) -> bytes:
    """The decompressed content of ``path`` (gunzipped when it starts with gzip's magic)."""
    raw = Path(path).read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise IdxError(f"{path}: corrupt or truncated gzip data ({err})") from err


def sha256(content: bytes) -> str:
    """Hex SHA-256 digest of ``content``."""
    return hashlib.sha256(content).hexdigest()


def parse(content: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode IDX ``content`` into an array of the declared shape.

    Raises IdxError naming ``source`` for a wrong magic number, an unsupported type,
    a truncated file or trailing bytes.
    """
    if len(content) < 4:
        raise IdxError(f"{source}: too short for an IDX header ({len(content)} bytes)")
    if content[0] != 0 or content[1] != 0:
        raise IdxError(f"{source}: wrong magic number 0x{content[:4].hex()}: not an IDX file")
    dtype_code, ndim = content[2], content[3]
    if dtype_code != _UBYTE:
        raise IdxError(f"{source}: unsupported IDX type 0x{dtype_code:02x} (only 0x08 ubyte)")
    if ndim == 0:
        raise IdxError(f"{source}: IDX header declares zero dimensions")
    header_len = 4 + 4 * ndim
    if len(content) < header_len:
        raise IdxError(f"{source}: truncated header ({len(content)} of {header_len} bytes)")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    body = len(content) - header_len
    if body < expected:
        raise IdxError(
            f"{source}: truncated: header declares shape {shape} = {expected} bytes, "
            f"file holds {body}"
        )
    if body > expected:
        raise IdxError(f"{source}: {body - expected} bytes beyond the declared shape {shape}")
    return np.frombuffer(content, dtype=np.uint8, offset=header_len).reshape(shape)


def read(path: Path, *, expected_sha256: str | None = None) -> np.ndarray:
    """Read an IDX file, verifying the decompressed content's digest when one is given."""
    content = read_bytes(path)
    if expected_sha256 is not None and sha256(content) != expected_sha256:
        raise IdxError(
            f"{path}: checksum mismatch: SHA-256 of the decompressed content is "
            f"{sha256(content)}, expected {expected_sha256}"
        )
    return parse(content, source=str(path))
