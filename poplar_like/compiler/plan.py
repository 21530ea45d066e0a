"""Exchange planning in element ids, before any address exists.

For a compute set, every element a vertex reads or writes that lives on another tile gets an
exchange *slot* on the vertex's tile: reads are copied into slots before compute, writes copied
from slots to their owners after compute.  One slot serves every vertex of a tile that touches
the element.  For a ``Copy`` program, elements move directly from source to destination.
The liveness facts of each step (which variables it reads, writes, fully overwrites) are worked
out here too, field by field, so no array of all ids is ever built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DataRaceError, FieldConnectionError
from ..graph import CONSTANT, ComputeSet, Copy, Graph
from ..arrays import present, stable_order
from .batches import Batch, build_batches
from .checks import ElementStamps, check_data_races
from .liveness import StepAccess, bitset


@dataclass
class ComputeDraft:
    """A compute set's batches and its exchange slots (element level)."""

    name: str
    batches: list[Batch]
    slot_counts: np.ndarray  # (T,) slots on each tile: slots are sorted by tile
    slot_elem: np.ndarray  # (S,) element the slot mirrors (int32 while the graph allows)
    slot_read: np.ndarray  # (S,) bool: copied in before compute
    slot_write: np.ndarray  # (S,) bool: copied out after compute
    #: per batch, the fields with remote elements: in those, ``batch.edges`` holds ``-1 - slot`` in
    #: place of each remote element's id (one array instead of ids plus a parallel slot array)
    remote_fields: list[set[str]] = field(default_factory=list)
    access: StepAccess = field(default_factory=StepAccess)
    #: (T,) distinct elements each tile sends in the exchange-in: a tile can broadcast an element
    #: to all its readers at once, so this bounds its send code (layout.py)
    elements_sent: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def slot_tiles(self) -> np.ndarray:
        """The tile of each slot (made on demand: drafts of every compute set are held at once
        until addresses are resolved, and a per-slot tile array would be 4 bytes a slot more)."""
        return np.repeat(np.arange(self.slot_counts.size, dtype=np.int32), self.slot_counts)


@dataclass
class CopyDraft:
    name: str
    kind: str  # copy | stream_in | stream_out
    src: np.ndarray | None  # element ids (None for a stream source)
    dst: np.ndarray | None  # element ids (None for a stream destination)
    stream: str = ""


class _AccessCounter:
    """Accumulates which variables a step reads and writes, and how many elements of each."""

    def __init__(self, graph: Graph, exact: bool) -> None:
        self.graph = graph
        self.v = len(graph.variables)
        self.reads = np.zeros(self.v, dtype=bool)
        self.written = np.zeros(self.v, dtype=np.int64)
        self.exact = exact  # writes are known to be distinct (data-race check ran)
        self.write_parts: list[np.ndarray] = []

    def read(self, ids: np.ndarray) -> None:
        single = self.graph.single_variable(ids)
        if single is not None:
            self.reads[single] = True
        elif ids.size:
            self.reads[np.bincount(self.graph.variable_of(ids), minlength=self.v) > 0] = True

    def write(self, ids: np.ndarray) -> None:
        if not self.exact:
            self.write_parts.append(ids)
            return
        single = self.graph.single_variable(ids)
        if single is not None:
            self.written[single] += ids.size
        elif ids.size:
            self.written += np.bincount(self.graph.variable_of(ids), minlength=self.v)

    def result(self, sizes: np.ndarray) -> StepAccess:
        if not self.exact and self.write_parts:
            distinct = present(np.concatenate(self.write_parts), self.graph.num_elements)
            self.written = np.bincount(self.graph.variable_of(distinct), minlength=self.v)
        touched = self.written > 0
        full = touched & (self.written >= sizes) & (sizes > 0)
        partial = touched & ~full
        return StepAccess(reads=bitset(np.flatnonzero(self.reads | partial), self.v),
                          writes=bitset(np.flatnonzero(touched), self.v), kills=bitset(np.flatnonzero(full), self.v))


def plan_compute(graph: Graph, cs: ComputeSet, elem_tile: np.ndarray, sizes: np.ndarray,
                 checks: bool = True, stamps: ElementStamps | None = None) -> ComputeDraft:
    """``stamps``: the compile's shared per-element scratch (one is made if not given)."""
    stamps = stamps or ElementStamps(graph.num_elements)
    batches = build_batches(cs)
    if checks:
        check_data_races(graph, cs, batches, stamps)
    counter = _AccessCounter(graph, exact=checks)
    fields: list[tuple[int, str, np.ndarray | None]] = []  # (batch, field, remote mask)
    tile_parts, elem_parts = [], []
    for b, batch in enumerate(batches):
        for name, ids in batch.edges.items():
            fld = batch.codelet.fields[name]
            flat = ids.reshape(batch.n, -1)
            if fld.reads:
                counter.read(flat.reshape(-1))
            if fld.writes:
                counter.write(flat.reshape(-1))
            remote = elem_tile[flat] != batch.tiles[:, None]
            if not remote.any():
                fields.append((b, name, None))
                continue
            fields.append((b, name, remote))
            tile_parts.append(np.broadcast_to(batch.tiles[:, None], flat.shape)[remote])
            elem_parts.append(flat[remote])
    slot_of_entry, slot_counts, slot_elem = _dedupe_slots(tile_parts, elem_parts, stamps, graph.target.num_tiles)
    if graph.num_elements < 2 ** 31:
        slot_elem = slot_elem.astype(np.int32)
    del tile_parts, elem_parts
    slot_read = np.zeros(slot_elem.size, dtype=bool)
    slot_write = np.zeros(slot_elem.size, dtype=bool)
    remote_fields: list[set[str]] = [set() for _ in batches]
    cursor = 0
    for b, name, remote in fields:
        batch = batches[b]
        if remote is None:
            continue
        fld = batch.codelet.fields[name]
        count = int(np.count_nonzero(remote))
        found = slot_of_entry[cursor:cursor + count]
        cursor += count
        if fld.reads:
            slot_read[found] = True
        if fld.writes:
            slot_write[found] = True
        ids = batch.edges[name]
        refs = ids.reshape(remote.shape).astype(np.result_type(ids.dtype, slot_of_entry.dtype))
        refs[remote] = -1 - found
        batch.edges[name] = refs.reshape(ids.shape)  # the batch's own array: the graph's is untouched
        remote_fields[b].add(name)
    elements_sent = _elements_sent(slot_elem[slot_read], elem_tile, stamps, graph.target.num_tiles)
    return ComputeDraft(cs.name, batches, slot_counts, slot_elem, slot_read, slot_write, remote_fields,
                        counter.result(sizes), elements_sent)


def _elements_sent(read_elems: np.ndarray, elem_tile: np.ndarray, stamps: ElementStamps,
                   num_tiles: int) -> np.ndarray:
    """Distinct elements each tile sends: one representative per element (stamps, O(slots)),
    counted on the element's home tile."""
    if read_elems.size == 0:
        return np.zeros(num_tiles, dtype=np.int64)
    index = np.int32 if read_elems.size < 2 ** 31 else np.int64
    position = np.arange(read_elems.size, dtype=index)
    stamp = stamps.take(index)
    stamp[read_elems] = position
    first = stamp[read_elems] == position
    stamps.release(stamp, read_elems)
    return np.bincount(elem_tile[read_elems[first]], minlength=num_tiles).astype(np.int64)


def _dedupe_slots(tile_parts: list[np.ndarray], elem_parts: list[np.ndarray], stamps: ElementStamps,
                  num_tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One slot per distinct (tile, element) among the remote accesses, in O(entries) plus a sort
    of each tile's distinct elements.

    Entries are radix-sorted by tile; then, tile by tile (a loop over tiles, never over elements),
    a stamp array over element ids picks the distinct elements, which become the tile's slots in
    element order.  That order is the order of their owners' memory (a variable keeps its
    elements on a tile in id order), so what one tile sends to another arrives as long runs of
    consecutive words: the engine copies a run with one memmove, where the order vertices read in
    (an im2col patch row takes one word per channel) would break it into single words.  Returns
    each entry's slot (in the order the parts were given), the number of slots on each tile
    (slots are sorted by tile) and each slot's element.
    """
    if not tile_parts:
        return np.zeros(0, dtype=np.int32), np.zeros(num_tiles, dtype=np.int64), np.zeros(0, dtype=np.int64)
    tiles = np.concatenate(tile_parts)
    elems = np.concatenate(elem_parts).astype(np.int64, copy=False)
    n = tiles.size
    index = np.int32 if n < 2 ** 31 else np.int64
    order = stable_order(tiles, num_tiles)
    sorted_elems = elems if order is None else elems[order]
    counts = np.bincount(tiles, minlength=num_tiles)
    ends = np.cumsum(counts)
    position = np.arange(n, dtype=index)
    slot_of_sorted = np.empty(n, dtype=index)
    slot_elems: list[np.ndarray] = []
    slot_counts = np.zeros(num_tiles, dtype=np.int64)
    stamp = stamps.take(index)
    slots = 0
    for tile in np.flatnonzero(counts).tolist():
        lo, hi = int(ends[tile] - counts[tile]), int(ends[tile])
        segment = sorted_elems[lo:hi]
        stamp[segment] = position[lo:hi]
        distinct = np.sort(segment[stamp[segment] == position[lo:hi]])
        stamp[distinct] = np.arange(slots, slots + distinct.size, dtype=index)
        slot_of_sorted[lo:hi] = stamp[segment]
        slot_elems.append(distinct)
        slot_counts[tile] = distinct.size
        slots += distinct.size
    stamps.release(stamp, sorted_elems)
    if order is None:
        slot_of_entry = slot_of_sorted
    else:
        slot_of_entry = np.empty(n, dtype=index)
        slot_of_entry[order] = slot_of_sorted
    return slot_of_entry, slot_counts, np.concatenate(slot_elems)


def plan_copy(graph: Graph, copy: Copy, index: int) -> CopyDraft:
    kind = copy.kind
    name = copy.name or f"copy{index}"
    src = None if kind == "stream_in" else copy.source.flat_ids()  # type: ignore[union-attr]
    dst = None if kind == "stream_out" else copy.destination.flat_ids()  # type: ignore[union-attr]
    if dst is not None:
        dst_name = copy.destination.name  # type: ignore[union-attr]
        order = np.sort(dst)
        dup = np.flatnonzero(order[1:] == order[:-1])
        if dup.size:
            raise DataRaceError(f"Copy into {dst_name!r} writes element {graph.describe_element(int(order[dup[0]]))} "
                                "more than once: the destination view repeats elements")
        variables = graph.variable_of(dst)
        const = np.array([v.kind == CONSTANT for v in graph.variables])[variables]
        if const.any():
            raise FieldConnectionError(f"Copy into {dst_name!r} writes constant element "
                                       f"{graph.describe_element(int(dst[np.argmax(const)]))}; constants are read-only")
    stream = copy.source.name if kind == "stream_in" else copy.destination.name if kind == "stream_out" else ""
    return CopyDraft(name, kind, src, dst, stream)


def access_of(graph: Graph, reads: np.ndarray | None, writes: np.ndarray | None, sizes: np.ndarray) -> StepAccess:
    """Liveness facts of a step that reads and writes the given element ids (writes distinct)."""
    counter = _AccessCounter(graph, exact=True)
    if reads is not None and reads.size:
        counter.read(reads)
    if writes is not None and writes.size:
        counter.write(writes)
    return counter.result(sizes)


def full_variables(graph: Graph, ids: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Indices of variables all of whose elements appear in ``ids``."""
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    distinct = present(ids, graph.num_elements)
    counts = np.bincount(graph.variable_of(distinct), minlength=sizes.size)
    return np.flatnonzero((counts == sizes) & (sizes > 0))
