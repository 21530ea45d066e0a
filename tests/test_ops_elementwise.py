"""Elementwise ops and reductions (poplar_like.ops.elementwise, ops.reduce) against PyTorch.

Every op runs on small targets (4 and 8 tiles) with its inputs mapped linearly, in reverse tile
order, or element by element round robin (so vertices read and write across tiles), on odd
shapes that do not divide the tile count, in FLOAT and HALF.  Each call must appear in the
profile's op table with its compute sets, and its temporaries must be released.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import poplar_like as pl
from helpers import mapped_as, run_once, small_graph
from poplar_like.ops import elementwise as ew
from poplar_like.ops.reduce import normalise_axes, plan_reduce, reduce

F32, F16 = np.float32, np.float16
MAPPINGS = ("linear", "reverse", "spread")


# ==================================================================== helpers
new_graph, mapped, run = small_graph, mapped_as, run_once  # shared with the other op tests (helpers.py)


def tol(dtype) -> dict:
    return dict(rtol=1e-5, atol=1e-6) if np.dtype(dtype) == F32 else dict(rtol=2e-3, atol=2e-3)


def check(got: np.ndarray, want: torch.Tensor | np.ndarray, dtype) -> None:
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), **tol(dtype))


def op_rows(engine: pl.Engine) -> dict[str, dict]:
    rows = engine.profile()["ops"]
    json.dumps(rows)  # plain data
    return {r["name"]: r for r in rows}


def check_record(engine: pl.Engine, name: str, kind: str, temporaries=()) -> dict:
    """The op is in the profile with compute sets named ``name/...``, its temporaries released."""
    row = op_rows(engine)[name]
    assert row["kind"] == kind and row["compute_sets"] and row["vertices"] > 0
    assert all(cs.startswith(f"{name}/") for cs in row["compute_sets"])
    record = next(r for r in engine.executable.ops if r["name"] == name)
    assert set(record["temporaries"]) >= set(temporaries)
    released = set(engine.profile()["memory"]["temporaries"])
    assert set(record["temporaries"]) <= released
    return row


def rand(rng, shape, dtype, low=None, high=None):
    if low is not None:
        return rng.uniform(low, high, shape).astype(dtype)
    return (rng.standard_normal(shape) * 2).astype(dtype)


# ==================================================================== unary / binary
UNARY_TORCH = {
    "relu": torch.relu, "neg": torch.neg, "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt,
    "square": torch.square, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "abs": torch.abs,
}


@pytest.mark.parametrize("op", list(UNARY_TORCH))
@pytest.mark.parametrize("dtype,mapping,shape,tiles", [
    (pl.FLOAT, "linear", (7, 13), 4), (pl.FLOAT, "reverse", (3, 5, 11), 8), (pl.HALF, "spread", (301,), 4)])
def test_unary_matches_torch(op, dtype, mapping, shape, tiles):
    rng = np.random.default_rng(1)
    g = new_graph(tiles)
    x = mapped(g, "x", shape, dtype, mapping)
    prog = pl.Sequence()
    y = ew.unary(g, op, x, prog, name="f")
    xv = rand(rng, shape, dtype, 0.1, 5) if op in ("log", "sqrt") else rand(rng, shape, dtype)
    engine, (got,) = run(g, prog, {x: xv}, [y])
    assert y.dtype == dtype and np.array_equal(g.tile_of_elements(y), g.tile_of_elements(x))
    want = UNARY_TORCH[op](torch.tensor(xv.astype(F32)))
    check(got, want, dtype)
    row = check_record(engine, "f", "unary")
    assert row["plan"]["op"] == op


def test_unary_inplace_and_exchange_free():
    g = new_graph(8)
    x = mapped(g, "x", (5, 37), pl.FLOAT, "reverse")
    prog = pl.Sequence()
    assert ew.unary_inplace(g, "relu", x, prog) is x
    xv = rand(np.random.default_rng(2), (5, 37), F32)
    engine, (got,) = run(g, prog, {x: xv}, [x])
    np.testing.assert_array_equal(got, np.maximum(xv, 0))
    assert engine.profile()["exchange"]["total_bytes"] == 0


BINARY_TORCH = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
                "maximum": torch.maximum, "minimum": torch.minimum}


@pytest.mark.parametrize("op", list(BINARY_TORCH))
@pytest.mark.parametrize("dtype,a_shape,b_shape,mapping,tiles", [
    (pl.FLOAT, (6, 7), (6, 7), "linear", 4),
    (pl.FLOAT, (3, 5, 9), (9,), "reverse", 8),
    (pl.FLOAT, (4, 3, 2, 5), (3, 1, 1), "spread", 4),
    (pl.HALF, (2, 129), (2, 1), "linear", 4),
])
def test_binary_broadcasts_like_torch(op, dtype, a_shape, b_shape, mapping, tiles):
    rng = np.random.default_rng(3)
    g = new_graph(tiles)
    a = mapped(g, "a", a_shape, dtype, mapping)
    b = mapped(g, "b", b_shape, dtype, "reverse")
    prog = pl.Sequence()
    out = getattr(ew, op)(g, a, b, prog, name="op")
    av, bv = rand(rng, a_shape, dtype), rand(rng, b_shape, dtype, 0.5, 3)
    engine, (got,) = run(g, prog, {a: av, b: bv}, [out])
    want = BINARY_TORCH[op](torch.tensor(av.astype(F32)), torch.tensor(bv.astype(F32)))
    check(got, want, dtype)
    assert out.shape == a_shape
    check_record(engine, "op", "binary")


def test_binary_comparison_gives_bool_and_inplace_ops():
    rng = np.random.default_rng(4)
    g = new_graph(4)
    a = mapped(g, "a", (5, 6), pl.FLOAT, "spread")
    b = mapped(g, "b", (6,), pl.FLOAT, "linear")
    prog = pl.Sequence()
    less = ew.binary(g, "less", a, b, prog)
    ew.binary_inplace(g, "mul", a, b, prog)
    av, bv = rand(rng, (5, 6), F32), rand(rng, (6,), F32)
    _, (got_less, got_a) = run(g, prog, {a: av, b: bv}, [less, a])
    assert less.dtype == pl.BOOL
    np.testing.assert_array_equal(got_less, av < bv)
    check(got_a, torch.tensor(av) * torch.tensor(bv), F32)


def test_binary_refuses_bad_broadcasts_and_types():
    g = new_graph(4)
    a = mapped(g, "a", (4, 3))
    with pytest.raises(pl.TensorError, match="cannot broadcast"):
        ew.add(g, a, mapped(g, "b", (4,)), pl.Sequence())
    with pytest.raises(pl.TensorError, match="cannot broadcast"):
        ew.add(g, a, mapped(g, "c", (2, 4, 3)), pl.Sequence())
    with pytest.raises(pl.DTypeError, match="cast one first"):
        ew.add(g, a, mapped(g, "h", (4, 3), pl.HALF), pl.Sequence())
    with pytest.raises(pl.UnknownCodeletError):
        ew.unary(g, "nope", a, pl.Sequence())


# ==================================================================== scaled_add, cast, fill, copy, relu_grad
@pytest.mark.parametrize("dtype,mapping", [(pl.FLOAT, "linear"), (pl.FLOAT, "spread"), (pl.HALF, "reverse")])
def test_scaled_add_with_constant_and_tensor_scale(dtype, mapping):
    rng = np.random.default_rng(5)
    g = new_graph(4)
    a = mapped(g, "a", (9, 11), dtype, mapping)
    b = mapped(g, "b", (9, 11), dtype, "linear")
    a2 = mapped(g, "a2", (9, 11), dtype, mapping)
    scale = mapped(g, "scale", (1,), pl.FLOAT, "3")
    prog = pl.Sequence()
    assert ew.scaled_add(g, a, b, -0.25, prog, name="const") is a
    ew.scaled_add(g, a2, b, scale, prog, name="runtime")
    av, bv = rand(rng, (9, 11), dtype), rand(rng, (9, 11), dtype)
    engine = pl.Engine(g, prog)
    for t, v in ((a, av), (a2, av), (b, bv)):
        engine.write_tensor(t, v)
    for s in (0.5, -3.0):  # the run-time scale changes between runs without recompiling
        engine.write_tensor(scale, np.array([s], F32))
        engine.write_tensor(a2, av)
        engine.run()
        check(engine.read_tensor(a2), torch.tensor(av.astype(F32)) + s * torch.tensor(bv.astype(F32)), dtype)
    assert op_rows(engine)["runtime"]["plan"]["scale"] == "tensor"
    assert op_rows(engine)["const"]["plan"]["scale"] == "constant"


def test_scaled_add_checks_shapes():
    g = new_graph(4)
    a = mapped(g, "a", (4, 3))
    with pytest.raises(pl.TensorError, match="shape"):
        ew.scaled_add(g, a, mapped(g, "b", (3,)), 1.0, pl.Sequence())
    with pytest.raises(pl.TensorError, match="one element"):
        ew.scaled_add(g, a, mapped(g, "c", (4, 3)), mapped(g, "s", (2,)), pl.Sequence())


@pytest.mark.parametrize("src,dst", [(pl.FLOAT, pl.HALF), (pl.HALF, pl.FLOAT), (pl.FLOAT, pl.INT)])
def test_cast_matches_torch(src, dst):
    rng = np.random.default_rng(6)
    g = new_graph(8)
    x = mapped(g, "x", (13, 7), src, "reverse")
    prog = pl.Sequence()
    y = ew.cast(g, x, dst, prog, name="cast")
    xv = rand(rng, (13, 7), src) * 10
    engine, (got,) = run(g, prog, {x: xv}, [y])
    tdt = {np.dtype(F32): torch.float32, np.dtype(F16): torch.float16, np.dtype(np.int32): torch.int32}
    want = torch.tensor(xv).to(tdt[np.dtype(dst)]).numpy()
    assert got.dtype == np.dtype(dst)
    np.testing.assert_array_equal(got, want)
    check_record(engine, "cast", "cast")
    assert engine.profile()["exchange"]["total_bytes"] == 0


def test_fill_and_copy():
    g = new_graph(4)
    x = mapped(g, "x", (5, 7), pl.HALF, "spread")
    prog = pl.Sequence()
    ew.fill(g, x[1:4], 2.5, prog, name="fill")
    y = ew.copy(g, x, prog)
    xv = np.zeros((5, 7), F16)
    engine, (got_x, got_y) = run(g, prog, {x: xv}, [x, y])
    want = xv.copy()
    want[1:4] = 2.5
    np.testing.assert_array_equal(got_x, want)
    np.testing.assert_array_equal(got_y, want)
    check_record(engine, "fill", "fill")


@pytest.mark.parametrize("dtype,mapping", [(pl.FLOAT, "linear"), (pl.HALF, "spread")])
def test_relu_grad_matches_torch(dtype, mapping):
    rng = np.random.default_rng(7)
    g = new_graph(4)
    x = mapped(g, "x", (6, 23), dtype, mapping)
    dy = mapped(g, "dy", (6, 23), dtype, "reverse")
    prog = pl.Sequence()
    y = ew.unary(g, "relu", x, prog)
    dx = ew.relu_grad(g, y, dy, prog, name="relu_grad")
    xv, dyv = rand(rng, (6, 23), dtype), rand(rng, (6, 23), dtype)
    xv.reshape(-1)[:5] = 0  # relu'(0) = 0 as in torch
    engine, (got,) = run(g, prog, {x: xv, dy: dyv}, [dx])
    xt = torch.tensor(xv.astype(F32), requires_grad=True)
    torch.relu(xt).backward(torch.tensor(dyv.astype(F32)))
    check(got, xt.grad, dtype)
    check_record(engine, "relu_grad", "relu_grad")


def test_elementwise_plan_is_pure_and_bounded():
    target = new_graph(4).target
    assert ew.plan_elementwise(target, 10_000, pl.FLOAT) == {"vertex_length": ew.MAX_VERTEX_ELEMENTS}
    assert ew.plan_elementwise(target, 1, pl.HALF) == {"vertex_length": 64}  # MIN_VERTEX_BYTES
    assert ew.plan_elementwise(target, 1, pl.FLOAT) == {"vertex_length": 32}
    assert ew.plan_elementwise(target, 400, pl.FLOAT) == {"vertex_length": 68}  # ceil(400/6)=67 -> 68


# ==================================================================== reduce
REDUCE_CASES = [
    # shape, axes, mapping, tiles
    ((5, 7, 3, 3), (0, 2, 3), "linear", 4),
    ((5, 7, 3, 3), (0, 2, 3), "spread", 8),
    ((33, 10), (1,), "reverse", 4),
    ((33, 10), (0,), "spread", 4),
    ((3001,), (0,), "linear", 8),
    ((2, 3, 4), (), "reverse", 4),
    ((4, 6, 5), (0, 1, 2), "spread", 4),
    ((7, 1, 9), (-1,), "linear", 4),
]


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("shape,axes,mapping,tiles", REDUCE_CASES)
def test_reduce_matches_torch(op, shape, axes, mapping, tiles):
    rng = np.random.default_rng(8)
    g = new_graph(tiles)
    x = mapped(g, "x", shape, pl.FLOAT, mapping)
    prog = pl.Sequence()
    y = reduce(g, x, axes, prog, op=op, name="r")
    xv = rand(rng, shape, F32)
    engine, (got,) = run(g, prog, {x: xv}, [y])
    xt = torch.tensor(xv)
    dims = tuple(a % len(shape) for a in axes)
    if not dims:
        want = xt
    elif op in ("sum", "mean"):
        want = getattr(torch, op)(xt, dim=dims)
    else:
        want = xt.amax(dim=dims) if op == "max" else xt.amin(dim=dims)
    check(got, want, F32)
    row = check_record(engine, "r", "reduce")
    assert row["plan"]["op"] == op and row["plan"]["axes"] == list(normalise_axes(axes, len(shape), ""))
    if row["plan"]["stages"] > 1:
        assert any(name.startswith("r/partials") for name in engine.profile()["memory"]["temporaries"])


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reduce_half_accumulates_in_float(op):
    rng = np.random.default_rng(9)
    g = new_graph(4)
    x = mapped(g, "x", (64, 3, 5, 5), pl.HALF, "spread")
    prog = pl.Sequence()
    y = reduce(g, x, (0, 2, 3), prog, op=op)
    y32 = reduce(g, x, (0, 2, 3), prog, op=op, out_dtype=pl.FLOAT)
    xv = (rng.standard_normal((64, 3, 5, 5)) + 3).astype(F16)
    _, (got, got32) = run(g, prog, {x: xv}, [y, y32])
    xt = torch.tensor(xv.astype(np.float64))
    want = xt.amax(dim=(0, 2, 3)) if op == "max" else getattr(torch, op)(xt, dim=(0, 2, 3))
    assert got.dtype == F16 and got32.dtype == F32
    # 1,600 halves near 3 summed in half would be off by several units; float partials are not
    np.testing.assert_allclose(got32, want.numpy(), rtol=1e-6)
    np.testing.assert_allclose(got.astype(np.float64), want.numpy(), rtol=1e-3)


def test_reduce_integers_and_large_one_output_uses_intermediate_stage():
    rng = np.random.default_rng(10)
    g = new_graph(8)
    xi = mapped(g, "xi", (37, 5), pl.INT, "spread")
    xf = mapped(g, "xf", (150_001,), pl.FLOAT, "reverse")
    prog = pl.Sequence()
    s = reduce(g, xi, (0,), prog, name="isum")
    m = reduce(g, xi, (1,), prog, op="max")
    big = reduce(g, xf, (0,), prog, name="big")
    xiv = rng.integers(-1000, 1000, (37, 5)).astype(np.int32)
    xfv = rng.standard_normal(150_001).astype(F32)
    engine, (got_s, got_m, got_big) = run(g, prog, {xi: xiv, xf: xfv}, [s, m, big])
    np.testing.assert_array_equal(got_s, torch.tensor(xiv).sum(0).numpy())
    np.testing.assert_array_equal(got_m, torch.tensor(xiv).amax(1).numpy())
    assert got_big.shape == ()
    np.testing.assert_allclose(got_big, xfv.astype(np.float64).sum(), rtol=1e-5, atol=1e-3)
    plan = op_rows(engine)["big"]["plan"]
    assert plan["stages"] == 3 and len(op_rows(engine)["big"]["compute_sets"]) == 3


def test_reduce_single_stage_when_each_output_is_on_one_tile():
    g = new_graph(4)
    x = g.add_variable(pl.FLOAT, (4, 50), "x")
    g.set_tile_mapping(x, np.repeat(np.arange(4), 50).reshape(4, 50).astype(np.int32))  # a row per tile
    prog = pl.Sequence()
    y = reduce(g, x, (1,), prog, name="rows")
    xv = np.arange(200, dtype=F32).reshape(4, 50)
    engine, (got,) = run(g, prog, {x: xv}, [y])
    np.testing.assert_array_equal(got, xv.sum(1))
    assert op_rows(engine)["rows"]["compute_sets"] == ["rows/reduce"]


def test_reduce_errors():
    g = new_graph(4)
    x = mapped(g, "x", (3, 4))
    with pytest.raises(pl.TensorError, match="out of range"):
        reduce(g, x, (2,), pl.Sequence())
    with pytest.raises(pl.TensorError, match="twice"):
        reduce(g, x, (1, -1), pl.Sequence())
    with pytest.raises(pl.GraphError, match="unknown op"):
        reduce(g, x, (0,), pl.Sequence(), op="prod")
    with pytest.raises(pl.DTypeError, match="mean"):
        reduce(g, mapped(g, "i", (3,), pl.INT), (0,), pl.Sequence(), op="mean")
    with pytest.raises(pl.TensorError, match="no elements"):
        reduce(g, mapped(g, "e", (0, 3)), (0,), pl.Sequence())
    plan = plan_reduce(g.target, 1000, pl.FLOAT)
    assert plan["partial_length"] == 256 and plan_reduce(g.target, 1000, pl.FLOAT) == plan
