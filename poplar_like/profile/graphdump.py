"""Graph dumps: the compute graph as files other tools read (docs/visualisation.md).

``dump_graph(graph, executable, directory)`` writes, into ``directory``:

* ``graph.json``: the manifest: format, target, counts, and the name tables the arrays index
  (compute sets with their op and layer, ops, layers, codelets, fields, variables);
* ``graph.npz``: the vertex-level graph as columns (``vertex_*``: one row per vertex;
  ``edge_*``: one row per edge as Poplar counts them; ``region_*``: the contiguous element ranges
  each edge connects to, exact up to ``MAX_REGIONS_PER_EDGE`` runs per edge, else one bounding
  range per variable with its element count);
* ``vertices.graphml`` and ``vertices.dot`` for small graphs (vertices and variables as nodes,
  one edge per region), and ``{level}.json``, ``{level}.graphml``, ``{level}.dot`` for the
  aggregated levels ``compute_set``, ``op``, ``layer`` and ``tile`` (:mod:`.graphlevels`).

Vertices are numbered in graph order: compute sets in creation order, then the blocks of each
(one per ``add_vertex``/``add_vertices`` call), then the instances of a block.  A compute set
``"layer1.0.conv1/conv/partials"`` belongs to op ``"layer1.0.conv1/conv"`` (the name before the
last ``/``, or the op record of ``poplar_like.ops`` that lists it) and to layer
``"layer1.0.conv1"`` (the op name before the first ``/``).

Everything that scales with the graph is vectorised; the only loops per vertex or per edge are
in the GraphML and DOT writers, which are capped (``MAX_GRAPHML_VERTICES``, ``MAX_DOT_VERTICES``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..codelet import VECTOR_LIST
from ..compiler import Executable
from ..dtypes import poplar_name
from ..graph import Graph

FORMAT = "poplar_like.graphdump"
VERSION = 1
LEVELS = ("vertex", "compute_set", "op", "layer", "tile")
#: vertex-level GraphML is written only up to this many vertices (and MAX_GRAPHML_EDGES regions):
#: beyond that Gephi and networkx struggle and the aggregated levels are the useful view
MAX_GRAPHML_VERTICES = 200_000
MAX_GRAPHML_EDGES = 2_000_000
#: vertex-level DOT only up to this many vertices (and MAX_DOT_EDGES regions): Graphviz layouts of
#: more are unreadable and slow
MAX_DOT_VERTICES = 2_000
MAX_DOT_EDGES = 20_000
DIRECTIONS = ("input", "output", "inout")
_CHUNK = 1 << 22  # elements per pass when splitting fields into regions
#: an edge (one field of a vertex, one vector of a VectorList) with more runs of consecutive element
#: ids than this is summarised: one bounding region per variable it touches (``edge_summarised``)
MAX_REGIONS_PER_EDGE = 8


# ====================================================================== names
def op_of(compute_set: str) -> str:
    """The op a compute set belongs to: its name before the last ``/`` (the whole name if none)."""
    return compute_set.rsplit("/", 1)[0] if "/" in compute_set else compute_set


def layer_of(op: str) -> str:
    """The layer an op belongs to: its name before the first ``/``."""
    return op.split("/", 1)[0]


def coarsen(layer: str, depth: int | None) -> str:
    """``layer`` cut to ``depth`` dot-separated parts (``layer1.0.conv1`` -> ``layer1.0`` at 2)."""
    if not depth:
        return layer
    return ".".join(layer.split(".")[:depth])


def _first_order(names: Iterable[str]) -> tuple[list[str], np.ndarray]:
    """Distinct names in order of first appearance, and each input's index among them."""
    table: dict[str, int] = {}
    index = [table.setdefault(n, len(table)) for n in names]
    return list(table), np.array(index, dtype=np.int32)


def compute_set_groups(graph: Graph) -> dict[str, Any]:
    """Op and layer of every compute set (plain lists, in order of first appearance)."""
    recorded: dict[str, str] = {}
    for rec in graph.op_records:
        for cs_name in rec.get("compute_sets", []):
            recorded.setdefault(cs_name, rec.get("name", ""))
    cs_names = [cs.name for cs in graph.compute_sets]
    op_names = [recorded.get(n) or op_of(n) for n in cs_names]
    ops, cs_op = _first_order(op_names)
    layers, op_layer = _first_order(layer_of(o) for o in ops)
    cs_layer = op_layer[cs_op] if cs_op.size else np.zeros(0, dtype=np.int32)
    return {"compute_sets": cs_names, "ops": ops, "layers": layers, "cs_op": cs_op, "cs_layer": cs_layer,
            "op_layer": op_layer}


# ====================================================================== vertex-level tables
@dataclass
class _FieldGroup:
    """Blocks of one codelet in one compute set with equal field shapes: one pass per field."""

    codelet: type
    blocks: list = field(default_factory=list)
    vertices: list = field(default_factory=list)  # global number of each block's first vertex


def _group_blocks(graph: Graph) -> tuple[list[_FieldGroup], np.ndarray]:
    groups: dict[tuple, _FieldGroup] = {}
    cs_first = np.zeros(len(graph.compute_sets) + 1, dtype=np.int64)
    for c, cs in enumerate(graph.compute_sets):
        cs_first[c + 1] = cs_first[c] + cs.num_vertices
        for block in cs.blocks:
            shapes = tuple((name, None if ids is None else ids.shape[1:]) for name, ids in block.edges.items())
            key = (block.codelet, shapes)
            group = groups.setdefault(key, _FieldGroup(block.codelet))
            group.blocks.append(block)
            group.vertices.append(int(cs_first[c]) + block.first)
    return list(groups.values()), cs_first


def _regions(ids: np.ndarray, graph: Graph, cap: int) -> tuple[np.ndarray, ...]:
    """Split rows of element ids ``(m, L)`` (one row per edge) into regions.

    A row with at most ``cap`` maximal runs of consecutive ids in one variable gets one region per
    run (exact).  A row with more runs is *summarised*: one region per variable it touches,
    spanning its smallest to its largest id there, with the number of field elements in it.
    Returns ``(regions per row, summarised per row, first element id of each region, its length,
    its element count, its variable)``.
    """
    m, length = ids.shape
    if length == 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(m, dtype=np.int64), np.zeros(m, dtype=bool), empty, empty, empty, empty
    single = graph.single_variable(ids)
    brk = np.empty((m, length), dtype=bool)
    brk[:, 0] = True
    np.not_equal(ids[:, 1:], ids[:, :-1] + 1, out=brk[:, 1:])
    if single is None:
        variables = graph.variable_of(ids.reshape(-1)).reshape(m, length)
        brk[:, 1:] |= variables[:, 1:] != variables[:, :-1]
        del variables
    per_row = brk.sum(axis=1, dtype=np.int64)
    over = per_row > cap
    starts = np.flatnonzero(brk)
    del brk
    lengths = np.diff(np.append(starts, m * length))
    flat = ids.reshape(-1)
    if not over.any():
        first = flat[starts].astype(np.int64)
        var = np.full(starts.size, single, dtype=np.int64) if single is not None else graph.variable_of(first)
        return per_row, over, first, lengths, lengths, var
    keep = ~over[starts // length]
    starts, lengths = starts[keep], lengths[keep]
    row_exact = starts // length
    first_exact = flat[starts].astype(np.int64)
    # summarised rows: sorted within the row, ids of one variable are adjacent
    rows = np.flatnonzero(over)
    sub = np.sort(ids[rows], axis=1)
    sub_var = graph.variable_of(sub.reshape(-1)).reshape(sub.shape) if single is None else None
    sbrk = np.zeros(sub.shape, dtype=bool)
    sbrk[:, 0] = True
    if sub_var is not None:
        np.not_equal(sub_var[:, 1:], sub_var[:, :-1], out=sbrk[:, 1:])
    sstart = np.flatnonzero(sbrk)
    send = np.append(sstart[1:], sub.size) - 1
    sflat = sub.reshape(-1)
    first_sum = sflat[sstart].astype(np.int64)
    span_sum = sflat[send].astype(np.int64) - first_sum + 1
    count_sum = send - sstart + 1
    row_sum = rows[sstart // length]
    per_row[rows] = sbrk.sum(axis=1, dtype=np.int64)
    order = np.argsort(np.concatenate([row_exact, row_sum]), kind="stable")
    first = np.concatenate([first_exact, first_sum])[order]
    span = np.concatenate([lengths, span_sum])[order]
    count = np.concatenate([lengths, count_sum])[order]
    var = np.full(first.size, single, dtype=np.int64) if single is not None else graph.variable_of(first)
    return per_row, over, first, span, count, var


def vertex_tables(graph: Graph, groups_info: dict[str, Any] | None = None,
                  max_regions: int | None = None) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The vertex, edge and region columns of ``graph.npz``, and the field table they index.

    Vectorised per group of blocks with equal codelet and field shapes, never per vertex, and in
    chunks of about ``_CHUNK`` element ids, so memory beyond the output stays bounded.  An edge
    with more than ``max_regions`` (default ``MAX_REGIONS_PER_EDGE``) runs is summarised
    (see :func:`_regions`), so there are at most ``max_regions`` regions per edge and variable.
    """
    cap = MAX_REGIONS_PER_EDGE if max_regions is None else int(max_regions)
    info = groups_info or compute_set_groups(graph)
    n_vertices = graph.num_vertices()
    num_cs = len(graph.compute_sets)
    codelets, codelet_index = [], {}
    for cs in graph.compute_sets:
        for block in cs.blocks:
            if block.codelet not in codelet_index:
                codelet_index[block.codelet] = len(codelets)
                codelets.append(block.codelet)
    vidx = np.int32 if n_vertices < 2 ** 31 else np.int64
    vertex_cs = np.empty(n_vertices, dtype=np.int32)
    vertex_codelet = np.empty(n_vertices, dtype=np.int32)
    vertex_tile = np.empty(n_vertices, dtype=np.int32)
    at = 0
    for c, cs in enumerate(graph.compute_sets):
        for block in cs.blocks:
            vertex_cs[at:at + block.n] = c
            vertex_codelet[at:at + block.n] = codelet_index[block.codelet]
            vertex_tile[at:at + block.n] = block.tiles
            at += block.n
    cs_op = info["cs_op"] if num_cs else np.zeros(0, dtype=np.int32)
    cs_layer = info["cs_layer"] if num_cs else np.zeros(0, dtype=np.int32)

    fields: list[dict] = []
    field_index: dict[tuple[type, str], int] = {}
    for codelet in codelets:
        for name, fld in codelet.fields.items():
            if fld.is_edge:
                field_index[(codelet, name)] = len(fields)
                fields.append({"codelet": codelet_key(codelet), "name": name, "direction": fld.direction,
                               "kind": fld.type.kind, "dtype": poplar_name(fld.type.dtype),
                               "itemsize": int(fld.type.dtype.itemsize)})

    elem = np.int32 if graph.num_elements < 2 ** 31 else np.int64
    dtypes = {"edge_vertex": vidx, "edge_field": np.int32, "edge_item": np.int32, "edge_regions": np.int64,
              "edge_summarised": bool, "region_variable": np.int32, "region_start": elem, "region_length": elem,
              "region_elements": elem}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in dtypes}

    def add(key: str, values: np.ndarray) -> None:
        parts[key].append(values.astype(dtypes[key], copy=False))

    bases = graph.variable_bases()
    groups, _ = _group_blocks(graph)
    for group in groups:
        for name in group.blocks[0].edges:
            if group.blocks[0].edges[name] is None:
                continue
            kind = group.codelet.fields[name].type.kind
            for block, v0 in zip(group.blocks, group.vertices, strict=True):
                ids = block.edges[name]
                n = ids.shape[0]
                items = ids.shape[1] if kind == VECTOR_LIST else 1
                width = 1 if ids.ndim == 1 else int(np.prod(ids.shape[1:])) // items
                add("edge_vertex", np.repeat(np.arange(v0, v0 + n, dtype=np.int64), items))
                add("edge_field", np.full(n * items, field_index[(group.codelet, name)], dtype=np.int32))
                add("edge_item", np.tile(np.arange(items, dtype=np.int32), n))
                step = max(1, _CHUNK // max(items * width, 1))  # vertices per pass
                for lo in range(0, n, step):
                    rows = np.ascontiguousarray(ids[lo:lo + step]).reshape(-1, width)  # one row per edge
                    per_row, summarised, first, span, count, var = _regions(rows, graph, cap)
                    add("edge_regions", per_row)
                    add("edge_summarised", summarised)
                    add("region_variable", var)
                    add("region_start", first - bases[var] if first.size else first)
                    add("region_length", span)
                    add("region_elements", count)
                    del rows, per_row, summarised, first, span, count, var

    def cat(key: str) -> np.ndarray:
        out = np.concatenate(parts[key]) if parts[key] else np.zeros(0, dtype=dtypes[key])
        parts[key] = []
        return out

    per_edge = cat("edge_regions")
    offsets = np.zeros(per_edge.size + 1, dtype=np.int64)
    np.cumsum(per_edge, out=offsets[1:])
    del per_edge
    arrays = {
        "vertex_cs": vertex_cs, "vertex_codelet": vertex_codelet, "vertex_tile": vertex_tile,
        "vertex_op": cs_op[vertex_cs].astype(np.int32), "vertex_layer": cs_layer[vertex_cs].astype(np.int32),
        "edge_vertex": cat("edge_vertex"), "edge_field": cat("edge_field"), "edge_item": cat("edge_item"),
        "edge_region_offsets": offsets, "edge_summarised": cat("edge_summarised"),
        "region_variable": cat("region_variable"), "region_start": cat("region_start"),
        "region_length": cat("region_length"), "region_elements": cat("region_elements"),
    }
    return arrays, fields


def codelet_key(codelet: type) -> str:
    """The codelet's import path, as executables and profiles name it."""
    path = getattr(codelet, "path", None)
    return path() if callable(path) else f"{codelet.__module__}:{codelet.__qualname__}"


# ====================================================================== dump and load
def dump_graph(graph: Graph, executable: Executable | None, directory: str,
               levels: Iterable[str] = LEVELS, counts: np.ndarray | None = None,
               compress: bool = False) -> dict[str, Any]:
    """Write the graph dump files into ``directory`` (created if needed); returns the manifest.

    ``executable`` (optional) gives exchanged bytes, cycles and tile memory; ``counts`` (an
    engine's ``executions``) weights tile-to-tile exchange by how often each step ran, otherwise
    every step counts once.  ``levels`` picks among ``LEVELS``; ``graph.json`` and ``graph.npz``
    are always written.  ``compress`` zips ``graph.npz`` (smaller, slower to write and read).
    """
    from . import graphlevels, graphwrite

    graph.require_edges("dump_graph")
    levels = tuple(levels)
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise ValueError(f"unknown graph dump level(s) {unknown}; choose from {list(LEVELS)}")
    os.makedirs(directory, exist_ok=True)
    info = compute_set_groups(graph)
    arrays, fields = vertex_tables(graph, info)
    codelets = _codelet_names(graph)
    target = graph.target
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "target": {"name": target.name, "num_ipus": target.num_ipus, "tiles_per_ipu": target.tiles_per_ipu,
                   "num_tiles": target.num_tiles, "memory_bytes_per_tile": target.memory_bytes_per_tile},
        "counts": {"vertices": int(arrays["vertex_cs"].size), "edges": int(arrays["edge_vertex"].size),
                   "regions": int(arrays["region_variable"].size), "compute_sets": len(info["compute_sets"]),
                   "ops": len(info["ops"]), "layers": len(info["layers"]), "variables": len(graph.variables),
                   "codelets": len(codelets)},
        "compute_sets": [{"name": n, "op": int(o), "layer": int(la)} for n, o, la in
                         zip(info["compute_sets"], info["cs_op"].tolist(), info["cs_layer"].tolist(), strict=True)],
        "ops": [{"name": n, "layer": int(la)} for n, la in zip(info["ops"], info["op_layer"].tolist(), strict=True)],
        "layers": info["layers"],
        "codelets": codelets,
        "fields": fields,
        "variables": [{"name": v.name, "kind": v.kind, "dtype": poplar_name(v.dtype), "shape": list(v.shape),
                       "base": int(v.base), "size": v.size} for v in graph.variables],
        "regions": {"max_per_edge": MAX_REGIONS_PER_EDGE,
                    "summarised_edges": int(np.count_nonzero(arrays["edge_summarised"])),
                    "meaning": "an edge with at most max_per_edge runs of consecutive element ids has one exact "
                               "region per run; a summarised edge (edge_summarised) has one region per variable "
                               "it touches, spanning its lowest to highest element there, region_elements of "
                               "them connected"},
        "files": {"graph": "graph.npz"},
        "levels": [],
        "executable": executable is not None,
    }
    if "vertex" in levels:
        manifest["files"]["vertex"] = graphwrite.write_vertex_level(directory, manifest, arrays)
        manifest["levels"].append("vertex")
    (np.savez_compressed if compress else np.savez)(os.path.join(directory, "graph.npz"), **arrays)
    # the levels need only the vertex columns: drop the edge and region columns first
    arrays = {k: v for k, v in arrays.items() if k.startswith("vertex_")}
    wanted = [lv for lv in levels if lv != "vertex"]
    level_data = graphlevels.aggregate_levels(graph, executable, arrays, info, wanted, counts) if wanted else {}
    for level, data in level_data.items():
        path = os.path.join(directory, f"{level}.json")
        with open(path, "w") as f:
            json.dump(data, f, separators=(",", ":"))
        files = {"json": f"{level}.json"}
        files.update(graphwrite.write_level(directory, level, data))
        manifest["files"][level] = files
        manifest["levels"].append(level)
    with open(os.path.join(directory, "graph.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def _codelet_names(graph: Graph) -> list[str]:
    seen: dict[type, None] = {}
    for cs in graph.compute_sets:
        for block in cs.blocks:
            seen.setdefault(block.codelet, None)
    return [codelet_key(c) for c in seen]


def write_dumps(graph: Graph, engine_or_executable: Any, directory: str, levels: Iterable[str] = LEVELS,
                profile: bool = True) -> dict[str, Any] | None:
    """What the examples' ``--dump-graph DIR`` calls: the graph dump and, for an engine, its profile.

    ``engine_or_executable`` is a ``pl.Engine`` (after its runs: exchange is weighted by how often
    each step ran) or a ``pl.Executable``.  With ``profile`` the profile is saved as
    ``DIR/profile.json`` whose ``.npz`` also holds the tile-to-tile exchange pairs
    (``tile_pairs_*``), so ``tools/plot_profile.py`` can draw the exchange matrices.  Under MPI
    call it on every rank (the profile is collective); only rank 0 writes.
    """
    from . import Profile, graphlevels

    engine = None if isinstance(engine_or_executable, Executable) else engine_or_executable
    exe = engine_or_executable if engine is None else engine.executable
    prof = engine.profile() if (engine is not None and profile) else None  # collective under MPI
    if engine is not None and not engine.is_host:
        return None
    counts = engine.executions if engine is not None and int(engine.executions.sum()) > 0 else None
    manifest = dump_graph(graph, exe, directory, levels, counts)
    if profile:
        if prof is None:
            prof = Profile.from_executable(exe)
        matrices = dict(prof.matrices)
        matrices.update(graphlevels.tile_pair_arrays(exe, counts))
        Profile(prof.data, matrices).save(os.path.join(directory, "profile.json"))
        manifest["files"]["profile"] = "profile.json"
        with open(os.path.join(directory, "graph.json"), "w") as f:
            json.dump(manifest, f, indent=1)
    return manifest


class GraphDump:
    """A dump read back: ``manifest`` (graph.json), ``arrays`` (graph.npz, loaded lazily by key) and
    ``level(name)`` (an aggregated level's JSON)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        path = os.path.join(directory, "graph.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{directory}: no graph.json here; write a dump with "
                                    "poplar_like.profile.graphdump.dump_graph or an example's --dump-graph")
        with open(path) as f:
            self.manifest = json.load(f)
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{path}: not a poplar_like graph dump (format {self.manifest.get('format')!r})")
        if self.manifest.get("version") != VERSION:
            raise ValueError(f"{path}: graph dump version {self.manifest.get('version')}, this tool reads {VERSION}")
        self._npz = np.load(os.path.join(directory, self.manifest["files"]["graph"]), allow_pickle=False)
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = self._npz[key]
        return self._cache[key]

    def has_level(self, level: str) -> bool:
        return level in self.manifest.get("levels", []) and level != "vertex"

    def level(self, level: str) -> dict[str, Any]:
        if not self.has_level(level):
            raise KeyError(f"{self.directory}: the dump has no {level!r} level (it has {self.manifest['levels']})")
        with open(os.path.join(self.directory, self.manifest["files"][level]["json"])) as f:
            return json.load(f)

    def close(self) -> None:
        self._npz.close()


def load_dump(directory: str) -> GraphDump:
    """Open a dump directory written by :func:`dump_graph`."""
    return GraphDump(directory)


__all__ = ["FORMAT", "VERSION", "LEVELS", "MAX_GRAPHML_VERTICES", "MAX_DOT_VERTICES", "MAX_REGIONS_PER_EDGE",
           "GraphDump",
           "compute_set_groups", "coarsen", "dump_graph", "layer_of", "load_dump", "op_of", "vertex_tables",
           "write_dumps"]
