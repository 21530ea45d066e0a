"""Aggregated levels of a graph dump: compute sets, ops, layers and tiles as nodes.

Edges of the ``compute_set``, ``op`` and ``layer`` levels are *data flow*: an edge ``A -> B``
carries the bytes of the distinct elements that some vertex of ``A`` writes (``Output`` or
``InOut``) and some vertex of ``B`` reads (``Input`` or ``InOut``), whatever the program order,
so a weight that an update writes and the forward pass reads makes an edge too.  Edges of the
``tile`` level are the bytes the executable's exchange plans move from one tile to another
(compute-set exchanges in and out, and tile-to-tile ``Copy`` programs), each step counted once,
or as many times as it ran when an engine's execution counts are given: their sum is the
profile's ``exchange.total_bytes``.

A level is plain data: ``{"level", "nodes": {column: list}, "edges": {column: list}}`` with
node ids the row numbers; :mod:`.graphwrite` turns it into GraphML and DOT.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import unique_sorted
from ..compiler import Executable
from ..compiler.executable import Moves
from ..compiler.lowering import COPY, EXECUTE
from ..graph import Graph

_DENSE_PAIRS = 1 << 22  # tile pairs counted in a dense array up to this many (T * T)


# ====================================================================== weights and tile pairs
def step_weights(exe: Executable, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """How many times each compute step and each copy counts: once per instruction that runs it,
    or (given an engine's per-instruction ``counts``) the times it ran."""
    compute_w = np.zeros(len(exe.computes), dtype=np.int64)
    copy_w = np.zeros(len(exe.copies), dtype=np.int64)
    for pc, (op, a, _) in enumerate(exe.code.tolist()):
        n = 1 if counts is None else int(counts[pc])
        if op == EXECUTE:
            compute_w[a] += n
        elif op == COPY:
            copy_w[a] += n
    return compute_w, copy_w


def _aggregate(keys: np.ndarray, weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys in ``[0, size)`` and the sum of their weights."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if size <= _DENSE_PAIRS:
        total = np.bincount(keys, weights=weights, minlength=size)
        nz = np.flatnonzero(total)
        return nz.astype(np.int64), np.rint(total[nz]).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    k, w = keys[order], weights[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    return k[starts].astype(np.int64), np.add.reduceat(w, starts).astype(np.int64)


def _move_keys(moves: Moves, offsets: np.ndarray, num_tiles: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    keys, nbytes = [], []
    for size in moves.sizes():
        src, dst = moves.words(size)
        if src.size == 0:
            continue
        src_tile = np.searchsorted(offsets, src.astype(np.int64) * size, side="right") - 1
        dst_tile = np.searchsorted(offsets, dst.astype(np.int64) * size, side="right") - 1
        remote = src_tile != dst_tile  # a Copy also moves data within a tile: that is not exchange
        key = src_tile[remote] * num_tiles + dst_tile[remote]
        keys.append(key)
        nbytes.append(np.full(key.size, size, dtype=np.int64))
    return keys, nbytes


def tile_pairs(exe: Executable, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(source tile, destination tile, bytes)`` of every tile pair that exchanges data, sorted.

    From the exchange plans (word indices -> byte addresses -> tiles); vectorised per step.
    """
    T = exe.target.num_tiles
    offsets = np.asarray(exe.tile_offsets, dtype=np.int64)
    compute_w, copy_w = step_weights(exe, counts)
    all_keys, all_bytes = [], []
    steps = [(w, (s.pre, s.post)) for s, w in zip(exe.computes, compute_w.tolist(), strict=True)]
    steps += [(w, (c.moves,)) for c, w in zip(exe.copies, copy_w.tolist(), strict=True) if c.kind == "copy"]
    for weight, phases in steps:
        if weight == 0:
            continue
        keys, nbytes = [], []
        for moves in phases:
            k, b = _move_keys(moves, offsets, T)
            keys += k
            nbytes += b
        if keys:
            k, b = _aggregate(np.concatenate(keys), np.concatenate(nbytes).astype(np.float64), T * T)
            all_keys.append(k)
            all_bytes.append(b * weight)
    if not all_keys:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    k, b = _aggregate(np.concatenate(all_keys), np.concatenate(all_bytes).astype(np.float64), T * T)
    return k // T, k % T, b


def tile_pair_arrays(exe: Executable, counts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The tile pairs as the profile ``.npz`` arrays ``tile_pairs_src``, ``_dst``, ``_bytes``."""
    src, dst, nbytes = tile_pairs(exe, counts)
    return {"tile_pairs_src": src, "tile_pairs_dst": dst, "tile_pairs_bytes": nbytes}


# ====================================================================== data flow between compute sets
_READ_CHUNK = 1 << 22  # element ids per pass over a field


def _field_chunks(graph: Graph, want: str, c: int | None = None) -> Any:
    """``(compute set, flat element ids)`` of every field that reads or writes (``want``), in
    chunks of about ``_READ_CHUNK`` ids (so a strided view is never copied whole)."""
    sets = enumerate(graph.compute_sets) if c is None else [(c, graph.compute_sets[c])]
    for ci, cs in sets:
        for block in cs.blocks:
            for name, ids in block.edges.items():
                if ids is None or not getattr(block.codelet.fields[name], want):
                    continue
                per_row = max(1, ids.size // max(ids.shape[0], 1))
                step = max(1, _READ_CHUNK // per_row)
                for lo in range(0, ids.shape[0], step):
                    yield ci, ids[lo:lo + step].reshape(-1)


class _Writers:
    """Who writes each element, from one pass over the written fields.

    ``owner[e]`` is the id of the *set* of compute sets that write element ``e`` (-1 if none):
    ids below ``C`` are the single compute set of that number, the others index ``sets`` (a
    conv's output that a norm and a ReLU then update in place is written by three).  Distinct
    writer sets are few, so memory is one small integer per element.
    """

    def __init__(self, graph: Graph) -> None:
        C = len(graph.compute_sets)
        self.C = C
        self.sets: list[tuple[int, ...]] = [(c,) for c in range(C)]
        index: dict[tuple[int, ...], int] = {}
        self.owner = np.full(graph.num_elements, -1, dtype=np.int16 if C < 2 ** 14 else np.int32)
        for c, flat in _field_chunks(graph, "writes"):
            prev = self.owner[flat]
            fresh = prev < 0
            self.owner[flat[fresh]] = c
            other = np.flatnonzero(~fresh & (prev != c))
            if other.size == 0:
                continue
            olds = unique_sorted(prev[other].astype(np.int64))
            new = np.empty(olds.size, dtype=np.int64)
            for i, old in enumerate(olds.tolist()):
                members = self.sets[old]
                key = members if c in members else tuple(sorted(members + (c,)))
                if len(key) == 1:
                    new[i] = key[0]
                    continue
                if key not in index:
                    index[key] = len(self.sets)
                    self.sets.append(key)
                new[i] = index[key]
            if new.max() >= np.iinfo(self.owner.dtype).max:
                self.owner = self.owner.astype(np.int64)
            self.owner[flat[other]] = new[np.searchsorted(olds, prev[other])]


def dataflow(graph: Graph, group: np.ndarray | None = None, num_groups: int | None = None,
             writers: _Writers | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(writer, reader, bytes, elements)`` data-flow edges between groups of compute sets.

    ``group`` gives each compute set's group (default: each its own); an edge counts the distinct
    elements that some compute set of the writer group writes and some of the reader group reads.
    One pass over the written fields (:class:`_Writers`, reusable across calls) and one over the
    read fields, in chunks: a per-element stamp array removes repeated reads within a reader
    group, so no per-group arrays of element ids are built or sorted.  Memory beyond the graph is
    about 6 bytes per element.
    """
    C = len(graph.compute_sets)
    if group is None:
        group, num_groups = np.arange(C, dtype=np.int64), C
    group = np.asarray(group, dtype=np.int64)
    G = int(num_groups if num_groups is not None else (int(group.max(initial=-1)) + 1))
    empty = np.zeros(0, dtype=np.int64)
    w = writers if writers is not None else _Writers(graph)
    if C == 0 or not (w.owner >= 0).any():
        return empty, empty.copy(), empty.copy(), empty.copy()
    S = len(w.sets)
    # writer sets as groups: (set, group) pairs, each group once per set
    set_of, group_of = [], []
    for sid, members in enumerate(w.sets):
        for g in sorted({int(group[c]) for c in members}):
            set_of.append(sid)
            group_of.append(g)
    set_of_a, group_of_a = np.array(set_of, dtype=np.int64), np.array(group_of, dtype=np.int64)
    bases = graph.variable_bases()
    var_itemsize = np.array([v.dtype.itemsize for v in graph.variables], dtype=np.float64)
    members_of: list[list[int]] = [[] for _ in range(G)]
    for c in range(C):
        members_of[int(group[c])].append(c)
    stamp = np.full(graph.num_elements, -1, dtype=np.int32)
    limit = np.iinfo(np.int32).max - (1 << 24)
    src, dst, nbytes, nelem = [], [], [], []
    token = 0  # stamps given out so far: an element stamped at or after a group's start was read by it
    for r, sets in enumerate(members_of):
        start = token
        b = np.zeros(S, dtype=np.float64)
        e = np.zeros(S, dtype=np.int64)
        for c in sets:
            for _, flat in _field_chunks(graph, "reads", c):
                cand = flat[(w.owner[flat] >= 0) & (stamp[flat] < start)]
                if cand.size == 0:
                    continue
                tokens = np.arange(token, token + cand.size, dtype=np.int32)
                stamp[cand] = tokens
                u = cand[stamp[cand] == tokens]  # one survivor per distinct element
                token += cand.size
                sid = w.owner[u].astype(np.intp)
                b += np.bincount(sid, weights=var_itemsize[np.searchsorted(bases, u, side="right") - 1], minlength=S)
                e += np.bincount(sid, minlength=S)
                if token > limit:  # restart the stamps before they overflow (only for huge graphs)
                    stamp[:] = -1
                    token = start = 0
        gb = np.bincount(group_of_a, weights=b[set_of_a], minlength=G)
        ge = np.bincount(group_of_a, weights=e[set_of_a], minlength=G)
        ge[r] = 0  # a group that reads what it writes (InOut, or inside an op) is no edge
        for g in np.flatnonzero(ge).tolist():
            src.append(g)
            dst.append(r)
            nbytes.append(int(round(gb[g])))
            nelem.append(int(round(ge[g])))
    return (np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), np.array(nbytes, dtype=np.int64),
            np.array(nelem, dtype=np.int64))


# ====================================================================== levels
def _group_counts(group: np.ndarray, num_groups: int, arrays: dict[str, np.ndarray], num_tiles: int) -> dict:
    """Vertices, distinct tiles and distinct codelets of each group of vertices."""
    vertices = np.bincount(group, minlength=num_groups) if group.size else np.zeros(num_groups, dtype=np.int64)
    out = {"vertices": vertices.tolist()}
    for column, size, name in (("vertex_tile", num_tiles, "tiles_used"), ("vertex_codelet", None, "codelets")):
        values = arrays[column].astype(np.int64)
        mapped = values >= 0  # a graph dumped before compilation may have vertices without a tile
        values, group = (values, group) if mapped.all() else (values[mapped], group[mapped])
        width = size if size is not None else int(values.max(initial=-1)) + 1
        pairs = unique_sorted(group.astype(np.int64) * max(width, 1) + values) if values.size else values
        out[name] = np.bincount(pairs // max(width, 1), minlength=num_groups).tolist() if pairs.size \
            else [0] * num_groups
    return out


def _compute_set_costs(graph: Graph, exe: Executable | None, counts: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per compute set of the graph, one execution's cycles and exchange, from the executable."""
    C = len(graph.compute_sets)
    cols = {k: np.zeros(C, dtype=np.int64) for k in ("compute_cycles", "exchange_cycles", "exchange_bytes",
                                                     "inter_ipu_bytes", "executions")}
    if exe is None:
        return cols
    compute_w, _ = step_weights(exe, counts)
    by_name: dict[str, list[int]] = {}
    for i, step in enumerate(exe.computes):
        by_name.setdefault(step.name, []).append(i)
    for c, cs in enumerate(graph.compute_sets):
        found = by_name.get(cs.name)
        if not found:
            continue  # never executed: not compiled
        i = found.pop(0) if len(found) > 1 else found[0]  # equal names: matched in order
        step = exe.computes[i]
        cols["compute_cycles"][c] = step.compute_cycles
        cols["exchange_cycles"][c] = step.exchange_cycles
        cols["exchange_bytes"][c] = step.exchange_bytes
        cols["inter_ipu_bytes"][c] = step.inter_ipu_bytes
        cols["executions"][c] = compute_w[i] if counts is not None else 0
    return cols


def aggregate_levels(graph: Graph, exe: Executable | None, arrays: dict[str, np.ndarray], info: dict[str, Any],
                     levels: list[str], counts: np.ndarray | None = None) -> dict[str, dict]:
    """The requested aggregated levels as plain data (see the module docstring)."""
    T = graph.target.num_tiles
    C = len(info["compute_sets"])
    out: dict[str, dict] = {}
    costs = _compute_set_costs(graph, exe, counts)
    writers = _Writers(graph) if any(lv in levels for lv in ("compute_set", "op", "layer")) else None
    groups = {
        "compute_set": (np.arange(C, dtype=np.int64), info["compute_sets"]),
        "op": (info["cs_op"].astype(np.int64), info["ops"]),
        "layer": (info["cs_layer"].astype(np.int64), info["layers"]),
    }
    for level in ("compute_set", "op", "layer"):
        if level not in levels:
            continue
        of_cs, names = groups[level]
        n = len(names)
        vertex_group = of_cs[arrays["vertex_cs"]] if arrays["vertex_cs"].size else np.zeros(0, dtype=np.int64)
        nodes: dict[str, list] = {"name": list(names)}
        if level == "compute_set":
            nodes["op"] = [info["ops"][o] for o in info["cs_op"].tolist()]
            nodes["layer"] = [info["layers"][la] for la in info["cs_layer"].tolist()]
        elif level == "op":
            nodes["layer"] = [info["layers"][la] for la in info["op_layer"].tolist()]
            nodes["compute_sets"] = np.bincount(of_cs, minlength=n).tolist() if C else [0] * n
        else:
            nodes["layer"] = list(names)
            nodes["ops"] = np.bincount(info["op_layer"], minlength=n).tolist() if len(info["ops"]) else [0] * n
            nodes["compute_sets"] = np.bincount(of_cs, minlength=n).tolist() if C else [0] * n
        nodes.update(_group_counts(vertex_group, n, arrays, T))
        for name, col in costs.items():
            if level == "compute_set":
                nodes[name] = col.tolist()
            elif name != "executions":
                nodes[name] = np.bincount(of_cs, weights=col, minlength=n).astype(np.int64).tolist() if C else [0] * n
        src, dst, nbytes, nelem = dataflow(graph, of_cs, n, writers)
        edges = {"source": src.tolist(), "target": dst.tolist(), "bytes": nbytes.tolist(), "elements": nelem.tolist()}
        out[level] = {"level": level, "nodes": nodes, "edges": edges,
                      "edge_meaning": "data flow: bytes of distinct elements written by source and read by target"}
    if "tile" in levels:
        out["tile"] = _tile_level(graph, exe, arrays, counts)
    return out


def _tile_level(graph: Graph, exe: Executable | None, arrays: dict[str, np.ndarray],
                counts: np.ndarray | None) -> dict:
    target = graph.target
    T = target.num_tiles
    tiles = arrays["vertex_tile"].astype(np.int64)
    mapped = tiles >= 0  # a graph dumped before compilation may have vertices without a tile
    cs_of_vertex = arrays["vertex_cs"][mapped]
    tiles = tiles[mapped]
    nodes: dict[str, list] = {
        "name": [f"tile {t}" for t in range(T)],
        "ipu": (np.arange(T) // target.tiles_per_ipu).tolist(),
        "vertices": np.bincount(tiles, minlength=T).tolist() if tiles.size else [0] * T,
    }
    C = len(graph.compute_sets)
    pairs = unique_sorted(tiles * max(C, 1) + cs_of_vertex) if tiles.size else tiles
    nodes["compute_sets"] = np.bincount(pairs // max(C, 1), minlength=T).tolist() if pairs.size else [0] * T
    edges: dict[str, list] = {"source": [], "target": [], "bytes": []}
    if exe is not None:
        nodes["memory_bytes"] = np.asarray(exe.tile_bytes(), dtype=np.int64).tolist()
        compute_w, _ = step_weights(exe, counts)
        cycles = np.zeros(T, dtype=np.int64)
        for step, w in zip(exe.computes, compute_w.tolist(), strict=True):
            cycles += w * np.asarray(step.tile_cycles, dtype=np.int64)
        nodes["compute_cycles"] = cycles.tolist()
        src, dst, nbytes = tile_pairs(exe, counts)
        nodes["bytes_sent"] = np.bincount(src, weights=nbytes, minlength=T).astype(np.int64).tolist()
        nodes["bytes_received"] = np.bincount(dst, weights=nbytes, minlength=T).astype(np.int64).tolist()
        edges = {"source": src.tolist(), "target": dst.tolist(), "bytes": nbytes.tolist()}
    return {"level": "tile", "nodes": nodes, "edges": edges,
            "edge_meaning": "exchange: bytes the source tile sends to the target tile"}


__all__ = ["aggregate_levels", "dataflow", "step_weights", "tile_pair_arrays", "tile_pairs"]
