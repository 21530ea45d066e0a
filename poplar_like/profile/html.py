"""A self-contained HTML report of a profile, like the first pages of PopVision (``tools/report.py``).

One file: inline CSS, images inlined as base64 PNG (or SVG), no request to any network or other
file, so it opens anywhere and can be mailed.  A few lines of inline script check, once the page
has loaded, that every image decoded (``data-images-loaded`` / ``data-images-failed`` on
``<body>``, and a console error naming any that did not), which the tests read in headless Chromium.
"""

from __future__ import annotations

import base64
import io
import json
import os
from html import escape
from typing import Any

from .plots import DPI, FIGURES, _data, _human
from .summary import summary_text

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f2d3d;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;font-size:13px;color:#c8d3de}
nav{background:#fff;border-bottom:1px solid #ddd;padding:6px 24px;font-size:13px}
nav a{margin-right:14px;color:#1f5f99;text-decoration:none}
main{padding:8px 24px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e2e2e2;border-radius:6px;margin:16px 0;padding:8px 18px 16px}
h2{font-size:17px;margin:10px 0}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:150px;background:#fcfcfc}
.card b{display:block;font-size:18px}
.card span{font-size:12px;color:#666}
.card.bad b{color:#c62828}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
th,td{border-bottom:1px solid #eee;padding:3px 8px;text-align:left}
th{background:#f3f5f7}
td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;display:block;margin:8px 0}
pre{font-size:11px;background:#f6f8fa;padding:10px;overflow-x:auto;border-radius:4px}
.note{font-size:12px;color:#666}
"""

CHECK_IMAGES = """
window.addEventListener('load', function () {
  var ok = 0, bad = 0;
  document.querySelectorAll('img').forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { ok += 1; }
    else { bad += 1; console.error('image did not load: ' + img.alt); }
  });
  document.body.setAttribute('data-images-loaded', String(ok));
  document.body.setAttribute('data-images-failed', String(bad));
});
"""


def figure_data_uri(fig: Any, fmt: str = "png", dpi: int = DPI) -> str:
    """A matplotlib figure as a ``data:`` URI (base64 PNG or SVG)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, facecolor="white")
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _img(uri: str, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="{uri}">'


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            text = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
            cells.append(f'<td class="n">{escape(text)}</td>' if i in numeric else f"<td>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _card(value: str, label: str, bad: bool = False) -> str:
    return f'<div class="card{" bad" if bad else ""}"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def build_report(profile: Any, title: str = "", graph_dump: str | None = None, image_format: str = "png",
                 top_steps: int = 20, max_ops: int = 300) -> str:
    """The report's HTML text.  ``graph_dump`` (a dump directory) adds the picture of the graph."""
    if isinstance(profile, str):
        from . import Profile

        profile = Profile.load(profile)
    data, _ = _data(profile)
    t, g, m, x, c = data["target"], data["graph"], data["memory"], data["exchange"], data["cycles"]
    cap_total = m["capacity_per_tile"] * t["num_tiles"]
    over = m.get("tiles_over_capacity", [])
    sections: list[tuple[str, str, str]] = []

    cards = "".join([
        _card(_human(m["total_bytes"]), f"memory used, {100 * m['total_bytes'] / max(cap_total, 1):.1f}% of "
              f"{_human(cap_total)}"),
        _card(f"{100 * m['max_tile_bytes'] / max(m['capacity_per_tile'], 1):.1f}%",
              f"of tile {m['max_tile']}'s {_human(m['capacity_per_tile'])} (the fullest tile)",
              bad=m["max_tile_bytes"] > m["capacity_per_tile"]),
        _card(f"{len(over):,}", "tiles over capacity", bad=bool(over)),
        _card(f"{c['total']:,}", f"estimated cycles ({c['basis']}), {c['estimated_seconds'] * 1e3:.4g} ms"),
        _card(_human(x["total_bytes"]), f"exchanged ({_human(x['inter_ipu_bytes'])} between IPUs)"),
        _card(f"{g['vertices']:,}", f"vertices, {g['edges']:,} edges, {g['compute_sets']:,} compute sets"),
    ])
    sections.append(("summary", "Summary", f'<div class="cards">{cards}</div>'
                     f"<details><summary>Text summary (as <code>profile.summary()</code>)</summary>"
                     f"<pre>{escape(summary_text(data))}</pre></details>"))

    def fig_html(name: str, alt: str) -> str:
        fig = FIGURES[name](profile)
        if fig is None:
            return ""
        return _img(figure_data_uri(fig, image_format), alt)

    consumers = [[item["name"], item["bytes"]] for item in m.get("largest_consumers_on_max_tile", [])]
    categories = [[name.replace("_", " "), total, max(m["by_category"][name], default=0)]
                  for name, total in m["category_totals"].items()]
    mem_html = (fig_html("memory_by_tile", "memory by tile") + fig_html("tile_map", "tile map")
                + f"<h3>Largest consumers on tile {m['max_tile']}</h3>" + _table(["consumer", "bytes"], consumers, {1})
                + "<h3>By category</h3>" + _table(["category", "total bytes", "max tile bytes"], categories, {1, 2}))
    if over:
        mem_html += f"<p class=note>Tiles over capacity: {escape(', '.join(map(str, over[:50])))}" \
                    f"{' ...' if len(over) > 50 else ''}</p>"
    sections.append(("memory", "Memory", mem_html))
    sections.append(("liveness", "Liveness", fig_html("liveness", "not-always-live memory over program steps")
                     + f"<p class=note>{len(m.get('temporaries', [])):,} temporaries share addresses.</p>"))

    weight = (lambda r: r["total_cycles"] * max(r["executions"], 1)) if c["basis"] == "executed" \
        else (lambda r: r["total_cycles"])
    steps = sorted(data["steps"], key=lambda r: -weight(r))[:top_steps]
    step_rows = [[s["index"], s["kind"], s["name"], s["executions"], s["vertices"], s["compute_cycles"],
                  s["exchange_cycles"], s["sync_cycles"], s["host_cycles"], s["exchange_bytes"]] for s in steps]
    sections.append(("execution", "Execution", fig_html("bsp", "cycles per step and BSP trace")
                     + f"<h3>Top {len(steps)} steps by cycles</h3>"
                     + _table(["pc", "kind", "name", "runs", "vertices", "compute", "exchange", "sync", "host",
                               "exchange bytes"], step_rows, {0, 3, 4, 5, 6, 7, 8, 9})))
    sections.append(("exchange", "Exchange", fig_html("exchange_per_step", "exchange bytes per superstep")
                     + fig_html("exchange_matrix", "exchange matrix")))

    ops = data.get("ops") or []
    if ops:
        rows = sorted(ops, key=lambda r: -r.get("estimated_cycles", 0))[:max_ops]
        op_rows = [[r["name"], r.get("kind", ""), len(r.get("compute_sets", [])), r.get("tiles_used", 0),
                    r.get("vertices", 0), r.get("estimated_cycles", 0), r.get("temporary_bytes", 0),
                    json.dumps(r.get("plan", {}), separators=(",", ":"))[:160]] for r in rows]
        sections.append(("ops", "Ops", fig_html("ops", "ops by estimated cycles")
                         + f"<p class=note>{len(ops):,} op calls"
                         + (f", the {max_ops} most expensive shown" if len(ops) > max_ops else "") + "</p>"
                         + _table(["op", "kind", "compute sets", "tiles", "vertices", "est. cycles", "temporary bytes",
                                   "plan"], op_rows, {2, 3, 4, 5, 6})))

    if graph_dump:
        from .graphdraw import draw_vertex_level
        from .graphdump import load_dump

        dump = load_dump(graph_dump)
        fig = draw_vertex_level(dump, size=(14.0, 8.75), dpi=DPI)
        sections.append(("graph", "Graph", _img(figure_data_uri(fig, "png"), "the graph, layers as clusters")
                         + "<p class=note>One dot per vertex, a disc per layer; see docs/visualisation.md.</p>"))

    host = data.get("host", {})
    runs = data["execution"]
    host_html = (f"<p>Backend <b>{escape(str(host.get('backend', 'local')))}</b>, {host.get('ranks', 1)} rank(s), "
                 f"{len(runs['runs'])} run(s), {runs['wall_seconds'] * 1e3:,.1f} ms wall.</p>")
    if host.get("per_rank"):
        host_html += _table(["rank", "tiles", "memory", "bytes sent", "compute s", "exchange s", "waiting s"],
                            [[r["rank"], f"{r['tiles'][0]}-{r['tiles'][1]}", _human(r["tile_memory_bytes"]),
                              r["bytes_sent"], f"{r['compute_seconds']:.4f}", f"{r['exchange_seconds']:.4f}",
                              f"{r['waiting_seconds']:.4f}"] for r in host["per_rank"]], {0, 3})
        if "imbalance" in host:
            host_html += f"<p class=note>Load imbalance (max / mean compute time): {host['imbalance']:.2f}</p>"
    sections.append(("host", "Host", host_html))

    nav = "".join(f'<a href="#{sid}">{escape(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{escape(name)}</h2>{html}</section>' for sid, name, html in sections)
    heading = title or "poplar_like profile report"
    target = (f"{t['name']}: {t['num_ipus']} IPU(s) x {t['tiles_per_ipu']:,} tiles, "
              f"{_human(t['memory_bytes_per_tile'])} per tile, {t['clock_hz'] / 1e6:,.0f} MHz")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{escape(heading)}</title>"
            f"<style>{CSS}</style></head><body><header><h1>{escape(heading)}</h1><p>{escape(target)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main><script>{CHECK_IMAGES}</script></body></html>\n")


def write_report(profile: Any, path: str, **options: Any) -> str:
    """Write :func:`build_report` to ``path``; returns the path."""
    text = build_report(profile, **options)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


__all__ = ["build_report", "figure_data_uri", "write_report"]
