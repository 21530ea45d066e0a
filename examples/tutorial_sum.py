"""The first poplar_like program: sum each row of a 4x4 matrix on 4 tiles.

Each tile owns one row of ``v1`` and one element of ``v2``.  Vertex ``i`` runs on tile ``i`` but
reads the row of the *next* tile, so the superstep starts with an exchange.  Run it with
``python examples/tutorial_sum.py``; it prints the sums and the profile summary and writes
``profile.json`` (see docs/tutorial.md).
"""

import numpy as np

import poplar_like as pl


class SumVertex(pl.Vertex):
    """Sums a vector into one element."""
    inp = pl.Input(pl.Vector(pl.FLOAT))
    out = pl.Output(pl.FLOAT)

    def compute(inp, out):      # called once for n instances: inp is (n, length), out is (n,)
        out[:] = inp.sum(axis=1)

    def cycles(inp_length):     # estimate per instance, from field sizes (vectorised)
        return 5 + inp_length


device = pl.IPUModel("ipu2", tiles_per_ipu=4).create_device()
graph = pl.Graph(device.target)
v1 = graph.add_variable(pl.FLOAT, (4, 4), "v1")
v2 = graph.add_variable(pl.FLOAT, (4,), "v2")
for i in range(4):
    graph.set_tile_mapping(v1[i], i)
    graph.set_tile_mapping(v2[i], i)
cs = graph.add_compute_set("row_sums")
for i in range(4):
    v = graph.add_vertex(cs, SumVertex, {"inp": v1[(i + 1) % 4], "out": v2[i]})  # input lives on the next tile
    graph.set_tile_mapping(v, i)
engine = pl.Engine(graph, pl.Sequence([pl.Execute(cs)]))
engine.write_tensor(v1, np.arange(16, dtype=np.float32).reshape(4, 4))
engine.run()
print(engine.read_tensor(v2))     # [22. 38. 54.  6.]
profile = engine.profile()
print(profile.summary())          # Poplar-style text: target, graph, memory, exchange, cycles
profile.save("profile.json")      # the documented JSON format
