"""Process-wide torch settings and a description of the machine a run used.

Nothing here acts on import. Every entry point (the command line, ``run_study`` and
``judge_claims``, the benchmark, the tests) calls ``configure`` before it trains: it
flushes denormal floats to zero and sets the thread count. With raw 0-255 pixels the
softmax gradients underflow into denormals, and unflushed arithmetic on them ran
~200x slower here; flushing also changes results in the last digits, so a run is only
reproducible with the same setting. TensorFlow flushes by default, so flushing is also
the Keras-faithful choice. (With torch 2.13 a late ``configure`` still reaches the
worker threads of a pool that already started; calling it first costs nothing.)
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

import numpy as np
import torch

import normlab


def configure(threads: int | None = None) -> int:
    """Flush denormals to zero, keep large allocations in the heap (``keep_heap``) and
    use ``threads`` threads (all cores when None); return the thread count in force.
    Idempotent: entry points call it before training."""
    torch.set_flush_denormal(True)
    keep_heap()
    return set_threads(threads)


def keep_heap() -> bool:
    """Make glibc's malloc serve large blocks from its heap and keep freed memory there.

    By default glibc maps every block over 32 MB freshly from the kernel and unmaps it on
    free, so each of a stack's large activations (a CNN stack's feature maps run to
    hundreds of MB) costs page faults on first touch, every step: allocating a 205 MB
    tensor took 48 ms against 14 ms to zero an existing one here, and a CNN stack of 8
    trained 1.6x faster with this setting (BENCHMARKS.md). The price is that the process
    keeps its peak memory until it exits, as PyTorch's own GPU allocator does. A no-op
    (False) where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def set_threads(threads: int | None) -> int:
    """Use ``threads`` threads (all cores when None) in PyTorch and in normlab's fused
    kernels; return the count in force."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
        from normlab.models import fused  # here, so that Numba loads only when needed

        fused.set_threads(threads)
    return torch.get_num_threads()


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device``; a no-op on a CPU. Timings of GPU work
    taken without it measure only the queueing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_device(name: str) -> torch.device:
    """Turn 'cpu', 'cuda', 'cuda:N' or 'auto' into a device, failing clearly if unavailable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but torch sees no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}: use cpu, cuda, cuda:N or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device {name!r} requested but torch sees only {torch.cuda.device_count()} CUDA GPU(s)"
        )
    return device


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, object]:
    """Versions, device and threads: what a result depends on besides its config."""
    env: dict[str, object] = {
        "normlab": normlab.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "flush_denormal": True,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env
