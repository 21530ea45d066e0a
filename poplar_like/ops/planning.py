"""The matrix-product planner (poplin's MatMul planner): a pure function from (target, shapes,
types, options) to a :class:`MatMulPlan`, plus the pure geometry that the builders read off a plan.

Nothing here touches a graph.  ``ops/matmul.py`` builds tensors and vertices from a plan;
``ops/conv.py`` plans convolutions as grouped matrix products.

**The split.**  A grouped product ``c[g] = a[g] @ b[g]`` (``G`` groups of ``m x k`` by ``k x n``)
is cut into a grid of ``split_g x split_m x split_n x split_k`` cells, one cell per tile
(cell ``p = ((g*split_m + i)*split_n + j)*split_k + l`` on tile
``(p * num_tiles // tiles_used + start_tile) % num_tiles``; ``start_tile``, 0 unless the
``start_tile`` option asks otherwise, lets a network start each layer's grid on another tile so
that the first tiles do not hold cell 0 of every product).
Blocks along a dimension are ``ceil(d / split)`` long, the last one shorter.  A cell runs one
``MatMulPartial`` per group of its block into its own partial sums; a reduction adds the
``split_k`` partials with ``ReduceAdd`` (when ``split_k == 1`` it only rounds float partials to a
half output, and is left out when the types agree).  Steps (compute sets):

1. ``matmul``: the blocks of ``a`` and ``b`` are exchanged in; each vertex writes its partial sums
   (or the output itself when ``split_k == 1`` and the output type is the partials type), which
   stay on the tile;
2. ``reduce``: each output block is cut into ``split_k`` balanced pieces, piece ``l`` summed on
   the tile of cell ``(g, i, j, l)``, where that piece of the output lives.

**The cost** is the compiler's cost model (poplar_like/compiler/costs.py, docs/cost-model.md)
applied to those vertices, with the codelets' own estimates (``codelets.costs``): one formula,
used twice.  The exchange of step 2 assumes the operands are laid out as ``create_matmul_lhs`` and
``create_matmul_rhs`` lay them out: each block of ``a`` cut into ``split_n`` pieces, piece ``j``
on the tile of cell ``(g, i, j, l)`` (and ``b``'s blocks into ``split_m`` pieces by ``i``), so
every tile holds a share of what it reads and sends it to the other readers.  With operands laid
out that way, the plan's cycles are exactly what the compiled profile reports for the op's compute
sets.  Operands mapped otherwise move other volumes; the planner does not see them (PopLibs
likewise plans for its own layouts and pays rearrangements separately).

**Memory**: a cell must fit its blocks of ``a`` and ``b`` and its partial sums in
``available_memory_proportion x memory_bytes_per_tile``; when no split fits, the plan needing the
least memory is taken and ``fits_memory`` is False (Poplar then also disregards the proportion).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass

import numpy as np

from codelets import costs

from ..dtypes import FLOAT, HALF, as_dtype, poplar_name
from ..errors import DTypeError, GraphError
from ..target import Target

#: Input types the AMP codelet takes, and the partial-sum types it may accumulate into.
PARTIALS_TYPES = {FLOAT: (FLOAT,), HALF: (FLOAT, HALF)}


def ceil_div(a: object, b: object) -> np.ndarray:
    """Elementwise ``ceil(a / b)`` of non-negative integers (int64)."""
    a = np.asarray(a, dtype=np.int64)
    return -(-a // np.asarray(b, dtype=np.int64))


# ============================================================================ shared helpers
def worker_split(length: object, grain: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """How a tile's run of ``length`` elements is dealt to its workers: ``(vertices, longest)``.

    The run is cut into ``grain``-element grains and the grains into ``V = min(workers, grains)``
    chunks, chunk ``v`` taking grains ``[ceil(v*G/V), ceil((v+1)*G/V))`` (longest first), one
    single-worker vertex each.  Both results never decrease as ``length`` grows, so the slowest
    tile of a phase is the one with the longest run.  Vectorised; a zero length gives ``(0, 0)``.
    """
    length = np.asarray(length, dtype=np.int64)
    grains = ceil_div(length, grain)
    count = np.minimum(workers, grains)
    longest = np.minimum(ceil_div(grains, np.maximum(count, 1)) * grain, length)
    return count, longest


def worker_chunks(runs: np.ndarray, grain: int, workers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chunks of :func:`worker_split` for runs of the given lengths: (run of each chunk,
    chunk start in its run, chunk length), chunks in order within each run."""
    runs = np.asarray(runs, dtype=np.int64)
    count, _ = worker_split(runs, grain, workers)
    run_of = np.repeat(np.arange(runs.size, dtype=np.int64), count)
    first = np.cumsum(count) - count
    v = np.arange(run_of.size, dtype=np.int64) - first[run_of]
    grains, n = ceil_div(runs, grain)[run_of], count[run_of]
    start = ceil_div(v * grains, n) * grain
    end = np.minimum(ceil_div((v + 1) * grains, n) * grain, runs[run_of])
    return run_of, start, end - start


def piece_size(total: object, parts: object, index: object) -> np.ndarray:
    """Size of piece ``index`` when ``total`` elements are cut into ``parts`` pieces of
    ``ceil(total / parts)`` (the last ones shorter or empty): how operand blocks are spread."""
    total = np.asarray(total, dtype=np.int64)
    each = ceil_div(total, parts)
    return np.clip(total - np.asarray(index, dtype=np.int64) * each, 0, each)


def stage_cycles(target: Target, length: object, grain: int, cycles_of) -> np.ndarray:
    """Tile cycles of a compute set whose slowest tile deals a run of ``length`` elements to its
    workers (:func:`worker_split`), ``cycles_of(chunk_length)`` worker cycles a vertex: the
    compiler's ``W x busiest + launch x vertices + compute-set overhead``."""
    count, longest = worker_split(length, grain, target.num_worker_contexts)
    cycles = (target.num_worker_contexts * cycles_of(longest) + target.vertex_launch_cycles * count
              + target.compute_set_overhead_cycles)
    return np.where(np.asarray(length) > 0, cycles, 0).astype(np.int64)


@functools.lru_cache(maxsize=4096)
def split_candidates(size: int, cap: int) -> tuple[int, ...]:
    """Numbers of blocks worth trying for a dimension of ``size``: powers of two, divisors of the
    size and the cap, at most ``min(size, cap)``; each turned into the number of blocks its block
    length really gives (so no two candidates make the same blocks)."""
    cap = max(1, min(size, cap))
    counts = {1, cap}
    p = 1
    while p <= cap:
        counts.add(p)
        p *= 2
    d = 1
    while d * d <= size:
        if size % d == 0:
            counts.update(x for x in (d, size // d) if x <= cap)
        d += 1
    return tuple(sorted({-(-size // -(-size // s)) for s in counts}))


# ============================================================================ the plan
@dataclass(frozen=True)
class MatMulCost:
    """Estimated cycles of a plan, by step and phase (tile clock cycles, one execution)."""

    matmul_compute: int
    matmul_exchange: int
    reduce_compute: int
    reduce_exchange: int
    sync: int
    total: int

    def __str__(self) -> str:
        parts = [f"matmul {self.matmul_compute:,}",
                 f"exchange {self.matmul_exchange:,}"]
        if self.reduce_compute or self.reduce_exchange:
            parts += [f"reduce {self.reduce_compute:,}", f"reduce exchange {self.reduce_exchange:,}"]
        parts.append(f"sync {self.sync:,}")
        return f"{self.total:,} cycles (" + " + ".join(parts) + ")"


@dataclass(frozen=True)
class MatMulPlan:
    """How a (grouped) matrix product is split over tiles; plain data (see the module docstring)."""

    groups: int
    m: int
    k: int
    n: int
    dtype: str  # input type ("float", "half")
    out_dtype: str
    partials_dtype: str
    split_g: int
    split_m: int
    split_n: int
    split_k: int
    block_g: int
    block_m: int
    block_n: int
    block_k: int
    num_tiles: int  # tiles of the target
    tiles_used: int  # cells of the grid, one a tile
    reduce: bool  # partial sums and a reduction step (else accumulated into the output directly)
    available_memory_proportion: float
    bytes_per_tile: int  # a cell's blocks of a and b and its partial sums
    memory_limit: int  # available_memory_proportion x memory_bytes_per_tile
    fits_memory: bool
    cost: MatMulCost
    start_tile: int = 0  # the tile of cell 0 (the grid is rotated, not reshaped: same cost)

    # ------------------------------------------------------------------ text and data
    @property
    def estimated_cycles(self) -> int:
        return self.cost.total

    def to_dict(self) -> dict:
        """JSON-able form (for the op record and the profile)."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        shape = f"{self.m}x{self.k}x{self.n}" + (f" x {self.groups} groups" if self.groups > 1 else "")
        grid = (f"g{self.split_g} x m{self.split_m} x n{self.split_n} x k{self.split_k}"
                if self.groups > 1 else f"m{self.split_m} x n{self.split_n} x k{self.split_k}")
        blocks = f"{self.block_m}x{self.block_k}x{self.block_n}" + (
            f" x {self.block_g} groups" if self.groups > 1 else "")
        fit = "" if self.fits_memory else " (over the limit: no split fits)"
        return (f"MatMulPlan {shape} {self.dtype}->{self.out_dtype} (partials {self.partials_dtype}): "
                f"{grid} = {self.tiles_used} of {self.num_tiles} tiles, blocks {blocks}; "
                f"{'reduce ' + str(self.split_k) + ' partials' if self.reduce else 'no reduction'}; "
                f"{self.bytes_per_tile:,} B a tile of {self.memory_limit:,}{fit}; est. {self.cost}")

    # ------------------------------------------------------------------ geometry
    @property
    def grid(self) -> tuple[int, int, int, int]:
        return self.split_g, self.split_m, self.split_n, self.split_k

    def cell(self, g: object, i: object, j: object, l: object) -> np.ndarray:
        """Cell number of grid position (group block, m block, n block, k block); vectorised."""
        return ((np.asarray(g, dtype=np.int64) * self.split_m + i) * self.split_n + j) * self.split_k + l

    def tile_of_cell(self, cell: object) -> np.ndarray:
        """The tile of each cell: spread evenly over the target from ``start_tile`` on."""
        tiles = np.asarray(cell, dtype=np.int64) * self.num_tiles // self.tiles_used
        if self.start_tile:
            tiles = (tiles + self.start_tile) % self.num_tiles
        return tiles.astype(np.int32)

    def _block(self, index: np.ndarray, block: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(block number, offset in the block, block length) of each index along a dimension."""
        number = index // block
        return number, index - number * block, np.minimum(block, size - number * block)

    def lhs_tiles(self, g: object, row: object, col: object) -> np.ndarray:
        """Tile of each element ``a[g, row, col]`` in the layout the plan's cost assumes."""
        g, row, col = (np.asarray(x, dtype=np.int64) for x in (g, row, col))
        gb, go, gs = self._block(g, self.block_g, self.groups)
        i, ro, ms = self._block(row, self.block_m, self.m)
        l, co, ks = self._block(col, self.block_k, self.k)
        q = (go * ms + ro) * ks + co
        j = q // ceil_div(gs * ms * ks, self.split_n)
        return self.tile_of_cell(self.cell(gb, i, j, l))

    def rhs_tiles(self, g: object, row: object, col: object) -> np.ndarray:
        """Tile of each element ``b[g, row, col]`` in the layout the plan's cost assumes."""
        g, row, col = (np.asarray(x, dtype=np.int64) for x in (g, row, col))
        gb, go, gs = self._block(g, self.block_g, self.groups)
        l, ro, ks = self._block(row, self.block_k, self.k)
        j, co, ns = self._block(col, self.block_n, self.n)
        q = (go * ks + ro) * ns + co
        i = q // ceil_div(gs * ks * ns, self.split_m)
        return self.tile_of_cell(self.cell(gb, i, j, l))

    def accumulator_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every element of the accumulators (partials ``(split_k, G, m, n)``, or the output
        ``(G, m, n)`` when there is no reduction), in flattened order: (cell, rank of the element
        in the cell's run, run length).  A cell's run is its block, row-major."""
        sk = self.split_k if self.reduce else 1
        cell, q, size = self._output_blocks()
        cell = cell[None] + np.arange(sk, dtype=np.int64)[:, None, None, None]
        shape = (sk,) + q.shape
        return (cell.reshape(-1), np.broadcast_to(q, shape).reshape(-1),
                np.broadcast_to(size, shape).reshape(-1))

    def output_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every element of the output ``(G, m, n)`` in flattened order: (cell, rank, run
        length) of the cell that writes it last: with a reduction, each output block is cut into
        ``split_k`` balanced pieces and piece ``l`` is summed on cell ``(g, i, j, l)``."""
        if not self.reduce:
            return self.accumulator_layout()
        cell, q, size = (np.broadcast_to(x, (self.groups, self.m, self.n)).reshape(-1)
                         for x in self._output_blocks())
        sk = self.split_k
        l = ((q + 1) * sk - 1) // size
        start = l * size // sk
        return cell + l, q - start, (l + 1) * size // sk - start

    def _output_blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable ``(G, m, n)`` arrays: the cell ``(g, i, j, 0)`` holding each output
        element's block, its rank in the block (row-major) and the block's size."""
        gb, go, gs = self._block(np.arange(self.groups)[:, None, None], self.block_g, self.groups)
        i, ro, ms = self._block(np.arange(self.m)[None, :, None], self.block_m, self.m)
        j, co, ns = self._block(np.arange(self.n)[None, None, :], self.block_n, self.n)
        return self.cell(gb, i, j, 0), (go * ms + ro) * ns + co, gs * ms * ns


# ============================================================================ the planner
def plan_matmul(target: Target, m: int, k: int, n: int, dtype: object = FLOAT, out_dtype: object = None,
                available_memory_proportion: float = 0.6, *, groups: int = 1,
                partials_dtype: object = None) -> MatMulPlan:
    """Plan ``(m x k) @ (k x n)`` (``groups`` independent products of that shape) on ``target``.

    Pure and cached: equal arguments give the same plan object.  ``out_dtype`` defaults to
    ``dtype``; ``partials_dtype`` to float (PopLibs' ``partialsType``; half partials only for half
    inputs).  The split minimises the estimated cycles among those whose cells fit in
    ``available_memory_proportion`` of a tile's memory.
    """
    dt = element_type(dtype, "matmul input type")
    if dt not in PARTIALS_TYPES:
        raise DTypeError(f"matmul: inputs must be float or half, got {poplar_name(dt)}")
    odt = dt if out_dtype is None else element_type(out_dtype, "matmul output type")
    if odt not in (FLOAT, HALF):
        raise DTypeError(f"matmul: the output must be float or half, got {poplar_name(odt)}")
    pdt = FLOAT if partials_dtype is None else element_type(partials_dtype, "matmul partials type")
    if pdt not in PARTIALS_TYPES[dt]:
        raise DTypeError(f"matmul: {poplar_name(pdt)} partials are not available for {poplar_name(dt)} "
                         f"inputs; use one of {[poplar_name(p) for p in PARTIALS_TYPES[dt]]}")
    for what, value in (("m", m), ("k", k), ("n", n), ("groups", groups)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise GraphError(f"plan_matmul: {what} must be a positive int, got {value!r}")
    amp = float(available_memory_proportion)
    if not 0.0 < amp <= 1.0:
        raise GraphError(f"plan_matmul: available_memory_proportion must be in (0, 1], got {amp}")
    if not isinstance(target, Target):
        raise GraphError(f"plan_matmul needs a Target (device.target), got {type(target).__name__}")
    return _plan(target, int(groups), int(m), int(k), int(n), dt, odt, pdt, amp)


@functools.lru_cache(maxsize=1024)
def _plan(target: Target, G: int, m: int, k: int, n: int, dt: np.dtype, odt: np.dtype, pdt: np.dtype,
          amp: float) -> MatMulPlan:
    T = target.num_tiles
    sg, sm, sn, sk = _candidate_grids(T, (G, m, n, k))
    est = _estimate(target, G, m, k, n, dt, odt, pdt, sg, sm, sn, sk)
    limit = int(amp * target.memory_bytes_per_tile)
    fits = est["bytes"] <= limit
    tiles = sg * sm * sn * sk
    if fits.any():
        order = np.lexsort((est["bytes"], tiles, np.where(fits, est["total"], np.iinfo(np.int64).max)))
    else:
        order = np.lexsort((tiles, est["total"], est["bytes"]))
    best = int(order[0])
    pick = {name: int(values[best]) for name, values in est.items()}
    cost = MatMulCost(pick["mm"], pick["mmx"], pick["red"], pick["redx"], pick["sync"],
                      pick["total"])
    return MatMulPlan(
        groups=G, m=m, k=k, n=n, dtype=poplar_name(dt), out_dtype=poplar_name(odt),
        partials_dtype=poplar_name(pdt),
        split_g=int(sg[best]), split_m=int(sm[best]), split_n=int(sn[best]), split_k=int(sk[best]),
        block_g=-(-G // int(sg[best])), block_m=-(-m // int(sm[best])), block_n=-(-n // int(sn[best])),
        block_k=-(-k // int(sk[best])), num_tiles=T, tiles_used=int(tiles[best]),
        reduce=not bool(pick["direct"]), available_memory_proportion=amp, bytes_per_tile=pick["bytes"],
        memory_limit=limit, fits_memory=bool(fits[best]), cost=cost)


def _candidate_grids(num_tiles: int, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """Every combination of candidate splits of the dimensions whose product fits the tiles."""
    grids = [np.ones(1, dtype=np.int64)]
    product = np.ones(1, dtype=np.int64)
    for size in sizes:
        options = np.array(split_candidates(size, num_tiles), dtype=np.int64)
        new_product = product[:, None] * options[None, :]
        keep = new_product <= num_tiles
        rows, cols = np.nonzero(keep)
        grids = [g[rows] for g in grids] + [options[cols]]
        product = new_product[rows, cols]
    return grids[1:]


def _dim_classes(size: int, splits: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """The two kinds of block along a dimension: the full ones (length, first and last index,
    present) and the last one."""
    block = ceil_div(size, splits)
    last = size - (splits - 1) * block
    return [(block, np.zeros_like(splits), splits - 2, splits >= 2),
            (last, splits - 1, splits - 1, np.ones_like(splits, dtype=bool))]


def _estimate(target: Target, G: int, m: int, k: int, n: int, dt: np.dtype, odt: np.dtype, pdt: np.dtype,
              sg: np.ndarray, sm: np.ndarray, sn: np.ndarray, sk: np.ndarray) -> dict[str, np.ndarray]:
    """The cost model applied to every candidate split at once (arrays over candidates)."""
    xbytes = target.exchange_bytes_per_cycle
    bg, bm, bn, bk = ceil_div(G, sg), ceil_div(m, sm), ceil_div(n, sn), ceil_div(k, sk)
    in_size, p_size = dt.itemsize, pdt.itemsize
    direct = (sk == 1) & (odt == pdt)
    grain = target.vector_width(pdt)
    out_block = bg * bm * bn  # the largest accumulator run a cell owns

    mm = (bg * costs.matmul_tile_cycles(bm, bk, bn, dt, pdt, target)
          + target.vertex_launch_cycles * bg + target.compute_set_overhead_cycles)

    # exchange of a's and b's blocks, each spread over its readers (lhs_tiles / rhs_tiles)
    worst = np.zeros(sg.shape, dtype=np.int64)
    for (gs, _, _, gv), (ms, ilo, ihi, iv), (ns, jlo, jhi, jv), (ks, _, _, lv) in itertools.product(
            _dim_classes(G, sg), _dim_classes(m, sm), _dim_classes(n, sn), _dim_classes(k, sk)):
        ea, eb = gs * ms * ks, gs * ks * ns
        received = ea - piece_size(ea, sn, jhi) + eb - piece_size(eb, sm, ihi)
        sent = piece_size(ea, sn, jlo) * (sn - 1) + piece_size(eb, sm, ilo) * (sm - 1)
        valid = gv & iv & jv & lv
        worst = np.maximum(worst, np.where(valid, np.maximum(received, sent), 0))
    mmx = ceil_div(worst * in_size, xbytes)

    piece = ceil_div(out_block, sk)
    red = np.where(direct, 0, stage_cycles(target, piece, grain,
                                           lambda length: costs.reduce_add_cycles(sk, length, pdt)))
    moved = np.maximum((sk - 1) * piece, out_block - out_block // sk) * p_size
    redx = np.where(direct, 0, ceil_div(moved, xbytes))
    sync = np.where(direct, 1, 2) * 2 * target.global_sync_cycles
    total = mm + mmx + red + redx + sync
    nbytes = (bg * bm * bk + bg * bk * bn) * in_size + out_block * p_size
    return {"mm": mm, "mmx": mmx, "red": red, "redx": redx, "sync": sync, "total": total,
            "bytes": nbytes, "direct": direct}


def dtype_of(name: str) -> np.dtype:
    """The numpy dtype of a plan's type name ("float", "half")."""
    return element_type(name, "plan type")


def element_type(value: object, what: str) -> np.dtype:
    """A type given as ``pl.FLOAT``/``pl.HALF``, a numpy dtype, or Poplar's names "float" and
    "half" (as options spell them; numpy would read "float" as float64)."""
    names = {"float": FLOAT, "half": HALF}
    if isinstance(value, str) and value in names:
        return names[value]
    return as_dtype(value, what)
