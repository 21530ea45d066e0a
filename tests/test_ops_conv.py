"""ops.conv against PyTorch: forward, input and weight gradients, groups and depthwise; plans."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch

import poplar_like as pl
from poplar_like.errors import GraphError, TensorError
from poplar_like.ops.conv import (ConvParams, active_phases, conv2d, conv2d_input_grad, conv2d_weight_grad,
                                  create_conv_weights, plan_conv)

TILES = 16


def new_graph(tiles: int = TILES) -> pl.Graph:
    return pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=tiles).create_device())


def linear(graph: pl.Graph, shape: tuple[int, ...], dtype: object = pl.FLOAT, name: str = "") -> pl.Tensor:
    t = graph.add_variable(dtype, shape, name)
    pl.map_tensor_linearly(graph, t)
    return t


# (input shape, weight shape, stride, padding, dilation, groups)
CASES = {
    "3x3": ((2, 3, 9, 9), (4, 3, 3, 3), 1, 0, 1, 1),
    "3x3 s2 p1": ((2, 3, 9, 9), (4, 3, 3, 3), 2, 1, 1, 1),
    "resnet 7x7 s2 p3": ((1, 3, 20, 20), (8, 3, 7, 7), 2, 3, 1, 1),
    "resnet 3x3 p1": ((2, 16, 7, 7), (16, 16, 3, 3), 1, 1, 1, 1),
    "resnet 1x1 s2": ((2, 16, 7, 7), (32, 16, 1, 1), 2, 0, 1, 1),
    "alexnet 11x11 s4 p2": ((1, 3, 31, 31), (8, 3, 11, 11), 4, 2, 1, 1),
    "dilation 2": ((1, 4, 10, 11), (5, 4, 3, 3), 1, 2, 2, 1),
    "groups, pairs": ((2, 8, 7, 8), (6, 4, 3, 2), (2, 1), (1, 0), (2, 1), 2),
    "depthwise": ((2, 8, 7, 7), (8, 1, 3, 3), 1, 1, 1, 8),
    "depthwise x2 s2": ((1, 6, 9, 9), (12, 1, 3, 3), 2, 1, 1, 6),
    "kernel 2 stride 3": ((1, 2, 8, 7), (3, 2, 2, 2), 3, 1, 1, 1),
}


def torch_conv(x: np.ndarray, w: np.ndarray, dy: np.ndarray | None, stride, padding, dilation, groups):
    """y, dx, dw by PyTorch autograd in float64 (the independent reference)."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding, dilation=dilation, groups=groups)
    if dy is None:
        return y.detach().numpy(), None, None
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


def output_shape(xs, ws, stride, padding, dilation, groups) -> tuple[int, ...]:
    return ConvParams.of(xs, ws, stride, padding, dilation, groups).output_shape


@pytest.mark.parametrize("case", list(CASES))
def test_conv2d_and_gradients_match_torch(case: str) -> None:
    xs, ws, stride, padding, dilation, groups = CASES[case]
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    graph = new_graph()
    x, w = linear(graph, xs, name="x"), linear(graph, ws, name="w")
    ys = output_shape(xs, ws, stride, padding, dilation, groups)
    dy = linear(graph, ys, name="dy")
    prog = pl.Sequence()
    y = conv2d(graph, x, w, prog, stride, padding, dilation, groups, name="conv")
    dx = conv2d_input_grad(graph, dy, w, xs, prog, stride, padding, dilation, groups, name="dx")
    dw = conv2d_weight_grad(graph, x, dy, ws, prog, stride, padding, dilation, groups, name="dw")
    assert (y.shape, dx.shape, dw.shape) == (ys, xs, ws)

    X, W, DY = (rng.standard_normal(s).astype(np.float32) for s in (xs, ws, ys))
    engine = pl.Engine(graph, prog)
    for t, v in ((x, X), (w, W), (dy, DY)):
        engine.write_tensor(t, v)
    engine.run()
    ref_y, ref_dx, ref_dw = torch_conv(X, W, DY, stride, padding, dilation, groups)
    np.testing.assert_allclose(engine.read_tensor(y), ref_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(engine.read_tensor(dx), ref_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(engine.read_tensor(dw), ref_dw, rtol=1e-5, atol=1e-5)
    kinds = [op["kind"] for op in engine.profile()["ops"]]
    assert kinds == ["conv2d", "conv2d_input_grad", "conv2d_weight_grad"]


def test_half_convolution() -> None:
    xs, ws = (2, 8, 8, 8), (8, 8, 3, 3)
    rng = np.random.default_rng(5)
    graph = new_graph()
    x, w = linear(graph, xs, pl.HALF, "x"), linear(graph, ws, pl.HALF, "w")
    prog = pl.Sequence()
    y = conv2d(graph, x, w, prog, padding=1)
    assert y.dtype == pl.HALF
    X, W = rng.standard_normal(xs).astype(np.float16), rng.standard_normal(ws).astype(np.float16)
    engine = pl.Engine(graph, prog)
    engine.write_tensor(x, X)
    engine.write_tensor(w, W)
    engine.run()
    ref, _, _ = torch_conv(X, W, None, 1, 1, 1, 1)
    np.testing.assert_allclose(engine.read_tensor(y).astype(np.float64), ref, rtol=1e-3,
                               atol=1e-3 * np.abs(ref).max())


def test_padding_reads_zeros_without_copies() -> None:
    """The im2col patches are views: no Copy program, no padded temporary; the only constant is
    one zero a tile."""
    graph = new_graph()
    x, w = linear(graph, (1, 3, 8, 8), name="x"), linear(graph, (4, 3, 3, 3), name="w")
    prog = pl.Sequence()
    conv2d(graph, x, w, prog, padding=1, name="conv")
    names = [v.name for v in graph.variables]
    assert names[:2] == ["x", "w"] and "conv/out" in names
    constants = [v for v in graph.variables if v.kind == "constant"]
    assert [v.shape for v in constants] == [(TILES,)]
    assert all(type(p).__name__ == "Execute" for p in prog.programs if type(p).__name__ != "WriteUndef")


def test_depthwise_is_one_grouped_product_spread_over_tiles() -> None:
    plan = plan_conv(new_graph().target, (1, 64, 14, 14), (64, 1, 3, 3), padding=1, groups=64)
    mm = plan.matmul
    assert (mm.groups, mm.m, mm.k, mm.n) == (64, 196, 9, 1)
    assert mm.split_g > 1 and mm.tiles_used == TILES
    graph = new_graph()
    x, w = linear(graph, (1, 64, 14, 14), name="x"), linear(graph, (64, 1, 3, 3), name="w")
    prog = pl.Sequence()
    conv2d(graph, x, w, prog, padding=1, groups=64, name="dw")
    assert len(graph.compute_sets) <= 3  # zero, matmul (and reduce): not one set per channel


def test_plan_conv_is_pure_and_plain_data() -> None:
    target = new_graph().target
    first = plan_conv(target, (2, 16, 7, 7), (32, 16, 3, 3), 2, 1)
    assert first == plan_conv(target, (2, 16, 7, 7), (32, 16, 3, 3), (2, 2), (1, 1), (1, 1), 1)
    data = json.loads(json.dumps(first.to_dict()))
    assert data["output_shape"] == [2, 32, 4, 4] and data["phase"] == "fwd"
    assert data["matmul"]["m"] == 2 * 4 * 4 and data["matmul"]["k"] == 16 * 9
    bwd = plan_conv(target, (2, 16, 7, 7), (32, 16, 3, 3), 2, 1, phase="bwd")
    # stride phases as groups: 4 phases, at most 2x2 taps each instead of 3x3
    assert (bwd.matmul.groups, bwd.matmul.k, bwd.matmul.n) == (4, 32 * 4, 16)
    assert "ConvPlan fwd" in str(first)
    assert plan_conv(target, (1, 8, 9, 9), (8, 8, 1, 1), 2, phase="bwd").matmul.groups == 1  # 3 phases are 0
    assert active_phases(ConvParams.of((1, 8, 9, 9), (8, 8, 1, 1), 2)).tolist() == [[0, 0]]


def test_created_weights_live_where_the_plan_reads_them() -> None:
    graph = new_graph()
    xs, ws = (2, 8, 6, 6), (16, 8, 3, 3)
    w = create_conv_weights(graph, ws, pl.FLOAT, "w", input_shape=xs, padding=1)
    plan = plan_conv(graph.target, xs, ws, padding=1).matmul
    g, r, c = np.indices((1, 8 * 9, 16)).reshape(3, -1)
    expected = plan.rhs_tiles(g, r, c)
    view = w.reshape(1, 16, 72).dim_shuffle([0, 2, 1])
    np.testing.assert_array_equal(graph.tile_of_elements(view).reshape(-1), expected)
    spread = create_conv_weights(graph, ws, pl.FLOAT, "w2")  # no input shape: linear
    assert (graph.tile_of_elements(spread) >= 0).all()
    x = linear(graph, xs, name="x")
    prog = pl.Sequence()
    y = conv2d(graph, x, w, prog, padding=1)
    rng = np.random.default_rng(7)
    X, W = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    engine = pl.Engine(graph, prog)
    engine.write_tensor(x, X)
    engine.write_tensor(w, W)
    engine.write_tensor(spread, W)
    engine.run()
    np.testing.assert_allclose(engine.read_tensor(y), torch_conv(X, W, None, 1, 1, 1, 1)[0], rtol=1e-5, atol=1e-5)


def test_options_reach_the_planner() -> None:
    graph = new_graph()
    x, w = linear(graph, (2, 16, 8, 8), name="x"), linear(graph, (16, 16, 3, 3), name="w")
    conv2d(graph, x, w, pl.Sequence(), padding=1, options={"available_memory_proportion": 0.01})
    assert graph.op_records[-1]["plan"]["matmul"]["available_memory_proportion"] == 0.01
    with pytest.raises(GraphError, match="unknown option"):
        conv2d(graph, x, w, pl.Sequence(), options={"amp": 0.5})


def test_errors_name_the_problem() -> None:
    graph = new_graph()
    x = linear(graph, (1, 6, 5, 5), name="x")
    with pytest.raises(TensorError, match="groups=4 must divide"):
        conv2d(graph, x, linear(graph, (8, 1, 3, 3)), pl.Sequence(), groups=4)
    with pytest.raises(TensorError, match="C/groups = 3"):
        conv2d(graph, x, linear(graph, (8, 2, 3, 3)), pl.Sequence(), groups=2)
    with pytest.raises(TensorError, match="larger than the padded input"):
        conv2d(graph, x, linear(graph, (8, 6, 7, 7)), pl.Sequence())
    with pytest.raises(GraphError, match="stride"):
        conv2d(graph, x, linear(graph, (8, 6, 3, 3)), pl.Sequence(), stride=0)
    with pytest.raises(TensorError, match="dy"):
        conv2d_input_grad(graph, linear(graph, (1, 8, 4, 4)), linear(graph, (8, 6, 3, 3)), x.shape,
                          pl.Sequence())
