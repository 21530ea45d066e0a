"""The cost model end to end: codelet estimates that depend on the target, worker dealing."""

from __future__ import annotations

import numpy as np

import poplar_like as pl
from codelets import MatMulPartial, costs


def matmul_step_cycles(version: str) -> int:
    graph = pl.Graph(pl.IPUModel(version, tiles_per_ipu=2).create_device())
    a = graph.add_variable(pl.FLOAT, (256,), "a")
    b = graph.add_variable(pl.FLOAT, (256,), "b")
    c = graph.add_variable(pl.FLOAT, (256,), "c")
    for t in (a, b, c):
        graph.set_tile_mapping(t, 0)
    cs = graph.add_compute_set("mm")
    graph.add_vertex(cs, MatMulPartial[pl.FLOAT], {"a": a, "b": b, "out": c, "m": 16, "k": 16, "n": 16}, tile=0)
    exe = pl.compile_graph(graph, pl.Execute(cs))
    return int(exe.computes[0].tile_cycles[0])


def test_matmul_estimate_follows_the_target_flop_rate() -> None:
    macs = 16 ** 3
    ipu2 = matmul_step_cycles("ipu2")  # 32 FLOP/cycle: 16 MACs a tile cycle
    ipu1 = matmul_step_cycles("ipu1")  # 16 FLOP/cycle: 8 MACs a tile cycle
    launch_and_overhead = 11 + 20
    assert ipu2 == 6 * (costs.MATMUL_OVERHEAD + -(-macs // (16 * 6))) + launch_and_overhead
    assert ipu1 == 6 * (costs.MATMUL_OVERHEAD + -(-macs // (8 * 6))) + launch_and_overhead
    assert ipu1 > ipu2


def test_vertices_are_dealt_to_workers_longest_first() -> None:
    from poplar_like.compiler.costs import compute_cycles_by_tile

    target = pl.IPUModel("ipu2", tiles_per_ipu=2).create_device().target
    cycles = np.array([100, 10, 10, 10, 10, 10, 10, 90], dtype=np.int64)  # 8 vertices on tile 1
    tiles = np.ones(8, dtype=np.int32)
    out = compute_cycles_by_tile(target, tiles, cycles, np.zeros(8, dtype=bool))
    # longest first, round robin over 6 workers: [100, 10], [90, 10], [10], [10], [10], [10]
    assert out.tolist() == [0, 6 * 110 + 11 * 8 + 20]
