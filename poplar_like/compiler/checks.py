"""Checks between compiler passes: mappings complete, no data races, no writes to constants.

Each check is vectorised over elements; only the error path looks up names.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataRaceError, FieldConnectionError, TileMappingError
from ..graph import CONSTANT, ComputeSet, Graph
from .batches import Batch


def check_variables_mapped(graph: Graph) -> None:
    """Every element of every variable and constant must live on a tile."""
    tiles = graph.element_tiles
    unmapped = np.flatnonzero(tiles < 0)
    if unmapped.size == 0:
        return
    first = int(unmapped[0])
    var = graph.variables[int(graph.variable_of(np.array([first]))[0])]
    in_var = int(np.count_nonzero((unmapped >= var.base) & (unmapped < var.base + var.size)))
    raise TileMappingError(f"{var.kind} {var.name!r} has no tile mapping for element "
                           f"{graph.describe_element(first)}" + (f" and {in_var - 1} more" if in_var > 1 else "")
                           + "; map it with graph.set_tile_mapping or pl.map_tensor_linearly")


def _field_of(batches: list[Batch], number: int, element: int, writes: bool) -> str:
    for batch in batches:
        rows = np.flatnonzero(batch.numbers == number)
        if rows.size == 0:
            continue
        row = int(rows[0])
        for name, ids in batch.edges.items():
            fld = batch.codelet.fields[name]
            if (fld.writes if writes else fld.reads) and np.any(ids[row] == element):
                return f"{batch.codelet.__name__} vertex #{number} field {name!r} (tile {int(batch.tiles[row])})"
    return f"vertex #{number}"


def check_data_races(graph: Graph, cs: ComputeSet, batches: list[Batch]) -> None:
    """Refuse elements written twice, or written by one vertex and read by another, in one superstep."""
    written, writers, read, readers = [], [], [], []
    for batch in batches:
        for name, ids in batch.edges.items():
            fld = batch.codelet.fields[name]
            flat = ids.reshape(batch.n, -1)
            who = np.broadcast_to(batch.numbers[:, None], flat.shape)
            if fld.writes:
                written.append(flat.reshape(-1))
                writers.append(who.reshape(-1))
            if fld.reads and not fld.writes:
                read.append(flat.reshape(-1))
                readers.append(who.reshape(-1))
    if not written:
        return
    w = np.concatenate(written)
    wv = np.concatenate(writers)
    variables = graph.variable_of(w)
    kinds = np.array([v.kind == CONSTANT for v in graph.variables])
    const = kinds[variables]
    if const.any():
        i = int(np.argmax(const))
        raise FieldConnectionError(f"{_field_of(batches, int(wv[i]), int(w[i]), True)} in compute set {cs.name!r} "
                                   f"writes constant element {graph.describe_element(int(w[i]))}; "
                                   "constants are read-only")
    order = np.argsort(w, kind="stable")
    ws, wvs = w[order], wv[order]
    dup = np.flatnonzero(ws[1:] == ws[:-1])
    if dup.size:
        i = int(dup[0])
        element = int(ws[i])
        first, second = int(wvs[i]), int(wvs[i + 1])
        where = graph.describe_element(element)
        if first == second:
            raise DataRaceError(f"{_field_of(batches, first, element, True)} in compute set {cs.name!r} writes "
                                f"element {where} twice: its field is connected to a view that repeats elements")
        raise DataRaceError(f"element {where} is written by {_field_of(batches, first, element, True)} and by "
                            f"{_field_of(batches, second, element, True)} in the same compute set {cs.name!r}")
    if not read:
        return
    r = np.concatenate(read)
    rv = np.concatenate(readers)
    pos = np.searchsorted(ws, r)
    pos_clipped = np.minimum(pos, ws.size - 1)
    clash = (ws[pos_clipped] == r) & (wvs[pos_clipped] != rv)
    if clash.any():
        i = int(np.argmax(clash))
        element = int(r[i])
        raise DataRaceError(f"element {graph.describe_element(element)} is written by "
                            f"{_field_of(batches, int(wvs[pos_clipped[i]]), element, True)} and read by "
                            f"{_field_of(batches, int(rv[i]), element, False)} in the same compute set "
                            f"{cs.name!r}; split them into two compute sets")
