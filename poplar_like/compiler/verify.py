"""The checker between compiler passes: the executable keeps the machine's rules.

* tile-local access: every word a vertex touches during compute lies in its own tile's memory;
* exchange bounds: every move reads and writes inside the backing store, and a move's ends are
  where the plan says (pre-exchange writes land on the vertex's tile);
* exchanges the compiler calls apart (``Moves.apart``, which lets the engine copy them in one
  pass unchecked) are: no source is a destination, no destination is written twice;
* no two variables at one address while both are live: always-live items never overlap anything,
  and temporaries overlap only temporaries they never share an instruction with.

It sorts every variable's element addresses, so it is off by default and switched on in the test
suite (``tests/conftest.py`` sets ``ENABLED``), like JAX's ``enable_checks``.
"""

from __future__ import annotations

import numpy as np

from ..codelet import resolve_codelet
from ..errors import GraphError
from .executable import Executable, Moves
from .liveness import Liveness, bits_to_mask

#: Run the checker after every compile_graph (tests switch it on).
ENABLED = False


class VerificationError(GraphError):
    """The compiler produced an executable that breaks the machine's rules (a compiler bug)."""


def verify(exe: Executable, liveness: Liveness) -> None:
    _check_tile_local(exe)
    _check_moves(exe)
    _check_addresses(exe, liveness)


def _check_tile_local(exe: Executable) -> None:
    for step in exe.computes:
        for batch in step.batches:
            codelet = exe.codelet_classes.get(batch.codelet) or resolve_codelet(batch.codelet.split("#")[0])
            low = exe.tile_offsets[batch.tiles]
            high = exe.tile_offsets[batch.tiles + 1]
            for name, words in {**batch.fields, **batch.state}.items():
                size = codelet.fields[name].type.dtype.itemsize
                addr = words.reshape(batch.tiles.size, -1).astype(np.int64) * size
                bad = (addr < low[:, None]) | (addr + size > high[:, None])
                if bad.any():
                    row = int(np.argwhere(bad)[0][0])
                    raise VerificationError(f"compute set {step.name!r}: field {name!r} of a {codelet.__name__} vertex "
                                            f"on tile {int(batch.tiles[row])} reaches outside its tile's memory")


def _check_moves(exe: Executable) -> None:
    total = exe.memory_bytes
    owners: dict[int, np.ndarray] = {}
    for what, moves in ([(f"compute set {s.name!r} in", s.pre) for s in exe.computes]
                        + [(f"compute set {s.name!r} out", s.post) for s in exe.computes]
                        + [(f"copy {c.name!r}", c.moves) for c in exe.copies]):
        _check_bounds(what, moves, total)
        if moves.apart:
            _check_apart(what, moves, owners, total)
    del owners
    for step in exe.computes:
        for size in step.pre.sizes():
            dst = step.pre.words(size)[1]
            tiles = np.searchsorted(exe.tile_offsets, dst.astype(np.int64) * size, side="right") - 1
            receivers = np.bincount(tiles, minlength=exe.target.num_tiles) * size
            if not np.array_equal(receivers, step.pre_received) and len(step.pre.sizes()) == 1:
                raise VerificationError(f"compute set {step.name!r}: the incoming exchange lands on other tiles "
                                        "than its plan says")


def _check_apart(what: str, moves: Moves, owners: dict[int, np.ndarray], total: int) -> None:
    """Moves the compiler calls apart: no source is a destination, no destination repeats.
    ``owners`` holds, per item size, a word-indexed array of -1 reused from step to step: each
    destination word gets the position of the move that writes it (the last one wins), so a
    repeat shows as a position that did not stick (one pass, no sort)."""
    for size in moves.sizes():
        src, dst = moves.words(size)
        owner = owners.get(size)
        if owner is None:
            owner = owners[size] = np.full(total // size + 1, -1, dtype=np.int64 if dst.size >= 2 ** 31 else np.int32)
        position = np.arange(dst.size, dtype=owner.dtype)
        owner[dst] = position
        repeated = not np.array_equal(owner[dst], position)
        overlap = bool((owner[src] >= 0).any())
        owner[dst] = -1
        if repeated:
            raise VerificationError(f"{what} exchange: a destination is written twice")
        if overlap:
            raise VerificationError(f"{what} exchange: a source is also a destination")


def _check_bounds(what: str, moves: Moves, total: int) -> None:
    for size, length in moves.length.items():
        if length.size and int(length.min()) < 0:
            raise VerificationError(f"{what} exchange: a run has a negative length")
        for end, first in (("source", moves.src_start[size]), ("destination", moves.dst_start[size])):
            if first.shape != length.shape:
                raise VerificationError(f"{what} exchange: {first.size} {end} runs but {length.size} lengths")
            if first.size and (int(first.min()) < 0
                               or int((first.astype(np.int64) + length).max()) * size > total):
                raise VerificationError(f"{what} exchange: a {end} lies outside tile memory")


def _check_addresses(exe: Executable, liveness: Liveness) -> None:
    """No variable overlaps itself; across variables, overlaps are allowed only between
    non-interfering temporaries.

    Each variable's element addresses are sorted on their own (two of its elements sharing bytes
    is an error), then the variable is summed up per tile as the byte range from its first to
    past its last element there.  Those ranges are what is compared across variables: a range
    covers every byte an element can use, so no overlap escapes, and the check holds a few
    numbers per (variable, tile) instead of several arrays over every element of the graph
    (with those, the ResNet-50 batch-2 test passed 22.5 GB; it now peaks at 17 GB).
    """
    num_vars = len(exe.variables)
    starts, ends, owners = [], [], []
    for v, info in enumerate(exe.variables):
        ids = exe.variable_ids(v).reshape(-1)
        if ids.size == 0:
            continue
        size = np.dtype(info["dtype"]).itemsize
        addr = np.sort(exe.element_address[ids]).astype(np.int64)
        if addr.size > 1 and bool((np.diff(addr) < size).any()):
            raise VerificationError(f"two elements of variable {info['name']!r} share an address")
        tiles = np.searchsorted(exe.tile_offsets, addr, side="right") - 1
        first = np.flatnonzero(np.diff(tiles, prepend=-1) != 0)
        last = np.append(first[1:], addr.size) - 1
        starts.append(addr[first])
        ends.append(addr[last] + size)
        owners.append(np.full(first.size, v, dtype=np.int32))
    if not starts:
        return
    start, end, owner = np.concatenate(starts), np.concatenate(ends), np.concatenate(owners)
    order = np.argsort(start, kind="stable")
    start, end, owner = start[order], end[order], owner[order]
    # a range overlaps the next one in address order if it ends after the next one starts
    reach = np.maximum.accumulate(end)
    clash = np.flatnonzero(start[1:] < reach[:-1]) + 1
    if clash.size == 0:
        return
    temporaries = bits_to_mask(liveness.shareable, num_vars)
    occupancy = [bits_to_mask(o, num_vars) for o in liveness.occupancy]
    checked: set[tuple[int, int]] = set()
    for i in clash.tolist():
        j = i - 1  # the range before may not be the one reaching this far; find one that does
        while j >= 0 and end[j] <= start[i]:
            j -= 1
        a, b = int(owner[j]), int(owner[i])
        if a == b:  # ranges on two tiles of one variable never overlap (tiles are disjoint)
            raise VerificationError(f"two pieces of variable {exe.variables[a]['name']!r} overlap")
        pair = (min(a, b), max(a, b))
        if pair in checked:
            continue
        checked.add(pair)
        if not (temporaries[a] and temporaries[b]):
            raise VerificationError(f"variables {exe.variables[a]['name']!r} and {exe.variables[b]['name']!r} share "
                                    "memory although one of them is always live")
        if any(o[a] and o[b] for o in occupancy):
            raise VerificationError(f"temporaries {exe.variables[a]['name']!r} and {exe.variables[b]['name']!r} share "
                                    "memory while both are live")
