"""Splitting an executable over MPI ranks: pure arithmetic on plain data.

Tiles go to ranks in contiguous blocks balanced by work (each tile's estimated compute cycles
over all compute sets, plus its bytes of memory, each normalised to the total).  A rank holds the
memory of its tiles only; since the backing store is tile-major, that is one contiguous byte
range, and every word index is rebased into it.

Each exchange phase becomes, for each rank, local moves plus one ``Alltoallv`` of packed bytes:
the block from rank p to rank q holds that pair's 4-byte items, then 2-byte, then 1-byte, in the
global order of the plan, padded to 4 bytes, so sender and receiver agree on every position
without talking.  Counts and displacements are computed here, once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from ..arrays import stable_order
from ..codelet import resolve_codelet
from .executable import BatchPlan, ComputeStep, Executable, Moves

SIZES = (4, 2, 1)


def partition_tiles(exe: Executable, num_ranks: int) -> np.ndarray:
    """Tile boundaries ``(num_ranks + 1,)``: rank r owns tiles ``[b[r], b[r + 1])``."""
    T = exe.target.num_tiles
    cycles = np.zeros(T, dtype=np.float64)
    for step in exe.computes:
        cycles += step.tile_cycles
    nbytes = exe.tile_bytes().astype(np.float64)
    work = np.zeros(T)
    for part in (cycles, nbytes):
        if part.sum() > 0:
            work += part / part.sum()
    if work.sum() == 0:
        work[:] = 1.0
    middle = np.cumsum(work) - work / 2
    rank_of_tile = np.minimum((middle * num_ranks / work.sum()).astype(np.int64), num_ranks - 1)
    return np.searchsorted(rank_of_tile, np.arange(num_ranks + 1), side="left").astype(np.int64)


def memory_bounds_of(exe: Executable, tile_bounds: np.ndarray) -> np.ndarray:
    """Byte range of the backing store each rank holds (tile-major, so one range a rank)."""
    return exe.tile_offsets[tile_bounds]


@dataclass
class RankExchange:
    """One exchange phase as seen by one rank."""

    local: Moves = field(default_factory=Moves)
    sends: Moves = field(default_factory=Moves)  # from local words to send buffer positions (items)
    receives: Moves = field(default_factory=Moves)  # from receive buffer positions to local words
    send_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # bytes per rank
    send_displs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    recv_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    recv_displs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    active: bool = False  # any bytes cross ranks in this phase (the same on every rank)

    @property
    def bytes_sent(self) -> int:
        return int(self.send_counts.sum()) if self.send_counts.size else 0


@dataclass
class RankGather:
    """A host transfer (stream, print, predicate) as seen by one rank: its elements, in the order
    the host scatters or gathers them, and on the host the permutation and per-rank counts."""

    words: np.ndarray  # local words of this rank's elements
    counts: np.ndarray  # (ranks,) elements per rank (used on the host)
    order: np.ndarray  # host: positions of the tensor's elements, grouped by rank


@dataclass
class RankPart:
    """Everything one rank needs to run its tiles."""

    rank: int
    num_ranks: int
    tile_bounds: np.ndarray  # (ranks + 1,)
    memory_bounds: np.ndarray  # (ranks + 1,) byte ranges of the backing store
    init_words: dict[str, np.ndarray]
    init_values: dict[str, np.ndarray]
    batches: list[list[BatchPlan]]  # per compute step
    pre: list[RankExchange]
    post: list[RankExchange]
    copies: list[RankExchange | RankGather]
    prints: list[RankGather]
    predicate_owner: list[int]
    predicate_word: list[int]  # local word on the owner (-1 elsewhere)

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_bounds[self.rank + 1] - self.memory_bounds[self.rank])


class _Splitter:
    def __init__(self, exe: Executable, tile_bounds: np.ndarray) -> None:
        self.exe = exe
        self.R = tile_bounds.size - 1
        self.tile_bounds = tile_bounds
        self.memory_bounds = memory_bounds_of(exe, tile_bounds)

    def owner(self, words: np.ndarray, size: int) -> np.ndarray:
        """The rank holding each word (words of ``size`` bytes)."""
        bounds = -(-self.memory_bounds // size)  # the first whole word of each rank
        return (np.searchsorted(bounds, words, side="right") - 1).astype(np.int32)

    def exchange(self, moves: Moves) -> list[RankExchange]:
        """Split one phase's moves for every rank at once.

        The moves of each item size are expanded to one word pair per element (one phase at a
        time) and sorted once (a stable radix sort) by (source rank, destination rank); after
        that every rank's local moves, its sends to each rank and its receives from each rank are
        contiguous runs of the sorted moves, so nothing here costs more than a few passes over
        the moves whatever the number of ranks.  A rank's local moves go back to runs.
        """
        R = self.R
        parts = [RankExchange(send_counts=np.zeros(R, np.int64), send_displs=np.zeros(R, np.int64),
                              recv_counts=np.zeros(R, np.int64), recv_displs=np.zeros(R, np.int64))
                 for _ in range(R)]
        block = np.zeros((len(SIZES), R, R), dtype=np.int64)  # bytes of each item size from p to q
        sorted_moves: dict[int, tuple] = {}
        local: list[tuple[dict[int, np.ndarray], dict[int, np.ndarray]]] = [({}, {}) for _ in range(R)]
        for k, s in enumerate(SIZES):
            if s not in moves.length or moves.length[s].size == 0:
                continue
            src, dst = moves.words(s)
            key = self.owner(src, s) * R + self.owner(dst, s)
            order = stable_order(key, R * R)
            if order is not None:
                src, dst = src[order], dst[order]
            counts = np.bincount(key, minlength=R * R).reshape(R, R)
            del key, order
            starts = (np.cumsum(counts) - counts.reshape(-1)).reshape(R, R)
            sorted_moves[s] = (src, dst, counts, starts)
            for r in range(R):
                lo, hi = int(starts[r, r]), int(starts[r, r] + counts[r, r])
                if hi > lo:
                    base = int(self.memory_bounds[r]) // s
                    local[r][0][s] = (src[lo:hi] - base).astype(src.dtype)
                    local[r][1][s] = (dst[lo:hi] - base).astype(dst.dtype)
            cross = counts.copy()
            np.fill_diagonal(cross, 0)
            block[k] = cross * s
        for r, (src_words, dst_words) in enumerate(local):
            parts[r].local = Moves.from_words(src_words, dst_words, apart=moves.apart)
        del local
        padded = block.sum(axis=0)
        padded = (padded + 3) // 4 * 4
        send_displs = np.cumsum(padded, axis=1) - padded  # [p, q]: offset of block q in p's send buffer
        recv_displs = (np.cumsum(padded, axis=0) - padded)  # [p, q]: offset of block p in q's receive buffer
        active = bool(padded.sum() > 0)
        pos_type = np.int32 if max(int(padded.sum(axis=1).max(initial=0)), int(padded.sum(axis=0).max(initial=0))) \
            < 2 ** 31 else np.int64
        for r in range(R):
            parts[r].send_counts, parts[r].send_displs = padded[r].copy(), send_displs[r].copy()
            parts[r].recv_counts, parts[r].recv_displs = padded[:, r].copy(), recv_displs[:, r].copy()
            parts[r].active = active
        sends: list[tuple[dict[int, np.ndarray], dict[int, np.ndarray]]] = [({}, {}) for _ in range(R)]
        receives: list[tuple[dict[int, np.ndarray], dict[int, np.ndarray]]] = [({}, {}) for _ in range(R)]
        for k, s in enumerate(SIZES):
            if s not in sorted_moves or not block[k].any():
                continue
            src, dst, counts, starts = sorted_moves.pop(s)
            before = block[:k].sum(axis=0)  # bytes of bigger items ahead in each (p, q) block
            for r in range(R):
                base = int(self.memory_bounds[r]) // s
                to = [(r, q) for q in range(R) if q != r and counts[r, q]]
                if to:
                    words, positions = _blocks(src, starts, counts, to, send_displs + before, s, base, pos_type)
                    sends[r][0][s], sends[r][1][s] = words, positions
                frm = [(p, r) for p in range(R) if p != r and counts[p, r]]
                if frm:
                    words, positions = _blocks(dst, starts, counts, frm, recv_displs + before, s, base, pos_type)
                    receives[r][0][s], receives[r][1][s] = positions, words
        for r in range(R):
            parts[r].sends = Moves.from_words(*sends[r])
            parts[r].receives = Moves.from_words(*receives[r])
        return parts

    def gather(self, words: np.ndarray, dtype: str) -> list[RankGather]:
        s = np.dtype(dtype).itemsize
        owner = self.owner(words, s)
        order = stable_order(owner, max(self.R, 2))
        order = np.arange(owner.size) if order is None else order
        counts = np.bincount(owner, minlength=self.R)
        out = []
        for r in range(self.R):
            base = int(self.memory_bounds[r]) // s
            mine = words[owner == r]
            out.append(RankGather((mine - base).astype(words.dtype), counts,
                                  order if r == 0 else np.zeros(0, dtype=np.int64)))
        return out

    def batches(self, step: ComputeStep) -> list[list[BatchPlan]]:
        per_rank: list[list[BatchPlan]] = [[] for _ in range(self.R)]
        for batch in step.batches:
            fields_of = resolve_codelet(batch.codelet).fields
            cuts = np.searchsorted(batch.tiles, self.tile_bounds)
            for r in range(self.R):
                lo, hi = int(cuts[r]), int(cuts[r + 1])
                if hi <= lo:
                    continue
                base = int(self.memory_bounds[r])

                def rebase(words: np.ndarray, name: str) -> np.ndarray:
                    size = fields_of[name].type.dtype.itemsize
                    return (words[lo:hi] - base // size).astype(words.dtype)

                per_rank[r].append(BatchPlan(
                    batch.codelet, batch.tiles[lo:hi], {n: rebase(w, n) for n, w in batch.fields.items()},
                    {n: rebase(w, n) for n, w in batch.state.items()}, batch.cycles[lo:hi], batch.multi_worker))
        return per_rank


def _blocks(words: np.ndarray, starts: np.ndarray, counts: np.ndarray, pairs: list[tuple[int, int]],
            offsets: np.ndarray, size: int, base: int, pos_type: type) -> tuple[np.ndarray, np.ndarray]:
    """The (p, q) runs of moves sorted by rank pair, for the given pairs: their words rebased to
    the rank's memory, and their item positions in the packed buffer (``offsets[p, q]`` bytes)."""
    local = np.concatenate([words[starts[p, q]:starts[p, q] + counts[p, q]] for p, q in pairs]) - base
    positions = np.concatenate([np.arange(counts[p, q], dtype=pos_type) + offsets[p, q] // size
                                for p, q in pairs])
    return local, positions


def split_pieces(exe: Executable, tile_bounds: np.ndarray) -> Iterator[tuple[str, list]]:
    """Every rank's part, piece by piece: ``(kind, [value for rank 0, 1, ...])``.

    A piece is one compute step's batches or exchange phase, one copy, one print, the initial
    values or the predicates, so a sender holds one piece at a time instead of every rank's whole
    part (for ResNet-50 that is 4 GB at once).  :func:`assemble` puts one rank's values together.
    """
    sp = _Splitter(exe, tile_bounds)
    R = sp.R
    inits: list[tuple[dict, dict]] = [({}, {}) for _ in range(R)]
    for dtype, words in exe.init_words.items():
        s = np.dtype(dtype).itemsize
        owner = sp.owner(words, s)
        for r in range(R):
            mine = owner == r
            if mine.any():
                inits[r][0][dtype] = (words[mine] - int(sp.memory_bounds[r]) // s).astype(words.dtype)
                inits[r][1][dtype] = exe.init_values[dtype][mine]
    yield "inits", inits
    for step in exe.computes:
        yield "batches", sp.batches(step)
        yield "pre", sp.exchange(step.pre)
        yield "post", sp.exchange(step.post)
    for c in exe.copies:
        yield "copies", sp.exchange(c.moves) if c.kind == "copy" else sp.gather(c.words, c.dtype)
    for p in exe.prints:
        yield "prints", sp.gather(p.words, p.dtype)
    owners, local_words = [], []
    for pred in exe.predicates:
        s = np.dtype(pred.dtype).itemsize
        owner = int(sp.owner(np.array([pred.word]), s)[0])
        owners.append(owner)
        local_words.append(pred.word - int(sp.memory_bounds[owner]) // s)
    yield "predicates", [(owners, [w if o == r else -1 for o, w in zip(owners, local_words, strict=True)])
                         for r in range(R)]


def assemble(rank: int, tile_bounds: np.ndarray, memory_bounds: np.ndarray,
             pieces: Iterable[tuple[str, Any]]) -> RankPart:
    """One rank's :class:`RankPart` from its values of :func:`split_pieces`, in order."""
    lists: dict[str, list] = {"batches": [], "pre": [], "post": [], "copies": [], "prints": []}
    inits: tuple[dict, dict] = ({}, {})
    owners: list[int] = []
    words: list[int] = []
    for kind, value in pieces:
        if kind == "inits":
            inits = value
        elif kind == "predicates":
            owners, words = value
        else:
            lists[kind].append(value)
    return RankPart(rank=rank, num_ranks=tile_bounds.size - 1, tile_bounds=tile_bounds,
                    memory_bounds=memory_bounds, init_words=inits[0], init_values=inits[1],
                    batches=lists["batches"], pre=lists["pre"], post=lists["post"], copies=lists["copies"],
                    prints=lists["prints"], predicate_owner=owners, predicate_word=words)


def split_executable(exe: Executable, tile_bounds: np.ndarray) -> list[RankPart]:
    """One :class:`RankPart` per rank (every part at once; the MPI backend streams pieces instead)."""
    R = tile_bounds.size - 1
    per_rank: list[list[tuple[str, Any]]] = [[] for _ in range(R)]
    for kind, values in split_pieces(exe, tile_bounds):
        for r in range(R):
            per_rank[r].append((kind, values[r]))
    bounds = memory_bounds_of(exe, tile_bounds)
    return [assemble(r, tile_bounds, bounds, per_rank[r]) for r in range(R)]


def skeleton(exe: Executable) -> Executable:
    """The executable without its per-element arrays: what a rank other than the host needs to run
    the bytecode and answer questions about variables."""
    empty = np.zeros(0, dtype=np.int64)
    return dataclasses.replace(
        exe,
        element_address=empty, init_words={}, init_values={},
        computes=[dataclasses.replace(s, batches=[], pre=Moves(), post=Moves()) for s in exe.computes],
        copies=[dataclasses.replace(c, moves=Moves(), words=empty) for c in exe.copies],
        prints=[dataclasses.replace(p, words=empty) for p in exe.prints],
        nal_by_step=np.zeros((0, 0), dtype=np.int64), pieces={k: empty for k in exe.pieces},
    )


__all__ = ["partition_tiles", "split_executable", "split_pieces", "assemble", "memory_bounds_of", "skeleton", "RankPart", "RankExchange", "RankGather"]
