"""Helpers shared by the program and property tests: small targets, mapped tensors, compute sets."""

from __future__ import annotations

from typing import Mapping

import numpy as np

import poplar_like as pl

NUM_TILES = 4


def small_graph(tiles: int = NUM_TILES) -> pl.Graph:
    """An empty graph on a ``tiles``-tile ipu2 target."""
    return pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=tiles).create_device())


def spread(graph: pl.Graph, tensor: pl.Tensor, shift: int = 0) -> np.ndarray:
    """Map a tensor element by element round-robin over the tiles (element ``i`` of the flattened
    view on tile ``(i + shift) % T``), so even tiny tensors touch every tile.  Returns the tiles."""
    num_tiles = graph.target.num_tiles
    tiles = ((np.arange(tensor.numel) + shift) % num_tiles).astype(np.int32).reshape(tensor.shape)
    graph.set_tile_mapping(tensor, tiles)
    return tiles


def variable(graph: pl.Graph, name: str, shape: int | tuple[int, ...], dtype: object = pl.FLOAT,
             tile: int | None = None, shift: int = 0) -> pl.Tensor:
    """A new variable mapped to one ``tile``, or spread round-robin over all tiles."""
    t = graph.add_variable(dtype, shape, name)
    if tile is None:
        spread(graph, t, shift)
    else:
        graph.set_tile_mapping(t, tile)
    return t


def constant(graph: pl.Graph, name: str, shape: int | tuple[int, ...], value: object,
             dtype: object = pl.FLOAT, tile: int | None = None) -> pl.Tensor:
    t = graph.add_constant(dtype, shape, value, name)
    if tile is None:
        spread(graph, t)
    else:
        graph.set_tile_mapping(t, tile)
    return t


def elementwise(graph: pl.Graph, name: str, codelet: type, fields: Mapping[str, pl.Tensor],
                tiles: int | None = None) -> pl.ComputeSet:
    """A compute set applying ``codelet`` to the flattened ``fields`` (all of one length),
    one vertex per element, vertex ``i`` on tile ``i % T`` (so reads and writes cross tiles),
    or every vertex on tile ``tiles``."""
    cs = graph.add_compute_set(name)
    flat = {f: t.flatten() for f, t in fields.items()}
    n = next(iter(flat.values())).numel
    for i in range(n):
        tile = i % graph.target.num_tiles if tiles is None else tiles
        graph.add_vertex(cs, codelet, {f: t[i:i + 1] for f, t in flat.items()}, tile=tile)
    return cs


def fill(graph: pl.Graph, name: str, tensor: pl.Tensor, value: float, tile: int = 0) -> pl.ComputeSet:
    """A compute set setting every element of ``tensor`` to ``value`` (one Fill vertex)."""
    import codelets

    cs = graph.add_compute_set(name)
    graph.add_vertex(cs, codelets.Fill[tensor.dtype], {"out": tensor.flatten(), "value": value}, tile=tile)
    return cs


def step_executions(engine: pl.Engine) -> dict[str, int]:
    """``{step name: executions}`` from the engine's profile (names must be distinct)."""
    rows = engine.profile()["steps"]
    out: dict[str, int] = {}
    for row in rows:
        assert row["name"] not in out, f"test bug: two steps are called {row['name']!r}"
        out[row["name"]] = row["executions"]
    return out


def check_memory_report(profile: pl.Profile) -> None:
    """The memory section adds up: total == sum by tile == sum over categories, per tile too."""
    mem = profile["memory"]
    by_tile = np.asarray(mem["total_bytes_by_tile"], dtype=np.int64)
    by_category = {k: np.asarray(v, dtype=np.int64) for k, v in mem["by_category"].items()}
    assert mem["total_bytes"] == int(by_tile.sum())
    assert mem["total_bytes"] == sum(mem["category_totals"].values())
    for name, per_tile in by_category.items():
        assert int(per_tile.sum()) == mem["category_totals"][name], name
        assert (per_tile >= 0).all(), name
    np.testing.assert_array_equal(sum(by_category.values()), by_tile)
    assert mem["max_tile_bytes"] == int(by_tile.max())
    assert all(b <= mem["capacity_per_tile"] for b in by_tile)


class SumVertex(pl.Vertex):
    """The tutorial's codelet: sums a vector into one element."""
    inp = pl.Input(pl.Vector(pl.FLOAT))
    out = pl.Output(pl.FLOAT)

    def compute(inp, out):
        out[:] = inp.sum(axis=1)

    def cycles(inp_length):
        return 5 + inp_length


def tutorial_graph() -> tuple[pl.Graph, pl.Sequence, pl.Tensor, pl.Tensor]:
    """The graph of examples/tutorial_sum.py: 4 row sums on 4 tiles, each reading the next tile's row."""
    graph = small_graph(4)
    v1 = graph.add_variable(pl.FLOAT, (4, 4), "v1")
    v2 = graph.add_variable(pl.FLOAT, (4,), "v2")
    for i in range(4):
        graph.set_tile_mapping(v1[i], i)
        graph.set_tile_mapping(v2[i], i)
    cs = graph.add_compute_set("row_sums")
    for i in range(4):
        v = graph.add_vertex(cs, SumVertex, {"inp": v1[(i + 1) % 4], "out": v2[i]})
        graph.set_tile_mapping(v, i)
    return graph, pl.Sequence([pl.Execute(cs)]), v1, v2


def tutorial_engine(backend: str = "auto") -> tuple[pl.Engine, pl.Tensor, pl.Tensor]:
    graph, program, v1, v2 = tutorial_graph()
    return pl.Engine(graph, program, backend=backend), v1, v2


def mapped_as(graph: pl.Graph, name: str, shape, dtype=pl.FLOAT, mapping: str = "linear") -> pl.Tensor:
    """A variable mapped linearly, over the tiles in reverse order, round robin, or on one tile
    (``mapping`` a tile number): the op tests run every op on each of these layouts."""
    t = graph.add_variable(dtype, shape, name)
    n, tiles = t.numel, graph.target.num_tiles
    if mapping == "linear":
        pl.map_tensor_linearly(graph, t)
    elif mapping == "reverse":
        graph.set_tile_mapping(t, (tiles - 1 - np.arange(n) * tiles // max(n, 1)).astype(np.int32).reshape(t.shape))
    elif mapping == "spread":
        graph.set_tile_mapping(t, ((np.arange(n) * 3 + 1) % tiles).astype(np.int32).reshape(t.shape))
    else:
        graph.set_tile_mapping(t, int(mapping))
    return t


def run_once(graph: pl.Graph, prog: pl.Sequence, inputs: dict, outputs: list) -> tuple[pl.Engine, list[np.ndarray]]:
    """Compile, write the inputs, run once, read the outputs."""
    engine = pl.Engine(graph, prog)
    for t, v in inputs.items():
        engine.write_tensor(t, v)
    engine.run()
    return engine, [engine.read_tensor(t) for t in outputs]
