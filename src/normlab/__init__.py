"""normlab: rigorous, fast experiments on normalization layers and batch size.

The package is importable without torch being loaded: ``normlab.cli`` imports the
heavy subpackages lazily so that ``normlab --help`` answers at once.
"""

__version__ = "0.1.0"
