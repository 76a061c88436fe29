"""Process-wide torch settings and a description of the machine a run used.

Importing this module flushes denormal floats to zero. With raw 0-255 pixels the
softmax gradients underflow into denormals, and unflushed arithmetic on them ran
~200x slower here. The flag is per thread and torch's worker threads copy it when
the pool starts, so it must be set before the first parallel op: every normlab
subpackage that touches torch imports this module first. TensorFlow flushes by
default, so flushing is also the Keras-faithful choice.
"""

from __future__ import annotations

import os
import platform
import sys

import numpy as np
import torch

import normlab

torch.set_flush_denormal(True)


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
