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


@dataclass
class RankExchange:
    """One exchange phase as seen by one rank."""

    local: Moves = field(default_factory=Moves)
    send_words: dict[int, np.ndarray] = field(default_factory=dict)  # item size -> local source words
    send_pos: dict[int, np.ndarray] = field(default_factory=dict)  # positions in the send buffer (items)
    recv_words: dict[int, np.ndarray] = field(default_factory=dict)  # item size -> local destination words
    recv_pos: dict[int, np.ndarray] = field(default_factory=dict)
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
        self.memory_bounds = exe.tile_offsets[tile_bounds]

    def owner(self, words: np.ndarray, size: int) -> np.ndarray:
        return np.searchsorted(self.memory_bounds, words.astype(np.int64) * size, side="right") - 1

    def exchange(self, moves: Moves) -> list[RankExchange]:
        """Split one phase's moves for every rank at once."""
        R = self.R
        parts = [RankExchange(send_counts=np.zeros(R, np.int64), send_displs=np.zeros(R, np.int64),
                              recv_counts=np.zeros(R, np.int64), recv_displs=np.zeros(R, np.int64))
                 for _ in range(R)]
        block = np.zeros((len(SIZES), R, R), dtype=np.int64)  # bytes of each item size from p to q
        cross: dict[int, tuple] = {}
        for k, s in enumerate(SIZES):
            if s not in moves.src or moves.src[s].size == 0:
                continue
            src, dst = moves.src[s], moves.dst[s]
            ps, pd = self.owner(src, s), self.owner(dst, s)
            same = ps == pd
            for r in np.unique(ps[same]).tolist():
                sel = same & (ps == r)
                base = int(self.memory_bounds[r]) // s
                parts[r].local.src[s] = (src[sel] - base).astype(src.dtype)
                parts[r].local.dst[s] = (dst[sel] - base).astype(dst.dtype)
            if same.all():
                continue
            x = ~same
            cs, cd, xs, xd = src[x], dst[x], ps[x], pd[x]
            key = xs * R + xd
            block[k] = np.bincount(key, minlength=R * R).reshape(R, R) * s
            cross[s] = (cs, cd, xs, xd, key)
        padded = block.sum(axis=0)
        padded = (padded + 3) // 4 * 4
        send_displs = np.cumsum(padded, axis=1) - padded  # [p, q]: offset of block q in p's send buffer
        recv_displs = (np.cumsum(padded, axis=0) - padded)  # [p, q]: offset of block p in q's receive buffer
        active = bool(padded.sum() > 0)
        for r in range(R):
            parts[r].send_counts, parts[r].send_displs = padded[r].copy(), send_displs[r].copy()
            parts[r].recv_counts, parts[r].recv_displs = padded[:, r].copy(), recv_displs[:, r].copy()
            parts[r].active = active
        for k, s in enumerate(SIZES):
            if s not in cross:
                continue
            cs, cd, xs, xd, key = cross[s]
            before = block[:k].sum(axis=0)  # bytes of bigger items ahead in each (p, q) block
            order = stable_order(key, R * R)
            order = np.arange(key.size) if order is None else order
            sorted_key = key[order]
            counts = np.bincount(key, minlength=R * R)
            rank_in_block = np.arange(key.size) - (np.cumsum(counts) - counts)[sorted_key]
            p, q = sorted_key // R, sorted_key % R
            byte_pos = before[p, q] + rank_in_block * s
            send_at = (send_displs[p, q] + byte_pos) // s
            recv_at = (recv_displs[p, q] + byte_pos) // s
            for r in range(R):
                base = int(self.memory_bounds[r]) // s
                mine = p == r
                if mine.any():
                    parts[r].send_words[s] = (cs[order[mine]] - base).astype(cs.dtype)
                    parts[r].send_pos[s] = send_at[mine]
                theirs = q == r
                if theirs.any():
                    parts[r].recv_words[s] = (cd[order[theirs]] - base).astype(cd.dtype)
                    parts[r].recv_pos[s] = recv_at[theirs]
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


def split_executable(exe: Executable, tile_bounds: np.ndarray) -> list[RankPart]:
    """One :class:`RankPart` per rank."""
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
    batches = [sp.batches(step) for step in exe.computes]
    pre = [sp.exchange(step.pre) for step in exe.computes]
    post = [sp.exchange(step.post) for step in exe.computes]
    copies = [sp.exchange(c.moves) if c.kind == "copy" else sp.gather(c.words, c.dtype) for c in exe.copies]
    prints = [sp.gather(p.words, p.dtype) for p in exe.prints]
    owners, local_words = [], []
    for pred in exe.predicates:
        s = np.dtype(pred.dtype).itemsize
        owner = int(sp.owner(np.array([pred.word]), s)[0])
        owners.append(owner)
        local_words.append(pred.word - int(sp.memory_bounds[owner]) // s)
    parts = []
    for r in range(R):
        parts.append(RankPart(
            rank=r, num_ranks=R, tile_bounds=tile_bounds, memory_bounds=sp.memory_bounds,
            init_words=inits[r][0], init_values=inits[r][1],
            batches=[b[r] for b in batches], pre=[p[r] for p in pre], post=[p[r] for p in post],
            copies=[c[r] for c in copies], prints=[p[r] for p in prints], predicate_owner=owners,
            predicate_word=[w if o == r else -1 for o, w in zip(owners, local_words, strict=True)]))
    return parts


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


__all__ = ["partition_tiles", "split_executable", "skeleton", "RankPart", "RankExchange", "RankGather"]
