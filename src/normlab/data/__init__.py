"""Datasets: IDX files, download with checksums, preprocessing and splits.

Knows nothing of training. Everything here returns NumPy arrays or tensors.
"""

from normlab import runtime as _runtime  # noqa: F401  (flush denormals before any torch op)
