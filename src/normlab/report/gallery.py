"""Pictures of what generators drew, for the claims about GANs (13 and its part 22).

For every arm of a claim's study on every dataset, the images kept from the first seed
that finished (``probes.modes`` keeps the first images of one batch, so a grid
shows what one batch looks like: Goodfellow's 2016 tutorial figure), as one PNG tile.
Stacked MNIST's three digits are the red, green and blue channels.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence

import numpy as np

from normlab.analysis.records import RunRecord
from normlab.claims.stored import StoredClaim
from normlab.report.style import arm_name
from normlab.report.views import ImageView
from normlab.types import SampleImage

SIDE = 28  # pixels of a digit's side


def image_grid(samples: Sequence[SampleImage]) -> np.ndarray:
    """Stored images (``pixels`` bytes of ``channels`` × 28 × 28) tiled in a square grid,
    [rows·28, columns·28, 3] uint8 (one channel: grey)."""
    columns = math.ceil(math.sqrt(len(samples)))
    rows = math.ceil(len(samples) / columns)
    grid = np.zeros((rows * SIDE, columns * SIDE, 3), dtype=np.uint8)
    for i, sample in enumerate(samples):
        image = np.frombuffer(sample.pixels, dtype=np.uint8)
        image = image.reshape(sample.channels, SIDE, SIDE).transpose(1, 2, 0)
        r, c = divmod(i, columns)
        grid[r * SIDE : (r + 1) * SIDE, c * SIDE : (c + 1) * SIDE] = image  # grey broadcasts
    return grid


def png_uri(pixels: np.ndarray) -> str:
    """An RGB image [H, W, 3] uint8 as a PNG data URI."""
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    imsave(buffer, pixels, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def samples_by_arm(sc: StoredClaim) -> ImageView:
    """One tile per dataset and arm: the first finished seed's kept images."""
    tiles = []
    first: dict[tuple[str, str], RunRecord] = {}
    for run in sorted(sc.runs, key=lambda r: r.config.seed):
        key = (run.config.dataset, sc.claim.arm_of(run.config))
        if run.samples and key not in first:
            first[key] = run
    for (dataset, arm), run in first.items():
        label = f"{dataset}, {arm_name(arm)}, seed {run.config.seed}"
        tiles.append((label, png_uri(image_grid(run.samples))))
    return ImageView(
        f"samples-{sc.claim.id}",
        "Images each generator drew in one batch after training",
        tiles,
        "the first images of one batch of each arm's first seed (stacked MNIST: its three "
        "digits as red, green and blue); a BN generator's images of one batch may resemble "
        "each other: the figure's batch correlation (the mean correlation of two images "
        "of one batch minus that of two of different batches) measures it",
    )


GALLERY: dict[int, Callable[[StoredClaim], list[ImageView]]] = {
    13: lambda sc: [samples_by_arm(sc)],
    22: lambda sc: [samples_by_arm(sc)],
}
