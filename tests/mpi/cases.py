"""Programs run both in one process and under ``mpirun`` by tests/test_mpi.py.

``python tests/mpi/cases.py CASE OUT.npz`` runs a case with the automatic backend (MPI under
mpirun) and, on rank 0, saves its results; the test compares them with a local run.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for helpers

import poplar_like as pl
from codelets import ReduceSum, binary, unary
from helpers import tutorial_engine  # noqa: E402  (its SumVertex reaches other ranks by path)


def tutorial(backend: str = "auto") -> dict[str, np.ndarray]:
    engine, v1, v2 = tutorial_engine(backend)
    engine.write_tensor(v1, np.arange(16, dtype=np.float32).reshape(4, 4))
    engine.run()
    p = engine.profile()
    return {"v2": engine.read_tensor(v2), "cycles": np.array(p["cycles"]["total"]),
            "exchange": np.array(p["exchange"]["total_bytes"]), "memory": np.array(p["memory"]["total_bytes_by_tile"])}


def control_flow(backend: str = "auto") -> dict[str, np.ndarray]:
    """Loops, branches, streams and prints over 8 tiles with data crossing every tile boundary."""
    target = pl.IPUModel("ipu2", tiles_per_ipu=4, num_ipus=2).create_device().target
    graph = pl.Graph(target)
    n = 64
    tiles = np.arange(n) * target.num_tiles // n
    shifted = (tiles + 3) % target.num_tiles

    def var(name: str, where: np.ndarray = tiles, dtype=pl.FLOAT) -> pl.Tensor:
        t = graph.add_variable(dtype, (n,), name)
        graph.set_tile_mapping(t, where)
        return t

    x, y, acc, tmp = var("x"), var("y", shifted), var("acc"), var("tmp", shifted)
    total = graph.add_variable(pl.FLOAT, (1,), "total")
    graph.set_tile_mapping(total, 5)
    counter = graph.add_variable(pl.INT, (1,), "counter")
    graph.set_tile_mapping(counter, 6)
    one = graph.add_constant(pl.INT, (1,), 1, "one")
    graph.set_tile_mapping(one, 2)
    flag = graph.add_variable(pl.BOOL, (1,), "flag")
    graph.set_tile_mapping(flag, 7)
    above_one = graph.add_variable(pl.BOOL, (1,), "above_one")
    graph.set_tile_mapping(above_one, 3)
    zero_i = graph.add_constant(pl.INT, (1,), 0, "zero_i")
    graph.set_tile_mapping(zero_i, 0)

    def per_chunk(name: str, codelet: type, fields: dict[str, pl.Tensor], chunks: int = 8) -> pl.ComputeSet:
        cs = graph.add_compute_set(name)
        size = n // chunks
        graph.add_vertices(cs, codelet, {k: t.reshape(chunks, size) for k, t in fields.items()},
                           tiles=(np.arange(chunks) * target.num_tiles // chunks))
        return cs

    add_xy = per_chunk("acc=x+y", binary("add", pl.FLOAT), {"a": x, "b": y, "out": acc})
    mul_acc = per_chunk("tmp=acc*x", binary("mul", pl.FLOAT), {"a": acc, "b": x, "out": tmp})
    relu_tmp = per_chunk("acc=relu(tmp)", unary("relu", pl.FLOAT), {"inp": tmp, "out": acc})
    neg_tmp = per_chunk("acc=-tmp", unary("neg", pl.FLOAT), {"inp": tmp, "out": acc})
    reduce_cs = graph.add_compute_set("total=sum(acc)")
    graph.add_vertex(reduce_cs, ReduceSum[pl.FLOAT], {"inp": acc, "out": total[0]}, tile=1)
    sub_cs = graph.add_compute_set("counter=counter-1")
    graph.add_vertex(sub_cs, binary("sub", pl.INT), {"a": counter, "b": one, "out": graph.clone(counter, "next")},
                     tile=6)
    nxt = graph.tensor("next")
    graph.set_tile_mapping(nxt, 6)
    test_cs = graph.add_compute_set("flag=counter>0")
    graph.add_vertex(test_cs, binary("greater", pl.INT), {"a": counter, "b": zero_i, "out": flag}, tile=7)
    graph.add_vertex(test_cs, binary("greater", pl.INT), {"a": counter, "b": one, "out": above_one}, tile=3)

    inp = graph.add_host_to_device_fifo("x_in", pl.FLOAT, n)
    out = graph.add_device_to_host_fifo("acc_out", pl.FLOAT, n)
    counter_in = graph.add_host_to_device_fifo("counter_in", pl.INT, 1)
    loop_body = pl.Sequence([pl.Execute(mul_acc), pl.If(above_one, pl.Execute(relu_tmp), pl.Execute(neg_tmp)),
                             pl.Execute(sub_cs), pl.Copy(nxt, counter)])
    program = pl.Sequence([
        pl.Copy(inp, x), pl.Copy(counter_in, counter),
        pl.Repeat(2, pl.Sequence([pl.Execute(add_xy), pl.Copy(acc, y)])),
        pl.RepeatWhileTrue(pl.Execute(test_cs), flag, loop_body),
        pl.Execute(reduce_cs), pl.PrintTensor("total", total),
        pl.Copy(acc[0:60], acc[4:64]),  # overlaps itself across tiles and ranks: read all, then write
        pl.Copy(acc, out),
    ])
    engine = pl.Engine(graph, [program, pl.Sequence([pl.Copy(inp, x), pl.Execute(add_xy)])], backend=backend)
    x_host = (np.arange(3 * n, dtype=np.float32).reshape(3, n) % 7 - 3) / 4
    out_host = np.zeros((2, n), dtype=np.float32)
    engine.connect_stream("x_in", x_host)
    engine.connect_stream("acc_out", out_host)
    engine.connect_stream("counter_in", np.array([3, 2], dtype=np.int32))
    engine.write_tensor(y, np.linspace(-1, 1, n, dtype=np.float32))
    engine.run(0)
    engine.run(1)
    engine.run(0)
    p = engine.profile()
    return {"out": out_host, "acc": engine.read_tensor(acc), "y": engine.read_tensor("y"),
            "total": engine.read_tensor(total), "executions": np.array([s["executions"] for s in p["steps"]]),
            "cycles": np.array(p["cycles"]["total"])}


CASES = {"tutorial": tutorial, "control_flow": control_flow}

if __name__ == "__main__":
    name, path = sys.argv[1], sys.argv[2]
    results = CASES[name]()
    from poplar_like.engine import launched_by_mpi  # noqa: E402

    rank = 0
    if launched_by_mpi():
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.Get_rank()
    if rank == 0:
        np.savez(path, **results)
