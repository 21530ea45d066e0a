"""Tile memory layout: an address on its tile for everything that occupies memory.

Each tile's memory is laid out bottom-up in regions, each 8-byte aligned:

    control code | stack | vertex code | vertex state | constants | always-live variables |
    exchange code | exchange buffers | not-always-live variables

Always-live items get exclusive addresses.  Exchange buffers of different compute sets are never
live together, so they share one region (its size is the largest buffer).  Temporaries (see
liveness.py) are placed one by one, each above every already-placed temporary it conflicts with
on that tile, so temporaries that are never live together share addresses.

All addresses are in-tile first; the backing store of the engine concatenates tiles, and
``tile_offsets[t]`` is where tile ``t`` starts in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..codelet import SCALAR, VECTOR, VECTOR_LIST
from ..graph import CONSTANT, Graph
from ..target import Target
from ..arrays import stable_order, unique_sorted
from .liveness import Liveness, bits_to_mask, occupancy_matrix
from .plan import ComputeDraft, CopyDraft

# Bytes of control code per bytecode instruction on every tile (the control program is replicated).
CONTROL_BYTES_PER_INSTRUCTION = 16
# Exchange code: per message a tile sends or receives in a step, plus per step it takes part in.
# A receiver takes one message from each tile it hears from; a sender sends either one message per
# receiver or, broadcasting, one per distinct element it sends, whichever is fewer.
EXCHANGE_BYTES_PER_MESSAGE = 8
EXCHANGE_BYTES_PER_STEP = 12
# Vertex state: edge pointers (scalar: pointer; vector: pointer + size; list: descriptor + one
# pointer/size pair per vector) and 4 bytes per state field.
EDGE_BYTES = {SCALAR: 4, VECTOR: 8}
LIST_DESCRIPTOR_BYTES, LIST_ITEM_BYTES, STATE_FIELD_BYTES = 8, 8, 4

# Elements processed at a time by the per-element passes (bounds their temporaries).
CHUNK = 1 << 22

CATEGORIES = ("control_code", "stack", "vertex_code", "vertex_state", "constants", "variables_always_live",
              "exchange_code", "exchange_buffers", "variables_not_always_live")


def align(values: np.ndarray | int, alignment: int) -> np.ndarray:
    return (np.asarray(values, dtype=np.int64) + alignment - 1) // alignment * alignment


@dataclass
class Layout:
    in_tile_address: np.ndarray  # (E,) element address within its tile
    tile_offsets: np.ndarray  # (T+1,) start of each tile in the backing store
    categories: dict[str, np.ndarray]  # name -> (T,) bytes, alignment gaps included
    slot_offsets: list[np.ndarray | int]  # per compute draft: see ``take_slot_addresses``
    buffer_start: np.ndarray  # (T,) global byte address of each tile's exchange buffer
    state_address: list[list[dict[str, np.ndarray]]]  # per draft, per batch: field -> (n,) global address
    nal_by_step: np.ndarray  # (I, T) not-always-live bytes occupied at each instruction
    pieces: dict[str, np.ndarray] = field(default_factory=dict)  # var, tile, bytes of each variable piece

    def take_slot_addresses(self, c: int, slot_counts: np.ndarray) -> np.ndarray:
        """Global byte address of each slot of compute draft ``c`` (slots sorted by tile), worked
        out when the draft is resolved and forgotten by the layout.  A draft whose slots all have
        one item size keeps only that size (a slot's offset is its rank on its tile times it);
        otherwise its in-buffer offsets (int32).  Building every draft's addresses at once took
        1 GB at the compile's peak for ResNet-50 (250 million slots)."""
        offsets, self.slot_offsets[c] = self.slot_offsets[c], 0
        address_type = np.int32 if self.tile_offsets[-1] < 2 ** 31 else np.int64
        address = np.repeat(self.buffer_start.astype(address_type), slot_counts)
        if isinstance(offsets, np.ndarray):
            address += offsets
        elif address.size:
            first = np.cumsum(slot_counts) - slot_counts
            rank = np.arange(address.size, dtype=address_type)
            rank -= np.repeat(first.astype(address_type), slot_counts)
            rank *= int(offsets)
            address += rank
        return address

    @property
    def total_by_tile(self) -> np.ndarray:
        return sum(self.categories.values())  # type: ignore[return-value]


def _edge_bytes(batch) -> int:
    total = 0
    for name, fld in batch.codelet.fields.items():
        if not fld.is_edge:
            total += STATE_FIELD_BYTES
        elif fld.type.kind == VECTOR_LIST:
            total += LIST_DESCRIPTOR_BYTES + LIST_ITEM_BYTES * batch.edges[name].shape[1]
        else:
            total += EDGE_BYTES[fld.type.kind]
    return total


def _state_offset(batch) -> int:
    return sum(EDGE_BYTES.get(f.type.kind, 0) if f.type.kind != VECTOR_LIST
               else LIST_DESCRIPTOR_BYTES + LIST_ITEM_BYTES * batch.edges[n].shape[1]
               for n, f in batch.codelet.fields.items() if f.is_edge)


class _Pieces:
    """Bytes of each variable on each tile, and in-tile element addresses once placed."""

    def __init__(self, graph: Graph, num_tiles: int, alignment: int) -> None:
        self.graph = graph
        self.num_tiles = num_tiles
        self.alignment = alignment
        self.elem_tile = graph.element_tiles
        # in-tile addresses fit int32 unless a tile holds 2 GiB (only a graph far over capacity):
        # half the memory of int64 at the compile's peak (117 million elements for ResNet-50)
        self.address = np.zeros(graph.num_elements, dtype=np.int32)
        self.piece_var: list[np.ndarray] = []
        self.piece_tile: list[np.ndarray] = []
        self.piece_bytes: list[np.ndarray] = []

    def tiles_of(self, v: int) -> np.ndarray:
        info = self.graph.variables[v]
        return self.elem_tile[info.base:info.base + info.size]

    def bytes_by_tile(self, v: int) -> np.ndarray:
        info = self.graph.variables[v]
        counts = np.bincount(self.tiles_of(v), minlength=self.num_tiles)
        return align(counts * info.dtype.itemsize, self.alignment)

    def place(self, v: int, start: np.ndarray) -> np.ndarray:
        """Give variable ``v``'s elements addresses from ``start[tile]`` on; returns its bytes by tile."""
        info = self.graph.variables[v]
        tiles = self.tiles_of(v)
        counts = np.bincount(tiles, minlength=self.num_tiles)
        first = np.cumsum(counts) - counts
        order = stable_order(tiles, self.num_tiles)
        sorted_tiles = tiles if order is None else tiles[order]
        # address = start[tile] + (rank of the element among the variable's elements on its tile) * itemsize,
        # in chunks so the temporaries stay small on huge variables
        for lo in range(0, tiles.size, CHUNK):
            hi = min(lo + CHUNK, tiles.size)
            part = sorted_tiles[lo:hi]
            address = np.arange(lo, hi, dtype=np.int64)
            address -= first[part]
            address *= info.dtype.itemsize
            address += start[part]
            if self.address.dtype == np.int32 and address.size and int(address.max()) >= 2 ** 31:
                self.address = self.address.astype(np.int64)
            if order is None:
                self.address[info.base + lo:info.base + hi] = address
            else:
                self.address[info.base + order[lo:hi]] = address
        nbytes = align(counts * info.dtype.itemsize, self.alignment)
        used = np.flatnonzero(nbytes)
        self.piece_var.append(np.full(used.size, v, dtype=np.int32))
        self.piece_tile.append(used.astype(np.int32))
        self.piece_bytes.append(nbytes[used])
        return nbytes


def _count_pairs(senders: np.ndarray, receivers: np.ndarray, num_tiles: int) -> tuple[np.ndarray, np.ndarray]:
    """For each tile, how many distinct tiles it sends to and receives from."""
    if num_tiles <= 4096:
        seen = np.zeros((num_tiles, num_tiles), dtype=bool)
        seen[senders, receivers] = True
        return seen.sum(axis=1), seen.sum(axis=0)
    pairs = unique_sorted(senders.astype(np.int64) * num_tiles + receivers)
    return np.bincount(pairs // num_tiles, minlength=num_tiles), np.bincount(pairs % num_tiles, minlength=num_tiles)


def element_itemsizes(graph: Graph, itemsize_of_var: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Item size of each element id.  When every variable has one item size (a float32 network),
    that size, without a lookup: the lookup is a binary search per element, over 500 million
    elements in a ResNet-50 compile."""
    if itemsize_of_var.size and int(itemsize_of_var.min()) == int(itemsize_of_var.max()):
        return np.full(ids.size, int(itemsize_of_var[0]), dtype=np.int64)
    return itemsize_of_var[graph.variable_of(ids)] if ids.size else np.zeros(0, dtype=np.int64)


def _slot_offsets(draft: ComputeDraft, itemsize_of_var: np.ndarray, graph: Graph, num_tiles: int,
                  alignment: int) -> tuple[np.ndarray | int, np.ndarray]:
    """In-buffer offset of each slot (int32: a buffer is smaller than a tile), or the one item
    size of all slots (the offset is then the slot's rank on its tile times it), and buffer bytes
    by tile.  Slots are sorted by tile; within a tile, bigger items come first so that every item
    is aligned to its size."""
    n = draft.slot_elem.size
    if n == 0:
        return 0, np.zeros(num_tiles, dtype=np.int64)
    sizes = element_itemsizes(graph, itemsize_of_var, draft.slot_elem)
    if bool((sizes != sizes[0]).any()):
        tiles = draft.slot_tiles()
        per_tile = np.bincount(tiles, weights=sizes, minlength=num_tiles).astype(np.int64)
        first = np.cumsum(per_tile) - per_tile
        order = np.lexsort((draft.slot_elem, -sizes, tiles))
        offset = np.empty(n, dtype=np.int64)
        csum = np.cumsum(sizes[order])
        offset[order] = csum - sizes[order] - first[tiles[order]]
        return offset.astype(np.int32), align(per_tile, alignment)
    return int(sizes[0]), align(draft.slot_counts * int(sizes[0]), alignment)


def _exchange_code(graph: Graph, computes: list[ComputeDraft], copies: list[CopyDraft],
                    num_tiles: int) -> np.ndarray:
    """Exchange code bytes by tile, counted step by step so that no array over every step's
    slots is ever built.

    The IPU's exchange is a broadcast: a tile's send reaches every tile listening to it in that
    cycle.  So a sender needs one message per receiver, or one per distinct element it sends
    (each broadcast to all its readers), whichever is fewer; a receiver one per tile it hears from.
    Writes back to an element's home have a single receiver each, so there pairs are messages.
    """
    code = np.zeros(num_tiles, dtype=np.int64)

    def add(senders: np.ndarray, receivers: np.ndarray, elements_sent: np.ndarray | None = None) -> None:
        if senders.size == 0:
            return
        sent, received = _count_pairs(senders, receivers, num_tiles)
        if elements_sent is not None:
            sent = np.minimum(sent, elements_sent)
        code[:] += EXCHANGE_BYTES_PER_MESSAGE * (sent + received)
        code[:] += EXCHANGE_BYTES_PER_STEP * ((sent + received) > 0)

    for draft in computes:
        if draft.slot_elem.size == 0:
            continue
        homes, tiles = graph.element_tiles[draft.slot_elem], draft.slot_tiles()
        sent = draft.elements_sent if draft.elements_sent.size else None
        add(homes[draft.slot_read], tiles[draft.slot_read], sent)
        add(tiles[draft.slot_write], homes[draft.slot_write])
    for c in copies:
        if c.kind == "copy":
            s, d = graph.element_tiles[c.src], graph.element_tiles[c.dst]
            remote = s != d
            if remote.any():
                sources = unique_sorted(np.asarray(c.src)[remote].astype(np.int64))
                add(s[remote], d[remote], np.bincount(graph.element_tiles[sources], minlength=num_tiles))
    return code


def plan_layout(target: Target, graph: Graph, liveness: Liveness, computes: list[ComputeDraft],
                copies: list[CopyDraft], code: list[list[int]], execute_pcs: list[list[int]]) -> Layout:
    """Lay out every tile.  ``execute_pcs[c]`` are the instructions that run compute draft ``c``."""
    T = target.num_tiles
    a = target.memory_alignment
    cat: dict[str, np.ndarray] = {name: np.zeros(T, dtype=np.int64) for name in CATEGORIES}
    cat["control_code"][:] = align(CONTROL_BYTES_PER_INSTRUCTION * len(code), a)
    cat["stack"][:] = align(target.num_worker_contexts * target.stack_bytes_per_worker, a)

    # ---- vertex code: each codelet once per tile that runs it
    codelets: dict[type, int] = {}
    keys = []
    for draft in computes:
        for batch in draft.batches:
            cid = codelets.setdefault(batch.codelet, len(codelets))
            keys.append(unique_sorted(batch.tiles).astype(np.int64) * (1 << 20) + cid)
    if keys:
        pairs = unique_sorted(np.concatenate(keys))
        code_sizes = align(np.array([c.code_size for c in codelets], dtype=np.int64), a)
        cat["vertex_code"] = np.bincount(pairs >> 20, weights=code_sizes[pairs & ((1 << 20) - 1)],
                                         minlength=T).astype(np.int64)

    # ---- vertex state: per instance, edge pointers then state fields
    inst_tiles, inst_bytes = [], []
    for draft in computes:
        for batch in draft.batches:
            inst_tiles.append(batch.tiles)
            inst_bytes.append(np.full(batch.n, _edge_bytes(batch), dtype=np.int64))
    if inst_tiles:
        all_tiles = np.concatenate(inst_tiles)
        all_bytes = np.concatenate(inst_bytes)
        per_tile = np.bincount(all_tiles, weights=all_bytes, minlength=T).astype(np.int64)
        cat["vertex_state"] = align(per_tile, a)
        order = stable_order(all_tiles, T)
        order = np.arange(all_tiles.size) if order is None else order
        csum = np.cumsum(all_bytes[order])
        tile_first = np.cumsum(np.bincount(all_tiles, weights=all_bytes, minlength=T).astype(np.int64)) - per_tile
        inst_offset = np.empty_like(all_bytes)
        inst_offset[order] = csum - all_bytes[order] - tile_first[all_tiles[order]]
    else:
        inst_offset = np.zeros(0, dtype=np.int64)

    # ---- exchange code and buffers
    cat["exchange_code"] = align(_exchange_code(graph, computes, copies, T), a)

    itemsize_of_var = np.array([v.dtype.itemsize for v in graph.variables], dtype=np.int64)
    slot_offsets, buffer_sizes = [], []
    for draft in computes:
        offset, per_tile = _slot_offsets(draft, itemsize_of_var, graph, T, a)
        slot_offsets.append(offset)
        buffer_sizes.append(per_tile)
    cat["exchange_buffers"] = np.max(np.stack(buffer_sizes), axis=0) if buffer_sizes else cat["exchange_buffers"]

    # ---- variables: constants and always-live first (exclusive), sizes known now
    pieces = _Pieces(graph, T, a)
    shareable = bits_to_mask(liveness.shareable, len(graph.variables))
    region_start = {}
    top = np.zeros(T, dtype=np.int64)
    for name in ("control_code", "stack", "vertex_code", "vertex_state"):
        region_start[name] = top.copy()
        top += cat[name]
    for kind, category in ((CONSTANT, "constants"), ("variable", "variables_always_live")):
        region_start[category] = top.copy()
        for v, info in enumerate(graph.variables):
            if info.kind == kind and not shareable[v] and info.size:
                top += pieces.place(v, top)
        cat[category] = top - region_start[category]
    for name in ("exchange_code", "exchange_buffers"):
        region_start[name] = top.copy()
        top += cat[name]

    # ---- temporaries: conflict-aware placement above the fixed regions
    nal_start = top.copy()
    temps = [v for v in np.flatnonzero(shareable).tolist() if graph.variables[v].size]
    occ = occupancy_matrix(liveness, np.array(temps, dtype=np.int64), len(graph.variables))
    temp_bits = [int.from_bytes(np.packbits(occ[:, j], bitorder="little").tobytes(), "little")
                 for j in range(len(temps))]
    first_use = [int(np.argmax(occ[:, j])) if occ[:, j].any() else len(code) for j in range(len(temps))]
    sizes = [pieces.bytes_by_tile(v) for v in temps]
    placed_bits: list[int] = []
    placed_end: list[np.ndarray] = []
    nal_top = nal_start.copy()
    for j in sorted(range(len(temps)), key=lambda j: (first_use[j], -int(sizes[j].max(initial=0)))):
        base = nal_start.copy()
        for bits, end in zip(placed_bits, placed_end, strict=True):
            if bits & temp_bits[j]:
                np.maximum(base, end, out=base)
        nbytes = pieces.place(temps[j], base)
        end = np.where(nbytes > 0, base + nbytes, 0)
        placed_bits.append(temp_bits[j])
        placed_end.append(end)
        np.maximum(nal_top, end, out=nal_top)
    cat["variables_not_always_live"] = nal_top - nal_start

    # ---- not-always-live bytes at each instruction
    num_steps = len(code)
    if temps:
        temp_bytes = np.stack(sizes).astype(np.float64)
        nal_by_step = np.rint(occ.astype(np.float64) @ temp_bytes).astype(np.int64)
    else:
        nal_by_step = np.zeros((num_steps, T), dtype=np.int64)
    for c, pcs in enumerate(execute_pcs):
        for pc in pcs:
            nal_by_step[pc] += buffer_sizes[c]

    # ---- global addresses
    tile_size = align(sum(cat.values()), a)
    tile_offsets = np.zeros(T + 1, dtype=np.int64)
    np.cumsum(tile_size, out=tile_offsets[1:])
    buffer_start = tile_offsets[:-1] + region_start["exchange_buffers"]
    state_address: list[list[dict[str, np.ndarray]]] = []
    cursor = 0
    vs_start = region_start["vertex_state"]
    for draft in computes:
        per_batch = []
        for batch in draft.batches:
            offs = inst_offset[cursor:cursor + batch.n]
            cursor += batch.n
            inst_addr = tile_offsets[batch.tiles] + vs_start[batch.tiles] + offs
            state_off = _state_offset(batch)
            fields = {}
            for k, name in enumerate(batch.state):
                fields[name] = inst_addr + state_off + STATE_FIELD_BYTES * k
            per_batch.append(fields)
        state_address.append(per_batch)
    piece_arrays = {
        "var": np.concatenate(pieces.piece_var) if pieces.piece_var else np.zeros(0, np.int32),
        "tile": np.concatenate(pieces.piece_tile) if pieces.piece_tile else np.zeros(0, np.int32),
        "bytes": np.concatenate(pieces.piece_bytes) if pieces.piece_bytes else np.zeros(0, np.int64),
    }
    return Layout(pieces.address, tile_offsets, cat, slot_offsets, buffer_start, state_address, nal_by_step,
                  piece_arrays)
