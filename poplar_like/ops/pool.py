"""2-D pooling over NCHW tensors (popnn's pooling): max, average, global average, and gradients.

Windows are index arrays built once with numpy (:func:`plan_pool`, pure and cached): for each
output position the in-bounds input positions of its window, row-major, padding left out (max
pooling ignores padded positions like torch; average pooling divides by the full window,
torch's ``count_include_pad=True``).  Outputs with the same number of in-bounds positions
(a handful of classes: interior, edges, corners) share a codelet shape: one vertex reduces a
list of windows (``codelets.nn.RowMax``/``RowSum``).

An output element lives on the tile holding the first in-bounds element of its window, so the
forward pass moves only window halos.  Gradients are gathers, never scatters: each input
element sums the contributions of the windows that contain it (``RowSum`` over a list of
sources), grouped by how many windows contain it.  Max pooling's backward pass first writes
each window's gradient (``dy`` at the first maximum, as torch's indices pick it) to a temporary.
"""

from __future__ import annotations

import functools

import numpy as np

import codelets
from codelets import nn

from ..dtypes import FLOAT, HALF
from ..errors import GraphError, TensorError
from ..graph import ComputeSet, Execute, Graph, Sequence, Tensor
from ..target import Target
from .common import gather, linear_variable, op_name, record, release, split_by_tile, variable_like
from .elementwise import broadcast_to, check_dtype, elementwise_vertices, release_together
from .reduce import build_reduction, plain_spec

#: Elements (windows x window size) one pooling vertex reads at most.
MAX_ROW_ELEMENTS = 256


# ==================================================================== planning (pure)
def _pair(value: object, who: str, minimum: int) -> tuple[int, int]:
    items = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)  # type: ignore[arg-type]
    if len(items) != 2 or not all(isinstance(v, (int, np.integer)) for v in items):
        raise GraphError(f"{who}: expected an int or a pair of ints, got {value!r}")
    if any(int(v) < minimum for v in items):
        raise GraphError(f"{who}: values must be >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


@functools.lru_cache(maxsize=256)
def plan_pool(height: int, width: int, kernel: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int]) -> dict:
    """Window geometry of one (H, W) plane.

    ``windows`` (OH*OW, KH*KW): in-bounds positions ``h*W + w`` of each output's window, row-major,
    then -1; ``counts`` (OH*OW,): how many are in bounds.  Arrays are read-only.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph > kh // 2 or pw > kw // 2:
        raise GraphError(f"pooling: padding {padding} must be at most half the kernel {kernel} (as in torch)")
    oh, ow = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise GraphError(f"pooling: kernel {kernel} does not fit the padded input {height}x{width} "
                         f"(padding {padding})")
    rows = (np.arange(oh) * sh - ph)[:, None] + np.arange(kh)[None, :]  # (OH, KH)
    cols = (np.arange(ow) * sw - pw)[:, None] + np.arange(kw)[None, :]  # (OW, KW)
    h = np.broadcast_to(rows[:, None, :, None], (oh, ow, kh, kw)).reshape(oh * ow, kh * kw)
    w = np.broadcast_to(cols[None, :, None, :], (oh, ow, kh, kw)).reshape(oh * ow, kh * kw)
    valid = (h >= 0) & (h < height) & (w >= 0) & (w < width)
    first = np.argsort(~valid, axis=1, kind="stable")  # in-bounds first, order kept
    positions = np.take_along_axis(np.where(valid, h * width + w, -1), first, axis=1)
    counts = valid.sum(axis=1)
    for arr in (positions, counts):
        arr.setflags(write=False)
    return {"out_hw": (int(oh), int(ow)), "windows": positions, "counts": counts,
            "kernel": (kh, kw), "stride": (sh, sw), "padding": (ph, pw)}


def rows_per_vertex(target: Target, window: int, max_tile_outputs: int) -> int:
    """Windows per vertex: a worker's share of the busiest tile, at most MAX_ROW_ELEMENTS read."""
    share = -(-int(max_tile_outputs) // target.num_worker_contexts)
    return int(max(1, min(MAX_ROW_ELEMENTS // max(window, 1), share)))


# ==================================================================== shared building
def _check_input(graph: Graph, x: Tensor, who: str) -> tuple[int, int, int, int]:
    if not isinstance(x, Tensor) or x.graph is not graph:
        raise TensorError(f"{who}: expected a tensor of this graph, got {x!r}")
    if x.rank != 4:
        raise TensorError(f"{who}: expected an NCHW tensor, got {x.name!r} of shape {x.shape}")
    check_dtype(x, (FLOAT, HALF), who)
    if x.numel == 0:
        raise TensorError(f"{who}: tensor {x.name!r} of shape {x.shape} is empty")
    n, c, h, w = x.shape
    return n, c, h, w


def _geometry(x: Tensor, kernel: object, stride: object, padding: object, who: str) -> dict:
    _, _, h, w = x.shape
    return plan_pool(h, w, _pair(kernel, f"{who} kernel", 1), _pair(stride, f"{who} stride", 1),
                     _pair(padding, f"{who} padding", 0))


def _max_count(graph: Graph, t: Tensor) -> int:
    tiles = graph.tile_of_elements(t).reshape(-1).astype(np.int64)
    return int(np.bincount(tiles).max()) if tiles.size else 0


def _window_vertices(graph: Graph, cs: ComputeSet, geo: dict, x: Tensor, where: Tensor,
                     build) -> None:
    """For each class of window size, vertices over the outputs (positions of ``where``, shaped
    (N, C, OH, OW)) on ``where``'s tiles; ``build(c, outputs (n, G), x positions (n, G, c), tiles)``
    adds them."""
    n, c_, h, w = x.shape
    hw = h * w
    ohw = geo["windows"].shape[0]
    planes = np.arange(n * c_, dtype=np.int64)[:, None]
    max_out = _max_count(graph, where)
    for count in np.unique(geo["counts"]).tolist():  # a handful of window sizes
        cls = np.flatnonzero(geo["counts"] == count)
        positions = (planes * ohw + cls[None, :]).reshape(-1)
        rows = rows_per_vertex(graph.target, count, max_out)
        for local, tiles in split_by_tile(graph, gather(where, positions), rows).groups():
            outs = positions[local]
            xpos = (outs // ohw)[..., None] * hw + geo["windows"][outs % ohw, :count]
            build(count, outs, xpos, tiles)


def _gather_sum(graph: Graph, cs: ComputeSet, dx: Tensor, geo: dict, source: Tensor,
                plane_stride: int, pattern_source: np.ndarray, scale: float) -> None:
    """``dx[e] = scale * sum(source[k])`` over the windows containing ``e``.

    ``pattern_source[ohw, j]`` is the position in one plane of ``source`` of the contribution of
    window ``ohw``'s j-th in-bounds element; plane ``q``'s positions are offset by
    ``q * plane_stride``.  Elements in no window get 0.
    """
    n, c_, h, w = dx.shape
    hw = h * w
    windows, counts = geo["windows"], geo["counts"]
    valid = np.arange(windows.shape[1])[None, :] < counts[:, None]
    elem = windows[valid]  # in-plane input position of every (window, slot)
    src = pattern_source[valid]
    order = np.argsort(elem, kind="stable")
    src_sorted = src[order]
    incoming = np.bincount(elem, minlength=hw)
    first = np.cumsum(incoming) - incoming
    planes = np.arange(n * c_, dtype=np.int64)[:, None]
    max_out = _max_count(graph, dx)
    for k in np.unique(incoming).tolist():  # a handful of overlap counts
        cls = np.flatnonzero(incoming == k)
        positions = (planes * hw + cls[None, :]).reshape(-1)
        rows = rows_per_vertex(graph.target, k, max_out)
        for local, tiles in split_by_tile(graph, gather(dx, positions), rows).groups():
            elems = positions[local]
            out = gather(dx, elems)
            if k == 0:
                graph.add_vertices(cs, codelets.Fill[dx.dtype], {"out": out}, tiles, state={"value": 0})
                continue
            spos = (elems // hw)[..., None] * plane_stride + src_sorted[first[elems % hw][..., None] + np.arange(k)]
            graph.add_vertices(cs, nn.RowSum[dx.dtype], {"inp": gather(source, spos), "out": out}, tiles,
                               state={"scale": scale})


def _pool_output(graph: Graph, x: Tensor, geo: dict, name: str) -> Tensor:
    """The (N, C, OH, OW) output, each element on the tile of its window's first in-bounds input."""
    n, c_, h, w = x.shape
    oh, ow = geo["out_hw"]
    y = graph.add_variable(x.dtype, (n, c_, oh, ow), name)
    x_tiles = graph.tile_of_elements(x).reshape(n * c_, h * w)
    graph.set_tile_mapping(y, x_tiles[:, geo["windows"][:, 0]].reshape(y.shape).astype(np.int32))
    return y


def _plan_record(geo: dict) -> dict:
    return {"kernel": list(geo["kernel"]), "stride": list(geo["stride"]), "padding": list(geo["padding"]),
            "out_hw": list(geo["out_hw"]), "window_sizes": sorted({int(c) for c in geo["counts"]})}


# ==================================================================== ops
def max_pool2d(graph: Graph, x: Tensor, kernel: object, stride: object, padding: object, prog: Sequence,
               name: str = "") -> Tensor:
    """Max pooling of NCHW ``x`` (torch's ``max_pool2d``, dilation 1, floor mode); padded positions
    are ignored."""
    _check_input(graph, x, "max_pool2d")
    geo = _geometry(x, kernel, stride, padding, "max_pool2d")
    opname = op_name(graph, "max_pool2d", name)
    cs = graph.add_compute_set(f"{opname}/pool")
    y = _pool_output(graph, x, geo, f"{opname}/out")

    def build(count, outs, xpos, tiles):
        graph.add_vertices(cs, nn.RowMax[x.dtype], {"inp": gather(x, xpos), "out": gather(y, outs)}, tiles)

    _window_vertices(graph, cs, geo, x, y, build)
    prog.add(Execute(cs))
    record(graph, opname, "max_pool2d", _plan_record(geo), [cs])
    return y


def max_pool2d_grad(graph: Graph, x: Tensor, y: Tensor, dy: Tensor, kernel: object, stride: object,
                    padding: object, prog: Sequence, name: str = "") -> Tensor:
    """Gradient of :func:`max_pool2d`: each window's ``dy`` goes to its first maximum (torch's
    choice), summed where windows overlap.  ``dx`` is mapped like ``x``."""
    _check_input(graph, x, "max_pool2d_grad")
    geo = _geometry(x, kernel, stride, padding, "max_pool2d_grad")
    n, c_, _, _ = x.shape
    out_shape = (n, c_) + geo["out_hw"]
    for t, what in ((y, "y"), (dy, "dy")):
        if not isinstance(t, Tensor) or t.shape != out_shape or t.dtype != x.dtype:
            raise TensorError(f"max_pool2d_grad: {what} must be a {out_shape} tensor of x's type, got {t!r}")
    opname = op_name(graph, "max_pool2d_grad", name)
    cs1 = graph.add_compute_set(f"{opname}/window_grad")
    cs2 = graph.add_compute_set(f"{opname}/gather")
    counts = geo["counts"]
    per_plane = int(counts.sum())
    offsets = np.cumsum(counts) - counts  # first slot of each window within a plane
    ohw = counts.size
    grads = graph.add_variable(x.dtype, (n * c_ * per_plane,), f"{opname}/window_grads")
    dy_tiles = graph.tile_of_elements(dy).reshape(n * c_, ohw)
    graph.set_tile_mapping(grads, np.repeat(dy_tiles, counts, axis=1).reshape(-1).astype(np.int32))

    def build(count, outs, xpos, tiles):
        slots = ((outs // ohw) * per_plane + offsets[outs % ohw])[..., None] + np.arange(count)
        fields = {"inp": gather(x, xpos), "y": gather(y, outs), "dy": gather(dy, outs),
                  "out": gather(grads, slots.reshape(outs.shape[0], -1))}
        graph.add_vertices(cs1, nn.MaxPoolWindowGrad[x.dtype], fields, tiles)

    _window_vertices(graph, cs1, geo, x, dy, build)
    dx = variable_like(graph, x, f"{opname}/dx")
    slot_of = offsets[:, None] + np.arange(geo["windows"].shape[1])[None, :]
    _gather_sum(graph, cs2, dx, geo, grads, per_plane, slot_of, 1.0)
    prog.add(Execute(cs1))
    prog.add(Execute(cs2))
    release(prog, [grads])
    record(graph, opname, "max_pool2d_grad", _plan_record(geo), [cs1, cs2], [grads])
    return dx


def avg_pool2d(graph: Graph, x: Tensor, kernel: object, stride: object, padding: object, prog: Sequence,
               name: str = "") -> Tensor:
    """Average pooling of NCHW ``x`` (torch's ``avg_pool2d``: padding counts as zeros,
    ``count_include_pad=True``, floor mode)."""
    _check_input(graph, x, "avg_pool2d")
    geo = _geometry(x, kernel, stride, padding, "avg_pool2d")
    scale = 1.0 / (geo["kernel"][0] * geo["kernel"][1])
    opname = op_name(graph, "avg_pool2d", name)
    cs = graph.add_compute_set(f"{opname}/pool")
    y = _pool_output(graph, x, geo, f"{opname}/out")

    def build(count, outs, xpos, tiles):
        graph.add_vertices(cs, nn.RowSum[x.dtype], {"inp": gather(x, xpos), "out": gather(y, outs)}, tiles,
                           state={"scale": scale})

    _window_vertices(graph, cs, geo, x, y, build)
    prog.add(Execute(cs))
    record(graph, opname, "avg_pool2d", _plan_record(geo), [cs])
    return y


def avg_pool2d_grad(graph: Graph, x: Tensor, dy: Tensor, kernel: object, stride: object, padding: object,
                    prog: Sequence, name: str = "") -> Tensor:
    """Gradient of :func:`avg_pool2d`: ``dx[e] = sum(dy of the windows containing e) / (KH*KW)``;
    ``dx`` is mapped like ``x`` (only its shape and mapping are used)."""
    _check_input(graph, x, "avg_pool2d_grad")
    geo = _geometry(x, kernel, stride, padding, "avg_pool2d_grad")
    n, c_, _, _ = x.shape
    if not isinstance(dy, Tensor) or dy.shape != (n, c_) + geo["out_hw"] or dy.dtype != x.dtype:
        raise TensorError(f"avg_pool2d_grad: dy must be a {(n, c_) + geo['out_hw']} tensor of x's type, got {dy!r}")
    opname = op_name(graph, "avg_pool2d_grad", name)
    cs = graph.add_compute_set(f"{opname}/gather")
    dx = variable_like(graph, x, f"{opname}/dx")
    ohw = geo["counts"].size
    window_of = np.broadcast_to(np.arange(ohw)[:, None], geo["windows"].shape)
    _gather_sum(graph, cs, dx, geo, dy, ohw, window_of, 1.0 / (geo["kernel"][0] * geo["kernel"][1]))
    prog.add(Execute(cs))
    record(graph, opname, "avg_pool2d_grad", _plan_record(geo), [cs])
    return dx


def global_avg_pool(graph: Graph, x: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """Mean over H and W of NCHW ``x``: an (N, C) tensor mapped linearly (a two-stage reduction)."""
    n, c_, h, w = _check_input(graph, x, "global_avg_pool")
    opname = op_name(graph, "global_avg_pool", name)
    out = linear_variable(graph, x.dtype, (n, c_), f"{opname}/out")
    spec = plain_spec(x, "sum", out, 1.0 / (h * w))
    computes, temps, plan = build_reduction(graph, prog, opname, "", x, (2, 3), [spec])
    release_together(prog, temps)
    record(graph, opname, "global_avg_pool", plan, computes, temps)
    return out


def global_avg_pool_grad(graph: Graph, dy: Tensor, x: Tensor | tuple[int, ...], prog: Sequence,
                         name: str = "") -> Tensor:
    """Gradient of :func:`global_avg_pool`: ``dx[n, c, h, w] = dy[n, c] / (H*W)``.

    ``x`` is the forward input (``dx`` is mapped like it) or just its NCHW shape (``dx`` is then
    mapped linearly)."""
    if isinstance(x, Tensor):
        n, c_, h, w = _check_input(graph, x, "global_avg_pool_grad")
    else:
        shape = tuple(int(s) for s in x)
        if len(shape) != 4 or min(shape) < 1:
            raise TensorError(f"global_avg_pool_grad: expected a non-empty NCHW shape, got {x!r}")
        n, c_, h, w = shape
    if not isinstance(dy, Tensor) or dy.graph is not graph or dy.shape != (n, c_):
        raise TensorError(f"global_avg_pool_grad: dy must be an {(n, c_)} tensor of this graph, got {dy!r}")
    check_dtype(dy, (FLOAT, HALF), "global_avg_pool_grad")
    if isinstance(x, Tensor) and x.dtype != dy.dtype:
        raise TensorError(f"global_avg_pool_grad: dy is {dy.dtype} but x is {x.dtype}")
    opname = op_name(graph, "global_avg_pool_grad", name)
    cs = graph.add_compute_set(f"{opname}/broadcast")
    if isinstance(x, Tensor):
        dx = variable_like(graph, x, f"{opname}/dx")
    else:
        dx = linear_variable(graph, dy.dtype, (n, c_, h, w), f"{opname}/dx")
    spread = broadcast_to(dy.reshape(n, c_, 1, 1), dx.shape, "global_avg_pool_grad")
    length = elementwise_vertices(graph, cs, codelets.Scale[dy.dtype], dx, {"inp": spread, "out": dx},
                                  state={"scale": 1.0 / (h * w)})
    prog.add(Execute(cs))
    record(graph, opname, "global_avg_pool_grad", {"vertex_length": length}, [cs])
    return dx
