"""Reductions over axes (popops' reduce): a two-stage plan, where the data lives.

Stage 1 (``partial``): the elements of each output that one tile holds form a group; a group is
cut into pieces of at most ``partial_length`` elements, and one vertex per piece, on that tile,
reduces it to a float partial (no exchange of the input).  Stage 2 (``final``): one vertex per
output, on the output's tile, combines that output's partials (brought in by the exchange),
applies the final scale (``1/n`` for a mean) and rounds to the output type.  When an output has
more than ``final_max_partials`` partials, intermediate stages combine ``partial_length`` of them
at a time first.  When every output lives on one tile (at most ``MAX_SINGLE_STAGE_LENGTH``
elements), a single stage reduces each output with one vertex and writes it directly.

Vertices of one codelet share their field shapes, so a piece of ``n`` elements becomes a row of
``next_pow2(n)`` elements padded with repeats of its own elements, and the masked codelets
(``codelets.nn.Masked*``) reduce only the first ``count`` of each row (counts come from a small
constant): a handful of lengths per stage, whatever the mapping.  One vertex reduces several rows
of its tile (``rows_per_vertex``), so a tile holding a few elements of many outputs (a batch
norm's channels) does not pay a vertex per output; unused rows of a vertex write to a scratch
temporary.  Each vertex's cycle estimate is set from its exact counts.  The same stages compute
fused reductions (sum of squared deviations, of exponentials, dot products with a shift...) for
norm and loss: see :class:`ReduceSpec` and :func:`build_reduction`.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence as SequenceT

import numpy as np

from codelets import nn

from ..dtypes import FLOAT, HALF, INT, UNSIGNED_INT, as_dtype, poplar_name
from ..errors import DTypeError, GraphError, TensorError
from ..graph import ComputeSet, Execute, Graph, Sequence, Tensor, concat
from ..target import Target
from .common import linear_variable, op_name, record
from .elementwise import MIN_VERTEX_BYTES, release_together

#: Longest piece one stage-1 vertex reduces (a power of two).
MAX_PARTIAL_LENGTH = 256
#: Longest group (elements of one output on its only tile) reduced in a single stage.
MAX_SINGLE_STAGE_LENGTH = 1024
#: Most partials one final vertex combines before an intermediate stage is added.
MAX_FINAL_PARTIALS = 256

_COMBINE = {"sum": nn.MaskedSum, "max": nn.MaskedMax, "min": nn.MaskedMin}


# ==================================================================== planning (pure)
def _next_pow2(n: np.ndarray | int) -> np.ndarray:
    n = np.maximum(np.asarray(n, dtype=np.int64), 1)
    return np.left_shift(np.int64(1), np.ceil(np.log2(n)).astype(np.int64))


@functools.lru_cache(maxsize=1024)
def plan_reduce(target: Target, max_tile_elements: int, dtype: object) -> dict:
    """Piece length of stage 1 (the busiest tile's elements over its workers, as a power of two
    between ``MIN_VERTEX_BYTES`` of data and :data:`MAX_PARTIAL_LENGTH`) and the
    intermediate-stage threshold."""
    per_worker = -(-int(max_tile_elements) // target.num_worker_contexts)
    shortest = max(8, MIN_VERTEX_BYTES // as_dtype(dtype).itemsize)
    length = int(min(max(int(_next_pow2(per_worker)), shortest), MAX_PARTIAL_LENGTH))
    return {"partial_length": length, "final_max_partials": MAX_FINAL_PARTIALS, "dtype": poplar_name(as_dtype(dtype))}


def normalise_axes(axes: int | SequenceT[int], rank: int, who: str) -> tuple[int, ...]:
    """Sorted non-negative axes; out-of-range or repeated axes are an error."""
    items = [axes] if isinstance(axes, (int, np.integer)) else list(axes)
    out = []
    for a in items:
        if not isinstance(a, (int, np.integer)) or not -rank <= int(a) < rank:
            raise TensorError(f"{who}: axis {a!r} is out of range for rank {rank}")
        out.append(int(a) % rank)
    if len(set(out)) != len(out):
        raise TensorError(f"{who}: axes {list(items)} name a dimension twice")
    return tuple(sorted(out))


# ==================================================================== the shared stages
@dataclass
class ReduceSpec:
    """One reduction of the main input ``x`` computed by :func:`build_reduction`.

    ``stage1(dtype)`` gives the stage-1 codelet writing ``dtype`` (None when there is none), a
    ``codelets.nn.Masked*`` codelet: ``inp`` (x), the fields of ``elem_inputs`` (tensors of x's
    shape, read at the same positions), the per-row fields of ``seg_inputs`` (one element per
    output), ``count``, ``out`` and, for float results, ``scale``.  Partials are combined by
    ``combine``.
    """

    stage1: Callable[[np.dtype], type | None]
    partial_dtype: np.dtype
    combine: str
    out: Tensor
    scale: float = 1.0
    elem_inputs: dict[str, Tensor] = field(default_factory=dict)
    seg_inputs: dict[str, Tensor] = field(default_factory=dict)
    kind: str = ""  # stage 1's cost formula (codelets.nn.MASKED_CPV); default: ``combine``

    def __post_init__(self) -> None:
        self.kind = self.kind or self.combine


def plain_spec(x: Tensor, op: str, out: Tensor, scale: float = 1.0) -> ReduceSpec:
    """Sum, max or min of ``x`` into ``out`` (sums of floats accumulate in FLOAT partials)."""
    family = _COMBINE[op]
    partial = FLOAT if (op == "sum" and x.dtype in (FLOAT, HALF)) else x.dtype

    def stage1(dtype: np.dtype) -> type | None:
        return family.variants.get((x.dtype, np.dtype(dtype)))

    if stage1(partial) is None:
        raise DTypeError(f"reduce {op!r} has no {poplar_name(x.dtype)} variant")
    return ReduceSpec(stage1, partial, op, out, scale)


def _chunks(keys: np.ndarray, cap: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Starts and sizes of the runs of equal (sorted) ``keys``, each cut into pieces of ``cap``."""
    m = keys.size
    new = np.ones(m, dtype=bool)
    new[1:] = keys[1:] != keys[:-1]
    if cap is not None:
        starts = np.flatnonzero(new)
        rank = np.arange(m) - starts[np.cumsum(new) - 1]
        new |= rank % cap == 0
    starts = np.flatnonzero(new)
    return starts, np.diff(np.r_[starts, m])


def rows_per_vertex(target: Target, length: int, busiest_rows: int, itemsize: int) -> int:
    """Rows of ``length`` elements one masked vertex reduces: the busiest tile's rows shared by its
    workers, at least ``MIN_VERTEX_BYTES`` of data, at most ``MAX_PARTIAL_LENGTH`` elements."""
    share = -(-int(busiest_rows) // target.num_worker_contexts)
    fewest = -(-(MIN_VERTEX_BYTES // itemsize) // length)
    most = max(1, MAX_PARTIAL_LENGTH // length)
    return int(min(max(share, fewest), most))


def _counts_constant(graph: Graph, counts: np.ndarray, tiles: np.ndarray, name: str) -> Tensor:
    """The UNSIGNED_INT constant of row counts, mapped to ``tiles``; reductions with the same rows
    (a batch norm's mean and variance, repeated layers of one shape) share one constant."""
    counts = counts.astype(UNSIGNED_INT)
    tiles = tiles.astype(np.int32)
    key = hashlib.sha256(counts.tobytes() + b"|" + tiles.tobytes()).digest()
    known = graph.op_cache.setdefault("reduce.counts", {})  # digest of (counts, tiles) -> constant
    if key not in known:
        t = graph.add_constant(UNSIGNED_INT, (counts.size,), counts, name)
        graph.set_tile_mapping(t, tiles)
        known[key] = t
    return known[key]


def _row_layout(target: Target, pieces: np.ndarray, tiles: np.ndarray, length: int,
                itemsize: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Deal ``pieces`` (padded to ``length``) to vertices of ``g`` rows on their tiles: returns
    ``(length, g, slots, vertex_tiles)``, ``slots`` (vertices, g) holding piece numbers, -1 where a
    vertex's last rows are unused."""
    pieces = pieces[np.argsort(tiles[pieces], kind="stable")]
    per_tile = np.bincount(tiles[pieces], minlength=target.num_tiles)
    g = rows_per_vertex(target, length, int(per_tile.max()), itemsize)
    vertices = -(-per_tile // g)
    first_vertex = np.cumsum(vertices) - vertices
    rank = np.arange(pieces.size) - (np.cumsum(per_tile) - per_tile)[tiles[pieces]]
    slots = np.full((int(vertices.sum()), g), -1, dtype=np.int64)
    slots[first_vertex[tiles[pieces]] + rank // g, rank % g] = pieces
    return length, g, slots, np.repeat(np.arange(target.num_tiles), vertices).astype(np.int32)


def _add_stage(graph: Graph, cs: ComputeSet, name: str, items: list[tuple], order: np.ndarray,
               starts: np.ndarray, sizes: np.ndarray, seg: np.ndarray, tiles: np.ndarray) -> tuple[list, list]:
    """Reduce each piece (``order[starts[j]:starts[j] + sizes[j]]`` of the sources, on ``tiles[j]``)
    for each item ``(codelet, kind, src, elem_inputs, seg_inputs, out, scale)``, ``out`` having one
    element per piece.

    Pieces are padded to a power-of-two length and grouped, tile by tile, into vertices of a few
    rows; a vertex's unused rows (count 0) write to a scratch variable.  Returns the padded lengths
    used and the scratch variables (temporaries of this stage).
    """
    buckets = _next_pow2(sizes)
    lengths = np.unique(buckets).tolist()  # a handful of powers of two
    itemsize = max(item[2].dtype.itemsize for item in items)
    layouts = [_row_layout(graph.target, np.flatnonzero(buckets == length), tiles, length, itemsize)
               for length in lengths]
    # counts of every row (0 for unused rows), one constant for the stage
    counts = np.concatenate([np.where(sl >= 0, sizes[np.maximum(sl, 0)], 0).reshape(-1) for _, _, sl, _ in layouts])
    row_tiles = np.concatenate([np.repeat(vt, g) for _, g, _, vt in layouts])
    counts_t = _counts_constant(graph, counts, row_tiles, f"{name}/counts")
    unused = np.concatenate([(sl < 0).reshape(-1) for _, _, sl, _ in layouts])
    scratch = []
    outs = []
    for i, item in enumerate(items):
        out = item[5]
        if unused.any():
            extra = graph.add_variable(out.dtype, (int(unused.sum()),), f"{name}/unused{i}")
            graph.set_tile_mapping(extra, row_tiles[unused])
            scratch.append(extra)
            out = concat([out, extra])
        outs.append(out)
    row = 0
    n_pieces = sizes.size
    unused_rank = np.cumsum(unused) - 1  # position of each unused row in the scratch
    for length, g, slots, vtiles in layouts:
        filled = np.where(slots >= 0, slots, slots[:, :1])  # unused rows repeat the vertex's first
        take = np.minimum(np.arange(length), sizes[filled][..., None] - 1)
        idx = order[starts[filled][..., None] + take].reshape(len(slots), g * length)
        rows = row + np.arange(slots.size).reshape(slots.shape)
        out_pos = np.where(slots >= 0, slots, n_pieces + unused_rank[rows])
        row_counts = counts[rows]
        for (codelet, kind, src, elem_inputs, seg_inputs, _, scale), out in zip(items, outs, strict=True):
            fields = {"inp": src[idx], "count": counts_t[rows], "out": out[out_pos]}
            fields.update({f: t[idx] for f, t in elem_inputs.items()})
            fields.update({f: t[seg[filled]] for f, t in seg_inputs.items()})
            state = {"scale": scale} if "scale" in codelet.fields else None
            perf = nn.masked_cycles(kind, row_counts, codelet.fields["inp"].type.dtype)
            graph.add_vertices(cs, codelet, fields, vtiles, state=state, perf_estimates=perf)
        row += slots.size
    return lengths, scratch


def build_reduction(graph: Graph, prog: Sequence, opname: str, phase: str, x: Tensor,
                    axes: tuple[int, ...], specs: list[ReduceSpec]) -> tuple[list[ComputeSet], list[Tensor], dict]:
    """Reduce ``x`` over ``axes`` for every spec, appending the stages to ``prog``.

    Every spec's ``out`` has one element per output position (x's shape without ``axes``, in
    row-major order).  Returns the compute sets, the temporaries (partials and scratch, for the
    caller to release after its last step) and the plan.
    """
    target = graph.target
    kept = [d for d in range(x.rank) if d not in axes]
    out_shape = tuple(x.shape[d] for d in kept)
    num_out = int(np.prod(out_shape, dtype=np.int64))
    if x.numel == 0 or num_out == 0:
        raise TensorError(f"{opname}: cannot reduce {x.name!r} of shape {x.shape} over axes {list(axes)}: "
                          "it has no elements (an empty reduction has no defined result here)")
    for spec in specs:
        if spec.out.numel != num_out:
            raise TensorError(f"{opname}: output {spec.out.name!r} has {spec.out.numel} elements, "
                              f"expected {num_out}")
    x_tiles = graph.tile_of_elements(x).reshape(-1).astype(np.int64)
    if (x_tiles < 0).any():
        raise GraphError(f"{opname}: tensor {x.name!r} is not fully mapped to tiles")
    keep_shape = tuple(1 if d in axes else x.shape[d] for d in range(x.rank))
    seg = np.broadcast_to(np.arange(num_out, dtype=np.int64).reshape(keep_shape), x.shape).reshape(-1)
    plan = dict(plan_reduce(target, int(np.bincount(x_tiles).max()), x.dtype))
    cap, final_max = plan["partial_length"], plan["final_max_partials"]

    # ---- stage 1: pieces of the elements each tile holds of each output
    keys = seg * target.num_tiles + x_tiles
    order = np.argsort(keys, kind="stable")
    starts, sizes = _chunks(keys[order], None)
    # one stage when every output lives on one tile, in a piece short enough for one vertex
    single = (bool(np.all(np.bincount(seg[order[starts]], minlength=num_out) == 1))
              and int(sizes.max()) <= MAX_SINGLE_STAGE_LENGTH
              and all(s.stage1(s.out.dtype) is not None for s in specs))
    if not single:
        starts, sizes = _chunks(keys[order], cap)
    cseg, ctiles = seg[order[starts]], x_tiles[order[starts]]
    prefix = f"{opname}/{phase}" if phase else opname
    stage = "reduce" if single else "partial"
    cs1 = graph.add_compute_set(f"{prefix}/{stage}")
    computes, temps = [cs1], []
    flat_x = x.flatten()
    items, partials = [], []
    for i, spec in enumerate(specs):
        elem = {f: t.flatten() for f, t in spec.elem_inputs.items()}
        segs = {f: t.flatten() for f, t in spec.seg_inputs.items()}
        if single:
            out = spec.out.flatten()[cseg]
            items.append((spec.stage1(spec.out.dtype), spec.kind, flat_x, elem, segs, out, spec.scale))
        else:
            p = graph.add_variable(spec.partial_dtype, (starts.size,), f"{prefix}/partials{i}")
            graph.set_tile_mapping(p, ctiles.astype(np.int32))
            partials.append(p)
            items.append((spec.stage1(spec.partial_dtype), spec.kind, flat_x, elem, segs, p, 1.0))
    used, scratch = _add_stage(graph, cs1, f"{prefix}/{stage}", items, order, starts, sizes, cseg, ctiles)
    lengths = [used]
    prog.add(Execute(cs1))
    temps += scratch
    plan.update(stages=1, pieces=int(starts.size))
    if single:
        plan["lengths"] = lengths
        return computes, temps, plan

    # ---- intermediate stages (outputs with many partials), then the final stage
    src_seg, src_tiles = cseg, ctiles
    out_tiles = [graph.tile_of_elements(s.out).reshape(-1).astype(np.int64) for s in specs]
    while True:
        counts = np.bincount(src_seg, minlength=num_out)
        final = int(counts.max()) <= final_max
        starts, sizes = _chunks(src_seg, None if final else cap)
        cseg = src_seg[starts]
        stage = "final" if final else f"combine{plan['stages']}"
        cs = graph.add_compute_set(f"{prefix}/{stage}")
        computes.append(cs)
        ctiles = src_tiles[starts]  # an intermediate piece lives with its first partial
        groups: dict[bytes, tuple[np.ndarray, list]] = {}  # vertices' tiles -> items
        new_partials = []
        for i, (spec, p) in enumerate(zip(specs, partials, strict=True)):
            codelet = _COMBINE[spec.combine][spec.partial_dtype, spec.out.dtype if final else spec.partial_dtype]
            if final:  # on the output's tile
                item = (codelet, spec.combine, p, {}, {}, spec.out.flatten()[cseg], spec.scale)
                tiles_i = out_tiles[i][cseg]
            else:
                out = graph.add_variable(spec.partial_dtype, (starts.size,), f"{prefix}/{stage}/partials{i}")
                graph.set_tile_mapping(out, ctiles.astype(np.int32))
                new_partials.append(out)
                item, tiles_i = (codelet, spec.combine, p, {}, {}, out, 1.0), ctiles
            groups.setdefault(tiles_i.tobytes(), (tiles_i, []))[1].append(item)
        scratch = []
        for k, (tiles_i, group) in enumerate(groups.values()):  # one group unless outputs differ in mapping
            used, extra = _add_stage(graph, cs, f"{prefix}/{stage}{'' if k == 0 else k}", group,
                                     np.arange(src_seg.size), starts, sizes, cseg, tiles_i)
            lengths.append(used)
            scratch += extra
        prog.add(Execute(cs))
        temps.extend(partials + scratch)
        plan["stages"] += 1
        if final:
            break
        partials, src_seg, src_tiles = new_partials, cseg, ctiles
    plan["lengths"] = lengths
    return computes, temps, plan


# ==================================================================== the op
def reduce(graph: Graph, x: Tensor, axes: int | SequenceT[int], prog: Sequence, op: str = "sum",
           name: str = "", out_dtype: object | None = None) -> Tensor:
    """Reduce ``x`` over ``axes`` with ``op`` ("sum", "max", "min" or "mean").

    The result has ``x``'s shape without ``axes`` (shape ``()`` when every axis is reduced), is
    mapped linearly, and has ``out_dtype`` (default ``x``'s type).  Float sums accumulate in float32
    whatever the types; the two-stage plan is described in the module docstring.
    """
    if not isinstance(x, Tensor) or x.graph is not graph:
        raise TensorError(f"reduce: expected a tensor of this graph, got {x!r}")
    if op not in ("sum", "max", "min", "mean"):
        raise GraphError(f"reduce: unknown op {op!r}; expected 'sum', 'max', 'min' or 'mean'")
    axes_t = normalise_axes(axes, x.rank, "reduce")
    dst = as_dtype(out_dtype if out_dtype is not None else x.dtype, "reduce out_dtype")
    if op == "mean" and (x.dtype not in (FLOAT, HALF) or dst not in (FLOAT, HALF)):
        raise DTypeError(f"reduce: a mean needs FLOAT or HALF data and result, got {poplar_name(x.dtype)} "
                         f"-> {poplar_name(dst)}")
    if x.dtype in (INT, UNSIGNED_INT) and dst != x.dtype:
        raise DTypeError(f"reduce: an integer reduction keeps its type ({poplar_name(x.dtype)}), "
                         f"got out_dtype {poplar_name(dst)}")
    opname = op_name(graph, f"reduce_{op}", name)
    out_shape = tuple(s for d, s in enumerate(x.shape) if d not in axes_t)
    out = linear_variable(graph, dst, out_shape, f"{opname}/out")
    count = int(np.prod([x.shape[d] for d in axes_t], dtype=np.int64))
    scale = 1.0 / count if op == "mean" and count else 1.0
    spec = plain_spec(x, "sum" if op == "mean" else op, out, scale)
    if _COMBINE[spec.combine].variants.get((spec.partial_dtype, dst)) is None:
        raise DTypeError(f"reduce {op!r}: no {poplar_name(x.dtype)} -> {poplar_name(dst)} variant")
    computes, temps, plan = build_reduction(graph, prog, opname, "", x, axes_t, [spec])
    release_together(prog, temps)
    plan.update(op=op, axes=list(axes_t))
    record(graph, opname, "reduce", plan, computes, temps)
    return out
