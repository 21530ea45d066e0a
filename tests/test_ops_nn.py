"""Layer ops (poplar_like.ops.pool, norm, loss, optim) against PyTorch, and the codelets they use
(codelets.nn) against their one-instance-at-a-time reference.

Ops run on 4- and 8-tile targets with inputs mapped linearly, in reverse tile order or round robin
(forcing exchange), on odd shapes, in FLOAT and HALF; each call must show in the profile's op
table with its compute sets, and its temporaries must be released.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import codelets
import poplar_like as pl
from helpers import mapped_as, run_once, small_graph
from codelets import costs, nn
from poplar_like.codelet import INPUT, STATE, VECTOR, VECTOR_LIST, estimate_cycles
from poplar_like.ops import loss as loss_ops
from poplar_like.ops import norm, optim, pool

F32, F16 = np.float32, np.float16


# ==================================================================== helpers
new_graph, mapped, run = small_graph, mapped_as, run_once  # shared with the other op tests (helpers.py)


def check(got: np.ndarray, want, dtype, rtol: float | None = None, atol: float | None = None) -> None:
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    if np.dtype(dtype) == F32:
        rtol, atol = rtol or 1e-5, atol or 1e-6
    else:
        rtol, atol = rtol or 1e-2, atol or 1e-2
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol)


def check_records(engine: pl.Engine, kinds: dict[str, str]) -> None:
    """Each named op is in the profile with its compute sets; every temporary is released."""
    rows = {r["name"]: r for r in engine.profile()["ops"]}
    json.dumps(rows)
    released = set(engine.profile()["memory"]["temporaries"])
    for name, kind in kinds.items():
        row = rows[name]
        assert row["kind"] == kind and row["compute_sets"] and row["vertices"] > 0, name
        assert all(cs.startswith(f"{name}/") for cs in row["compute_sets"]), row["compute_sets"]
        record = next(r for r in engine.executable.ops if r["name"] == name)
        assert set(record["temporaries"]) <= released, name


def torch_of(x: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(x.astype(F32), requires_grad=grad)


# ==================================================================== codelets.nn
MASKED = {cls for name, family in nn.FAMILIES.items() if name.startswith("Masked") for cls in family}


def _field_arrays(cls, rng, n: int, length: int) -> dict[str, np.ndarray]:
    """Random arguments for one batch of ``cls`` (vector fields ``length`` long; masked codelets
    get 3 rows of ``length``, pooling codelets 3 windows of 4)."""
    windows, window = 3, 4
    arrays: dict[str, np.ndarray] = {}
    for name, fld in cls.fields.items():
        dt = fld.type.dtype
        if fld.type.kind == VECTOR_LIST:
            shape = (n, windows, window)
        elif fld.type.kind == VECTOR:
            if cls in set(nn.RowMax) | set(nn.RowSum):
                shape = (n, windows)
            elif cls in set(nn.MaxPoolWindowGrad):
                shape = (n, windows * window) if name == "out" else (n, windows)
            elif cls in MASKED:
                shape = (n, windows * length) if name in ("inp", "other", "col") else (n, windows)
            else:
                shape = (n, length)
        else:
            shape = (n,)
        if name == "count":
            value = rng.integers(0, length + 1, shape)
        elif fld.direction == STATE:
            value = {"num_classes": np.full(n, 5), "unbias": np.full(n, 1.25)}.get(name, rng.uniform(0.05, 0.9, n))
        elif dt.kind in "iu":
            value = rng.integers(0, 5, shape)
        else:
            value = rng.standard_normal(shape) + (3 if name in ("var", "row_sum", "invstd") else 0)
        arrays[name] = np.asarray(value).astype(dt)
    if "y" in arrays and "inp" in arrays and cls in set(nn.MaxPoolWindowGrad):
        arrays["y"] = arrays["inp"].max(axis=2)  # the forward result
    return arrays


def _call(cls, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    args = {}
    for name, fld in cls.fields.items():
        arr = arrays[name].copy()
        if fld.direction == INPUT or fld.direction == STATE:
            arr.setflags(write=False)
        args[name] = arr
    cls.compute(**args)
    return {name: args[name] for name, fld in cls.fields.items() if fld.writes}


NN_CODELETS = [cls for family in nn.FAMILIES.values() for cls in family]


@pytest.mark.parametrize("cls", NN_CODELETS, ids=lambda c: c.__name__)
def test_nn_codelet_batch_equals_one_by_one(cls):
    """The vectorised compute gives, bit for bit, what one-instance calls give; inputs are never
    written; the estimate gives one count per instance; the codelet resolves by path."""
    rng = np.random.default_rng(0)
    n, length = 5, 8
    arrays = _field_arrays(cls, rng, n, length)
    fast = _call(cls, arrays)
    for i in range(n):
        one = _call(cls, {k: v[i:i + 1] for k, v in arrays.items()})
        for name, value in one.items():
            np.testing.assert_array_equal(value.view(np.uint8), fast[name][i:i + 1].view(np.uint8),
                                          err_msg=f"{cls.__name__}.{name} instance {i}")
    sizes = {}
    for name, fld in cls.fields.items():
        if fld.type.kind == VECTOR:
            sizes[f"{name}_length"] = np.full(n, arrays[name].shape[1])
        elif fld.type.kind == VECTOR_LIST:
            sizes[f"{name}_count"] = np.full(n, arrays[name].shape[1])
            sizes[f"{name}_length"] = np.full(n, arrays[name].shape[2])
        elif fld.direction == STATE:
            sizes[name] = arrays[name]
    cycles = estimate_cycles(cls, sizes, n)
    assert cycles.shape == (n,) and np.all(cycles > 0)
    assert cls in codelets.all_codelets() and cls.__doc__


def test_masked_reductions_reduce_rows_and_ignore_padding():
    x = np.array([[1, 2, 3, 100, 5, -1, 7, 7]], F16)  # two rows of 4
    count = np.array([[3, 2]], np.uint32)
    out = np.zeros((1, 2), F32)
    nn.MaskedSum[F16, F32].compute(inp=x, count=count, out=out, scale=np.array([0.5], F32))
    np.testing.assert_array_equal(out, [[3, 2]])
    out = np.zeros((1, 2), F16)
    nn.MaskedMax[F16].compute(inp=x, count=count, out=out)
    np.testing.assert_array_equal(out, [[3, 5]])
    first = np.zeros((1, 2), np.int32)
    nn.MaskedFirstMatch[F32, np.int32].compute(
        inp=np.array([[1, 3, 3, 0, 2, 2, 2, 2]], F32), col=np.array([[0, 1, 2, 3, 4, 5, 6, 7]], np.int32),
        shift=np.array([[3, 9]], F32), count=np.array([[4, 4]], np.uint32), out=first)
    np.testing.assert_array_equal(first, [[1, np.iinfo(np.int32).max]])
    with pytest.raises(ValueError, match="count 9"):
        nn.MaskedSum[F32].compute(inp=np.zeros((1, 4), F32), count=np.array([[9]], np.uint32),
                                  out=np.zeros((1, 1), F32), scale=np.ones(1, F32))
    rows = np.array([[5, 2]])  # one vertex, two rows: 3 and 1 float vectors
    assert nn.masked_cycles("sum", rows, F32)[0] == costs.REDUCE_OVERHEAD + 2 * nn.MASKED_ROW_OVERHEAD + 3 + 1
    assert nn.masked_cycles_bound("sum", 8, 2, F32) >= nn.masked_cycles("sum", np.array([[4, 4]]), F32)[0]


def test_masked_sum_of_long_rows_does_not_depend_on_the_batch():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((7, 1024)).astype(F32)  # two rows of 512 per instance
    count = rng.integers(200, 513, (7, 2)).astype(np.uint32)
    scale = np.ones(7, F32)
    out = np.zeros((7, 2), F32)
    nn.MaskedSum[F32].compute(inp=x, count=count, out=out, scale=scale)
    for i in range(7):
        one = np.zeros((1, 2), F32)
        nn.MaskedSum[F32].compute(inp=x[i:i + 1], count=count[i:i + 1], out=one, scale=scale[i:i + 1])
        np.testing.assert_array_equal(one.view(np.uint32), out[i:i + 1].view(np.uint32))
    want = [[x[i, 512 * r:512 * r + count[i, r]].astype(np.float64).sum() for r in range(2)] for i in range(7)]
    np.testing.assert_allclose(out, want, rtol=1e-5)


def test_max_pool_window_grad_picks_the_first_maximum():
    inp = np.array([[[1, 5, 5, 2], [0, 0, 0, 0]]], F32)
    out = np.full((1, 8), np.nan, F32)
    nn.MaxPoolWindowGrad[F32].compute(inp=inp, y=np.array([[5, 0]], F32), dy=np.array([[2, 3]], F32), out=out)
    np.testing.assert_array_equal(out, [[0, 2, 0, 0, 3, 0, 0, 0]])


# ==================================================================== pooling
POOL_CASES = [
    # shape, kernel, stride, padding, dtype, mapping, tiles
    ((2, 3, 7, 9), 3, 2, 1, pl.FLOAT, "linear", 4),
    ((1, 2, 8, 8), 2, 2, 0, pl.FLOAT, "reverse", 8),
    ((2, 2, 6, 5), (3, 2), (1, 2), (1, 0), pl.FLOAT, "spread", 4),
    ((1, 3, 5, 5), 3, 3, 1, pl.FLOAT, "linear", 4),
    ((2, 2, 9, 7), 3, 2, 1, pl.HALF, "reverse", 4),
]


@pytest.mark.parametrize("shape,kernel,stride,padding,dtype,mapping,tiles", POOL_CASES)
def test_pooling_and_gradients_match_torch(shape, kernel, stride, padding, dtype, mapping, tiles):
    rng = np.random.default_rng(1)
    g = new_graph(tiles)
    x = mapped(g, "x", shape, dtype, mapping)
    prog = pl.Sequence()
    y = pool.max_pool2d(g, x, kernel, stride, padding, prog, name="max")
    dy = mapped(g, "dy", y.shape, dtype, "spread")
    dx = pool.max_pool2d_grad(g, x, y, dy, kernel, stride, padding, prog, name="max_grad")
    ya = pool.avg_pool2d(g, x, kernel, stride, padding, prog, name="avg")
    dxa = pool.avg_pool2d_grad(g, x, dy, kernel, stride, padding, prog, name="avg_grad")
    xv = np.round(rng.standard_normal(shape), 1).astype(dtype)  # many ties: the first maximum wins
    dyv = rng.standard_normal(y.shape).astype(dtype)
    engine, (got_y, got_dx, got_ya, got_dxa) = run(g, prog, {x: xv, dy: dyv}, [y, dx, ya, dxa])
    xt = torch_of(xv, grad=True)
    yt = F.max_pool2d(xt, kernel, stride, padding)
    yt.backward(torch_of(dyv))
    check(got_y, yt, dtype)
    check(got_dx, xt.grad, dtype)
    xt.grad = None
    yat = F.avg_pool2d(xt, kernel, stride, padding)
    yat.backward(torch_of(dyv))
    check(got_ya, yat, dtype)
    check(got_dxa, xt.grad, dtype)
    check_records(engine, {"max": "max_pool2d", "max_grad": "max_pool2d_grad", "avg": "avg_pool2d",
                           "avg_grad": "avg_pool2d_grad"})
    assert "max_grad/window_grads" in engine.profile()["memory"]["temporaries"]


@pytest.mark.parametrize("shape,dtype,mapping", [((2, 3, 5, 7), pl.FLOAT, "linear"),
                                                 ((3, 5, 4, 4), pl.FLOAT, "spread"),
                                                 ((2, 4, 3, 3), pl.HALF, "reverse")])
def test_global_avg_pool_and_grad_match_torch(shape, dtype, mapping):
    rng = np.random.default_rng(2)
    g = new_graph(8)
    x = mapped(g, "x", shape, dtype, mapping)
    prog = pl.Sequence()
    y = pool.global_avg_pool(g, x, prog, name="gap")
    dy = mapped(g, "dy", y.shape, dtype, "reverse")
    dx = pool.global_avg_pool_grad(g, dy, x, prog, name="gap_grad")
    dx2 = pool.global_avg_pool_grad(g, dy, x.shape, prog)  # from the shape alone: mapped linearly
    xv, dyv = rng.standard_normal(shape).astype(dtype), rng.standard_normal(y.shape).astype(dtype)
    engine, (got_y, got_dx, got_dx2) = run(g, prog, {x: xv, dy: dyv}, [y, dx, dx2])
    xt = torch_of(xv, grad=True)
    yt = xt.mean(dim=(2, 3))
    yt.backward(torch_of(dyv))
    check(got_y, yt, dtype)
    check(got_dx, xt.grad, dtype)
    np.testing.assert_array_equal(got_dx2, got_dx)
    assert np.array_equal(g.tile_of_elements(dx), g.tile_of_elements(x))
    check_records(engine, {"gap": "global_avg_pool", "gap_grad": "global_avg_pool_grad"})


def test_pool_output_lives_with_its_window_and_forward_moves_little():
    g = new_graph(4)
    x = g.add_variable(pl.FLOAT, (4, 2, 6, 6), "x")
    g.set_tile_mapping(x, np.repeat(np.arange(4), 72).reshape(x.shape).astype(np.int32))  # a sample per tile
    prog = pl.Sequence()
    y = pool.max_pool2d(g, x, 2, 2, 0, prog)
    np.testing.assert_array_equal(g.tile_of_elements(y), np.repeat(np.arange(4), 18).reshape(y.shape))
    engine, _ = run(g, prog, {x: np.zeros(x.shape, F32)}, [])
    assert engine.profile()["exchange"]["total_bytes"] == 0


def test_pool_errors():
    g = new_graph(4)
    x = mapped(g, "x", (1, 1, 4, 4))
    with pytest.raises(pl.TensorError, match="NCHW"):
        pool.max_pool2d(g, mapped(g, "v", (4, 4)), 2, 2, 0, pl.Sequence())
    with pytest.raises(pl.GraphError, match="at most half"):
        pool.max_pool2d(g, x, 2, 1, 2, pl.Sequence())
    with pytest.raises(pl.GraphError, match="does not fit"):
        pool.avg_pool2d(g, x, 5, 1, 0, pl.Sequence())
    with pytest.raises(pl.GraphError, match=">= 1"):
        pool.max_pool2d(g, x, 2, 0, 0, pl.Sequence())
    y = pool.max_pool2d(g, x, 2, 2, 0, pl.Sequence())
    with pytest.raises(pl.TensorError, match="dy must be"):
        pool.max_pool2d_grad(g, x, y, x, 2, 2, 0, pl.Sequence())


# ==================================================================== batch norm
BN_CASES = [
    # shape, dtype, x mapping, tiles
    ((3, 5, 4, 7), pl.FLOAT, "linear", 4),
    ((4, 3, 5, 5), pl.FLOAT, "spread", 8),
    ((7, 13), pl.FLOAT, "reverse", 8),
    ((2, 3, 5, 5), pl.HALF, "reverse", 4),
]


@pytest.mark.parametrize("shape,dtype,mapping,tiles", BN_CASES)
def test_batch_norm_training_and_grad_match_torch(shape, dtype, mapping, tiles):
    rng = np.random.default_rng(3)
    c = shape[1]
    g = new_graph(tiles)
    x = mapped(g, "x", shape, dtype, mapping)
    dy = mapped(g, "dy", shape, dtype, "linear")
    gamma, beta = mapped(g, "gamma", (c,), mapping=str(tiles - 1)), mapped(g, "beta", (c,), mapping="spread")
    rm, rv = mapped(g, "rm", (c,)), mapped(g, "rv", (c,), mapping="reverse")
    rm2, rv2 = mapped(g, "rm2", (c,)), mapped(g, "rv2", (c,))
    rm3, rv3 = mapped(g, "rm3", (c,)), mapped(g, "rv3", (c,))
    prog = pl.Sequence()
    y, mean, invstd = norm.batch_norm_training(g, x, gamma, beta, 1e-5, prog, name="bn",
                                               running_mean=rm, running_var=rv, momentum=0.1)
    n = x.numel // c
    norm.update_running_stats(g, rm2, rv2, mean, invstd, 0.1, n, prog, name="stats")  # the exact var
    norm.update_running_stats(g, rm3, rv3, mean, invstd, 0.1, n, prog, name="stats_eps", eps=1e-5)
    dx, dgamma, dbeta = norm.batch_norm_grad(g, x, dy, mean, invstd, gamma, prog, name="bn_grad")
    xv = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    dyv = rng.standard_normal(shape).astype(dtype)
    gv, bv, rmv = (rng.standard_normal(c).astype(F32) for _ in range(3))
    rvv = rng.uniform(0.5, 2, c).astype(F32)
    inputs = {x: xv, dy: dyv, gamma: gv, beta: bv, rm: rmv, rv: rvv, rm2: rmv, rv2: rvv, rm3: rmv, rv3: rvv}
    engine, got = run(g, prog, inputs, [y, mean, invstd, rm, rv, rm2, rv2, rm3, rv3, dx, dgamma, dbeta])
    got_y, got_mean, got_invstd, got_rm, got_rv, got_rm2, got_rv2, got_rm3, got_rv3, got_dx, got_dg, got_db = got
    xt, gt, bt = torch_of(xv, True), torch_of(gv, True), torch_of(bv, True)
    rmt, rvt = torch.tensor(rmv), torch.tensor(rvv)
    yt = F.batch_norm(xt, rmt, rvt, gt, bt, training=True, momentum=0.1, eps=1e-5)
    yt.backward(torch_of(dyv))
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    xd = torch.tensor(xv.astype(np.float64))
    check(got_y, yt, dtype)
    check(got_mean, xd.mean(dim=axes), F32)
    check(got_invstd, 1 / torch.sqrt(xd.var(dim=axes, unbiased=False) + 1e-5), F32)
    check(got_rm, rmt, F32)
    check(got_rv, rvt, F32)
    check(got_rm2, rmt, F32)
    check(got_rv2, rvt, F32)
    check(got_rm3, rmt, F32)
    check(got_rv3, rvt, F32, rtol=1e-4)  # var recovered from invstd and eps: a little precision lost
    check(got_dx, xt.grad, dtype)
    check(got_dg, gt.grad, F32)
    check(got_db, bt.grad, F32)
    assert dgamma.dtype == pl.FLOAT and np.array_equal(g.tile_of_elements(dgamma), g.tile_of_elements(gamma))
    check_records(engine, {"bn": "batch_norm_training", "stats": "update_running_stats",
                           "stats_eps": "update_running_stats", "bn_grad": "batch_norm_grad"})
    plans = {r["name"]: r["plan"] for r in engine.profile()["ops"]}
    assert plans["stats"]["from"] == "batch_norm_training variance" and plans["stats_eps"]["from"] == "invstd"
    temps = engine.profile()["memory"]["temporaries"]
    assert {"bn/scale", "bn/shift", "bn_grad/k"} <= set(temps) and "bn/var" not in temps


@pytest.mark.parametrize("shape,dtype,mapping", [((3, 5, 4, 7), pl.FLOAT, "spread"), ((9, 6), pl.FLOAT, "linear"),
                                                 ((2, 3, 5, 5), pl.HALF, "reverse")])
def test_batch_norm_inference_and_running_stats_from_var(shape, dtype, mapping):
    rng = np.random.default_rng(4)
    c = shape[1]
    g = new_graph(4)
    x = mapped(g, "x", shape, dtype, mapping)
    gamma, beta = mapped(g, "gamma", (c,), dtype), mapped(g, "beta", (c,), dtype, "reverse")
    rm, rv = mapped(g, "rm", (c,), dtype), mapped(g, "rv", (c,), dtype, "spread")
    mean, var = mapped(g, "mean", (c,)), mapped(g, "var", (c,))
    prog = pl.Sequence()
    y = norm.batch_norm_inference(g, x, gamma, beta, rm, rv, 1e-3, prog, name="bn_eval")
    norm.update_running_stats(g, rm, rv, mean, var, 0.2, 10, prog, name="stats")
    xv = rng.standard_normal(shape).astype(dtype)
    gv, bv, rmv, mv, vv = (rng.standard_normal(c).astype(dtype) for _ in range(5))
    rvv, vv = rng.uniform(0.5, 2, c).astype(dtype), np.abs(vv).astype(F32)
    engine, (got_y, got_rm, got_rv) = run(g, prog, {x: xv, gamma: gv, beta: bv, rm: rmv, rv: rvv,
                                                    mean: mv.astype(F32), var: vv}, [y, rm, rv])
    want = F.batch_norm(torch_of(xv), torch_of(rmv), torch_of(rvv), torch_of(gv), torch_of(bv),
                        training=False, eps=1e-3)
    check(got_y, want, dtype)
    check(got_rm, 0.8 * rmv.astype(F32) + 0.2 * mv.astype(F32), dtype)
    check(got_rv, 0.8 * rvv.astype(F32) + 0.2 * vv * 10 / 9, dtype)
    check_records(engine, {"bn_eval": "batch_norm_inference", "stats": "update_running_stats"})


def test_batch_norm_errors():
    g = new_graph(4)
    x = mapped(g, "x", (2, 3, 4))
    gamma = mapped(g, "gamma", (3,))
    with pytest.raises(pl.TensorError, match=r"\(N, C\) or NCHW"):
        norm.batch_norm_training(g, x, gamma, gamma, 1e-5, pl.Sequence())
    x4 = mapped(g, "x4", (2, 3, 2, 2))
    with pytest.raises(pl.TensorError, match="beta must be"):
        norm.batch_norm_training(g, x4, gamma, mapped(g, "b", (4,)), 1e-5, pl.Sequence())
    with pytest.raises(pl.DTypeError, match="one type"):
        norm.batch_norm_training(g, x4, gamma, mapped(g, "bh", (3,), pl.HALF), 1e-5, pl.Sequence())
    with pytest.raises(pl.GraphError, match="n_per_channel"):
        norm.update_running_stats(g, gamma, gamma, gamma, gamma, 0.1, 1, pl.Sequence())


# ==================================================================== softmax cross entropy
LOSS_CASES = [
    # (N, K), dtype, label type, logits mapping, tiles
    ((5, 10), pl.FLOAT, pl.INT, "linear", 4),
    ((33, 7), pl.FLOAT, pl.UNSIGNED_INT, "reverse", 8),
    ((300, 3), pl.FLOAT, pl.INT, "spread", 4),
    ((16, 100), pl.HALF, pl.INT, "reverse", 4),
]


@pytest.mark.parametrize("shape,dtype,label_type,mapping,tiles", LOSS_CASES)
def test_softmax_cross_entropy_and_correct_count_match_torch(shape, dtype, label_type, mapping, tiles):
    rng = np.random.default_rng(5)
    n, k = shape
    g = new_graph(tiles)
    logits = mapped(g, "logits", shape, dtype, mapping)
    labels = mapped(g, "labels", (n,), label_type, "1")
    prog = pl.Sequence()
    loss, dlogits = loss_ops.softmax_cross_entropy(g, logits, labels, prog, name="xent")
    correct = loss_ops.correct_count(g, logits, labels, prog, name="acc")
    predicted = loss_ops.argmax(g, logits, prog, name="argmax")
    xv = (rng.standard_normal(shape) * 3 + 40).astype(dtype)  # large logits: stability needed
    xv[0] = 40  # a row of ties: argmax is the first
    labv = rng.integers(0, k, n).astype(label_type)
    labv[0] = 0
    engine, (got_loss, got_dl, got_correct, got_predicted) = run(g, prog, {logits: xv, labels: labv},
                                                                [loss, dlogits, correct, predicted])
    xt = torch_of(xv, True)
    lt = F.cross_entropy(xt, torch.tensor(labv.astype(np.int64)))
    lt.backward()
    assert loss.shape == (1,) and loss.dtype == pl.FLOAT and correct.dtype == pl.UNSIGNED_INT
    check(got_loss, lt.reshape(1), F32, rtol=1e-5 if dtype == pl.FLOAT else 1e-3)
    check(got_dl, xt.grad, dtype, rtol=1e-5 if dtype == pl.FLOAT else 1e-2, atol=1e-6 if dtype == pl.FLOAT else 1e-3)
    assert int(got_correct[0]) == int((xt.argmax(dim=1).numpy() == labv).sum())
    assert predicted.dtype == pl.UNSIGNED_INT and got_predicted[0] == 0  # the first of tied maxima
    np.testing.assert_array_equal(got_predicted, torch.tensor(xv.astype(F32)).argmax(dim=1).numpy())
    check_records(engine, {"xent": "softmax_cross_entropy", "acc": "correct_count", "argmax": "argmax"})
    assert "xent/row_loss" in engine.profile()["memory"]["temporaries"]


def test_cross_entropy_refuses_labels_out_of_range():
    g = new_graph(4)
    logits = mapped(g, "logits", (3, 4))
    labels = mapped(g, "labels", (3,), pl.INT)
    prog = pl.Sequence()
    loss_ops.softmax_cross_entropy(g, logits, labels, prog)
    engine = pl.Engine(g, prog)
    engine.write_tensor(logits, np.zeros((3, 4), F32))
    engine.write_tensor(labels, np.array([0, 4, 1], np.int32))
    with pytest.raises(pl.CodeletError, match="label 4 is out of range for 4 classes"):
        engine.run()
    with pytest.raises(pl.DTypeError, match="labels must be INT"):
        loss_ops.softmax_cross_entropy(g, logits, mapped(g, "fl", (3,)), pl.Sequence())


# ==================================================================== SGD
@pytest.mark.parametrize("dtype,mapping,tensor_lr", [(pl.FLOAT, "linear", True), (pl.FLOAT, "spread", False),
                                                     (pl.HALF, "reverse", True)])
def test_sgd_momentum_matches_torch_over_steps(dtype, mapping, tensor_lr):
    rng = np.random.default_rng(6)
    shape = (7, 9)
    g = new_graph(4)
    param = mapped(g, "param", shape, dtype, mapping)
    grad = mapped(g, "grad", shape, dtype, "3")
    velocity = g.clone(param, "velocity")
    lr = mapped(g, "lr", (1,), pl.FLOAT, "0") if tensor_lr else 0.1
    prog = pl.Sequence()
    optim.sgd_momentum_step(g, param, grad, velocity, lr, 0.9, 1e-2, prog, name="sgd")
    engine = pl.Engine(g, prog)
    pv = rng.standard_normal(shape).astype(dtype)
    engine.write_tensor(param, pv)
    engine.write_tensor(velocity, np.zeros(shape, dtype))
    pt = torch.nn.Parameter(torch_of(pv))
    opt = torch.optim.SGD([pt], lr=0.1, momentum=0.9, weight_decay=1e-2)
    for step in range(4):
        gv = rng.standard_normal(shape).astype(dtype)
        rate = 0.1 if step < 2 or not tensor_lr else 0.03
        if tensor_lr:
            engine.write_tensor(lr, np.array([rate], F32))
        for group in opt.param_groups:
            group["lr"] = rate
        engine.write_tensor(grad, gv)
        engine.run()
        pt.grad = torch_of(gv)
        opt.step()
        check(engine.read_tensor(param), pt, dtype, atol=1e-6 if dtype == pl.FLOAT else 1e-2)
        check(engine.read_tensor(velocity), opt.state[pt]["momentum_buffer"], dtype,
              atol=1e-6 if dtype == pl.FLOAT else 2e-2)
    check_records(engine, {"sgd": "sgd_momentum_step"})
    assert engine.profile()["ops"][0]["plan"]["lr"] == ("tensor" if tensor_lr else 0.1)


def test_sgd_errors():
    g = new_graph(4)
    p = mapped(g, "p", (3,))
    with pytest.raises(pl.TensorError, match="grad"):
        optim.sgd_momentum_step(g, p, mapped(g, "g", (4,)), p, 0.1, 0.9, 0.0, pl.Sequence())
    with pytest.raises(pl.DTypeError, match="lr must be FLOAT"):
        optim.sgd_momentum_step(g, p, p, p, mapped(g, "lr", (1,), pl.HALF), 0.9, 0.0, pl.Sequence())


def test_sgd_steps_share_one_per_tile_copy_of_the_learning_rate():
    """The run-time learning rate is broadcast once per sequence; every step then reads its own
    tile's copy, so a step whose tensors live together moves nothing."""
    rng = np.random.default_rng(8)
    g = new_graph(8)
    params = [mapped(g, f"p{i}", shape, pl.FLOAT, "spread") for i, shape in enumerate([(5, 7), (33,)])]
    grads = [g.clone(p, f"g{i}") for i, p in enumerate(params)]
    velocities = [g.clone(p, f"v{i}") for i, p in enumerate(params)]
    lr = mapped(g, "lr", (1,), pl.FLOAT, "0")
    prog = pl.Sequence()
    for i, (p, gr, v) in enumerate(zip(params, grads, velocities, strict=True)):
        optim.sgd_momentum_step(g, p, gr, v, lr, 0.5, 0.0, prog, name=f"sgd{i}")
    engine = pl.Engine(g, prog)
    values = {}
    for p, gr, v in zip(params, grads, velocities, strict=True):
        values[p], values[gr] = rng.standard_normal(p.shape).astype(F32), rng.standard_normal(p.shape).astype(F32)
        engine.write_tensor(p, values[p])
        engine.write_tensor(gr, values[gr])
        engine.write_tensor(v, np.zeros(p.shape, F32))
    engine.write_tensor(lr, np.array([0.25], F32))
    engine.run()
    for p, gr in zip(params, grads, strict=True):
        np.testing.assert_allclose(engine.read_tensor(p), values[p] - 0.25 * values[gr], rtol=1e-6)
    steps = engine.profile()["steps"]
    assert sum(1 for s in steps if s["kind"] == "copy") == 1
    assert all(s["exchange_bytes"] == 0 for s in steps if s["name"].startswith("sgd"))


def test_batch_norm_statistics_live_with_their_channels():
    g = new_graph(8)
    x = mapped(g, "x", (2, 6, 4, 4), pl.FLOAT, "linear")
    gamma, beta = mapped(g, "gamma", (6,), mapping="spread"), mapped(g, "beta", (6,), mapping="spread")
    prog = pl.Sequence()
    _, mean, invstd = norm.batch_norm_training(g, x, gamma, beta, 1e-5, prog)
    owners = g.tile_of_elements(x)[0, :, 0, 0]
    np.testing.assert_array_equal(norm.channel_tiles(g, x), owners)
    np.testing.assert_array_equal(g.tile_of_elements(mean), owners)
    np.testing.assert_array_equal(g.tile_of_elements(invstd), owners)
    assert len(set(owners.tolist())) > 1
