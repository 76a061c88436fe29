"""Views: what a report shows, as plain rows and series, before any rendering.

The analysis layer answers questions (summaries, verdicts); a view lays the answer out
(table cells already formatted, figure series already downsampled). The terminal
(``report.console``), the HTML page (``report.html``) and the static figures
(``report.assets``) all render these same objects, so they cannot disagree. No torch,
no plotting library: a view is data.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cell:
    """One table cell: the text every renderer shows, the value a sort uses (default the
    text) and a style key (e.g. a verdict) the renderer may colour."""

    text: str
    sort: float | str | None = None
    style: str = ""


@dataclass(frozen=True)
class TableView:
    """A table: column names, which of them are numeric (right-aligned), and rows."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]]
    numeric: frozenset[str] = frozenset()
    caption: str = ""


@dataclass(frozen=True)
class Trace:
    """One series of a panel. ``band`` (low, high) draws a shaded range around the line;
    ``error`` a symmetric error bar per point; ``hover`` one tooltip per point, or one
    text for all (a run's line) after which each point shows its own value. Traces
    sharing a ``group`` show and hide together from one legend entry (the first of the
    group that has ``legend``)."""

    name: str
    x: list[float | str]
    y: list[float]
    color: str
    group: str = ""
    mode: str = "lines"  # lines, markers, lines+markers or bar
    band: tuple[list[float], list[float]] | None = None
    error: list[float] | None = None
    hover: list[str] | str | None = None
    legend: bool = True
    width: float = 2.0  # of the line
    size: float = 6.0  # of the markers
    opacity: float = 1.0
    dash: str = "solid"  # solid, dot or dash
    symbol: str = "circle"  # circle or x


@dataclass(frozen=True)
class Axis:
    title: str
    log: bool = False
    categories: list[str] | None = None  # a categorical axis, in this order
    ticks: list[float] | None = None  # where to label a numeric axis (default: automatic)


@dataclass(frozen=True)
class Mark:
    """A reference line across a panel: ``axis`` "x" (vertical) or "y" (horizontal)."""

    axis: str
    value: float
    label: str
    color: str = "#555555"


@dataclass(frozen=True)
class Panel:
    title: str
    x: Axis
    y: Axis
    traces: list[Trace]
    marks: list[Mark] = field(default_factory=list)


@dataclass(frozen=True)
class FigureView:
    """A figure of one or more panels side by side (``columns`` per row)."""

    key: str
    title: str
    panels: list[Panel]
    columns: int = 3
    caption: str = ""

    @property
    def points(self) -> int:
        """How many data points it draws (a figure with none is empty)."""
        return sum(len(t.y) for p in self.panels for t in p.traces)


@dataclass(frozen=True)
class ImageView:
    """Pictures side by side: each tile a caption and a PNG image as a data URI."""

    key: str
    title: str
    tiles: list[tuple[str, str]]
    caption: str = ""


@dataclass(frozen=True)
class Section:
    """A part of a page: a heading, sentences generated from the numbers, figures,
    tables, and smaller notes. ``badge`` (text, style) sits beside the heading."""

    key: str
    title: str
    sentences: list[str] = field(default_factory=list)
    figures: list[FigureView] = field(default_factory=list)
    tables: list[TableView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images: list[ImageView] = field(default_factory=list)
    badge: tuple[str, str] | None = None
    label: str = ""  # its name in the page's table of contents (default: the title)


@dataclass(frozen=True)
class Header:
    """What was run: labelled facts, the command that reproduces it, and the study file
    that command needs (if any) as (file name, TOML text)."""

    facts: list[tuple[str, str]]
    command: str
    study_file: tuple[str, str] | None = None


@dataclass(frozen=True)
class Page:
    title: str
    subtitle: str
    header: Header
    sections: list[Section]
    missing: list[str] = field(default_factory=list)  # what the page lacks, one line each

    @property
    def figures(self) -> list[FigureView]:
        return [f for s in self.sections for f in s.figures]
