"""Figure views drawn with matplotlib as static SVG and PNG files, for papers: the same
series as the HTML page's figures, without the interaction."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.ticker import NullLocator

from normlab.report.views import FigureView, Page, Panel

_LINESTYLE = {"solid": "-", "dot": ":", "dash": "--"}


def _xs(values: list, categories: list[str] | None) -> list:
    if categories is None:
        return values
    return [categories.index(str(v)) if str(v) in categories else math.nan for v in values]


def _draw(ax, panel: Panel) -> None:
    cats = panel.x.categories
    for t in panel.traces:
        x = _xs(t.x, cats)
        y = [math.nan if v is None else v for v in t.y]
        label = t.name if t.legend else None
        if t.band is not None:
            ax.fill_between(x, t.band[0], t.band[1], color=t.color, alpha=0.16, linewidth=0)
        if t.mode == "bar":
            ax.bar(x, y, yerr=t.error, color=t.color, alpha=0.8, label=label, capsize=3)
        elif t.mode == "markers":
            marker = "x" if t.symbol == "x" else "o"
            ax.scatter(
                x,
                y,
                color=t.color,
                s=t.size * 3,
                alpha=t.opacity,
                marker=marker,
                label=label,
                linewidths=1.5 if marker == "x" else 0,
            )
        else:
            marker = "o" if "markers" in t.mode else None
            ax.plot(
                x,
                y,
                color=t.color,
                linewidth=t.width,
                alpha=t.opacity,
                marker=marker,
                linestyle=_LINESTYLE[t.dash],
                markersize=4,
                label=label,
            )
            if t.error is not None:
                ax.errorbar(x, y, yerr=t.error, fmt="none", ecolor=t.color, capsize=3)
    for k, m in enumerate(panel.marks):
        if m.axis == "x":
            ax.axvline(m.value, color=m.color, linestyle=":", linewidth=1)
            ax.annotate(m.label, (m.value, 1 - 0.07 * k), xycoords=("data", "axes fraction"),
                        va="top", fontsize=7, color=m.color, xytext=(2, -2),
                        textcoords="offset points")  # fmt: skip
        else:
            ax.axhline(m.value, color=m.color, linestyle=":", linewidth=1)
            ax.annotate(m.label, (0, m.value), xycoords=("axes fraction", "data"),
                        va="bottom", fontsize=7, color=m.color)  # fmt: skip
    if panel.x.log:
        ax.set_xscale("log")
    if panel.y.log:
        ax.set_yscale("log")
    if cats is not None:
        ax.set_xticks(range(len(cats)), cats)
    if panel.x.ticks is not None:  # the factor's values, and only those
        ax.set_xticks(panel.x.ticks, [f"{v:g}" for v in panel.x.ticks],
                      rotation=45 if len(panel.x.ticks) > 6 else 0)  # fmt: skip
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set(title=panel.title, xlabel=panel.x.title, ylabel=panel.y.title)
    ax.title.set_fontsize(10)


def draw(fig_view: FigureView):
    """A matplotlib Figure of ``fig_view`` (without pyplot: no global backend is set)."""
    from matplotlib.figure import Figure

    cols = min(fig_view.columns, len(fig_view.panels))
    rows = math.ceil(len(fig_view.panels) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, panel in zip(axes, fig_view.panels, strict=False):
        _draw(ax, panel)
    for ax in axes[len(fig_view.panels) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1 : len(fig_view.panels)]:
        for h, lbl in zip(*ax.get_legend_handles_labels(), strict=True):
            if lbl not in labels:
                handles.append(h)
                labels.append(lbl)
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(len(labels), 5),
            fontsize=8,
            frameon=False,
        )
    fig.suptitle(fig_view.title)
    return fig


def write_assets(page: Page, folder: Path) -> list[Path]:
    """Every figure of ``page`` as ``<key>.svg`` and ``<key>.png`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for view in page.figures:
        fig = draw(view)
        for suffix, options in ((".svg", {}), (".png", {"dpi": 130})):
            path = folder / f"{view.key}{suffix}"
            fig.savefig(path, **options)
            written.append(path)
    return written
