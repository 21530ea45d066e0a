"""Pictures of a graph dump in which layers show as clusters (``tools/draw_graph.py``).

The vertex level draws one dot per vertex.  Each layer is a disc whose area is proportional to
its vertex count, its vertices placed on a sunflower spiral in graph order (so the compute sets
of a layer show as rings, first ones innermost), and the discs follow each other in graph order
along a snake of rows.  Dots are accumulated into pixels (a density image, like datashader), so
millions of vertices cost a few numpy passes, not a matplotlib artist each.  Lines are data flow:
curved arcs between layers weighted by bytes (from ``layer.json``) and a random sample of
vertex-to-vertex edges (a vertex that writes an element to a vertex that reads it).

The aggregated levels (``layer``, ``op``, ``compute_set``) draw one node per group, area
proportional to its vertices, coloured by layer, grouped around their layer's place.

Only matplotlib (Agg, no pyplot state) and numpy; nothing here loops per vertex.
"""

from __future__ import annotations

import colorsys
import math
import time
from typing import Any

import numpy as np

from .graphdump import GraphDump, coarsen, load_dump

GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
SCATTER_LIMIT = 30_000  # up to this many vertices, draw markers; above, a density image
AXES = (0.01, 0.01, 0.98, 0.92)  # where the drawing sits in the figure (the header takes the top)


def layer_rgb(count: int) -> np.ndarray:
    """``(count, 3)`` colours: a hue ramp over the layers in graph order (as graphwrite's DOT)."""
    out = np.empty((max(count, 1), 3))
    for i in range(max(count, 1)):
        out[i] = colorsys.hls_to_rgb(0.85 * i / max(count - 1, 1), 0.55, 0.65)
    return out[:count]


# ====================================================================== layout
def cluster_layout(sizes: np.ndarray, aspect: float, label_room: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(K, 2)`` and radii of K discs of areas ``sizes``, in order along a snake of rows.

    Rows are filled left to right, then right to left, so consecutive clusters stay neighbours.
    ``label_room`` (a fraction of the mean diameter) is kept free above each disc for its label.
    """
    sizes = np.maximum(np.asarray(sizes, dtype=np.float64), 1.0)
    radii = np.sqrt(sizes / math.pi)
    K = radii.size
    if K == 0:
        return np.zeros((0, 2)), radii
    gap = 0.25 * float(np.mean(radii)) + 0.02 * float(radii.max())
    label = label_room * 2 * float(np.mean(radii))
    cell = 2 * radii + gap
    # try row widths and keep the one whose bounding box is closest to the wanted aspect
    lowest = float(cell.max())
    guesses = np.geomspace(lowest, max(float(cell.sum()), lowest) + 1e-9, 40)
    best = min(guesses.tolist(), key=lambda w: abs(math.log(_rows_aspect(cell, w, label) / aspect)))
    return _place_rows(cell, best, label), radii


def _rows(cell: np.ndarray, row_width: float) -> list[list[int]]:
    rows: list[list[int]] = [[]]
    width = 0.0
    for k in range(cell.size):
        if rows[-1] and width + cell[k] > row_width:
            rows.append([])
            width = 0.0
        rows[-1].append(k)
        width += cell[k]
    return rows


def _rows_aspect(cell: np.ndarray, row_width: float, label: float) -> float:
    rows = _rows(cell, row_width)
    width = max(float(sum(cell[m] for m in r)) for r in rows)
    height = sum(float(max(cell[m] for m in r)) + label for r in rows)
    return width / max(height, 1e-9)


def _place_rows(cell: np.ndarray, row_width: float, label: float) -> np.ndarray:
    K = cell.size
    centres = np.zeros((K, 2))
    rows = _rows(cell, row_width)
    y = 0.0
    for r, members in enumerate(rows):
        height = float(max(cell[m] for m in members)) + label
        order = members if r % 2 == 0 else members[::-1]
        x = (row_width - float(sum(cell[m] for m in members))) / 2  # rows are centred
        for m in order:
            centres[m] = (x + cell[m] / 2, y - height / 2 - label / 2)
            x += cell[m]
        y -= height
    return centres


def sunflower(rank: np.ndarray, count: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of item ``rank`` of ``count`` on a sunflower spiral filling a disc of ``radius``."""
    r = radius * np.sqrt((rank + 0.5) / np.maximum(count, 1))
    theta = rank * GOLDEN_ANGLE
    return r * np.cos(theta), r * np.sin(theta)


def auto_depth(layers: list[str], limit: int = 64) -> int | None:
    """The finest ``depth`` that leaves at most ``limit`` clusters (None: the full names do)."""
    if len(set(layers)) <= limit:
        return None
    deepest = max((name.count(".") + 1 for name in layers), default=1)
    for depth in range(deepest, 0, -1):
        if len({coarsen(name, depth) for name in layers}) <= limit:
            return depth
    return 1


def _clusters(dump: GraphDump, depth: int | None) -> tuple[list[str], np.ndarray]:
    """Cluster names and the cluster of each layer (layers coarsened to ``depth`` dot parts)."""
    table: dict[str, int] = {}
    of_layer = [table.setdefault(coarsen(name, depth), len(table)) for name in dump.manifest["layers"]]
    return list(table), np.array(of_layer, dtype=np.int64)


def vertex_positions(dump: GraphDump, depth: int | None = None, aspect: float = 1.6) -> dict[str, Any]:
    """Every vertex's position (float32 x, y), its cluster, and the clusters' centres and radii."""
    names, of_layer = _clusters(dump, depth)
    layer = dump["vertex_layer"]
    cluster = of_layer[layer] if layer.size else np.zeros(0, dtype=np.int64)
    K = len(names)
    counts = np.bincount(cluster, minlength=K)
    centres, radii = cluster_layout(counts, aspect, label_room=0.25)
    order = np.argsort(cluster.astype(np.int32 if K >= 32768 else np.int16), kind="stable")
    starts = np.cumsum(counts) - counts
    rank = np.empty(cluster.size, dtype=np.float64)
    sorted_cluster = cluster[order]
    rank[order] = np.arange(cluster.size, dtype=np.float64) - starts[sorted_cluster]
    dx, dy = sunflower(rank, counts[cluster], radii[cluster])
    x = (centres[cluster, 0] + dx).astype(np.float32)
    y = (centres[cluster, 1] + dy).astype(np.float32)
    return {"names": names, "cluster": cluster, "counts": counts, "centres": centres, "radii": radii, "x": x, "y": y,
            "of_layer": of_layer}


def _vertex_colours(dump: GraphDump, cluster: np.ndarray, K: int) -> np.ndarray:
    """Per-vertex RGB: the cluster's hue, lighter or darker by compute set so rings show."""
    base = layer_rgb(K)
    cs = dump["vertex_cs"].astype(np.int64)
    shade = np.array([0.82, 1.0, 1.15], dtype=np.float64)[cs % 3]
    return np.clip(base[cluster] * shade[:, None], 0.0, 1.0)


# ====================================================================== sampled vertex edges
def sample_vertex_edges(dump: GraphDump, samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``samples`` data-flow pairs ``(writer vertex, reader vertex)`` drawn at random.

    A sampled read region's first element is looked up among the write regions sorted by start
    (``searchsorted``); no table per element is built.
    """
    offsets = dump["edge_region_offsets"]
    n_regions = int(offsets[-1]) if offsets.size else 0
    if samples <= 0 or n_regions == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    fields = dump.manifest["fields"]
    reads = np.array([f["direction"] in ("input", "inout") for f in fields])
    writes = np.array([f["direction"] in ("output", "inout") for f in fields])
    per_edge = np.diff(offsets)
    edge_of_region = np.repeat(np.arange(per_edge.size, dtype=np.int64), per_edge)
    field = dump["edge_field"][edge_of_region]
    bases = np.array([v["base"] for v in dump.manifest["variables"]], dtype=np.int64)
    start = bases[dump["region_variable"]] + dump["region_start"].astype(np.int64)
    w = np.flatnonzero(writes[field])
    if w.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.argsort(start[w], kind="stable")
    w_start = start[w][order]
    w_end = w_start + dump["region_length"][w][order]
    w_vertex = dump["edge_vertex"][edge_of_region[w][order]]
    r = np.flatnonzero(reads[field])
    rng = np.random.default_rng(seed)
    pick = r if r.size <= samples * 2 else rng.choice(r, size=samples * 2, replace=False)
    element = start[pick]
    at = np.searchsorted(w_start, element, side="right") - 1
    ok = at >= 0
    ok[ok] = element[ok] < w_end[at[ok]]
    writer = w_vertex[at[ok]].astype(np.int64)
    reader = dump["edge_vertex"][edge_of_region[pick[ok]]].astype(np.int64)
    keep = writer != reader
    return writer[keep][:samples], reader[keep][:samples]


# ====================================================================== drawing
def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), facecolor="white")


def _density_image(ax: Any, x: np.ndarray, y: np.ndarray, rgb: np.ndarray, extent: tuple[float, float, float, float],
                   pixels: tuple[int, int]) -> None:
    """Accumulate points into an RGBA image of ``pixels`` (width, height) and show it."""
    w, h = pixels
    x0, x1, y0, y1 = extent
    px = np.clip(((x - x0) / (x1 - x0) * w).astype(np.int64), 0, w - 1)
    py = np.clip(((y - y0) / (y1 - y0) * h).astype(np.int64), 0, h - 1)
    pix = py * w + px
    count = np.bincount(pix, minlength=w * h).astype(np.float64)
    img = np.ones((w * h, 4))
    hit = count > 0
    for c in range(3):
        img[hit, c] = np.bincount(pix, weights=rgb[:, c], minlength=w * h)[hit] / count[hit]
    top = np.log1p(count.max(initial=1.0))
    img[:, 3] = np.where(hit, 0.45 + 0.55 * np.log1p(count) / top, 0.0)
    ax.imshow(img.reshape(h, w, 4), extent=extent, origin="lower", interpolation="nearest", aspect="auto",
              zorder=2)


def _arcs(ax: Any, centres: np.ndarray, edges: dict, colours: np.ndarray, zorder: int = 1) -> None:
    from matplotlib.patches import FancyArrowPatch

    weights = np.asarray(edges.get("bytes", [1] * len(edges["source"])), dtype=np.float64)
    if weights.size == 0:
        return
    width = 0.4 + 3.0 * np.log1p(weights) / max(np.log1p(weights.max()), 1e-9)
    for s, t, lw in zip(edges["source"], edges["target"], width.tolist(), strict=True):
        if s == t:
            continue
        ax.add_patch(FancyArrowPatch(tuple(centres[s]), tuple(centres[t]), connectionstyle="arc3,rad=0.25",
                                     arrowstyle="-|>", mutation_scale=6 + 2 * lw, lw=lw,
                                     color=(*colours[s], 0.55), zorder=zorder))


def _regroup(edges: dict, group: np.ndarray) -> dict:
    """Level edges between groups of their nodes (self-edges dropped, weights summed)."""
    out: dict[tuple[int, int], float] = {}
    weights = edges.get("bytes", [1] * len(edges["source"]))
    for s, t, w in zip(edges["source"], edges["target"], weights, strict=True):
        gs, gt = int(group[s]), int(group[t])
        if gs != gt:
            out[(gs, gt)] = out.get((gs, gt), 0.0) + w
    return {"source": [k[0] for k in out], "target": [k[1] for k in out], "bytes": list(out.values())}


def _title(dump: GraphDump, level: str, clusters: int, depth: int | None) -> str:
    c = dump.manifest["counts"]
    t = dump.manifest["target"]
    grouping = "layers" if not depth else f"layer groups (depth {depth})"
    return (f"{c['vertices']:,} vertices, {c['edges']:,} edges, {c['compute_sets']:,} compute sets, "
            f"{clusters} {grouping}  |  {t['name']}: {t['num_ipus']} IPU x {t['tiles_per_ipu']:,} tiles  "
            f"|  level: {level}")


def _labels(ax: Any, names: list[str], centres: np.ndarray, radii: np.ndarray, counts: np.ndarray,
            fontsize: float, limit: int = 160) -> None:
    show = np.argsort(-counts, kind="stable")[:limit]
    for k in np.sort(show).tolist():
        ax.text(centres[k, 0], centres[k, 1] + radii[k] * 1.04, names[k], ha="center", va="bottom",
                fontsize=fontsize, color="#333333", zorder=5, clip_on=False,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})


def _frame(ax: Any, centres: np.ndarray, radii: np.ndarray, box: tuple[float, float]) -> tuple[float, ...]:
    """Set the axes' limits around the discs, widened so one data unit is as long in x as in y
    on an axes of ``box`` (width, height) inches; returns ``(x0, x1, y0, y1)``."""
    if centres.size == 0:
        x0, x1, y0, y1 = -1.0, 1.0, -1.0, 1.0
    else:
        pad = 0.15 * float(radii.max())
        x0 = float((centres[:, 0] - radii).min()) - pad
        x1 = float((centres[:, 0] + radii).max()) + pad
        y0 = float((centres[:, 1] - radii).min()) - pad
        y1 = float((centres[:, 1] + radii).max()) + 2.0 * pad
    scale = max((x1 - x0) / box[0], (y1 - y0) / box[1])  # data units per inch
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    x0, x1 = cx - scale * box[0] / 2, cx + scale * box[0] / 2
    y0, y1 = cy - scale * box[1] / 2, cy + scale * box[1] / 2
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()
    return x0, x1, y0, y1


def _header(fig: Any, size: tuple[float, float], title: str, subtitle: str) -> tuple[float, float, float, float]:
    """Title and subtitle wrapped to the figure's width; returns the axes rectangle below them."""
    import textwrap

    lines = textwrap.wrap(title, max(20, int(size[0] * 72 / (11 * 0.6))))
    sub = textwrap.wrap(subtitle, max(20, int(size[0] * 72 / (8 * 0.55))))
    top_in = 0.12 + 0.2 * len(lines) + 0.15 * len(sub)  # inches of header
    fig.text(0.5, 1 - 0.08 / size[1], "\n".join(lines), ha="center", va="top", fontsize=11)
    fig.text(0.5, 1 - (0.1 + 0.2 * len(lines)) / size[1], "\n".join(sub), ha="center", va="top", fontsize=8,
             color="#555555")
    top = max(0.3, 1 - top_in / size[1])
    return (AXES[0], AXES[1], AXES[2], top - AXES[1] - 0.01)


def draw_vertex_level(dump: GraphDump, depth: int | None = None, edge_samples: int = 20_000,
                      size: tuple[float, float] = (16.0, 10.0), dpi: int = 120, title: str | None = None) -> Any:
    """The vertex-level picture as a matplotlib Figure (see the module docstring)."""
    from matplotlib.collections import LineCollection

    pos = vertex_positions(dump, depth, aspect=size[0] / size[1])
    K = len(pos["names"])
    fig = _figure(*size)
    rect = _header(fig, size, title or _title(dump, "vertex", K, depth),
                   "one dot per vertex; a disc per layer (area ~ vertices, compute sets as rings); arcs: data flow "
                   "between layers (width ~ bytes); thin lines: sampled vertex-to-vertex edges")
    ax = fig.add_axes(rect)
    box = (rect[2] * size[0], rect[3] * size[1])
    x0, x1, y0, y1 = _frame(ax, pos["centres"], pos["radii"], box)
    colours = layer_rgb(K)
    rgb = _vertex_colours(dump, pos["cluster"], K)
    n = pos["x"].size
    if n > SCATTER_LIMIT:
        _density_image(ax, pos["x"], pos["y"], rgb, (x0, x1, y0, y1), (int(box[0] * dpi), int(box[1] * dpi)))
    elif n:
        # a sunflower puts its points about one data unit apart: dots of 0.8 units
        points_per_unit = box[0] / (x1 - x0) * 72.0
        marker = float(np.clip((0.8 * points_per_unit) ** 2, 1.0, 400.0))
        ax.scatter(pos["x"], pos["y"], s=marker, c=rgb, linewidths=0, zorder=2)
    writer, reader = sample_vertex_edges(dump, edge_samples)
    if writer.size:
        segs = np.stack([np.stack([pos["x"][writer], pos["y"][writer]], axis=1),
                         np.stack([pos["x"][reader], pos["y"][reader]], axis=1)], axis=1)
        alpha = float(min(0.5, max(0.04, 300.0 / writer.size)))
        lc = LineCollection(segs, colors=np.c_[colours[pos["cluster"][writer]], np.full(writer.size, alpha)],
                            linewidths=0.4, zorder=1, rasterized=True)
        ax.add_collection(lc)
    if dump.has_level("layer"):
        edges = _regroup(dump.level("layer")["edges"], pos["of_layer"])
        _arcs(ax, pos["centres"], edges, colours, zorder=3)
    _labels(ax, pos["names"], pos["centres"], pos["radii"], pos["counts"], fontsize=7 if K > 40 else 9)
    return fig


def draw_level(dump: GraphDump, level: str, depth: int | None = None, size: tuple[float, float] = (16.0, 10.0),
               title: str | None = None) -> Any:
    """An aggregated level (``layer``, ``op`` or ``compute_set``) as a node-link picture."""
    data = dump.level(level)
    nodes, edges = data["nodes"], data["edges"]
    names, of_layer = _clusters(dump, depth)
    layer_index = {name: i for i, name in enumerate(dump.manifest["layers"])}
    cluster = np.array([of_layer[layer_index[la]] for la in nodes["layer"]], dtype=np.int64)
    vertices = np.maximum(np.asarray(nodes["vertices"], dtype=np.float64), 1.0)
    K = len(names)
    totals = np.bincount(cluster, weights=vertices, minlength=K)
    centres, radii = cluster_layout(totals, size[0] / size[1], label_room=0.25)
    members = np.bincount(cluster, minlength=K)
    order = np.argsort(cluster, kind="stable")
    rank = np.empty(cluster.size)
    rank[order] = np.arange(cluster.size) - (np.cumsum(members) - members)[cluster[order]]
    ring = np.where(members[cluster] > 1, 0.62 * radii[cluster], 0.0)
    angle = 2 * math.pi * rank / np.maximum(members[cluster], 1) + math.pi
    x = centres[cluster, 0] + ring * np.cos(angle)
    y = centres[cluster, 1] + ring * np.sin(angle)
    fig = _figure(*size)
    rect = _header(fig, size, title or _title(dump, level, K, depth),
                   f"one node per {level.replace('_', ' ')} (area ~ vertices), grouped in a shaded disc per layer; "
                   "arrows: data flow (width ~ bytes)")
    ax = fig.add_axes(rect)
    x0, x1, _, _ = _frame(ax, centres, radii, (rect[2] * size[0], rect[3] * size[1]))
    colours = layer_rgb(K)
    for k in range(K):
        ax.add_patch(_circle(centres[k], radii[k], colours[k]))
    points_per_unit = rect[2] * size[0] * 72.0 / (x1 - x0)
    node_r = np.sqrt(vertices / math.pi) / np.sqrt(np.maximum(members[cluster], 1)) * 0.6
    s = (node_r * points_per_unit) ** 2 * math.pi
    pts = np.stack([x, y], axis=1)
    _arcs(ax, pts, edges, colours[cluster], zorder=2)
    ax.scatter(x, y, s=np.maximum(s, 4.0), c=colours[cluster], edgecolors="#333333", linewidths=0.4, zorder=3)
    _labels(ax, names, centres, radii, totals, fontsize=7 if K > 40 else 9)
    return fig


def _circle(centre: np.ndarray, radius: float, colour: np.ndarray) -> Any:
    from matplotlib.patches import Circle

    return Circle(tuple(centre), radius, facecolor=(*colour, 0.12), edgecolor=(*colour, 0.6), lw=0.8, zorder=0)


def draw_graph(dump: GraphDump | str, outputs: list[str], level: str = "vertex", depth: int | str | None = None,
               edge_samples: int = 20_000, size: tuple[float, float] = (16.0, 10.0), dpi: int = 120,
               title: str | None = None) -> dict[str, float]:
    """Draw a dump and save it to each of ``outputs`` (format from the extension: .png, .svg, .pdf).

    ``depth`` clusters layers by their first ``depth`` dot-separated name parts; ``"auto"`` picks
    the finest depth that leaves at most 64 clusters.

    Returns timings in seconds (``layout_and_draw`` and one entry per file).
    """
    if isinstance(dump, str):
        dump = load_dump(dump)
    if depth == "auto":
        depth = auto_depth(dump.manifest["layers"])
    t0 = time.perf_counter()
    if level == "vertex":
        fig = draw_vertex_level(dump, depth, edge_samples, size, dpi, title)
    elif level in ("layer", "op", "compute_set"):
        fig = draw_level(dump, level, depth, size, title)
    else:
        raise ValueError(f"unknown level {level!r}: choose vertex, layer, op or compute_set")
    timings = {"layout_and_draw": time.perf_counter() - t0}
    for path in outputs:
        t1 = time.perf_counter()
        fig.savefig(path, dpi=dpi, facecolor="white")
        timings[path] = time.perf_counter() - t1
    return timings


__all__ = ["auto_depth", "cluster_layout", "draw_graph", "draw_level", "draw_vertex_level", "sample_vertex_edges",
           "sunflower", "vertex_positions"]
