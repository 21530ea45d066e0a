"""Build a synthetic multi-layer graph and write its dumps and profile (for trying the tools).

Each of ``--layers`` layers is a small "dense" op built from the built-in codelets, named the
way ``poplar_like.ops`` names things: ``layer{i}/matmul/partials`` (``Dot`` vertices, each a
chunk of the previous activation times a chunk of the layer's weights), ``layer{i}/matmul/reduce``
(``ReduceSum`` of the partials), ``layer{i}/relu/apply`` (``ReluInPlace``) and, every third
layer, ``layer{i}/add/apply`` (a residual ``AddInPlace`` from three layers back).  Vertices are
added in bulk, so millions build in seconds; ``--vertices 3000000 --layers 50 --tiles 1472``
is about ResNet-50's size.

    python tools/synthetic_graph.py OUT_DIR [--layers 8] [--vertices 20000] [--tiles 16]
        [--ipus 1] [--no-run]

writes ``OUT_DIR/graph.json`` ... (the graph dump) and ``OUT_DIR/profile.json`` (compiled and run
once, unless ``--no-run``: then only the dump, without exchange figures).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import poplar_like as pl
from poplar_like.ops.common import record

PARTIALS = (2, 3, 4, 6, 4, 3)  # Dot vertices per output element, cycling over the layers
RESIDUAL_EVERY = 3


def _spread(graph: pl.Graph, tensor: pl.Tensor) -> np.ndarray:
    """Map a tensor's flattened elements evenly over all tiles in contiguous runs; returns the tiles."""
    n, T = tensor.numel, graph.target.num_tiles
    tiles = (np.arange(n, dtype=np.int64) * T // max(n, 1)).astype(np.int32)
    graph.set_tile_mapping(tensor, tiles.reshape(tensor.shape))
    return tiles


def layer_sizes(num_layers: int, vertices: int, chunk: int, tiles: int) -> tuple[int, list[int]]:
    """Activation length and partials per layer giving about ``vertices`` vertices in all."""
    partials = [PARTIALS[i % len(PARTIALS)] for i in range(num_layers)]
    per_element = sum(p + 1 + 1 / chunk for p in partials)
    per_element += sum(1 / chunk for i in range(num_layers) if i % RESIDUAL_EVERY == RESIDUAL_EVERY - 1 and
                       i >= RESIDUAL_EVERY)
    grain = chunk * tiles
    length = max(grain, round(vertices / per_element / grain) * grain)
    return length, partials


def build(num_layers: int = 8, vertices: int = 20_000, tiles: int = 16, num_ipus: int = 1, chunk: int = 8,
          dtype: object = pl.FLOAT) -> tuple[pl.Graph, pl.Sequence, dict[str, pl.Tensor]]:
    """The synthetic graph, its program and its host-visible tensors (input and weights)."""
    import codelets

    device = pl.IPUModel("ipu2", tiles_per_ipu=tiles, num_ipus=num_ipus).create_device()
    graph = pl.Graph(device.target)
    length, partials = layer_sizes(num_layers, vertices, chunk, graph.target.num_tiles)
    rows = length // chunk
    x = graph.add_variable(dtype, (length,), "input")
    _spread(graph, x)
    tensors = {"input": x}
    prog = pl.Sequence(name="forward")
    acts = [x]
    for i in range(num_layers):
        name, P = f"layer{i}", partials[i]
        w = graph.add_variable(dtype, (P, chunk), f"{name}.weight")
        _spread(graph, w)
        tensors[w.name] = w
        y = graph.add_variable(dtype, (length,), f"{name}.out")
        y_tiles = _spread(graph, y)
        part = graph.add_variable(dtype, (length, P), f"{name}.partials")
        graph.set_tile_mapping(part, np.repeat(y_tiles[:, None], P, axis=1))
        j = np.arange(length, dtype=np.int64)
        p = np.arange(P, dtype=np.int64)
        src_rows = ((j[:, None] // chunk + p[None, :] * (rows // P + 1)) % rows).reshape(-1)
        cs_p = graph.add_compute_set(f"{name}/matmul/partials")
        graph.add_vertices(cs_p, codelets.Dot[dtype], {
            "a": acts[-1].reshape(rows, chunk)[src_rows], "b": w[np.tile(p, length)], "out": part.flatten()},
            tiles=np.repeat(y_tiles, P))
        cs_r = graph.add_compute_set(f"{name}/matmul/reduce")
        graph.add_vertices(cs_r, codelets.ReduceSum[dtype], {"inp": part, "out": y}, tiles=y_tiles)
        record(graph, f"{name}/matmul", "matmul", {"partials": P, "chunk": chunk}, [cs_p, cs_r], [part])
        cs_a = graph.add_compute_set(f"{name}/relu/apply")
        graph.add_vertices(cs_a, codelets.unary_inplace("relu", dtype), {"data": y.reshape(rows, chunk)},
                           tiles=y_tiles[::chunk])
        record(graph, f"{name}/relu", "relu", {}, [cs_a])
        steps = [pl.Execute(cs_p), pl.Execute(cs_r), pl.WriteUndef(part), pl.Execute(cs_a)]
        if i % RESIDUAL_EVERY == RESIDUAL_EVERY - 1 and i >= RESIDUAL_EVERY:
            cs_add = graph.add_compute_set(f"{name}/add/apply")
            graph.add_vertices(cs_add, codelets.binary_inplace("add", dtype), {
                "a": y.reshape(rows, chunk), "b": acts[-RESIDUAL_EVERY].reshape(rows, chunk)},
                tiles=y_tiles[::chunk])
            record(graph, f"{name}/add", "add", {}, [cs_add])
            steps.append(pl.Execute(cs_add))
        for s in steps:
            prog.add(s)
        acts.append(y)
    tensors["output"] = acts[-1]
    return graph, prog, tensors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("out", help="directory for the dump (created if needed)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vertices", type=int, default=20_000, help="about this many vertices in all")
    parser.add_argument("--tiles", type=int, default=16, help="tiles per IPU")
    parser.add_argument("--ipus", type=int, default=1)
    parser.add_argument("--no-run", action="store_true", help="dump the graph only: no compile, no profile")
    args = parser.parse_args(argv)
    from poplar_like.profile.graphdump import dump_graph, write_dumps

    t0 = time.perf_counter()
    graph, prog, tensors = build(args.layers, args.vertices, args.tiles, args.ipus)
    print(f"built {graph} in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    if args.no_run:
        dump_graph(graph, None, args.out, levels=("vertex", "compute_set", "op", "layer", "tile"))
    else:
        engine = pl.Engine(graph, prog, backend="local")
        rng = np.random.default_rng(0)
        for name, t in tensors.items():
            if name != "output":
                engine.write_tensor(t, rng.standard_normal(t.shape).astype(np.float32) * 0.5)
        engine.run()
        write_dumps(graph, engine, args.out)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
