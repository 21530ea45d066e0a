"""Batch normalisation (popnn's batchNorm) for NCHW and (N, C) tensors, with torch's numerics.

Training: the channel mean (a two-stage reduction over N, H, W), then the biased variance as the
mean of squared deviations from it (a second reduction: two passes, as stable as torch's), then
per channel ``invstd = 1/sqrt(var + eps)``, ``scale = gamma * invstd``,
``shift = beta - mean * scale`` and ``y = x * scale + shift`` (the order of ATen's CPU kernel).
Per-channel values are FLOAT whatever the data type, each channel on the tile that holds its first
element (:func:`channel_tiles`); vertices read them through broadcast views, so each tile receives
the few channels it needs once.  Gamma and beta are read where they live: map them with
``channel_tiles`` too and the per-channel step needs no exchange.

Gradient (ATen's training formulas): ``sum_dy`` and ``dotp = sum(dy * (x - mean))`` in one
reduction, then ``k = dotp * invstd**2 / n``, ``dx = (dy - sum_dy / n - (x - mean) * k) *
invstd * gamma``, ``dgamma = dotp * invstd``, ``dbeta = sum_dy``.
"""

from __future__ import annotations

import numpy as np

from codelets import nn

from ..dtypes import FLOAT, HALF, poplar_name
from ..errors import DTypeError, GraphError, TensorError
from ..graph import ComputeSet, Execute, Graph, Sequence, Tensor
from .common import op_name, record, variable_like
from .elementwise import broadcast_to, check_dtype, elementwise_vertices, release_together
from .reduce import ReduceSpec, build_reduction, plain_spec

_FLOATS = (FLOAT, HALF)


def _layout(graph: Graph, x: Tensor, who: str) -> tuple[int, tuple[int, ...], int]:
    """Channels, reduced axes and elements per channel of an (N, C) or NCHW tensor."""
    if not isinstance(x, Tensor) or x.graph is not graph:
        raise TensorError(f"{who}: expected a tensor of this graph, got {x!r}")
    if x.rank not in (2, 4):
        raise TensorError(f"{who}: expected an (N, C) or NCHW tensor, got {x.name!r} of shape {x.shape}")
    check_dtype(x, _FLOATS, who)
    axes = (0,) if x.rank == 2 else (0, 2, 3)
    per_channel = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    if per_channel == 0 or x.shape[1] == 0:
        raise TensorError(f"{who}: tensor {x.name!r} of shape {x.shape} is empty")
    return x.shape[1], axes, per_channel


def _channel_params(graph: Graph, channels: int, who: str, **tensors: Tensor) -> np.dtype:
    """Check (C,) per-channel tensors of one float type; return it."""
    dtypes = set()
    for what, t in tensors.items():
        if not isinstance(t, Tensor) or t.graph is not graph or t.shape != (channels,):
            raise TensorError(f"{who}: {what} must be a ({channels},) tensor of this graph, got {t!r}")
        check_dtype(t, _FLOATS, f"{who} {what}")
        dtypes.add(t.dtype)
    if len(dtypes) > 1:
        raise DTypeError(f"{who}: {', '.join(tensors)} must share one type, got "
                         f"{', '.join(poplar_name(d) for d in dtypes)}")
    return dtypes.pop()


def channel_tiles(graph: Graph, x: Tensor) -> np.ndarray:
    """Where per-channel values of ``x`` live: channel ``c`` on the tile holding ``x[0, c, 0, 0]``
    (``x[0, c]`` for (N, C)).  Channels spread over the tiles that hold them, so the statistics
    gather from few tiles and each tile reads back only the channels it holds (a linear mapping
    would put every layer's channels on tile 0, which would then talk to every tile)."""
    first = x[(0, slice(None)) + (0,) * (x.rank - 2)]
    return graph.tile_of_elements(first).astype(np.int32)


def _channel_variable(graph: Graph, tiles: np.ndarray, name: str) -> Tensor:
    t = graph.add_variable(FLOAT, (tiles.size,), name)
    graph.set_tile_mapping(t, tiles)
    return t


def _per_channel(t: Tensor, x: Tensor) -> Tensor:
    """A (C,) tensor broadcast over x's shape (channel axis 1)."""
    shape = (1, x.shape[1]) + (1,) * (x.rank - 2)
    return broadcast_to(t.reshape(shape), x.shape, "batch norm")


def batch_norm_training(graph: Graph, x: Tensor, gamma: Tensor, beta: Tensor, eps: float, prog: Sequence,
                        name: str = "", running_mean: Tensor | None = None, running_var: Tensor | None = None,
                        momentum: float = 0.1) -> tuple[Tensor, Tensor, Tensor]:
    """Normalise with the batch statistics: returns ``(y, mean, invstd)``.

    ``y`` is mapped like ``x``; ``mean`` and ``invstd`` are FLOAT (C,) tensors mapped by
    :func:`channel_tiles`, for :func:`batch_norm_grad`.  The variance is biased, as torch uses it
    in training; it is kept (a FLOAT (C,) variable ``"{op}/var"``) so that
    :func:`update_running_stats` given this ``invstd`` uses the exact variance.  When ``running_mean`` and ``running_var`` are given they
    are updated here as torch does (unbiased variance, ``momentum``), in the same step.
    """
    channels, axes, per_channel = _layout(graph, x, "batch_norm_training")
    gt = _channel_params(graph, channels, "batch_norm_training", gamma=gamma, beta=beta)
    if (running_mean is None) != (running_var is None):
        raise GraphError("batch_norm_training: give both running_mean and running_var, or neither")
    if running_mean is not None:
        rt = _channel_params(graph, channels, "batch_norm_training", running_mean=running_mean,
                             running_var=running_var)
        if per_channel < 2:
            raise GraphError("batch_norm_training: the running variance needs more than 1 value per channel")
    opname = op_name(graph, "batch_norm", name)
    tiles = channel_tiles(graph, x)
    mean = _channel_variable(graph, tiles, f"{opname}/mean")
    var = _channel_variable(graph, tiles, f"{opname}/var")
    computes, temps, plans = [], [], {}
    # mean, then the mean of squared deviations from it
    c, t, plans["mean"] = build_reduction(graph, prog, opname, "mean", x, axes,
                                          [plain_spec(x, "sum", mean, 1.0 / per_channel)])
    computes += c
    temps += t
    dev = ReduceSpec(lambda d: nn.MaskedSumSqDev[x.dtype] if d == FLOAT else None, FLOAT, "sum", var,
                     1.0 / per_channel, seg_inputs={"shift": mean})
    c, t, plans["var"] = build_reduction(graph, prog, opname, "var", x, axes, [dev])
    computes += c
    temps += t
    # per channel coefficients (and the running statistics)
    cs = graph.add_compute_set(f"{opname}/coefficients")
    invstd = variable_like(graph, mean, f"{opname}/invstd")
    scale = variable_like(graph, mean, f"{opname}/scale")
    shift = variable_like(graph, mean, f"{opname}/shift")
    elementwise_vertices(graph, cs, nn.BnCoefficients[gt, FLOAT], mean,
                         {"mean": mean, "var": var, "gamma": gamma, "beta": beta, "invstd": invstd,
                          "scale": scale, "shift": shift}, state={"eps": float(eps)})
    if running_mean is not None:
        elementwise_vertices(graph, cs, nn.BnRunningStats[rt], running_mean,
                             {"running_mean": running_mean, "running_var": running_var, "mean": mean,
                              "var": var}, state={"momentum": float(momentum),
                                                  "unbias": per_channel / (per_channel - 1)})
    prog.add(Execute(cs))
    y, cs_apply, length = _apply(graph, opname, x, scale, shift, prog)
    temps += [scale, shift]
    release_together(prog, temps)
    record(graph, opname, "batch_norm_training",
           {"channels": channels, "per_channel": per_channel, "eps": float(eps), "vertex_length": length,
            "running_stats": running_mean is not None, "reductions": plans},
           computes + [cs, cs_apply], temps,
           outputs={"mean": mean.name, "invstd": invstd.name, "var": var.name})
    return y, mean, invstd


def _apply(graph: Graph, opname: str, x: Tensor, scale: Tensor, shift: Tensor,
           prog: Sequence) -> tuple[Tensor, ComputeSet, int]:
    """``y = x * scale + shift`` per channel, ``y`` mapped like ``x``: (y, compute set, vertex length)."""
    cs_apply = graph.add_compute_set(f"{opname}/apply")
    y = variable_like(graph, x, f"{opname}/out")
    length = elementwise_vertices(graph, cs_apply, nn.BnApply[x.dtype], y,
                                  {"x": x, "scale": _per_channel(scale, x), "shift": _per_channel(shift, x),
                                   "out": y})
    prog.add(Execute(cs_apply))
    return y, cs_apply, length


def batch_norm_inference(graph: Graph, x: Tensor, gamma: Tensor, beta: Tensor, running_mean: Tensor,
                         running_var: Tensor, eps: float, prog: Sequence, name: str = "") -> Tensor:
    """Normalise with the running statistics (torch's eval mode); ``y`` is mapped like ``x``."""
    channels, _, _ = _layout(graph, x, "batch_norm_inference")
    gt = _channel_params(graph, channels, "batch_norm_inference", gamma=gamma, beta=beta)
    st = _channel_params(graph, channels, "batch_norm_inference", running_mean=running_mean,
                         running_var=running_var)
    opname = op_name(graph, "batch_norm_inference", name)
    cs = graph.add_compute_set(f"{opname}/coefficients")
    tiles = channel_tiles(graph, x)
    invstd = _channel_variable(graph, tiles, f"{opname}/invstd")
    scale = _channel_variable(graph, tiles, f"{opname}/scale")
    shift = _channel_variable(graph, tiles, f"{opname}/shift")
    elementwise_vertices(graph, cs, nn.BnCoefficients[gt, st], scale,
                         {"mean": running_mean, "var": running_var, "gamma": gamma, "beta": beta,
                          "invstd": invstd, "scale": scale, "shift": shift}, state={"eps": float(eps)})
    prog.add(Execute(cs))
    y, cs_apply, length = _apply(graph, opname, x, scale, shift, prog)
    temps = [invstd, scale, shift]
    release_together(prog, temps)
    record(graph, opname, "batch_norm_inference", {"channels": channels, "eps": float(eps),
                                                   "vertex_length": length}, [cs, cs_apply], temps)
    return y


def batch_norm_grad(graph: Graph, x: Tensor, dy: Tensor, mean: Tensor, invstd: Tensor, gamma: Tensor,
                    prog: Sequence, name: str = "") -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of :func:`batch_norm_training`: ``(dx, dgamma, dbeta)``.

    ``dx`` is mapped like ``x``; ``dgamma`` and ``dbeta`` like ``gamma`` (so an optimiser step
    on gamma needs no exchange), in gamma's type.
    """
    channels, axes, per_channel = _layout(graph, x, "batch_norm_grad")
    if not isinstance(dy, Tensor) or dy.shape != x.shape or dy.dtype != x.dtype:
        raise TensorError(f"batch_norm_grad: dy must have x's shape {x.shape} and type, got {dy!r}")
    for what, t in (("mean", mean), ("invstd", invstd)):
        if not isinstance(t, Tensor) or t.shape != (channels,) or t.dtype != FLOAT:
            raise TensorError(f"batch_norm_grad: {what} must be a FLOAT ({channels},) tensor, got {t!r}")
    gt = _channel_params(graph, channels, "batch_norm_grad", gamma=gamma)
    opname = op_name(graph, "batch_norm_grad", name)
    sum_dy = _channel_variable(graph, channel_tiles(graph, x), f"{opname}/sum_dy")
    dotp = variable_like(graph, sum_dy, f"{opname}/dotp")
    prod = ReduceSpec(lambda d: nn.MaskedSumProdDev[x.dtype] if d == FLOAT else None, FLOAT, "sum", dotp,
                      elem_inputs={"other": x}, seg_inputs={"shift": mean})
    computes, temps, plan = build_reduction(graph, prog, opname, "sums", dy, axes,
                                            [plain_spec(dy, "sum", sum_dy), prod])
    cs = graph.add_compute_set(f"{opname}/coefficients")
    k = variable_like(graph, sum_dy, f"{opname}/k")
    grad_mean = variable_like(graph, sum_dy, f"{opname}/grad_mean")
    gscale = variable_like(graph, sum_dy, f"{opname}/gscale")
    dgamma = variable_like(graph, gamma, f"{opname}/dgamma")
    dbeta = variable_like(graph, gamma, f"{opname}/dbeta")
    elementwise_vertices(graph, cs, nn.BnGradCoefficients[gt], sum_dy,
                         {"sum_dy": sum_dy, "dotp": dotp, "invstd": invstd, "gamma": gamma, "k": k,
                          "grad_mean": grad_mean, "gscale": gscale, "dgamma": dgamma, "dbeta": dbeta},
                         state={"n": float(per_channel)})
    prog.add(Execute(cs))
    cs_apply = graph.add_compute_set(f"{opname}/apply")
    dx = variable_like(graph, x, f"{opname}/dx")
    length = elementwise_vertices(graph, cs_apply, nn.BnGradApply[x.dtype], dx,
                                  {"x": x, "dy": dy, "mean": _per_channel(mean, x), "k": _per_channel(k, x),
                                   "grad_mean": _per_channel(grad_mean, x), "gscale": _per_channel(gscale, x),
                                   "out": dx})
    prog.add(Execute(cs_apply))
    mine = [sum_dy, dotp, k, grad_mean, gscale]
    release_together(prog, temps + mine)
    record(graph, opname, "batch_norm_grad", {"channels": channels, "per_channel": per_channel,
                                              "vertex_length": length, "reduction": plan},
           computes + [cs, cs_apply], temps + mine)
    return dx, dgamma, dbeta


def _batch_variance(graph: Graph, invstd: Tensor) -> Tensor | None:
    """The batch variance kept by the batch_norm_training call that produced ``invstd`` (whole)."""
    ids = invstd.flat_ids()
    variables = invstd.variables()
    if len(variables) != 1:
        return None
    info = graph.variables[variables[0]]
    if info.size != invstd.numel or not np.array_equal(ids, np.arange(info.base, info.base + info.size)):
        return None
    for rec in reversed(graph.op_records):
        if rec.get("kind") == "batch_norm_training" and rec.get("outputs", {}).get("invstd") == info.name:
            return graph.tensor(rec["outputs"]["var"])
    return None


def update_running_stats(graph: Graph, running_mean: Tensor, running_var: Tensor, mean: Tensor,
                         invstd_or_var: Tensor, momentum: float, n_per_channel: int, prog: Sequence,
                         name: str = "", eps: float | None = None) -> None:
    """torch's running statistics update, in place:
    ``running_mean = (1 - momentum) * running_mean + momentum * mean`` and the same for
    ``running_var`` with the unbiased variance ``var * n / (n - 1)``.

    ``invstd_or_var`` is either the ``invstd`` returned by :func:`batch_norm_training` (the exact
    batch variance that call kept is used), or a biased batch variance.  With ``eps`` given it is
    taken as an ``invstd`` from elsewhere and ``var = 1/invstd**2 - eps`` (a little less precise).
    """
    if not isinstance(mean, Tensor) or mean.rank != 1:
        raise TensorError(f"update_running_stats: mean must be a (C,) tensor, got {mean!r}")
    channels = mean.shape[0]
    rt = _channel_params(graph, channels, "update_running_stats", running_mean=running_mean,
                         running_var=running_var)
    for what, t in (("mean", mean), ("invstd_or_var", invstd_or_var)):
        if not isinstance(t, Tensor) or t.graph is not graph or t.shape != (channels,) or t.dtype != FLOAT:
            raise TensorError(f"update_running_stats: {what} must be a FLOAT ({channels},) tensor, got {t!r}")
    if int(n_per_channel) < 2:
        raise GraphError(f"update_running_stats: n_per_channel must be >= 2, got {n_per_channel}")
    opname = op_name(graph, "update_running_stats", name)
    cs = graph.add_compute_set(f"{opname}/update")
    state = {"momentum": float(momentum), "unbias": int(n_per_channel) / (int(n_per_channel) - 1)}
    fields = {"running_mean": running_mean, "running_var": running_var, "mean": mean}
    var = _batch_variance(graph, invstd_or_var) if eps is None else None
    if eps is None:
        codelet = nn.BnRunningStats[rt]
        fields["var"] = var if var is not None else invstd_or_var
        source = "batch_norm_training variance" if var is not None else "var"
    else:
        codelet = nn.BnRunningStatsFromInvStd[rt]
        fields["invstd"] = invstd_or_var
        state["eps"] = float(eps)
        source = "invstd"
    elementwise_vertices(graph, cs, codelet, running_mean, fields, state=state)
    prog.add(Execute(cs))
    record(graph, opname, "update_running_stats", {"channels": channels, "momentum": float(momentum),
                                                    "from": source}, [cs])
