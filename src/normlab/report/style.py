"""Colours and names a reader sees: one colour per arm on every figure of a page, and
the words for arms and verdicts."""

from __future__ import annotations

# The arms normlab compares most, fixed so that BN is the same red in every report.
_FIXED = {
    "none": "#1f77b4",
    "batch": "#d62728",
    "group": "#2ca02c",
    "layer": "#9467bd",
    "batch_renorm": "#ff7f0e",
    "ghost_batch": "#8c564b",
    "before": "#d62728",
    "after": "#1f77b4",
    "BN": "#d62728",
    "BN folded": "#2ca02c",
}
_PALETTE = (
    "#17becf",
    "#bcbd22",
    "#e377c2",
    "#7f7f7f",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#7b4173",
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#d62728",
)
VERDICT_COLORS = {"supported": "#1a7f37", "refuted": "#cf222e", "inconclusive": "#9a6700"}
_NAMES = {
    "none": "no norm",
    "batch": "BN",
    "group": "GroupNorm",
    "layer": "LayerNorm",
    "batch_renorm": "batch renorm",
    "ghost_batch": "ghost BN",
    "virtual_batch": "virtual BN",
}


def arm_name(value: object) -> str:
    """How a legend names an arm value (``batch`` is "BN")."""
    return _NAMES.get(str(value), str(value))


class Colors:
    """A colour per arm key, the same for every figure that asks: the fixed ones for
    known arms, then the palette in the order keys are first asked for (colours no key
    of the page has yet first, those no fixed arm owns before those one does)."""

    def __init__(self) -> None:
        self._given: dict[str, str] = {}

    def __call__(self, key: object) -> str:
        key = str(key)
        if key not in self._given:
            given = set(self._given.values())
            unused = [c for c in _PALETTE if c not in given] or list(_PALETTE)
            free = [c for c in unused if c not in _FIXED.values()] or unused
            self._given[key] = _FIXED.get(key, free[0])
        return self._given[key]


def shade(color: str, i: int, n: int) -> str:
    """The ``i``-th of ``n`` shades of ``color``, from darker to lighter (same hue), so
    that configurations of one arm stay recognisably that arm."""
    if n <= 1:
        return color
    t = -0.35 + 0.7 * i / (n - 1)  # -0.35 darkens, +0.35 lightens
    r, g, b = (int(color[k : k + 2], 16) for k in (1, 3, 5))
    mix = [(c + (255 - c) * t) if t > 0 else c * (1 + t) for c in (r, g, b)]
    return "#" + "".join(f"{round(c):02x}" for c in mix)


def rgba(color: str, alpha: float) -> str:
    """``#rrggbb`` as a CSS rgba() with ``alpha``."""
    r, g, b = (int(color[k : k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"
