"""Tile memory: liveness-based address sharing, loops, out-of-memory."""

from __future__ import annotations

import numpy as np
import pytest

import poplar_like as pl
from codelets import binary, unary


def small_target(tiles: int = 4, memory: int | None = None) -> pl.Target:
    return pl.IPUModel("ipu2", tiles_per_ipu=tiles, memory_bytes_per_tile=memory).create_device().target


def elementwise(graph: pl.Graph, name: str, codelet: type, fields: dict[str, pl.Tensor]) -> pl.ComputeSet:
    """One vertex per tile over each tile's slice of the (linearly mapped, length-n) tensors."""
    cs = graph.add_compute_set(name)
    n = next(iter(fields.values())).numel
    per_tile = n // graph.target.num_tiles
    for tile in range(graph.target.num_tiles):
        part = {f: t.flatten()[tile * per_tile:(tile + 1) * per_tile] for f, t in fields.items()}
        graph.add_vertex(cs, codelet, part, tile=tile)
    return cs


def mapped(graph: pl.Graph, name: str, n: int = 64) -> pl.Tensor:
    t = graph.add_variable(pl.FLOAT, (n,), name)
    graph.set_tile_mapping(t, np.repeat(np.arange(graph.target.num_tiles), n // graph.target.num_tiles))
    return t


def overlap(exe: pl.Executable, a: str, b: str) -> bool:
    """True if variables a and b share any byte of tile memory."""
    ranges = []
    for name in (a, b):
        ids = exe.variable_ids(exe.variable_index(name)).reshape(-1)
        addr = exe.element_address[ids]
        ranges.append(set(addr.tolist()))
    return bool(ranges[0] & ranges[1])


def two_phase_program(graph: pl.Graph, undef: bool):
    x, y = mapped(graph, "x"), mapped(graph, "y")
    o1, o2 = mapped(graph, "o1"), mapped(graph, "o2")
    t1, t2 = mapped(graph, "t1"), mapped(graph, "t2")
    relu, neg = unary("relu", pl.FLOAT), unary("neg", pl.FLOAT)
    steps = [pl.Execute(elementwise(graph, "t1=relu(x)", relu, {"inp": x, "out": t1})),
             pl.Execute(elementwise(graph, "o1=-t1", neg, {"inp": t1, "out": o1}))]
    if undef:
        steps.append(pl.WriteUndef(t1))
    steps += [pl.Execute(elementwise(graph, "t2=relu(y)", relu, {"inp": y, "out": t2})),
              pl.Execute(elementwise(graph, "o2=-t2", neg, {"inp": t2, "out": o2}))]
    if undef:
        steps.append(pl.WriteUndef(t2))
    return pl.Sequence(steps), (x, y, o1, o2)


def run_two_phase(undef: bool) -> tuple[pl.Engine, dict]:
    graph = pl.Graph(small_target())
    program, (x, y, o1, o2) = two_phase_program(graph, undef)
    engine = pl.Engine(graph, program)
    xv = np.linspace(-3, 3, 64, dtype=np.float32)
    yv = np.linspace(5, -5, 64, dtype=np.float32)
    engine.write_tensor(x, xv)
    engine.write_tensor(y, yv)
    engine.run()
    return engine, {"o1": engine.read_tensor(o1), "o2": engine.read_tensor(o2), "x": xv, "y": yv}


def test_temporaries_share_addresses_and_results_stay_right() -> None:
    engine, r = run_two_phase(undef=True)
    exe = engine.executable
    names = [exe.variables[v]["name"] for v in exe.temporaries]
    assert sorted(names) == ["t1", "t2"]
    assert overlap(exe, "t1", "t2")
    np.testing.assert_array_equal(r["o1"], -np.maximum(r["x"], 0))
    np.testing.assert_array_equal(r["o2"], -np.maximum(r["y"], 0))


def test_reuse_shows_fewer_bytes_in_the_profile() -> None:
    shared, _ = run_two_phase(undef=True)
    exclusive, _ = run_two_phase(undef=False)
    p_shared, p_exclusive = shared.profile()["memory"], exclusive.profile()["memory"]
    assert p_shared["total_bytes"] < p_exclusive["total_bytes"]
    # both temporaries hold 16 floats per tile; shared they take 64 bytes a tile, not 128
    assert max(p_shared["by_category"]["variables_not_always_live"]) == 64
    assert max(p_exclusive["by_category"]["variables_not_always_live"]) == 0
    assert max(p_shared["not_always_live_peak_bytes_by_tile"]) <= 64 + max(p_shared["by_category"]["exchange_buffers"])


def test_host_cannot_touch_a_temporary() -> None:
    engine, _ = run_two_phase(undef=True)
    with pytest.raises(pl.TensorNotLiveError, match="'t1'"):
        engine.read_tensor("t1")
    with pytest.raises(pl.TensorNotLiveError, match="'t2'"):
        engine.write_tensor(engine.graph.tensor("t2"), np.zeros(64, np.float32))


def loop_program(graph: pl.Graph, iterations: int):
    """``acc`` is written in the middle of the loop body and read at its start.  Only the back edge
    keeps it live while ``u`` (born after that write, dead before the body ends) lives, so a
    liveness analysis that ignored the loop would let them share and ``u`` would clobber ``acc``."""
    x, result, out2 = mapped(graph, "x"), mapped(graph, "result"), mapped(graph, "out2")
    acc, s, u = mapped(graph, "acc"), mapped(graph, "s"), mapped(graph, "u")
    inc = graph.add_constant(pl.FLOAT, (64,), 1.5, "inc")
    zero = graph.add_constant(pl.FLOAT, (64,), 0.0, "zero")
    two = graph.add_constant(pl.FLOAT, (64,), 2.0, "two")
    for c in (inc, zero, two):
        graph.set_tile_mapping(c, np.repeat(np.arange(4), 16))
    add, mul = binary("add", pl.FLOAT), binary("mul", pl.FLOAT)
    body = pl.Sequence([
        pl.Execute(elementwise(graph, "s=acc+inc", add, {"a": acc, "b": inc, "out": s})),
        pl.Copy(s, result),
        pl.Copy(s, acc),
        pl.WriteUndef(s),
        pl.Execute(elementwise(graph, "u=x*2", mul, {"a": x, "b": two, "out": u})),
        pl.Copy(u, out2),
        pl.WriteUndef(u),
    ])
    program = pl.Sequence([pl.Copy(zero, acc), pl.Repeat(iterations, body), pl.WriteUndef(acc)])
    return program, x, result, out2


def test_variable_live_across_loop_iterations_is_not_reused() -> None:
    graph = pl.Graph(small_target())
    program, x, result, out2 = loop_program(graph, iterations=3)
    engine = pl.Engine(graph, program)
    exe = engine.executable
    assert {exe.variables[v]["name"] for v in exe.temporaries} == {"acc", "s", "u"}
    assert not overlap(exe, "acc", "u"), "acc is live across the back edge while u is live"
    assert not overlap(exe, "acc", "s")
    assert overlap(exe, "u", "s"), "s dies before u is born: they should share"
    xv = np.arange(64, dtype=np.float32)
    engine.write_tensor(x, xv)
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(result), np.full(64, 4.5, np.float32))
    np.testing.assert_array_equal(engine.read_tensor(out2), 2 * xv)


def oom_graph(memory: int) -> tuple[pl.Graph, pl.Program]:
    graph = pl.Graph(small_target(memory=memory))
    big = graph.add_variable(pl.FLOAT, (4000,), "big_weights")
    graph.set_tile_mapping(big, 3)
    small = graph.add_variable(pl.FLOAT, (4,), "small")
    graph.set_tile_mapping(small, np.arange(4))
    return graph, pl.Sequence([pl.Copy(small[1:2], small[0:1])])


def test_out_of_memory_is_a_compile_error_naming_tile_and_consumers() -> None:
    graph, program = oom_graph(16384)
    with pytest.raises(pl.OutOfMemoryError, match=r"Out of memory on tile 3: [\d,]+ bytes used but tiles only "
                                                  r"have 16,384 bytes") as info:
        pl.compile_graph(graph, program)
    assert "variable 'big_weights' 16,000 B" in str(info.value)
    assert info.value.tiles == [3]


def test_allow_out_of_memory_completes_and_run_refuses() -> None:
    graph, program = oom_graph(16384)
    engine = pl.Engine(graph, program, allow_out_of_memory=True)
    memory = engine.profile()["memory"]
    assert memory["tiles_over_capacity"] == [3]
    assert memory["max_tile"] == 3 and memory["max_tile_bytes"] > 16384
    assert "1 tile(s) out of memory" in engine.profile().summary()
    with pytest.raises(pl.OutOfMemoryError, match="Out of memory on tile 3"):
        engine.run()


def test_every_byte_is_accounted_and_items_do_not_overlap() -> None:
    graph = pl.Graph(small_target())
    program, *_ = loop_program(graph, iterations=2)
    exe = pl.compile_graph(graph, program)
    used = exe.tile_bytes()
    assert np.array_equal(np.diff(exe.tile_offsets), (used + 7) // 8 * 8)
    # always-live variables and constants have exclusive addresses
    exclusive = [v for v in range(len(exe.variables)) if v not in exe.temporaries]
    seen: set[int] = set()
    for v in exclusive:
        addr = exe.element_address[exe.variable_ids(v).reshape(-1)]
        item = np.dtype(exe.variables[v]["dtype"]).itemsize
        cells = {int(a) + k for a in addr for k in range(item)}
        assert not cells & seen
        seen |= cells
    assert np.all(exe.element_address % 4 == 0)


def exchange_code_of(reads: list[tuple[int, int]], copies: list[tuple[int, int]] = ()) -> np.ndarray:
    """Exchange code by tile of one compute set whose vertex on tile ``t`` reads ``x[e]`` for each
    ``(e, t)`` in ``reads`` (``x[e]`` lives on tile 0), then of one Copy per ``(e, t)`` in ``copies``
    from ``x[e]`` to tile ``t``."""
    graph = pl.Graph(small_target())
    x = graph.add_variable(pl.FLOAT, (4,), "x")
    graph.set_tile_mapping(x, 0)
    out = graph.add_variable(pl.FLOAT, (len(reads),), "out")
    cs = graph.add_compute_set("reads")
    for k, (e, t) in enumerate(reads):
        graph.set_tile_mapping(out[k:k + 1], t)
        graph.add_vertex(cs, unary("relu", pl.FLOAT), {"inp": x[e:e + 1], "out": out[k:k + 1]}, tile=t)
    steps: list[pl.Program] = [pl.Execute(cs)]
    if copies:
        dst = graph.add_variable(pl.FLOAT, (len(copies),), "dst")
        graph.set_tile_mapping(dst, np.array([t for _, t in copies]))
        src = pl.concat([x[e:e + 1] for e, _ in copies])
        steps.append(pl.Copy(src, dst))
    return pl.compile_graph(graph, pl.Sequence(steps)).categories["exchange_code"]


def test_exchange_code_counts_a_broadcast_once_on_the_sender() -> None:
    # 8 B a message + 12 B a step, rounded up to 8: one element read on tiles 1, 2 and 3 is one
    # broadcast for tile 0 (not three sends), one receive for each reader
    assert exchange_code_of([(0, 1), (0, 2), (0, 3)]).tolist() == [24, 24, 24, 24]
    # three elements to three readers: three messages whichever way they are sent
    assert exchange_code_of([(0, 1), (1, 2), (2, 3)]).tolist() == [40, 24, 24, 24]
    # two elements, both read by two tiles: two broadcasts (not four sends); a reader hears one tile
    assert exchange_code_of([(0, 1), (0, 2), (1, 1), (1, 2)]).tolist() == [32, 24, 24, 0]
    # a Copy broadcasts too: tile 0 takes part in two exchanges of one message each, 2 x (8 + 12)
    assert exchange_code_of([(0, 1)], copies=[(0, 2), (0, 3)]).tolist() == [40, 24, 24, 24]
