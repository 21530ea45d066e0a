"""Variable liveness over the whole bytecode, loops and branches included.

Poplar tracks liveness per variable, not per element: a variable is *killed* (its old value is
dead) only where one step writes all of its elements, or where ``WriteUndef`` covers it.  We do
the same, with two classic data-flow passes over the instruction graph, using Python ints as
bitsets over variables:

* forward, "maybe defined": at a program's entry every variable may hold host data; ``WriteUndef``
  makes a variable undefined until it is written again.  At ``END`` the variables that may be
  defined are the ones the host can still read.
* backward, "live": a variable is live where a later read may see its current value.

A variable may share addresses with others only if it is a pure temporary: dead at the entry of
every program and undefined at the end of every program (so no host read or write can observe the
sharing).  Two such variables may overlap if no instruction *occupies* both, where an instruction
occupies what is live into it, live out of it, or written by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lowering import END, Lowered


@dataclass
class StepAccess:
    """Variables an instruction touches (bitsets over variable indices)."""

    reads: int = 0  # read, or partially written (a partial write keeps the rest alive)
    writes: int = 0
    kills: int = 0  # fully written: the old value is dead before this step
    undefs: int = 0  # WriteUndef


@dataclass
class Liveness:
    live_in: list[int]
    live_out: list[int]
    defined_in: list[int]
    occupancy: list[int]
    shareable: int  # bitset of variables that may share addresses
    dead_at_end: list[int]  # per program: bitset of variables undefined at its END


def bitset(indices: np.ndarray, num_bits: int) -> int:
    """A Python int with the given bit indices set."""
    if len(indices) == 0:
        return 0
    mask = np.zeros(num_bits, dtype=bool)
    mask[np.asarray(indices, dtype=np.int64)] = True
    return int.from_bytes(np.packbits(mask, bitorder="little").tobytes(), "little")


def bits_to_mask(value: int, num_bits: int) -> np.ndarray:
    """Inverse of :func:`bitset`: a bool array of ``num_bits``."""
    nbytes = max(1, (num_bits + 7) // 8)
    raw = np.frombuffer(value.to_bytes(nbytes, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:num_bits].astype(bool)


def analyse(lowered: Lowered, access: list[StepAccess], num_vars: int, pinned: int) -> Liveness:
    """Run both passes.  ``pinned`` are variables that may never share (constants)."""
    n = len(lowered.code)
    everything = (1 << num_vars) - 1
    succ = [lowered.successors(pc) for pc in range(n)]
    preds: list[list[int]] = [[] for _ in range(n)]
    for pc, targets in enumerate(succ):
        for t in targets:
            preds[t].append(pc)
    entries = set(lowered.entries)

    # forward: maybe-defined
    defined_in = [0] * n
    defined_out = [0] * n
    changed = True
    while changed:
        changed = False
        for pc in range(n):
            d_in = everything if pc in entries else 0
            for p in preds[pc]:
                d_in |= defined_out[p]
            a = access[pc]
            d_out = (d_in & ~a.undefs) | a.writes
            if d_in != defined_in[pc] or d_out != defined_out[pc]:
                defined_in[pc], defined_out[pc] = d_in, d_out
                changed = True

    # backward: live
    live_in = [0] * n
    live_out = [0] * n
    changed = True
    while changed:
        changed = False
        for pc in range(n - 1, -1, -1):
            op = lowered.code[pc][0]
            if op == END:
                l_out, l_in = 0, defined_in[pc]
            else:
                l_out = 0
                for s in succ[pc]:
                    l_out |= live_in[s]
                a = access[pc]
                l_in = a.reads | (l_out & ~(a.kills | a.undefs))
            if l_in != live_in[pc] or l_out != live_out[pc]:
                live_in[pc], live_out[pc] = l_in, l_out
                changed = True

    occupancy = [live_in[pc] | live_out[pc] | access[pc].writes for pc in range(n)]
    not_shareable = pinned
    dead_at_end = []
    for pc in range(n):
        if pc in entries:
            not_shareable |= live_in[pc]
        if lowered.code[pc][0] == END:
            not_shareable |= defined_in[pc]
            dead_at_end.append(everything & ~defined_in[pc])
    shareable = everything & ~not_shareable
    return Liveness(live_in, live_out, defined_in, occupancy, shareable, dead_at_end)


def occupancy_matrix(liveness: Liveness, columns: np.ndarray, num_vars: int) -> np.ndarray:
    """Bool matrix (instructions x len(columns)): which of the given variables each step occupies."""
    rows = [bits_to_mask(occ, num_vars)[columns] for occ in liveness.occupancy]
    if not rows:
        return np.zeros((0, len(columns)), dtype=bool)
    return np.stack(rows)


__all__ = ["StepAccess", "Liveness", "analyse", "bitset", "bits_to_mask", "occupancy_matrix"]
