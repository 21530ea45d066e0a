"""Matrix products (poplin's ``matMul``): build tensors and vertices from a :class:`MatMulPlan`.

The plan (``ops/planning.py``, pure) splits the product into cells, one a tile; this module turns
it into one or two compute sets (see planning.py's docstring for the cost of each):

* ``{name}/matmul``: one ``MatMulPartial`` per cell and group, its fields *views* of ``a`` and
  ``b`` (``a[g, m0:m1, k0:k1]`` flattened, gathered with index arrays built for all cells at
  once), writing the cell's partial sums (every partial is written by exactly one vertex, so
  nothing needs zeroing first);
* ``{name}/reduce``: ``ReduceAdd`` sums the ``split_k`` partials of each output piece on the tile
  that holds the piece (skipped when ``split_k == 1`` and the output has the partials' type).

The partials are a temporary: released (``WriteUndef``) after the reduction.  Operands may be any
views with any mapping; the exchange brings the blocks in.  ``create_matmul_lhs`` and
``create_matmul_rhs`` make operands laid out where the plan reads them (PopLibs'
``createMatMulInputLHS/RHS``), the layout the plan's cycle estimate assumes.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from codelets import Fill, MatMulPartial, ReduceAdd

from ..dtypes import FLOAT, HALF, poplar_name
from ..errors import DTypeError, GraphError, TensorError
from ..graph import ComputeSet, Execute, Graph, Sequence, Tensor
from . import planning
from .common import op_name, record, release
from .planning import MatMulPlan, dtype_of, element_type, plan_matmul

__all__ = ["MatMulPlan", "plan_matmul", "matmul", "matmul_grouped", "create_matmul_lhs",
           "create_matmul_rhs", "matmul_options"]

#: The options matmul and conv take (PopLibs' option names in snake_case), with defaults.
DEFAULT_OPTIONS = {"available_memory_proportion": 0.6, "partials_type": None, "start_tile": 0}


def matmul_options(options: dict | None, who: str) -> dict:
    """Check an options dict against the known names and fill in the defaults."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS) - {"plan"})
    if unknown:
        raise GraphError(f"{who}: unknown option(s) {unknown}; known options are "
                         f"{sorted(DEFAULT_OPTIONS)} (and 'plan' to pin a plan)")
    start = options.get("start_tile", 0)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise GraphError(f"{who}: option 'start_tile' must be a tile number (an int >= 0), got {start!r}")
    return {**DEFAULT_OPTIONS, **options}


def started(plan: MatMulPlan, options: dict, who: str) -> MatMulPlan:
    """``plan`` with its grid starting on the tile ``options["start_tile"]`` names."""
    start = int(options["start_tile"])
    if start >= plan.num_tiles:
        raise GraphError(f"{who}: option 'start_tile' is {start}, but the target has tiles 0..{plan.num_tiles - 1}")
    return plan if start == plan.start_tile else dataclasses.replace(plan, start_tile=start)


def check_pinned_start(pinned: MatMulPlan, options: dict, who: str) -> None:
    """A pinned plan keeps its own start tile: a different ``start_tile`` beside it is an error."""
    if options["start_tile"] not in (0, pinned.start_tile):
        raise GraphError(f"{who}: option 'start_tile' is {options['start_tile']}, but the pinned plan starts "
                         f"on tile {pinned.start_tile}; give one or the other")


def _plan_for(graph: Graph, groups: int, m: int, k: int, n: int, dtype: np.dtype, out_dtype: np.dtype,
              options: dict, who: str) -> MatMulPlan:
    """The pinned plan of ``options["plan"]`` (checked against the shapes), else a new one."""
    pinned = options.get("plan")
    if pinned is None:
        plan = plan_matmul(graph.target, m, k, n, dtype, out_dtype, options["available_memory_proportion"],
                           groups=groups, partials_dtype=options["partials_type"])
        return started(plan, options, who)
    if not isinstance(pinned, MatMulPlan):
        raise GraphError(f"{who}: option 'plan' must be a MatMulPlan, got {type(pinned).__name__}")
    check_pinned_start(pinned, options, who)
    given = (pinned.groups, pinned.m, pinned.k, pinned.n, pinned.dtype, pinned.out_dtype, pinned.num_tiles)
    wanted = (groups, m, k, n, poplar_name(dtype), poplar_name(out_dtype), graph.target.num_tiles)
    if given != wanted:
        raise GraphError(f"{who}: the pinned plan is for (groups, m, k, n, type, output type, tiles) {given}, "
                         f"but this product is {wanted}")
    return pinned


# ============================================================================ public ops
def matmul(graph: Graph, a: Tensor, b: Tensor, prog: Sequence, name: str = "", options: dict | None = None,
           out_dtype: object = None) -> Tensor:
    """``c = a @ b`` for an ``(m, k)`` and a ``(k, n)`` tensor: a new ``(m, n)`` tensor mapped by
    the plan (PopLibs' ``matMul``).

    ``a`` and ``b`` may be any views (transposes, slices...) with any complete mapping.  Options:
    ``available_memory_proportion`` (0.6), ``partials_type`` (float; half allowed for half inputs),
    ``start_tile`` (0: the tile of the plan's first cell; the grid is rotated round the tiles),
    ``plan`` (a :class:`MatMulPlan` to use instead of planning, with its own start tile).
    ``out_dtype`` defaults to the inputs' type; half inputs are multiplied exactly and
    accumulated in the partials' type.
    """
    who = f"matmul {name!r}" if name else "matmul"
    _check_operands(a, b, 2, who)
    c = matmul_grouped(graph, a.expand([0]), b.expand([0]), prog, name, options, out_dtype, _who=who)
    return c.reshape(c.shape[1:])


def matmul_grouped(graph: Graph, a: Tensor, b: Tensor, prog: Sequence, name: str = "",
                   options: dict | None = None, out_dtype: object = None, *, _who: str = "") -> Tensor:
    """``c[g] = a[g] @ b[g]`` for ``(G, m, k)`` and ``(G, k, n)`` tensors: a new ``(G, m, n)``
    tensor, all groups in one set of compute sets (grouped convolutions use this)."""
    who = _who or (f"matmul_grouped {name!r}" if name else "matmul_grouped")
    _check_operands(a, b, 3, who)
    opts = matmul_options(options, who)
    odt = a.dtype if out_dtype is None else element_type(out_dtype, f"{who} output type")
    G, m, k = a.shape
    n = b.shape[2]
    plan = _plan_for(graph, G, m, k, n, a.dtype, odt, opts, who)
    name = op_name(graph, "matmul", name)
    c, compute_sets, temporaries = build_matmul(graph, plan, a, b, prog, name)
    record(graph, name, "matmul", plan=plan.to_dict(), compute_sets=compute_sets, temporaries=temporaries)
    return c


def create_matmul_lhs(graph: Graph, m: int, k: int, n: int, dtype: object = FLOAT, name: str = "",
                      options: dict | None = None, out_dtype: object = None) -> Tensor:
    """A new ``(m, k)`` variable laid out where the plan of ``(m x k) @ (k x n)`` reads it
    (PopLibs' ``createMatMulInputLHS``): each block cut into pieces on the tiles that read it."""
    return _create_operand(graph, "lhs", m, k, n, dtype, name, options, out_dtype)


def create_matmul_rhs(graph: Graph, m: int, k: int, n: int, dtype: object = FLOAT, name: str = "",
                      options: dict | None = None, out_dtype: object = None) -> Tensor:
    """A new ``(k, n)`` variable laid out where the plan of ``(m x k) @ (k x n)`` reads it
    (PopLibs' ``createMatMulInputRHS``): weights live where they are used."""
    return _create_operand(graph, "rhs", m, k, n, dtype, name, options, out_dtype)


def _create_operand(graph: Graph, side: str, m: int, k: int, n: int, dtype: object, name: str,
                    options: dict | None, out_dtype: object) -> Tensor:
    """The ``side`` ("lhs" or "rhs") operand of ``(m x k) @ (k x n)``, mapped as the plan reads it."""
    who = f"create_matmul_{side}"
    dtype = element_type(dtype, f"{who} type")
    out_dtype = dtype if out_dtype is None else element_type(out_dtype, f"{who} output type")
    plan = _plan_for(graph, 1, m, k, n, dtype, out_dtype, matmul_options(options, who), who)
    t = graph.add_variable(dtype, (m, k) if side == "lhs" else (k, n), name or f"matmul_{side}")
    map_operand(graph, t.expand([0]), plan, side)
    return t


def map_operand(graph: Graph, view: Tensor, plan: MatMulPlan, side: str) -> None:
    """Map a ``(G, m, k)`` (``side="lhs"``) or ``(G, k, n)`` (``"rhs"``) view the way the plan's
    cost assumes."""
    g, r, c = np.indices(view.shape, dtype=np.int64)
    tiles = plan.lhs_tiles(g, r, c) if side == "lhs" else plan.rhs_tiles(g, r, c)
    graph.set_tile_mapping(view, tiles)


# ============================================================================ building
def build_matmul(graph: Graph, plan: MatMulPlan, a: Tensor, b: Tensor, prog: Sequence, name: str,
                 extra_zeros: Tensor | None = None) -> tuple[Tensor, list[ComputeSet], list[Tensor]]:
    """Add the product's variables, compute sets and program steps; return (c, compute sets,
    temporaries).  ``a`` is ``(G, m, k)``, ``b`` ``(G, k, n)``, both any mapped views.

    ``extra_zeros``, a mapped variable of any type, is zeroed where it lives, in a ``{name}/zero``
    step before the product (the plan's estimate does not include it)."""
    odt, pdt = dtype_of(plan.out_dtype), dtype_of(plan.partials_dtype)
    G, m, n = plan.groups, plan.m, plan.n
    target = graph.target
    c = graph.add_variable(odt, (G, m, n), f"{name}/out")
    out_cell, out_rank, out_len = plan.output_layout()
    graph.set_tile_mapping(c, plan.tile_of_cell(out_cell).reshape(c.shape))
    temporaries: list[Tensor] = []
    if plan.reduce:
        acc = graph.add_variable(pdt, (plan.split_k, G, m, n), f"{name}/partials")
        acc_cell, _, _ = plan.accumulator_layout()
        graph.set_tile_mapping(acc, plan.tile_of_cell(acc_cell).reshape(acc.shape))
        temporaries.append(acc)
    else:
        acc = c

    compute_sets = []
    if extra_zeros is not None:
        zero = graph.add_compute_set(f"{name}/zero")
        _zero_where_it_lives(graph, zero, extra_zeros)
        compute_sets.append(zero)
        prog.add(Execute(zero))

    mm = graph.add_compute_set(f"{name}/matmul")
    _add_matmul_vertices(graph, mm, plan, a, b, acc)
    compute_sets.append(mm)
    prog.add(Execute(mm))
    grain = target.vector_width(pdt)

    if plan.reduce:
        red = graph.add_compute_set(f"{name}/reduce")
        partials = acc.reshape(plan.split_k, G * m * n)
        for positions, cells in chunks_by_cell(out_cell, out_rank, out_len, grain, target.num_worker_contexts):
            graph.add_vertices(red, ReduceAdd[pdt, odt],
                               {"partials": partials[:, positions].dim_shuffle([1, 0, 2]),
                                "out": c.flatten()[positions]},
                               plan.tile_of_cell(cells))
        compute_sets.append(red)
        prog.add(Execute(red))
        release(prog, temporaries)
    return c, compute_sets, temporaries


def _zero_where_it_lives(graph: Graph, cs: ComputeSet, tensor: Tensor) -> None:
    """Fill vertices zeroing ``tensor`` on the tiles that hold it, a few a tile (one per worker)."""
    tiles = graph.tile_of_elements(tensor).reshape(-1).astype(np.int64)
    order = np.argsort(tiles, kind="stable")
    counts = np.bincount(tiles, minlength=graph.target.num_tiles)
    rank = np.empty_like(tiles)
    rank[order] = np.arange(tiles.size) - (np.cumsum(counts) - counts)[tiles[order]]
    grain = graph.target.vector_width(tensor.dtype)
    flat = tensor.flatten()
    for positions, cells in chunks_by_cell(tiles, rank, counts[tiles], grain, graph.target.num_worker_contexts):
        graph.add_vertices(cs, Fill[tensor.dtype], {"out": flat[positions]}, cells, state={"value": 0})


def _add_matmul_vertices(graph: Graph, cs: ComputeSet, plan: MatMulPlan, a: Tensor, b: Tensor,
                         acc: Tensor) -> None:
    """One MatMulPartial per cell and group, added in one call per block shape (at most 8)."""
    G, m, k, n = plan.groups, plan.m, plan.k, plan.n
    dt, pdt = a.dtype, acc.dtype
    a_flat, b_flat, acc_flat = a.flatten(), b.flatten(), acc.flatten()
    groups = np.arange(G, dtype=np.int64)
    per_dim = [_block_classes(m, plan.split_m, plan.block_m), _block_classes(n, plan.split_n, plan.block_n),
               _block_classes(k, plan.split_k, plan.block_k)]
    for (i, ms), (j, ns), (l, ks) in itertools.product(*per_dim):
        gg, ii, jj, ll = (x.reshape(-1) for x in np.meshgrid(groups, i, j, l, indexing="ij"))
        r0, c0, k0 = ii * plan.block_m, jj * plan.block_n, ll * plan.block_k
        rows, cols, inner = np.arange(ms), np.arange(ns), np.arange(ks)
        a_pos = (gg * m * k + r0 * k + k0)[:, None] + (rows[:, None] * k + inner[None, :]).reshape(1, -1)
        b_pos = (gg * k * n + k0 * n + c0)[:, None] + (inner[:, None] * n + cols[None, :]).reshape(1, -1)
        o_base = gg * m * n + r0 * n + c0 + (ll * G * m * n if plan.reduce else 0)
        o_pos = o_base[:, None] + (rows[:, None] * n + cols[None, :]).reshape(1, -1)
        tiles = plan.tile_of_cell(plan.cell(gg // plan.block_g, ii, jj, ll))
        graph.add_vertices(cs, MatMulPartial[dt, pdt],
                           {"a": a_flat[a_pos], "b": b_flat[b_pos], "out": acc_flat[o_pos]}, tiles,
                           state={"m": ms, "k": ks, "n": ns})


def _block_classes(size: int, splits: int, block: int) -> list[tuple[np.ndarray, int]]:
    """(block numbers, block length) of the full blocks and of the last block of a dimension."""
    last = size - (splits - 1) * block
    classes = [(np.arange(splits - 1, dtype=np.int64), block)] if splits > 1 else []
    return classes + [(np.array([splits - 1], dtype=np.int64), last)]


def chunks_by_cell(cell: np.ndarray, rank: np.ndarray, length: np.ndarray, grain: int, workers: int
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut each cell's run into the worker chunks of :func:`planning.worker_split`.

    Inputs are per element (in the tensor's flattened order): its cell, its rank in the cell's run
    and the run's length.  Returns, per distinct chunk length, ``(positions (chunks, length),
    cells (chunks,))``: flattened positions of each chunk's elements in run order.
    """
    runs = np.zeros(int(cell.max(initial=-1)) + 1, dtype=np.int64)
    runs[cell] = length
    offset = np.cumsum(runs) - runs
    element_at = np.empty(cell.size, dtype=np.int64)  # element at each (cell, rank), cells in order
    element_at[offset[cell] + rank] = np.arange(cell.size, dtype=np.int64)
    run_of, start, size = planning.worker_chunks(runs, grain, workers)
    out = []
    for s in np.unique(size).tolist():
        sel = size == s
        first = offset[run_of[sel]] + start[sel]
        out.append((element_at[first[:, None] + np.arange(s, dtype=np.int64)], run_of[sel]))
    return out


def _check_operands(a: Tensor, b: Tensor, rank: int, who: str) -> None:
    for what, t in (("a", a), ("b", b)):
        if not isinstance(t, Tensor):
            raise TensorError(f"{who}: operand {what} must be a pl.Tensor, got {type(t).__name__}")
        if t.rank != rank:
            raise TensorError(f"{who}: operand {what} ({t.name!r}) must be {rank}-D, got shape {t.shape}")
        if any(s == 0 for s in t.shape):
            raise TensorError(f"{who}: operand {what} ({t.name!r}) has an empty dimension: shape {t.shape}")
    if a.graph is not b.graph:
        raise TensorError(f"{who}: {a.name!r} and {b.name!r} belong to different graphs")
    if a.dtype != b.dtype:
        raise DTypeError(f"{who}: a is {poplar_name(a.dtype)} but b is {poplar_name(b.dtype)}")
    if a.dtype not in (FLOAT, HALF):
        raise DTypeError(f"{who}: operands must be float or half, got {poplar_name(a.dtype)}")
    if a.shape[-1] != b.shape[-2] or a.shape[:-2] != b.shape[:-2]:
        raise TensorError(f"{who}: shapes {a.shape} and {b.shape} do not match for a product "
                          f"(a's last dimension must equal b's second last)")
