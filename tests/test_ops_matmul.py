"""ops.matmul against PyTorch, and the planner: pure, within memory, and costed like the compiler."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import poplar_like as pl
from poplar_like.errors import DTypeError, GraphError, TensorError
from poplar_like.ops import planning
from poplar_like.ops.matmul import (MatMulPlan, create_matmul_lhs, create_matmul_rhs, matmul, matmul_grouped,
                                    plan_matmul)

TILES = 16


def device(tiles: int = TILES, **knobs: object) -> pl.Device:
    return pl.IPUModel("ipu2", tiles_per_ipu=tiles, **knobs).create_device()


def linear(graph: pl.Graph, shape: tuple[int, ...], dtype: object = pl.FLOAT, name: str = "") -> pl.Tensor:
    t = graph.add_variable(dtype, shape, name)
    pl.map_tensor_linearly(graph, t)
    return t


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The product in float64 by PyTorch (the independent reference)."""
    return (torch.from_numpy(a.astype(np.float64)) @ torch.from_numpy(b.astype(np.float64))).numpy()


def run(graph: pl.Graph, prog: pl.Sequence, inputs: dict, outputs: list) -> tuple[list[np.ndarray], dict]:
    engine = pl.Engine(graph, prog)
    for tensor, value in inputs.items():
        engine.write_tensor(tensor, value)
    engine.run()
    return [engine.read_tensor(t) for t in outputs], engine.profile()


SHAPES = [(1, 1, 1), (1, 300, 1), (5, 7, 3), (200, 3, 2), (2, 3, 300), (33, 17, 29), (64, 64, 64),
          (4, 3000, 4), (1, 64, 200)]


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_matches_torch(m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    graph = pl.Graph(device())
    a, b = linear(graph, (m, k), name="a"), linear(graph, (k, n), name="b")
    prog = pl.Sequence()
    c = matmul(graph, a, b, prog, name="mm")
    assert c.shape == (m, n) and c.dtype == pl.FLOAT
    A, B = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    (out,), _ = run(graph, prog, {a: A, b: B}, [c])
    np.testing.assert_allclose(out, reference(A, B), rtol=1e-5, atol=1e-5)


def test_transposed_sliced_and_reused_views() -> None:
    """Operands are any views: transposes, strided slices, the same variable on both sides."""
    rng = np.random.default_rng(1)
    graph = pl.Graph(device())
    at = linear(graph, (40, 24), name="at")  # a = at.T[:, ::2] is (24, 20)
    bt = graph.add_variable(pl.FLOAT, (9, 20), "bt")
    graph.set_tile_mapping(bt, (np.arange(180) % TILES).astype(np.int32).reshape(9, 20))  # scattered
    prog = pl.Sequence()
    c = matmul(graph, at.transpose()[:, ::2], bt.transpose(), prog)
    gram = matmul(graph, bt, bt.transpose(), prog)
    AT = rng.standard_normal((40, 24)).astype(np.float32)
    BT = rng.standard_normal((9, 20)).astype(np.float32)
    (out, g), _ = run(graph, prog, {at: AT, bt: BT}, [c, gram])
    np.testing.assert_allclose(out, reference(AT.T[:, ::2], BT.T), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g, reference(BT, BT.T), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("out_dtype,partials,rtol", [(pl.HALF, None, 1e-3), (pl.FLOAT, "float", 1e-5),
                                                     (pl.HALF, "half", 5e-3)])
@pytest.mark.parametrize("m,k,n", [(33, 1000, 17), (20, 40, 9)])
def test_half_inputs(m: int, k: int, n: int, out_dtype: np.dtype, partials: str | None, rtol: float) -> None:
    """Half inputs: products are exact in float32; the result is rounded once (half partials
    round per k block)."""
    rng = np.random.default_rng(k)
    graph = pl.Graph(device())
    a, b = linear(graph, (m, k), pl.HALF, "a"), linear(graph, (k, n), pl.HALF, "b")
    prog = pl.Sequence()
    options = {"partials_type": partials} if partials else None
    c = matmul(graph, a, b, prog, options=options, out_dtype=out_dtype)
    assert c.dtype == out_dtype
    A, B = rng.standard_normal((m, k)).astype(np.float16), rng.standard_normal((k, n)).astype(np.float16)
    (out,), _ = run(graph, prog, {a: A, b: B}, [c])
    ref = reference(A, B)
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def test_grouped_matmul_matches_torch_bmm() -> None:
    rng = np.random.default_rng(2)
    graph = pl.Graph(device())
    a, b = linear(graph, (37, 6, 5), name="a"), linear(graph, (37, 5, 3), name="b")
    prog = pl.Sequence()
    c = matmul_grouped(graph, a, b, prog)
    A, B = rng.standard_normal(a.shape).astype(np.float32), rng.standard_normal(b.shape).astype(np.float32)
    (out,), _ = run(graph, prog, {a: A, b: B}, [c])
    ref = torch.bmm(torch.from_numpy(A).double(), torch.from_numpy(B).double()).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


# ============================================================================ the plan
def test_plan_is_pure_cached_and_plain_data() -> None:
    target = device().target
    first = plan_matmul(target, 33, 1000, 17)
    again = plan_matmul(device().target, 33, 1000, 17, pl.FLOAT, None, 0.6)
    assert first == again and first is again  # cached on equal (hashable) arguments
    assert isinstance(first, MatMulPlan)
    data = json.loads(json.dumps(first.to_dict()))
    assert data["split_k"] == first.split_k and data["cost"]["total"] == first.estimated_cycles
    text = str(first)
    assert "33x1000x17" in text and f"{first.tiles_used} of {TILES} tiles" in text
    assert first.split_m * first.split_n * first.split_k * first.split_g == first.tiles_used <= TILES
    assert first.cost.total == (first.cost.matmul_compute + first.cost.matmul_exchange
                                + first.cost.reduce_compute + first.cost.reduce_exchange + first.cost.sync)


def test_plan_respects_the_memory_limit() -> None:
    shape = (8, 2048, 8)
    roomy = plan_matmul(device(64).target, *shape)
    small = device(64, memory_bytes_per_tile=8192).target
    tiny = plan_matmul(small, *shape)
    assert tiny.fits_memory and tiny.bytes_per_tile <= tiny.memory_limit == int(0.6 * 8192)
    assert roomy.bytes_per_tile > tiny.memory_limit  # the best plan with room would not fit
    assert tiny.tiles_used > roomy.tiles_used
    # a lower proportion forces a finer split still
    tighter = plan_matmul(small, *shape, available_memory_proportion=0.3)
    assert tighter.fits_memory and tighter.bytes_per_tile <= tighter.memory_limit < tiny.bytes_per_tile
    assert tighter.tiles_used > tiny.tiles_used
    # nothing fits: the smallest footprint is taken and flagged
    hopeless = plan_matmul(device(tiles=2, memory_bytes_per_tile=8192).target, 128, 512, 128)
    assert not hopeless.fits_memory and hopeless.tiles_used == 2


@pytest.mark.parametrize("m,k,n,dtype,out_dtype", [(5, 7, 3, pl.FLOAT, None), (64, 64, 64, pl.FLOAT, None),
                                                   (4, 5000, 4, pl.FLOAT, None), (64, 256, 64, pl.FLOAT, None),
                                                   (33, 1000, 17, pl.HALF, None), (33, 100, 17, pl.HALF, pl.FLOAT)])
def test_plan_cycles_equal_the_compiled_profile(m: int, k: int, n: int, dtype: np.dtype,
                                                out_dtype: np.dtype | None) -> None:
    """With operands from create_matmul_lhs/rhs (the layout the planner assumes), every phase of
    every step of the op costs what the plan says: compute, exchange and sync, step by step."""
    memory = 64 * 1024 if (m, k, n) == (64, 256, 64) else None  # forces a k split and a reduction
    graph = pl.Graph(device(memory_bytes_per_tile=memory))
    plan = plan_matmul(graph.target, m, k, n, dtype, out_dtype)
    a = create_matmul_lhs(graph, m, k, n, dtype, "a", out_dtype=out_dtype)
    b = create_matmul_rhs(graph, m, k, n, dtype, "b", out_dtype=out_dtype)
    prog = pl.Sequence()
    c = matmul(graph, a, b, prog, name="mm", out_dtype=out_dtype)
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    (out,), profile = run(graph, prog, {a: A, b: B}, [c])
    ref = reference(A, B)
    tol = 1e-5 if (dtype, out_dtype or dtype) != (pl.HALF, pl.HALF) else 1e-3
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=tol, atol=tol * np.abs(ref).max())

    steps = {s["name"]: s for s in profile["steps"] if s["kind"] == "compute"}
    cost = plan.cost
    assert "mm/zero" not in steps  # MatMulPartial writes its partials: nothing to zero first
    assert steps["mm/matmul"]["compute_cycles"] == cost.matmul_compute
    assert steps["mm/matmul"]["exchange_cycles"] == cost.matmul_exchange
    if plan.reduce:
        assert steps["mm/reduce"]["compute_cycles"] == cost.reduce_compute
        assert steps["mm/reduce"]["exchange_cycles"] == cost.reduce_exchange
    else:
        assert "mm/reduce" not in steps
    assert sum(s["sync_cycles"] for s in steps.values()) == cost.sync
    (op,) = profile["ops"]
    assert op["kind"] == "matmul" and op["estimated_cycles"] == plan.estimated_cycles
    assert op["plan"] == plan.to_dict()
    if plan.reduce:
        assert "mm/partials" in profile["memory"]["temporaries"]


def test_plan_compute_cycles_hold_for_any_operand_mapping() -> None:
    """Linearly mapped operands move other volumes, but compute and sync are as planned."""
    graph = pl.Graph(device())
    a, b = linear(graph, (48, 700), name="a"), linear(graph, (700, 20), name="b")
    prog = pl.Sequence()
    matmul(graph, a, b, prog, name="mm")
    plan = plan_matmul(graph.target, 48, 700, 20)
    profile = pl.Engine(graph, prog).profile()
    steps = {s["name"]: s for s in profile["steps"] if s["kind"] == "compute"}
    assert steps["mm/matmul"]["compute_cycles"] == plan.cost.matmul_compute
    assert sum(s["sync_cycles"] for s in steps.values()) == plan.cost.sync


def test_pinned_plan_is_used_and_checked() -> None:
    graph = pl.Graph(device())
    a, b = linear(graph, (30, 40), name="a"), linear(graph, (40, 10), name="b")
    pinned = plan_matmul(graph.target, 30, 40, 10, available_memory_proportion=0.05)
    prog = pl.Sequence()
    c = matmul(graph, a, b, prog, options={"plan": pinned})
    assert graph.op_records[-1]["plan"] == pinned.to_dict()
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((30, 40)).astype(np.float32), rng.standard_normal((40, 10)).astype(np.float32)
    (out,), _ = run(graph, prog, {a: A, b: B}, [c])
    np.testing.assert_allclose(out, reference(A, B), rtol=1e-5, atol=1e-5)
    with pytest.raises(GraphError, match="pinned plan"):
        matmul(graph, b, a[:10], pl.Sequence(), options={"plan": pinned})
    with pytest.raises(GraphError, match="'start_tile' is 3, but the pinned plan starts on tile 0"):
        matmul(graph, a, b, pl.Sequence(), options={"plan": pinned, "start_tile": 3})


def test_start_tile_rotates_the_grid_and_keeps_the_result() -> None:
    """The ``start_tile`` option moves every cell ``start_tile`` tiles on (round the tiles); the
    plan is the same otherwise, operands created with the same option are where the product
    reads them, and the numbers do not change."""
    m, k, n = 8, 16, 8
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    built = {}
    for start in (0, 5):
        graph = pl.Graph(device())
        options = {"start_tile": start}
        a = create_matmul_lhs(graph, m, k, n, name="a", options=options)
        b = create_matmul_rhs(graph, m, k, n, name="b", options=options)
        prog = pl.Sequence()
        c = matmul(graph, a, b, prog, name="mm", options=options)
        (out,), profile = run(graph, prog, {a: A, b: B}, [c])
        np.testing.assert_allclose(out, reference(A, B), rtol=1e-5, atol=1e-5)
        step = next(s for s in profile["steps"] if s["name"] == "mm/matmul")
        built[start] = (graph.op_records[-1]["plan"], [graph.tile_of_elements(t) for t in (a, b, c)], step)
    (plan0, tiles0, step0), (plan5, tiles5, step5) = built[0], built[5]
    assert plan5["start_tile"] == 5 and {**plan5, "start_tile": 0} == plan0
    for t0, t5 in zip(tiles0, tiles5, strict=True):
        np.testing.assert_array_equal(t5, (t0 + 5) % TILES)
    assert step5["exchange_cycles"] == step0["exchange_cycles"] and step5["compute_cycles"] == step0["compute_cycles"]
    graph = pl.Graph(device())
    a, b = linear(graph, (m, k), name="a"), linear(graph, (k, n), name="b")
    for bad, what in ((-1, "an int >= 0"), (1.0, "an int >= 0"), (TILES, f"tiles 0..{TILES - 1}")):
        with pytest.raises(GraphError, match=f"start_tile.*{what}"):
            matmul(graph, a, b, pl.Sequence(), options={"start_tile": bad})


def test_resnet50_sized_layers_plan_fast_and_compile() -> None:
    """ResNet-50 layer sizes on a full ipu2: milliseconds to plan; the graph fits in memory."""
    target = pl.IPUModel("ipu2", global_sync_cycles=601).create_device().target  # not cached yet
    shapes = [(3136, 576, 64), (49, 4608, 512)]
    for m, k, n in shapes:
        start = time.perf_counter()
        plan = plan_matmul(target, m, k, n)
        assert time.perf_counter() - start < 0.1
        assert plan.fits_memory and plan.tiles_used > target.num_tiles // 2
    graph = pl.Graph(target)
    prog = pl.Sequence()
    for m, k, n in shapes:
        matmul(graph, linear(graph, (m, k)), linear(graph, (k, n)), prog)
    exe = pl.compile_graph(graph, prog)
    assert int(exe.tile_bytes().max()) <= target.memory_bytes_per_tile


def test_errors_name_the_problem() -> None:
    graph = pl.Graph(device())
    a, b = linear(graph, (3, 4), name="a"), linear(graph, (5, 6), name="b")
    with pytest.raises(TensorError, match="do not match"):
        matmul(graph, a, b, pl.Sequence())
    with pytest.raises(TensorError, match="2-D"):
        matmul(graph, a.flatten(), b, pl.Sequence())
    with pytest.raises(DTypeError, match="half"):
        matmul(graph, a, linear(graph, (4, 2), pl.HALF), pl.Sequence())
    with pytest.raises(DTypeError, match="float or half"):
        matmul(graph, linear(graph, (3, 4), pl.INT), linear(graph, (4, 2), pl.INT), pl.Sequence())
    with pytest.raises(GraphError, match="unknown option"):
        matmul(graph, a, linear(graph, (4, 2)), pl.Sequence(), options={"availableMemoryProportion": 0.5})
    with pytest.raises(DTypeError, match="partials"):
        plan_matmul(graph.target, 3, 4, 5, pl.FLOAT, partials_dtype=pl.HALF)
    with pytest.raises(GraphError, match="available_memory_proportion"):
        plan_matmul(graph.target, 3, 4, 5, available_memory_proportion=0)


# ============================================================================ shared helpers
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=6), st.sampled_from([1, 2, 4]), st.integers(1, 6))
def test_worker_chunks_cover_runs_as_worker_split_says(runs: list[int], grain: int, workers: int) -> None:
    run_of, start, size = planning.worker_chunks(np.array(runs), grain, workers)
    count, longest = planning.worker_split(np.array(runs), grain, workers)
    for r, length in enumerate(runs):
        mine = run_of == r
        assert mine.sum() == count[r]
        covered = np.concatenate([np.arange(s, s + z) for s, z in zip(start[mine], size[mine], strict=True)]
                                 + [np.zeros(0, dtype=np.int64)])
        np.testing.assert_array_equal(covered, np.arange(length))
        assert (size[mine] > 0).all() and size[mine].max(initial=0) == longest[r]


def test_split_candidates_are_distinct_block_counts() -> None:
    counts = planning.split_candidates(100, 16)
    assert counts[0] == 1 and max(counts) <= 16
    assert len({-(-100 // c) for c in counts}) == len(counts)  # each gives its own block length
