"""Exchange planning in element ids, before any address exists.

For a compute set, every element a vertex reads or writes that lives on another tile gets an
exchange *slot* on the vertex's tile: reads are copied into slots before compute, writes copied
from slots to their owners after compute.  One slot serves every vertex of a tile that touches
the element.  For a ``Copy`` program, elements move directly from source to destination.
All of it is vectorised over elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DataRaceError, FieldConnectionError
from ..graph import CONSTANT, ComputeSet, Copy, Graph
from .batches import Batch, build_batches
from .checks import check_data_races
from .liveness import StepAccess, bitset


@dataclass
class ComputeDraft:
    """A compute set's batches and its exchange slots (element level)."""

    name: str
    batches: list[Batch]
    slot_tile: np.ndarray  # (S,) tile holding the slot
    slot_elem: np.ndarray  # (S,) element the slot mirrors
    slot_read: np.ndarray  # (S,) bool: copied in before compute
    slot_write: np.ndarray  # (S,) bool: copied out after compute
    field_slots: list[dict[str, np.ndarray]] = field(default_factory=list)  # per batch: slot or -1
    read_ids: np.ndarray | None = None
    written_ids: np.ndarray | None = None


@dataclass
class CopyDraft:
    name: str
    kind: str  # copy | stream_in | stream_out
    src: np.ndarray | None  # element ids (None for a stream source)
    dst: np.ndarray | None  # element ids (None for a stream destination)
    stream: str = ""


def plan_compute(graph: Graph, cs: ComputeSet, elem_tile: np.ndarray, checks: bool = True) -> ComputeDraft:
    batches = build_batches(cs)
    if checks:
        check_data_races(graph, cs, batches)
    keys, kinds, owners = [], [], []
    num_elements = max(graph.num_elements, 1)
    for b, batch in enumerate(batches):
        for name, ids in batch.edges.items():
            fld = batch.codelet.fields[name]
            flat = ids.reshape(batch.n, -1)
            tiles = np.broadcast_to(batch.tiles[:, None].astype(np.int64), flat.shape)
            key = tiles * num_elements + flat
            remote = elem_tile[flat] != tiles
            keys.append(np.where(remote, key, -1).reshape(-1))
            kinds.append((fld.reads, fld.writes, flat.size))
            owners.append((b, name))
    all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    remote_keys = np.unique(all_keys[all_keys >= 0])
    slot_tile = (remote_keys // num_elements).astype(np.int32)
    slot_elem = remote_keys % num_elements
    slot_read = np.zeros(remote_keys.size, dtype=bool)
    slot_write = np.zeros(remote_keys.size, dtype=bool)
    field_slots: list[dict[str, np.ndarray]] = [dict() for _ in batches]
    read_parts, write_parts = [], []
    for key, (reads, writes, _), (b, name) in zip(keys, kinds, owners, strict=True):
        slots = np.where(key >= 0, np.searchsorted(remote_keys, key), -1)
        if reads:
            slot_read[slots[slots >= 0]] = True
        if writes:
            slot_write[slots[slots >= 0]] = True
        batch = batches[b]
        field_slots[b][name] = slots.reshape(batch.edges[name].shape)
        flat = batch.edges[name].reshape(-1)
        if reads:
            read_parts.append(flat)
        if writes:
            write_parts.append(flat)
    read_ids = np.concatenate(read_parts) if read_parts else np.zeros(0, dtype=np.int64)
    written_ids = np.concatenate(write_parts) if write_parts else np.zeros(0, dtype=np.int64)
    return ComputeDraft(cs.name, batches, slot_tile, slot_elem, slot_read, slot_write, field_slots,
                        read_ids, written_ids)


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


def full_variables(graph: Graph, ids: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Indices of variables all of whose elements appear in ``ids``."""
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    unique = np.unique(ids)
    counts = np.bincount(graph.variable_of(unique), minlength=sizes.size)
    return np.flatnonzero((counts == sizes) & (sizes > 0))


def touched_variables(graph: Graph, ids: np.ndarray) -> np.ndarray:
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(graph.variable_of(ids))


def access_of(graph: Graph, reads: np.ndarray | None, writes: np.ndarray | None, sizes: np.ndarray) -> StepAccess:
    """Liveness facts of a step that reads and writes the given element ids."""
    v = sizes.size
    read_vars = touched_variables(graph, reads) if reads is not None else np.zeros(0, dtype=np.int64)
    if writes is None or writes.size == 0:
        return StepAccess(reads=bitset(read_vars, v))
    written = touched_variables(graph, writes)
    full = full_variables(graph, writes, sizes)
    partial = np.setdiff1d(written, full)
    return StepAccess(reads=bitset(np.union1d(read_vars, partial), v), writes=bitset(written, v),
                      kills=bitset(full, v))
