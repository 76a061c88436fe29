"""Fetching dataset files from mirrors: retries, checksum, atomic rename into the cache."""

from __future__ import annotations

import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from http.client import HTTPException
from pathlib import Path

from normlab.data import idx


class DownloadError(RuntimeError):
    """Every mirror failed; the message lists why for each attempt."""


def download_file(
    file_name: str,
    expected_sha256: str,
    dest_dir: Path,
    mirrors: Sequence[str],
    *,
    retries: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download ``file_name + '.gz'`` from the first mirror that serves the right content.

    Each mirror is tried ``retries`` times with exponential backoff. The bytes go to a
    temporary file beside the destination and are renamed into place only after the
    decompressed content matches ``expected_sha256``, so the cache never holds a
    partial or corrupt file under the real name.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / f"{file_name}.gz"
    failures: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{file_name}.gz"
        problems: list[str] = []
        for attempt in range(retries):
            if attempt:
                time.sleep(backoff_s * 2 ** (attempt - 1))
            if log:
                log(f"downloading {url} (attempt {attempt + 1}/{retries})")
            problem = _fetch_verified(url, expected_sha256, final, timeout_s)
            if problem is None:
                return final
            problems.append(problem)
        failures.append(_summary(url, problems))
    raise DownloadError(
        f"could not download {file_name}: " + "; ".join(failures or ["no mirrors configured"])
    )


def _summary(url: str, problems: list[str]) -> str:
    """One mirror's failed attempts in a few words: the same reason is said once."""
    distinct = list(dict.fromkeys(problems))
    times = f" ({len(problems)} attempts)" if len(problems) > 1 else ""
    return f"{url}: {', then '.join(distinct)}{times}"


def _fetch_verified(url: str, expected_sha256: str, final: Path, timeout_s: float) -> str | None:
    """Fetch ``url`` into ``final`` atomically; return None on success, else the reason."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    tmp = Path(tmp_name)
    try:
        received = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
            declared = resp.headers.get("Content-Length")
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                received += len(chunk)
        if declared is not None and received != int(declared):
            return f"incomplete: received {received} of {declared} bytes"
        try:
            content = idx.read_bytes(tmp)
        except idx.IdxError:
            return "corrupt or truncated gzip data"
        digest = idx.sha256(content)
        if digest != expected_sha256:
            return f"checksum mismatch (got {digest[:12]}…, expected {expected_sha256[:12]}…)"
        os.replace(tmp, final)
        return None
    except (urllib.error.URLError, HTTPException, OSError) as err:
        return f"{type(err).__name__}: {err}"
    finally:
        tmp.unlink(missing_ok=True)
