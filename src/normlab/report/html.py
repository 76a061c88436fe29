"""A page view rendered as one self-contained HTML file.

Figures are drawn by plotly.js, embedded once in the file (the ``plotly`` package
ships the bundle): it gives hover tooltips, legend toggling, zoom and reset, log and
categorical axes and PNG download without a line of our own JavaScript, where
hand-written SVG would need all of that rebuilt. The page makes no request to any
network: scripts, styles and data are inline, so it opens offline and can be mailed.
The few lines of script of our own sort and filter the tables.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import replace
from urllib.parse import quote

from normlab.report.style import VERDICT_COLORS, rgba
from normlab.report.views import FigureView, ImageView, Page, Panel, Section, TableView, Trace

ROW_HEIGHT = 330  # pixels per row of panels


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _clean(value: object) -> object:
    """JSON for the page: floats to 6 significant digits (the file stays small), NaN
    and infinities as null (a gap in a line)."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _trace(t: Trace, axis: int) -> list[dict]:
    """One view trace as plotly traces (a band is two more, drawn first)."""
    refs = {"xaxis": f"x{axis}", "yaxis": f"y{axis}", "legendgroup": t.group or t.name}
    out = []
    if t.band is not None:
        low, high = t.band
        edge = {
            "type": "scatter",
            "mode": "lines",
            "x": t.x,
            "line": {"width": 0},
            "hoverinfo": "skip",
            "showlegend": False,
            **refs,
        }
        out.append({**edge, "y": high})
        out.append({**edge, "y": low, "fill": "tonexty", "fillcolor": rgba(t.color, 0.16)})
    trace: dict = {
        "x": t.x,
        "y": t.y,
        "name": t.name,
        "showlegend": t.legend,
        "opacity": t.opacity,
        **refs,
    }
    if t.mode == "bar":
        trace |= {"type": "bar", "marker": {"color": t.color}, "textposition": "none"}
    else:
        trace |= {
            "type": "scatter",
            "mode": t.mode,
            "line": {"color": t.color, "width": t.width, "dash": t.dash},
            "marker": {
                "color": t.color,
                "size": t.size,
                "symbol": t.symbol,
            },
        }
    if t.error is not None:
        trace["error_y"] = {
            "type": "data",
            "array": t.error,
            "visible": True,
            "color": t.color,
            "thickness": 1.5,
            "width": 4,
        }
    if isinstance(t.hover, str):  # one text for the line: the file holds it once
        trace["hovertemplate"] = f"{t.hover}: %{{y:.4g}} (at %{{x}})<extra></extra>"
    elif t.hover is not None:
        trace |= {"text": t.hover, "hovertemplate": "%{text}<extra></extra>"}
    else:
        trace["hovertemplate"] = f"{html.escape(t.name)}<br>%{{x}}: %{{y:.4g}}<extra></extra>"
    out.append(trace)
    return out


def _axis(axis, domain: list[float], anchor: str) -> dict:
    out = {
        "title": {"text": axis.title, "font": {"size": 12}},
        "domain": domain,
        "anchor": anchor,
        "automargin": True,
        "zeroline": False,
    }
    if axis.log:
        out["type"] = "log"
    if axis.categories is not None:
        out |= {"type": "category", "categoryorder": "array", "categoryarray": axis.categories}
    if axis.ticks is not None:
        out |= {
            "tickmode": "array",
            "tickvals": axis.ticks,
            "ticktext": [f"{v:g}" for v in axis.ticks],
        }
    return out


def _marks(panel: Panel, i: int) -> tuple[list[dict], list[dict]]:
    """Reference lines as shapes, each labelled by an annotation (plotly places an
    annotation on a log axis by the log10 of its value, a shape by the value)."""
    shapes, notes = [], []
    for k, m in enumerate(panel.marks):
        vertical = m.axis == "x"
        on, across = ("x", "y") if vertical else ("y", "x")
        log = (panel.x if vertical else panel.y).log
        at = math.log10(m.value) if log and m.value > 0 else m.value
        line = {"color": m.color, "width": 1, "dash": "dot"}
        shapes.append({"type": "line", "line": line, f"{on}ref": f"{on}{i}",
                       f"{across}ref": f"{across}{i} domain", f"{on}0": m.value,
                       f"{on}1": m.value, f"{across}0": 0, f"{across}1": 1})  # fmt: skip
        # labels of close lines stagger: one under another, or at alternate ends
        place = {"y": 1 - 0.09 * k, "yanchor": "top", "xanchor": "left"} if vertical else {
            "x": k % 2, "xanchor": "right" if k % 2 else "left", "yanchor": "bottom"}  # fmt: skip
        notes.append({f"{on}ref": f"{on}{i}", f"{across}ref": f"{across}{i} domain", on: at,
                      "text": html.escape(m.label), "showarrow": False,
                      "font": {"size": 10, "color": m.color}, **place})  # fmt: skip
    return shapes, notes


def figure_json(fig: FigureView) -> dict:
    """The plotly figure (data, layout) of a figure view, panels on a grid."""
    cols = min(fig.columns, len(fig.panels))
    rows = math.ceil(len(fig.panels) / cols)
    data, layout = (
        [],
        {
            "height": ROW_HEIGHT * rows + 40,
            "hovermode": "closest",
            "margin": {"t": 40, "b": 50, "l": 60, "r": 20},
            "legend": {
                "orientation": "h",
                "y": -0.12 if rows == 1 else -0.06,
                "yanchor": "top",
                "groupclick": "togglegroup",
            },
            "annotations": [],
            "shapes": [],
            "plot_bgcolor": "#fbfbfd",
        },
    )
    legends: set[str] = set()
    for i, panel in enumerate(fig.panels, 1):
        r, c = divmod(i - 1, cols)
        x0, x1 = c / cols + 0.045, (c + 1) / cols - 0.02
        y1 = 1 - r / rows - 0.10 / rows
        y0 = 1 - (r + 1) / rows + 0.24 / rows
        layout[f"xaxis{i}"] = _axis(panel.x, [x0, x1], f"y{i}")
        layout[f"yaxis{i}"] = _axis(panel.y, [y0, y1], f"x{i}")
        layout["annotations"].append(
            {
                "text": f"<b>{html.escape(panel.title)}</b>",
                "xref": "paper",
                "yref": "paper",
                "x": (x0 + x1) / 2,
                "y": y1,
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 13},
            }
        )
        shapes, notes = _marks(panel, i)
        layout["shapes"] += shapes
        layout["annotations"] += notes
        for t in panel.traces:
            group = t.group or t.name
            t = replace(t, legend=t.legend and group not in legends)  # one entry per group
            legends.update([group] if t.legend else [])
            data += _trace(t, i)
    return _clean({"data": data, "layout": layout})


def _cell(table: TableView, column: str, cell) -> str:
    sort = "" if cell.sort is None else f' data-sort="{html.escape(str(cell.sort))}"'
    # long text (a comparison's label) wraps; numbers and short names never do
    cls = "num" if column in table.numeric else "wrap" if len(cell.text) > 40 else ""
    text = html.escape(cell.text)
    if cell.style:
        text = f'<span class="tag {html.escape(cell.style)}">{text}</span>'
    return f'<td class="{cls}"{sort}>{text}</td>'


def _table(table: TableView) -> str:
    head = "".join(
        f'<th class="{"num" if c in table.numeric else ""}" '
        f'title="click to sort">{html.escape(c)}</th>'
        for c in table.columns
    )
    body = "".join(
        "<tr>"
        + "".join(_cell(table, c, cell) for c, cell in zip(table.columns, row, strict=True))
        + "</tr>"
        for row in table.rows
    )
    search = (
        (
            f'<input class="filter" type="search" placeholder="filter {len(table.rows)} rows…" '
            f'aria-label="filter {html.escape(table.title)}">'
        )
        if len(table.rows) > 3
        else ""
    )
    caption = f'<p class="caption">{html.escape(table.caption)}</p>' if table.caption else ""
    return (
        f'<div class="table" id="table-{html.escape(table.key)}"><div class="table-head">'
        f"<h3>{html.escape(table.title)}</h3>{search}</div><div class=scroll>"
        f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
        f"</table></div>{caption}</div>"
    )


def _inline(text: str) -> str:
    """Sentences with `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _section(s: Section) -> str:
    badge = (
        f' <span class="tag {html.escape(s.badge[1])}">{html.escape(s.badge[0])}</span>'
        if s.badge
        else ""
    )
    out = [f'<section id="{html.escape(s.key)}"><h2>{html.escape(s.title)}{badge}</h2>']
    out += [f'<p class="lead">{_inline(t)}</p>' for t in s.sentences]
    for fig in s.figures:
        caption = f"<figcaption>{html.escape(fig.caption)}</figcaption>" if fig.caption else ""
        out.append(
            f'<figure><h3>{html.escape(fig.title)}</h3><div class="plot" '
            f'id="fig-{html.escape(fig.key)}"></div>{caption}</figure>'
        )
    out += [_images(v) for v in s.images]
    out += [_table(t) for t in s.tables]
    if s.notes:
        out.append(
            '<ul class="notes">' + "".join(f"<li>{_inline(n)}</li>" for n in s.notes) + "</ul>"
        )
    return "".join(out) + "</section>"


def _images(view: ImageView) -> str:
    tiles = "".join(
        f'<figure class="tile"><img src="{src}" alt="{html.escape(label)}">'
        f"<figcaption>{html.escape(label)}</figcaption></figure>"
        for label, src in view.tiles
    )
    caption = f"<figcaption>{html.escape(view.caption)}</figcaption>" if view.caption else ""
    return (
        f'<figure id="img-{html.escape(view.key)}"><h3>{html.escape(view.title)}</h3>'
        f'<div class="tiles">{tiles}</div>{caption}</figure>'
    )


def _header(page: Page) -> str:
    facts = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in page.header.facts
    )
    out = [
        f"<header><h1>{html.escape(page.title)}</h1><p class=sub>"
        f"{html.escape(page.subtitle)}</p><dl>{facts}</dl>",
        f'<p class="cmd-label">reproduce with</p><pre class="cmd"><code>'
        f"{html.escape(page.header.command)}</code></pre>",
    ]
    if page.header.study_file:
        name, text = page.header.study_file
        out.append(
            f"<details><summary>study file <code>{html.escape(name)}</code> (<a "
            f'download="{html.escape(name)}" href="data:text/plain;charset=utf-8,'
            f'{quote(text)}">save</a>)</summary><pre>{html.escape(text)}</pre></details>'
        )
    nav = "".join(
        f'<a href="#{html.escape(s.key)}">{html.escape(s.label or s.title)}</a>'
        for s in page.sections
    )
    return "".join(out) + f"<nav>{nav}</nav></header>"


_CSS = (
    """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2328;margin:0;
background:#f6f8fa}
main{max-width:1280px;margin:0 auto;padding:16px 24px 48px}
header{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px}
h1{font-size:22px;margin:0}.sub{color:#57606a;margin:2px 0 10px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0 0 8px}
dt{color:#57606a}dd{margin:0}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:8px 10px;
overflow-x:auto;white-space:pre-wrap;word-break:break-all;margin:4px 0}
.cmd-label{margin:8px 0 0;color:#57606a}
nav{margin-top:10px;display:flex;flex-wrap:wrap;gap:4px 14px}nav a{color:#0969da}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 20px;
margin-top:16px}
h2{font-size:18px;margin:4px 0 8px}h3{font-size:14px;margin:10px 0 4px}
.lead{margin:4px 0;max-width:100ch}
figure{margin:8px 0 14px}figcaption,.caption{color:#57606a;font-size:12.5px;max-width:120ch}
.plot{width:100%}
.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{margin:0;text-align:center}
.tile img{width:168px;height:168px;image-rendering:pixelated;border:1px solid #d0d7de}
.table-head{display:flex;align-items:baseline;gap:16px}
.filter{font:inherit;padding:2px 6px;border:1px solid #d0d7de;border-radius:6px}
.scroll{overflow-x:auto;max-height:560px;overflow-y:auto}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:3px 10px;border-bottom:1px solid #eaeef2;text-align:left;white-space:nowrap}
td.wrap{white-space:normal;min-width:24ch;max-width:52ch}
th{position:sticky;top:0;background:#f6f8fa;cursor:pointer;user-select:none}
th.asc:after{content:" ▲"}th.desc:after{content:" ▼"}
.num{text-align:right}
.tag{display:inline-block;padding:0 7px;border-radius:10px;font-size:12px;font-weight:600;
color:#fff;background:#6e7781}
"""
    + "".join(f".tag.{k}{{background:{v}}}" for k, v in VERDICT_COLORS.items())
    + """
.tag.done{background:#1a7f37}.tag.diverged{background:#bc4c00}.tag.failed{background:#cf222e}
.tag.queued,.tag.running{background:#6e7781}
.notes{color:#57606a;font-size:13px;margin:6px 0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
"""
)

_JS = """
function draw(figures) {
  return Promise.all(Object.entries(figures).map(([id, fig]) =>
    Plotly.newPlot("fig-" + id, fig.data, fig.layout, {responsive: true, displaylogo: false})
  )).then(() => { document.body.dataset.drawn = "all"; });
}
function key(td, numeric) {
  const v = td.dataset.sort !== undefined ? td.dataset.sort : td.textContent;
  if (!numeric) return v.toLowerCase();
  const n = parseFloat(v);
  return isNaN(n) ? -Infinity : n;
}
function wire(root) {
  for (const table of root.querySelectorAll("table.sortable")) {
    table.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
      const numeric = th.classList.contains("num");
      const asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(h => h.classList.remove("asc", "desc"));
      th.classList.add(asc ? "asc" : "desc");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(r => body.appendChild(r));
    }));
  }
  for (const input of root.querySelectorAll("input.filter")) {
    const table = input.closest(".table").querySelector("tbody");
    input.addEventListener("input", () => {
      const words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
      for (const row of table.rows) {
        const text = row.textContent.toLowerCase();
        row.hidden = !words.every(w => text.includes(w));
      }
    });
  }
}
draw(FIGURES);
wire(document);
"""

def content(page: Page) -> tuple[str, dict]:
    """What the page shows (the inside of ``<main>``) and its figures' plotly JSON."""
    figures = {fig.key: figure_json(fig) for fig in page.figures}
    return _header(page) + "".join(_section(s) for s in page.sections), figures


def document(title: str, main: str, figures: dict, *, css: str = "", top: str = "",
             script: str = "") -> str:
    """One HTML document of ``main`` and its ``figures``; ``css``, ``top`` (markup
    before ``<main>``) and ``script`` add to the page (the live page's bar and script)."""
    data = json.dumps(figures, separators=(",", ":")).replace("</", "<\\/")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width,initial-scale=1"><title>{html.escape(title)}'
        f"</title><style>{_CSS}{css}</style><script>{_plotly_js()}</script></head><body>{top}"
        f"<main>{main}</main><script>const FIGURES={data};\n{_JS}{script}</script>"
        "</body></html>"
    )  # fmt: skip


def render(page: Page) -> str:
    """The whole page as one HTML document."""
    return document(page.title, *content(page))
