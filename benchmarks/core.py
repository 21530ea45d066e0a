"""Core benchmark: build, compile and run a graph of 1,000,000 vertices on a 1,472-tile ipu2.

Each vertex is the built-in ``Dot`` codelet on two 16-element chunks.  Chunk ``a`` lives on the vertex's tile,
chunk ``b`` on the next tile, so every superstep exchanges 64 MB between neighbours.  Prints build
time, compile time, time per superstep and peak RSS; ``docs/benchmarks.md`` records the figures.

    python benchmarks/core.py [--vertices N] [--chunk 16] [--steps 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

import poplar_like as pl
from codelets import Dot


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(num_vertices: int, chunk: int, tiles: int = 1472) -> tuple[pl.Graph, pl.Program, dict]:
    device = pl.IPUModel("ipu2", tiles_per_ipu=tiles).create_device()
    graph = pl.Graph(device.target)
    a = graph.add_variable(pl.FLOAT, (num_vertices, chunk), "a")
    b = graph.add_variable(pl.FLOAT, (num_vertices, chunk), "b")
    out = graph.add_variable(pl.FLOAT, (num_vertices,), "out")
    vertex_tile = (np.arange(num_vertices, dtype=np.int64) * tiles // num_vertices).astype(np.int32)
    graph.set_tile_mapping(a, np.broadcast_to(vertex_tile[:, None], (num_vertices, chunk)))
    graph.set_tile_mapping(b, np.broadcast_to(((vertex_tile + 1) % tiles)[:, None], (num_vertices, chunk)))
    graph.set_tile_mapping(out, vertex_tile)
    cs = graph.add_compute_set("dot_chunks")
    graph.add_vertices(cs, Dot[pl.FLOAT], {"a": a, "b": b, "out": out}, tiles=vertex_tile)
    return graph, pl.Sequence([pl.Execute(cs)]), {"a": a, "b": b, "out": out}


def run_and_check(engine: pl.Engine, tensors: dict, vertices: int, chunk: int,
                  steps: int) -> tuple[list[float], np.ndarray, np.ndarray | None]:
    """Write seeded inputs (from the host only: under MPI that is all write_tensor reads), run a
    warm-up and ``steps`` timed supersteps, check the result against numpy on the host.
    Returns the times, the result and the host's expected values (None elsewhere)."""
    a_val = b_val = expected = None
    if engine.is_host:
        rng = np.random.default_rng(0)
        a_val = rng.standard_normal((vertices, chunk), dtype=np.float32)
        b_val = rng.standard_normal((vertices, chunk), dtype=np.float32)
    engine.write_tensor(tensors["a"], a_val)
    engine.write_tensor(tensors["b"], b_val)
    engine.run()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        engine.run()
        times.append(time.perf_counter() - t0)
    result = engine.read_tensor(tensors["out"])
    if engine.is_host:
        expected = np.einsum("ij,ij->i", a_val, b_val)
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4, err_msg="benchmark differs from numpy")
    return times, result, expected


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vertices", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="supersteps to time")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    graph, program, tensors = build(args.vertices, args.chunk)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    exe = pl.compile_graph(graph, program, progress=True)
    t_compile = time.perf_counter() - t0
    engine = pl.Engine(exe, backend="local")
    times, result, _ = run_and_check(engine, tensors, args.vertices, args.chunk, args.steps)
    profile = engine.profile()
    figures = {
        "vertices": args.vertices,
        "tiles": exe.target.num_tiles,
        "build_seconds": round(t_build, 2),
        "compile_seconds": round(t_compile, 2),
        "build_plus_compile_seconds": round(t_build + t_compile, 2),
        "superstep_seconds": round(float(np.median(times)), 3),
        "exchange_bytes_per_superstep": exe.computes[0].exchange_bytes,
        "max_tile_bytes": profile["memory"]["max_tile_bytes"],
        "estimated_cycles_per_superstep": profile["steps"][0]["total_cycles"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    for key, value in figures.items():
        print(f"{key:<32} {value:,}" if isinstance(value, int) else f"{key:<32} {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
