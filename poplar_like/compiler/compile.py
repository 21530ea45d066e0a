"""``compile_graph``: graph + programs -> :class:`Executable`.

Passes, in order: lower programs to bytecode; check mappings; per compute set build batches,
check data races and plan exchange slots; plan copies; liveness; memory layout; resolve every
field, slot, state value and copy to word indices; estimate cycles; check capacity.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import numpy as np

from ..arrays import release_freed_memory
from ..errors import OutOfMemoryError, ProgramError
from ..graph import CONSTANT, Graph, Program
from .checks import ElementStamps, check_variables_mapped
from . import verify as verifier
from .costs import (ExchangeStats, compute_cycles_by_tile, exchange_stats, host_cycles,
                    local_copy_cycles_by_tile)
from .executable import BatchPlan, ComputeStep, CopyStep, Executable, Moves, Predicate, PrintStep, runs_of
from .layout import CHUNK, element_itemsizes, plan_layout
from .liveness import StepAccess, analyse, bitset
from .lowering import BRANCH, COPY, EXECUTE, PRINT, STREAM_IN, STREAM_OUT, UNDEF, lower
from .plan import access_of, full_variables, plan_compute, plan_copy

AUTO_PROGRESS_VERTICES = 100_000


class Progress:
    """Stage messages on stderr for long compilations (``[compile 3.2s] planning ...``)."""

    def __init__(self, enabled: bool | Callable[[str], None], stage: str = "compile") -> None:
        self.start = time.perf_counter()
        self.stage = stage
        self.sink: Callable[[str], None] | None
        if callable(enabled):
            self.sink = enabled
        elif enabled:
            self.sink = lambda line: print(line, file=sys.stderr, flush=True)
        else:
            self.sink = None

    def __call__(self, message: str) -> None:
        if self.sink is not None:
            self.sink(f"[{self.stage} {time.perf_counter() - self.start:6.1f}s] {message}")


def _words(addresses: Callable[[np.ndarray | slice], np.ndarray], count: int, itemsize: int,
           idx: type) -> np.ndarray:
    """Word indices of ``count`` addresses produced chunk by chunk (keeps temporaries small)."""
    out = np.empty(count, dtype=idx)
    for lo in range(0, count, CHUNK):
        hi = min(lo + CHUNK, count)
        addr = addresses(slice(lo, hi))
        addr //= itemsize
        out[lo:hi] = addr
    return out


def _moves(selected: np.ndarray, itemsize: np.ndarray, src: Callable[[np.ndarray], np.ndarray],
           dst: Callable[[np.ndarray], np.ndarray], idx: type) -> Moves:
    """Copy descriptors for the selected items, grouped by item size, as runs of word indices.

    ``src(positions)``/``dst(positions)`` give byte addresses of the items at those positions.
    """
    moves = Moves()
    uniform = itemsize.size > 0 and bool((itemsize == itemsize[0]).all())
    for s in ((int(itemsize[0]),) if uniform else (4, 2, 1)):
        mask = selected if uniform else selected & (itemsize == s)
        positions = None if bool(mask.all()) else np.flatnonzero(mask)
        count = mask.size if positions is None else positions.size
        if count == 0:
            continue

        def pick(sl: slice, positions: np.ndarray | None = positions) -> np.ndarray:
            return np.arange(sl.start, sl.stop) if positions is None else positions[sl]

        src_words = _words(lambda sl: src(pick(sl)), count, s, idx)
        dst_words = _words(lambda sl: dst(pick(sl)), count, s, idx)
        moves.src_start[s], moves.dst_start[s], moves.length[s] = runs_of(src_words, dst_words)
    return moves


def _field_words(elem_addr: np.ndarray, refs: np.ndarray, has_remote: bool, slot_address: np.ndarray,
                 itemsize: int, idx: type) -> np.ndarray:
    """Word index of each field element: its own address, or, where ``refs`` holds ``-1 - slot``
    (a remote element), its exchange slot's."""
    out = np.empty(refs.shape, dtype=idx)
    flat_out, flat_refs = out.reshape(-1), refs.reshape(-1)
    for lo in range(0, flat_refs.size, CHUNK):
        hi = min(lo + CHUNK, flat_refs.size)
        part = flat_refs[lo:hi]
        if has_remote:
            remote = part < 0
            addr = elem_addr[np.where(remote, 0, part)]
            addr[remote] = slot_address[-1 - part[remote]]
        else:
            addr = elem_addr[part]
        addr //= itemsize
        flat_out[lo:hi] = addr
    return out


def compile_graph(graph: Graph, programs: Program | list[Program], *, allow_out_of_memory: bool = False,
                  checks: bool = True, progress: bool | Callable[[str], None] | None = None,
                  verify: bool | None = None) -> Executable:
    """Compile a graph and its programs (Poplar's ``compileGraph``).

    ``allow_out_of_memory`` completes compilation of a graph that does not fit (the profile marks
    the tiles over capacity and running refuses).  ``checks`` runs the data-race checker between
    passes (on by default; it is vectorised but costs time on huge graphs).  ``progress`` prints
    stage messages (default: on for graphs of 100,000 vertices or more).  ``verify`` runs the
    checker of compiler/verify.py on the result (default: ``verify.ENABLED``, on in the tests).
    """
    if isinstance(programs, Program):
        programs = [programs]
    programs = list(programs)
    if not programs:
        raise ProgramError("compile_graph needs at least one program")
    if progress is None:
        progress = graph.num_vertices() >= AUTO_PROGRESS_VERTICES
    graph.require_edges("compile_graph")
    try:
        return _compile(graph, programs, allow_out_of_memory, checks, Progress(progress), verify)
    finally:
        release_freed_memory()  # the passes' temporaries are gone now


def _compile(graph: Graph, programs: list[Program], allow_out_of_memory: bool, checks: bool, say: Progress,
             verify: bool | None) -> Executable:
    target = graph.target
    T = target.num_tiles
    say(f"lowering {len(programs)} program(s)")
    lowered = lower(graph, programs)
    check_variables_mapped(graph)
    elem_tile = graph.element_tiles
    sizes = np.array([v.size for v in graph.variables], dtype=np.int64)
    num_vars = len(graph.variables)
    itemsize_of_var = np.array([v.dtype.itemsize for v in graph.variables], dtype=np.int64)

    computes = []
    stamps = ElementStamps(graph.num_elements)
    for i, cs in enumerate(lowered.compute_sets):
        say(f"planning compute set {i + 1}/{len(lowered.compute_sets)} {cs.name!r} ({cs.num_vertices:,} vertices)")
        computes.append(plan_compute(graph, cs, elem_tile, sizes, checks, stamps))
    copies = [plan_copy(graph, c, i) for i, c in enumerate(lowered.copies)]

    say("liveness analysis")
    access: list[StepAccess] = []
    for op, a, _ in lowered.code:
        if op == EXECUTE:
            access.append(computes[a].access)
        elif op in (COPY, STREAM_IN, STREAM_OUT):
            access.append(access_of(graph, copies[a].src, copies[a].dst, sizes))
        elif op == PRINT:
            access.append(access_of(graph, lowered.prints[a].tensor.flat_ids(), None, sizes))
        elif op == UNDEF:
            ids = lowered.undefs[a].tensor.flat_ids()
            access.append(StepAccess(undefs=bitset(full_variables(graph, ids, sizes), num_vars)))
        elif op == BRANCH:
            access.append(access_of(graph, lowered.predicates[a].flat_ids(), None, sizes))
        else:
            access.append(StepAccess())
    constants = [i for i, v in enumerate(graph.variables) if v.kind == CONSTANT]
    liveness = analyse(lowered, access, num_vars, bitset(np.array(constants, dtype=np.int64), num_vars))

    say("laying out tile memory")
    execute_pcs = [[pc for pc, (op, a, _) in enumerate(lowered.code) if op == EXECUTE and a == c]
                   for c in range(len(computes))]
    layout = plan_layout(target, graph, liveness, computes, copies, lowered.code, execute_pcs)
    idx = np.int32 if layout.tile_offsets[-1] < 2 ** 31 else np.int64
    # global element addresses, int32 while the store is under 2 GiB (ResNet-50: 117 million),
    # written over the in-tile addresses where those have the same type
    in_tile = layout.in_tile_address
    elem_addr = in_tile if in_tile.dtype == idx else np.empty(graph.num_elements, dtype=idx)
    for lo in range(0, elem_addr.size, CHUNK):
        hi = min(lo + CHUNK, elem_addr.size)
        elem_addr[lo:hi] = in_tile[lo:hi] + layout.tile_offsets[elem_tile[lo:hi]]
    layout.in_tile_address = np.zeros(0, dtype=np.int64)
    del in_tile

    say("resolving addresses and estimating cycles")
    keys: dict[type, str] = {}
    for draft in computes:
        for batch in draft.batches:
            if batch.codelet not in keys:
                key = batch.codelet.path()
                taken = set(keys.values())
                n = 2
                while key in taken:
                    key = f"{batch.codelet.path()}#{n}"
                    n += 1
                keys[batch.codelet] = key
    compute_steps = []
    for c, draft in enumerate(computes):
        batches = []
        slot_addr = layout.take_slot_addresses(c, draft.slot_counts)
        for b, batch in enumerate(draft.batches):
            fields = {}
            for name, ids in batch.edges.items():
                size = batch.codelet.fields[name].type.dtype.itemsize
                fields[name] = _field_words(elem_addr, ids, name in draft.remote_fields[b], slot_addr, size, idx)
            state = {name: (layout.state_address[c][b][name] // batch.codelet.fields[name].type.dtype.itemsize)
                     .astype(idx) for name in batch.state}
            batches.append(BatchPlan(keys[batch.codelet], batch.tiles, fields, state, batch.cycles,
                                     bool(batch.codelet.multi_worker)))
            batch.edges = {}  # resolved: the element ids (often a tile-sorted copy) are not needed again
        slot_size = element_itemsizes(graph, itemsize_of_var, draft.slot_elem)
        rd, wr = draft.slot_read, draft.slot_write
        all_rd, all_wr = bool(rd.all()), bool(wr.all())
        home, slot_tile = elem_tile[draft.slot_elem], draft.slot_tiles()
        pre_x = exchange_stats(target, home if all_rd else home[rd], slot_tile if all_rd else
                               slot_tile[rd], slot_size if all_rd else slot_size[rd])
        post_x = exchange_stats(target, slot_tile if all_wr else slot_tile[wr],
                                home if all_wr else home[wr], slot_size if all_wr else slot_size[wr])
        del home, slot_tile
        slot_elem = draft.slot_elem
        pre = _moves(rd, slot_size, lambda p: elem_addr[slot_elem[p]], lambda p: slot_addr[p], idx)
        post = _moves(wr, slot_size, lambda p: slot_addr[p], lambda p: elem_addr[slot_elem[p]], idx)
        # homes and slots lie in different regions, a tile has one slot per element, and the data
        # race check lets one tile at most write an element: the engine need not check
        pre.apart = post.apart = True
        del slot_addr, slot_size, slot_elem
        all_tiles = np.concatenate([b.tiles for b in draft.batches]) if draft.batches else np.zeros(0, np.int32)
        all_cycles = np.concatenate([b.cycles for b in draft.batches]) if draft.batches else np.zeros(0, np.int64)
        multi = np.concatenate([np.full(b.n, bool(b.codelet.multi_worker)) for b in draft.batches]) \
            if draft.batches else np.zeros(0, dtype=bool)
        tile_cycles = compute_cycles_by_tile(target, all_tiles, all_cycles, multi)
        draft.slot_elem = draft.slot_read = draft.slot_write = np.zeros(0, dtype=np.int64)
        draft.slot_counts = np.zeros_like(draft.slot_counts)
        compute_steps.append(ComputeStep(
            draft.name, batches, pre, post, tile_cycles, pre_x.sent, pre_x.received, post_x.sent,
            post_x.received, pre_x.total_bytes + post_x.total_bytes, pre_x.inter_ipu_bytes + post_x.inter_ipu_bytes,
            int(tile_cycles.max(initial=0)), pre_x.cycles + post_x.cycles, 2 * target.global_sync_cycles))

    copy_steps = []
    for draft, copy in zip(copies, lowered.copies, strict=True):
        empty = np.zeros(0, dtype=idx)
        if draft.kind == "copy":
            s_tile, d_tile = elem_tile[draft.src].astype(np.int64), elem_tile[draft.dst].astype(np.int64)
            size = element_itemsizes(graph, itemsize_of_var, draft.src)
            remote = s_tile != d_tile
            x = exchange_stats(target, s_tile[remote], d_tile[remote], size[remote])
            local = local_copy_cycles_by_tile(target, d_tile[~remote], size[~remote])
            src_ids, dst_ids = draft.src, draft.dst
            moves = _moves(np.ones(src_ids.size, dtype=bool), size, lambda p: elem_addr[src_ids[p]],
                           lambda p: elem_addr[dst_ids[p]], idx)
            copy_steps.append(CopyStep(draft.name, "copy", moves, empty, str(copy.source.dtype), "", x.sent,
                                       x.received, x.total_bytes, x.inter_ipu_bytes, 0, int(local.max(initial=0)),
                                       x.cycles, target.global_sync_cycles, 0))
        else:
            tensor = copy.destination if draft.kind == "stream_in" else copy.source
            ids = draft.dst if draft.kind == "stream_in" else draft.src
            nbytes = int(ids.size * tensor.dtype.itemsize)
            z = ExchangeStats.empty(T)
            copy_steps.append(CopyStep(draft.name, draft.kind, Moves(), (elem_addr[ids] // tensor.dtype.itemsize)
                                       .astype(idx), str(tensor.dtype), draft.stream, z.sent, z.received, 0, 0,
                                       nbytes, 0, 0, target.global_sync_cycles, host_cycles(target, nbytes)))
    prints = []
    for p in lowered.prints:
        t = p.tensor
        nbytes = t.numel * t.dtype.itemsize
        prints.append(PrintStep(p.title, str(t.dtype), list(t.shape),
                                (elem_addr[t.flat_ids()] // t.dtype.itemsize).astype(idx),
                                host_cycles(target, nbytes), target.global_sync_cycles))
    predicates = [Predicate(t.name, str(t.dtype), int(elem_addr[t.flat_ids()[0]] // t.dtype.itemsize))
                  for t in lowered.predicates]

    init_words: dict[str, list[np.ndarray]] = {}
    init_values: dict[str, list[np.ndarray]] = {}
    for v in graph.variables:
        if v.kind == CONSTANT and v.size:
            ids = np.arange(v.base, v.base + v.size)
            init_words.setdefault(str(v.dtype), []).append(elem_addr[ids] // v.dtype.itemsize)
            init_values.setdefault(str(v.dtype), []).append(v.value.reshape(-1))  # type: ignore[union-attr]
    for c, draft in enumerate(computes):
        for b, batch in enumerate(draft.batches):
            for name, values in batch.state.items():
                dt = batch.codelet.fields[name].type.dtype
                init_words.setdefault(str(dt), []).append(compute_steps[c].batches[b].state[name].astype(np.int64))
                init_values.setdefault(str(dt), []).append(values)

    exe = Executable(
        target=target,
        variables=[{"name": v.name, "dtype": str(v.dtype), "shape": list(v.shape), "base": v.base,
                    "kind": v.kind} for v in graph.variables],
        element_address=elem_addr,
        tile_offsets=layout.tile_offsets,
        init_words={k: np.concatenate(v).astype(idx) for k, v in init_words.items()},
        init_values={k: np.concatenate(v) for k, v in init_values.items()},
        code=np.array(lowered.code, dtype=np.int64).reshape(-1, 3),
        entries=list(lowered.entries),
        num_counters=lowered.num_counters,
        computes=compute_steps,
        copies=copy_steps,
        prints=prints,
        predicates=predicates,
        undefs=[u.tensor.name for u in lowered.undefs],
        dead_at_end=[np.flatnonzero(_mask(bits, num_vars)).tolist() for bits in liveness.dead_at_end],
        temporaries=np.flatnonzero(_mask(liveness.shareable, num_vars)).tolist(),
        categories=layout.categories,
        nal_by_step=layout.nal_by_step,
        pieces=layout.pieces,
        graph_stats={"variables": num_vars, "vertices": graph.num_vertices(), "edges": graph.num_edges(),
                     "compute_sets": len(graph.compute_sets), "programs": len(programs)},
        codelets={key: int(cls.code_size) for cls, key in keys.items()},
        ops=[dict(record) for record in graph.op_records],
        allow_out_of_memory=allow_out_of_memory,
        codelet_classes={key: cls for cls, key in keys.items()},
    )
    if verify if verify is not None else verifier.ENABLED:
        say("verifying the executable")
        verifier.verify(exe, liveness)
    _check_capacity(exe)
    say(f"done: {exe.graph_stats['vertices']:,} vertices, {exe.memory_bytes:,} bytes of tile memory")
    return exe


def _mask(bits: int, n: int) -> np.ndarray:
    from .liveness import bits_to_mask

    return bits_to_mask(bits, n)


CATEGORY_LABELS = {
    "control_code": "control code", "stack": "stack", "vertex_code": "vertex code",
    "vertex_state": "vertex state", "constants": "constants", "variables_always_live": "always-live variables",
    "exchange_code": "exchange code", "exchange_buffers": "exchange buffers",
    "variables_not_always_live": "not-always-live variables",
}


def largest_consumers(exe: Executable, tile: int, count: int = 5) -> list[tuple[str, int]]:
    """The biggest users of one tile's memory: variables by name, other categories by kind."""
    items: list[tuple[str, int]] = []
    on_tile = exe.pieces["tile"] == tile
    temporaries = set(exe.temporaries)
    for var, nbytes in zip(exe.pieces["var"][on_tile].tolist(), exe.pieces["bytes"][on_tile].tolist(), strict=True):
        v = exe.variables[var]
        kind = "temporary" if var in temporaries else v["kind"]
        items.append((f"{kind} {v['name']!r}", int(nbytes)))
    for name, per_tile in exe.categories.items():
        if name not in ("constants", "variables_always_live", "variables_not_always_live") and per_tile[tile]:
            items.append((CATEGORY_LABELS[name], int(per_tile[tile])))
    items.sort(key=lambda item: -item[1])
    return items[:count]


def _check_capacity(exe: Executable) -> None:
    used = exe.tile_bytes()
    capacity = exe.target.memory_bytes_per_tile
    over = np.flatnonzero(used > capacity)
    if over.size == 0:
        return
    worst = int(over[np.argmax(used[over])])
    consumers = ", ".join(f"{name} {nbytes:,} B" for name, nbytes in largest_consumers(exe, worst))
    message = (f"Out of memory on tile {worst}: {int(used[worst]):,} bytes used but tiles only have "
               f"{capacity:,} bytes" + (f" ({over.size - 1} more tile(s) over capacity)" if over.size > 1 else "")
               + f". Largest consumers on tile {worst}: {consumers}")
    exe.tiles_over_capacity = over.tolist()
    exe.oom_message = message
    if not exe.allow_out_of_memory:
        raise OutOfMemoryError(message, over.tolist())
