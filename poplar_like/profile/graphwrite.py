"""GraphML and DOT writers for graph dumps (no dependency beyond the standard library).

GraphML opens in Gephi, yEd, Cytoscape and ``networkx.read_graphml``; DOT in Graphviz
(``dot -Tsvg layer.dot -o layer.svg``; ``sfdp`` for the bigger levels).  Aggregated levels are
written whole (DOT keeps the ``MAX_DOT_EDGES`` heaviest edges); the vertex level only for small
graphs (``graphdump.MAX_GRAPHML_VERTICES``, ``graphdump.MAX_DOT_VERTICES``), because it is the
one place with a Python loop per vertex and per edge.
"""

from __future__ import annotations

import colorsys
import math
import os
from typing import Any, Iterable, TextIO
from xml.sax.saxutils import escape, quoteattr

import numpy as np

MAX_DOT_EDGES = 20_000  # heaviest edges kept in an aggregated DOT file
_GRAPHML_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                 '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
                 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                 'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
                 'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n')


def layer_colour(index: int, count: int) -> str:
    """``#rrggbb`` of layer ``index`` of ``count``: a hue ramp, so neighbouring layers look alike."""
    hue = 0.85 * index / max(count - 1, 1)
    r, g, b = colorsys.hls_to_rgb(hue, 0.55, 0.65)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _graphml_type(values: list) -> str:
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return "boolean"
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return "long"
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
        return "double"
    return "string"


def _text(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return escape(str(value))


class GraphMLWriter:
    """Streams a GraphML file: declare the keys, then write nodes and edges."""

    def __init__(self, f: TextIO, node_keys: dict[str, str], edge_keys: dict[str, str], directed: bool = True,
                 graph_id: str = "G") -> None:
        self.f = f
        self.node_keys = {name: f"n_{name}" for name in node_keys}
        self.edge_keys = {name: f"e_{name}" for name in edge_keys}
        f.write(_GRAPHML_HEAD)
        for name, kind in node_keys.items():
            f.write(f'  <key id="n_{name}" for="node" attr.name={quoteattr(name)} attr.type="{kind}"/>\n')
        for name, kind in edge_keys.items():
            f.write(f'  <key id="e_{name}" for="edge" attr.name={quoteattr(name)} attr.type="{kind}"/>\n')
        f.write(f'  <graph id={quoteattr(graph_id)} edgedefault="{"directed" if directed else "undirected"}">\n')

    def node(self, node_id: str, data: dict[str, Any]) -> None:
        body = "".join(f'<data key="{self.node_keys[k]}">{_text(v)}</data>' for k, v in data.items())
        self.f.write(f'    <node id="{node_id}">{body}</node>\n')

    def edges(self, sources: Iterable[str], targets: Iterable[str], columns: dict[str, list]) -> None:
        names = list(columns)
        keys = [self.edge_keys[k] for k in names]
        for i, (s, t) in enumerate(zip(sources, targets, strict=True)):
            body = "".join(f'<data key="{k}">{_text(columns[n][i])}</data>' for k, n in zip(keys, names, strict=True))
            self.f.write(f'    <edge source="{s}" target="{t}">{body}</edge>\n')

    def close(self) -> None:
        self.f.write("  </graph>\n</graphml>\n")


def _dot_id(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _pen(values: np.ndarray) -> np.ndarray:
    """Edge widths 0.5..6 on a log scale of the edge weights."""
    v = np.log1p(np.asarray(values, dtype=np.float64))
    top = v.max(initial=0.0)
    return 0.5 + 5.5 * (v / top if top > 0 else v)


def _human(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(nbytes) < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""


# ====================================================================== aggregated levels
def write_level(directory: str, level: str, data: dict) -> dict[str, str]:
    """``{level}.graphml`` and ``{level}.dot`` of an aggregated level; returns the file names."""
    nodes, edges = data["nodes"], data["edges"]
    n = len(nodes["name"])
    graphml = f"{level}.graphml"
    with open(os.path.join(directory, graphml), "w") as f:
        node_cols = {k: _graphml_type(v) for k, v in nodes.items()}
        edge_cols = {k: _graphml_type(v) for k, v in edges.items() if k not in ("source", "target")}
        w = GraphMLWriter(f, node_cols, edge_cols, graph_id=level)
        for i in range(n):
            w.node(f"n{i}", {k: v[i] for k, v in nodes.items()})
        w.edges((f"n{s}" for s in edges["source"]), (f"n{t}" for t in edges["target"]),
                {k: v for k, v in edges.items() if k not in ("source", "target")})
        w.close()
    dot = f"{level}.dot"
    with open(os.path.join(directory, dot), "w") as f:
        _write_level_dot(f, level, data)
    return {"graphml": graphml, "dot": dot}


def _write_level_dot(f: TextIO, level: str, data: dict) -> None:
    nodes, edges = data["nodes"], data["edges"]
    n = len(nodes["name"])
    vertices = np.asarray(nodes.get("vertices", [0] * n), dtype=np.float64)
    scale = math.sqrt(vertices.max(initial=1.0) or 1.0)
    if level == "tile":
        group = list(nodes["ipu"])
        group_names = [f"IPU {g}" for g in sorted(set(group))]
        group_index = {g: i for i, g in enumerate(sorted(set(group)))}
        member = [group_index[g] for g in group]
    else:
        layers = list(dict.fromkeys(nodes["layer"]))
        index = {name: i for i, name in enumerate(layers)}
        member = [index[la] for la in nodes["layer"]]
        group_names = layers
    colours = [layer_colour(i, len(group_names)) for i in range(len(group_names))]
    title = _dot_id(f"{level} level: {n} nodes, {len(edges['source'])} edges")
    f.write(f"digraph {_dot_id(level)} {{\n  graph [rankdir=TB, fontname=Helvetica, label={title}];\n"
            "  node [shape=box, style=filled, fontname=Helvetica, fontsize=10];\n  edge [color=\"#00000060\"];\n")
    clustered = level in ("compute_set", "op", "tile")
    lines_by_group: dict[int, list[str]] = {}
    for i in range(n):
        size = 0.3 + 1.7 * math.sqrt(vertices[i]) / scale
        label = f"{nodes['name'][i]}\n{int(vertices[i]):,} vertices"
        line = (f"  n{i} [label={_dot_id(label)}, "
                f"width={size:.2f}, height={size * 0.6:.2f}, fillcolor=\"{colours[member[i]]}\"];")
        lines_by_group.setdefault(member[i] if clustered else -1, []).append(line)
    for g, lines in lines_by_group.items():
        if g < 0:
            f.write("\n".join(lines) + "\n")
            continue
        f.write(f"  subgraph cluster_{g} {{\n    label={_dot_id(group_names[g])}; style=rounded; "
                f"color=\"{colours[g]}\";\n")
        f.write("\n".join("  " + line for line in lines) + "\n  }\n")
    weights = np.asarray(edges.get("bytes", [1] * len(edges["source"])), dtype=np.float64)
    keep = np.argsort(-weights, kind="stable")[:MAX_DOT_EDGES] if weights.size > MAX_DOT_EDGES \
        else np.arange(weights.size)
    if weights.size > MAX_DOT_EDGES:
        f.write(f"  // the {MAX_DOT_EDGES} heaviest of {weights.size} edges\n")
    pen = _pen(weights)
    src, dst = edges["source"], edges["target"]
    for e in np.sort(keep).tolist():
        f.write(f"  n{src[e]} -> n{dst[e]} [penwidth={pen[e]:.2f}, tooltip={_dot_id(_human(weights[e]))}];\n")
    f.write("}\n")


# ====================================================================== vertex level
def write_vertex_level(directory: str, manifest: dict, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """``vertices.graphml`` / ``vertices.dot`` when the graph is small enough (else a note why not)."""
    from .graphdump import MAX_DOT_EDGES as DOT_EDGES, MAX_DOT_VERTICES, MAX_GRAPHML_EDGES, MAX_GRAPHML_VERTICES

    nv = int(arrays["vertex_cs"].size)
    nr = int(arrays["region_variable"].size)
    files: dict[str, Any] = {}
    if nv <= MAX_GRAPHML_VERTICES and nr <= MAX_GRAPHML_EDGES:
        files["graphml"] = "vertices.graphml"
        with open(os.path.join(directory, "vertices.graphml"), "w") as f:
            _vertex_graphml(f, manifest, arrays)
    else:
        files["graphml_skipped"] = (f"{nv:,} vertices / {nr:,} regions: vertex-level GraphML is written up to "
                                    f"{MAX_GRAPHML_VERTICES:,} vertices and {MAX_GRAPHML_EDGES:,} regions")
    if nv <= MAX_DOT_VERTICES and nr <= DOT_EDGES:
        files["dot"] = "vertices.dot"
        with open(os.path.join(directory, "vertices.dot"), "w") as f:
            _vertex_dot(f, manifest, arrays)
    else:
        files["dot_skipped"] = (f"{nv:,} vertices / {nr:,} regions: vertex-level DOT is written up to "
                                f"{MAX_DOT_VERTICES:,} vertices and {DOT_EDGES:,} regions")
    return files


def region_table(manifest: dict, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per region: its vertex, field and list item (edge columns repeated per region)."""
    per_edge = np.diff(arrays["edge_region_offsets"])
    return {"vertex": np.repeat(arrays["edge_vertex"], per_edge), "field": np.repeat(arrays["edge_field"], per_edge),
            "item": np.repeat(arrays["edge_item"], per_edge)}


def _vertex_graphml(f: TextIO, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    node_keys = {"kind": "string", "codelet": "string", "tile": "long", "compute_set": "string", "op": "string",
                 "layer": "string", "name": "string", "dtype": "string", "shape": "string", "size": "long"}
    edge_keys = {"field": "string", "direction": "string", "item": "long", "start": "long", "length": "long",
                 "bytes": "long"}
    w = GraphMLWriter(f, node_keys, edge_keys, graph_id="vertices")
    cs_names = [c["name"] for c in manifest["compute_sets"]]
    ops = [o["name"] for o in manifest["ops"]]
    layers, codelets = manifest["layers"], manifest["codelets"]
    columns = zip(arrays["vertex_codelet"].tolist(), arrays["vertex_tile"].tolist(), arrays["vertex_cs"].tolist(),
                  arrays["vertex_op"].tolist(), arrays["vertex_layer"].tolist(), strict=True)
    for i, (cod, tile, cs, op, layer) in enumerate(columns):
        w.node(f"v{i}", {"kind": "vertex", "codelet": codelets[cod], "tile": tile, "compute_set": cs_names[cs],
                         "op": ops[op], "layer": layers[layer]})
    for j, v in enumerate(manifest["variables"]):
        w.node(f"t{j}", {"kind": v["kind"], "name": v["name"], "dtype": v["dtype"],
                         "shape": "x".join(str(d) for d in v["shape"]), "size": v["size"]})
    regions = region_table(manifest, arrays)
    fields = manifest["fields"]
    vertex = regions["vertex"].tolist()
    var = arrays["region_variable"].tolist()
    field = regions["field"].tolist()
    inbound = [fields[k]["direction"] == "input" for k in field]
    sources = [f"t{t}" if into else f"v{v}" for v, t, into in zip(vertex, var, inbound, strict=True)]
    targets = [f"v{v}" if into else f"t{t}" for v, t, into in zip(vertex, var, inbound, strict=True)]
    itemsize = np.array([fd["itemsize"] for fd in fields], dtype=np.int64)
    length = arrays["region_length"].astype(np.int64)
    w.edges(sources, targets, {
        "field": [fields[k]["name"] for k in field], "direction": [fields[k]["direction"] for k in field],
        "item": regions["item"].tolist(), "start": arrays["region_start"].tolist(), "length": length.tolist(),
        "bytes": (length * itemsize[regions["field"]]).tolist() if length.size else [],
    })
    w.close()


def _vertex_dot(f: TextIO, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    layers = manifest["layers"]
    codelets = [c.split(":")[-1].split(".")[-1] for c in manifest["codelets"]]
    colours = [layer_colour(i, len(layers)) for i in range(len(layers))]
    f.write('digraph vertices {\n  graph [fontname=Helvetica, rankdir=LR];\n'
            '  node [fontname=Helvetica, fontsize=9];\n')
    vertex_layer = arrays["vertex_layer"].tolist()
    by_layer: dict[int, list[int]] = {}
    for i, la in enumerate(vertex_layer):
        by_layer.setdefault(la, []).append(i)
    tiles, codelet = arrays["vertex_tile"].tolist(), arrays["vertex_codelet"].tolist()
    for la, members in by_layer.items():
        f.write(f"  subgraph cluster_{la} {{\n    label={_dot_id(layers[la])}; style=rounded; "
                f"color=\"{colours[la]}\";\n")
        for i in members:
            f.write(f"    v{i} [shape=box, style=filled, fillcolor=\"{colours[la]}\", "
                    f"label={_dot_id(f'{codelets[codelet[i]]} @{tiles[i]}')}];\n")
        f.write("  }\n")
    used = np.unique(arrays["region_variable"]).tolist()
    for t in used:
        v = manifest["variables"][t]
        f.write(f"  t{t} [shape=ellipse, label={_dot_id(v['name'] + ' ' + str(v['shape']))}];\n")
    regions = region_table(manifest, arrays)
    fields = manifest["fields"]
    for v, t, k, s, n in zip(regions["vertex"].tolist(), arrays["region_variable"].tolist(), regions["field"].tolist(),
                             arrays["region_start"].tolist(), arrays["region_length"].tolist(), strict=True):
        label = _dot_id(f"{fields[k]['name']} [{s}:{s + n}]")
        if fields[k]["direction"] == "input":
            f.write(f"  t{t} -> v{v} [label={label}];\n")
        else:
            dirs = ", dir=both" if fields[k]["direction"] == "inout" else ""
            f.write(f"  v{v} -> t{t} [label={label}{dirs}];\n")
    f.write("}\n")
