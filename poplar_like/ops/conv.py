"""2-D convolutions (poplin's ``convolution``) on NCHW tensors, as grouped matrix products.

Weights are ``(OC, C / groups, KH, KW)``, torchvision's layout.  Each pass is one grouped product
``c[g] = a[g] @ b[g]`` planned by ``plan_matmul`` and built by ``ops/matmul.py``; the operands are
*views*, so no data is copied to form them:

=============  =========================================  ==========================  ============
pass           a  (G, m, k)                               b  (G, k, n)                c
=============  =========================================  ==========================  ============
forward        patches of x: (N*OH*OW, C/g*KH*KW)         w as (C/g*KH*KW, OC/g)      y
input grad     patches of dy, per stride phase            w's phase taps              dx
weight grad    dy as (OC/g, N*OH*OW)                      patches of x                dw
=============  =========================================  ==========================  ============

A patch matrix is an im2col *gather view* built with index arrays: entry ``((n, oh, ow), (c, kh,
kw))`` of the forward patches is ``x[n, c, oh*s - p + kh*d, ow*s - p + kw*d]``.  Positions in the
padding read a zero: a constant with one zero element on every tile, the one on the tile that
the plan's operand layout assigns to the position (so padding costs no copy, no temporary and
almost no exchange).  The input gradient is the transposed convolution written the same way, split
by stride phase (see :func:`conv2d_input_grad`), so no zero-stuffed copy of ``dy`` is made.
Outputs are views (reshape and dim_shuffle, or a gather) of the product's ``(groups, rows,
channels)`` result.

Depthwise convolutions (``groups == C``) are one grouped product whose plan spreads the groups
over tiles, one ``MatMulPartial`` per group on its tile.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from ..dtypes import FLOAT, poplar_name
from ..errors import DTypeError, GraphError, TensorError
from ..graph import Graph, Sequence, Tensor, concat, map_tensor_linearly
from ..target import Target
from .common import linear_variable, op_name, record
from .matmul import build_matmul, check_pinned_start, map_operand, matmul_options, started
from .planning import MatMulPlan, element_type, plan_matmul

__all__ = ["ConvParams", "ConvPlan", "plan_conv", "conv2d", "conv2d_input_grad", "conv2d_weight_grad",
           "create_conv_weights"]

PHASES = ("fwd", "bwd", "wu")  # PopLibs' passes: TRAINING_FWD, TRAINING_BWD, TRAINING_WU


# ============================================================================ parameters and plans
@dataclass(frozen=True)
class ConvParams:
    """The shape of a 2-D convolution: input ``(batch, in_channels, height, width)``, weights
    ``(out_channels, in_channels / groups, kernel_h, kernel_w)``, stride, padding (both sides) and
    dilation per spatial dimension."""

    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    dilation_h: int = 1
    dilation_w: int = 1
    groups: int = 1

    @staticmethod
    def of(input_shape: tuple[int, ...], weight_shape: tuple[int, ...], stride: object = 1, padding: object = 0,
           dilation: object = 1, groups: int = 1) -> "ConvParams":
        """Params from NCHW and OIHW shapes, checked; ``stride`` etc. are an int or a pair."""
        input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
        if len(input_shape) != 4 or len(weight_shape) != 4:
            raise TensorError(f"conv2d: input must be (N, C, H, W) and weights (OC, C/groups, KH, KW); got "
                              f"shapes {input_shape} and {weight_shape}")
        (sh, sw), (ph, pw), (dh, dw) = (_pair(stride, "stride", 1), _pair(padding, "padding", 0),
                                        _pair(dilation, "dilation", 1))
        n, c, h, w = (int(s) for s in input_shape)
        oc, cg, kh, kw = (int(s) for s in weight_shape)
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise GraphError(f"conv2d: groups must be a positive int, got {groups!r}")
        if c % groups or oc % groups:
            raise TensorError(f"conv2d: groups={groups} must divide the input channels ({c}) and the output "
                              f"channels ({oc})")
        if cg != c // groups:
            raise TensorError(f"conv2d: weights {weight_shape} need C/groups = {c // groups} input channels "
                              f"(input {input_shape}, groups={groups}), got {cg}")
        if min(n, c, h, w, oc, kh, kw) < 1:
            raise TensorError(f"conv2d: empty shapes: input {input_shape}, weights {weight_shape}")
        params = ConvParams(n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, int(groups))
        if params.out_height < 1 or params.out_width < 1:
            raise TensorError(f"conv2d: the kernel {kh}x{kw} (dilation {dh}x{dw}) is larger than the padded "
                              f"input {h + 2 * ph}x{w + 2 * pw}")
        return params

    @property
    def out_height(self) -> int:
        return (self.height + 2 * self.pad_h - self.dilation_h * (self.kernel_h - 1) - 1) // self.stride_h + 1

    @property
    def out_width(self) -> int:
        return (self.width + 2 * self.pad_w - self.dilation_w * (self.kernel_w - 1) - 1) // self.stride_w + 1

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return self.batch, self.in_channels, self.height, self.width

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return self.out_channels, self.in_channels // self.groups, self.kernel_h, self.kernel_w

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return self.batch, self.out_channels, self.out_height, self.out_width

    def matmul_shape(self, phase: str) -> tuple[int, int, int, int]:
        """``(groups, m, k, n)`` of the grouped product of a pass ("fwd", "bwd", "wu")."""
        g = self.groups
        cg, og = self.in_channels // g, self.out_channels // g
        taps = self.kernel_h * self.kernel_w
        out_rows = self.batch * self.out_height * self.out_width
        if phase == "fwd":
            return g, out_rows, cg * taps, og
        if phase == "bwd":
            th, tw = phase_taps(self, "h").shape[1], phase_taps(self, "w").shape[1]
            return (g * len(active_phases(self)),
                    self.batch * -(-self.height // self.stride_h) * -(-self.width // self.stride_w), og * th * tw, cg)
        if phase == "wu":
            return g, og, out_rows, cg * taps
        raise GraphError(f"conv: unknown pass {phase!r}; expected one of {PHASES}")

    def macs(self) -> int:
        """Multiply-accumulates of the forward pass."""
        g, m, k, n = self.matmul_shape("fwd")
        return g * m * k * n

    def __str__(self) -> str:
        return (f"conv {self.input_shape} * {self.weight_shape} stride {self.stride_h}x{self.stride_w} "
                f"pad {self.pad_h}x{self.pad_w} dilation {self.dilation_h}x{self.dilation_w} groups {self.groups} "
                f"-> {self.output_shape}")


@dataclass(frozen=True)
class ConvPlan:
    """A convolution pass and the plan of its grouped product."""

    params: ConvParams
    phase: str
    matmul: MatMulPlan

    @property
    def estimated_cycles(self) -> int:
        return self.matmul.estimated_cycles

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["output_shape"] = list(self.params.output_shape)
        return data

    def __str__(self) -> str:
        return f"ConvPlan {self.phase}: {self.params}\n  {self.matmul}"


def plan_conv(target: Target, input_shape: tuple[int, ...], weight_shape: tuple[int, ...], stride: object = 1,
              padding: object = 0, dilation: object = 1, groups: int = 1, dtype: object = FLOAT,
              phase: str = "fwd", available_memory_proportion: float = 0.6, partials_dtype: object = None
              ) -> ConvPlan:
    """Plan one pass of a convolution (pure, cached): ``phase`` is "fwd", "bwd" (input gradient)
    or "wu" (weight gradient)."""
    params = ConvParams.of(input_shape, weight_shape, stride, padding, dilation, groups)
    if phase not in PHASES:
        raise GraphError(f"plan_conv: unknown pass {phase!r}; expected one of {PHASES}")
    return _plan_conv(target, params, phase, element_type(dtype, "conv input type"),
                      float(available_memory_proportion),
                      None if partials_dtype is None else element_type(partials_dtype, "conv partials type"))


@functools.lru_cache(maxsize=1024)
def _plan_conv(target: Target, params: ConvParams, phase: str, dtype: np.dtype, amp: float,
               partials_dtype: np.dtype | None) -> ConvPlan:
    g, m, k, n = params.matmul_shape(phase)
    plan = plan_matmul(target, m, k, n, dtype, dtype, amp, groups=g, partials_dtype=partials_dtype)
    return ConvPlan(params, phase, plan)


# ============================================================================ public ops
def conv2d(graph: Graph, x: Tensor, w: Tensor, prog: Sequence, stride: object = 1, padding: object = 0,
           dilation: object = 1, groups: int = 1, name: str = "", options: dict | None = None) -> Tensor:
    """``y = conv2d(x, w)`` (PyTorch's ``F.conv2d`` without bias): ``x`` ``(N, C, H, W)``, ``w``
    ``(OC, C/groups, KH, KW)``; returns ``(N, OC, OH, OW)``, a mapped view of the product's output.
    Options as for ``matmul`` (``available_memory_proportion``, ``partials_type``, ``start_tile``,
    ``plan``)."""
    who = f"conv2d {name!r}" if name else "conv2d"
    _check_tensors(who, x=x, w=w)
    params = ConvParams.of(x.shape, w.shape, stride, padding, dilation, groups)
    plan = _pass_plan(graph, params, "fwd", x.dtype, options, who)
    mm = plan.matmul
    G, M, K, OCg = params.matmul_shape("fwd")
    a = _gather(graph, x, forward_patch_index(params), mm.lhs_tiles)
    b = w.reshape(G, OCg, K).dim_shuffle([0, 2, 1])
    c = _build(graph, plan, a, b, prog, op_name(graph, "conv2d", name), "conv2d")
    N, OC, OH, OW = params.output_shape
    return c.reshape(G, N, OH, OW, OCg).dim_shuffle([1, 0, 4, 2, 3]).reshape(N, OC, OH, OW)


def conv2d_input_grad(graph: Graph, dy: Tensor, w: Tensor, input_shape: tuple[int, ...], prog: Sequence,
                      stride: object = 1, padding: object = 0, dilation: object = 1, groups: int = 1,
                      name: str = "", options: dict | None = None) -> Tensor:
    """``dx`` of ``y = conv2d(x, w)`` given ``dy``: the transposed convolution; ``(N, C, H, W)``.

    Split by stride phase (sub-pixel convolution): the rows ``h = rh + sh*u`` of one phase ``rh``
    see only the taps ``kh`` with ``(rh + p - kh*d) % s == 0``, so each phase is a stride-1
    correlation of ``dy`` with those taps.  The ``sh x sw`` phases become extra groups of one
    grouped product (taps padded with zeros to the phase with the most), so a stride-2 3x3 kernel
    multiplies by 4 taps a row instead of 9, and no zero-stuffed ``dy`` is built.
    """
    who = f"conv2d_input_grad {name!r}" if name else "conv2d_input_grad"
    _check_tensors(who, dy=dy, w=w)
    params = ConvParams.of(input_shape, w.shape, stride, padding, dilation, groups)
    _check_shape(who, "dy", dy, params.output_shape)
    plan = _pass_plan(graph, params, "bwd", dy.dtype, options, who)
    mm = plan.matmul
    a = _gather(graph, dy, input_grad_patch_index(params), mm.lhs_tiles)
    b = _gather(graph, w, input_grad_weight_index(params), mm.rhs_tiles)
    name = op_name(graph, "conv2d_input_grad", name)
    index, zero_count = input_grad_output_index(params)
    # phases that see no tap (a kernel smaller than the stride) have a zero gradient: zeroed in a
    # step of the product's own (``{name}/zero``, before it) instead of multiplied
    zeros = linear_variable(graph, dy.dtype, (zero_count,), f"{name}/zeros") if zero_count else None
    c = _build(graph, plan, a, b, prog, name, "conv2d_input_grad", zeros)
    source = c.flatten() if zeros is None else concat([c.flatten(), zeros], 0)
    return source[index]


def conv2d_weight_grad(graph: Graph, x: Tensor, dy: Tensor, weight_shape: tuple[int, ...], prog: Sequence,
                       stride: object = 1, padding: object = 0, dilation: object = 1, groups: int = 1,
                       name: str = "", options: dict | None = None) -> Tensor:
    """``dw`` of ``y = conv2d(x, w)`` given ``dy``: per group ``dy_matᵀ @ patches(x)``, both
    views; ``(OC, C/groups, KH, KW)``."""
    who = f"conv2d_weight_grad {name!r}" if name else "conv2d_weight_grad"
    _check_tensors(who, x=x, dy=dy)
    params = ConvParams.of(x.shape, weight_shape, stride, padding, dilation, groups)
    _check_shape(who, "dy", dy, params.output_shape)
    plan = _pass_plan(graph, params, "wu", x.dtype, options, who)
    mm = plan.matmul
    G, OCg, M, K = params.matmul_shape("wu")
    N, OH, OW = params.batch, params.out_height, params.out_width
    a = dy.reshape(N, G, OCg, OH * OW).dim_shuffle([1, 2, 0, 3]).reshape(G, OCg, M)
    b = _gather(graph, x, forward_patch_index(params), mm.rhs_tiles)
    c = _build(graph, plan, a, b, prog, op_name(graph, "conv2d_weight_grad", name), "conv2d_weight_grad")
    return c.reshape(params.weight_shape)


def create_conv_weights(graph: Graph, shape: tuple[int, ...], dtype: object = FLOAT, name: str = "",
                        input_shape: tuple[int, ...] | None = None, stride: object = 1, padding: object = 0,
                        dilation: object = 1, groups: int = 1, options: dict | None = None) -> Tensor:
    """New weights (PopLibs' ``createWeights``): a ``(OC, C/groups, KH, KW)`` view of a variable
    stored in the order the product reads them, ``(groups, C/groups*KH*KW, OC/groups)``.

    Stored that way, a row of a cell's weight block is contiguous in tile memory, so a tile
    sends runs of weights instead of one element every ``C*KH*KW``, and a vertex reads its block
    as whole rows.  With ``input_shape`` the weights are laid out where the forward plan reads
    them; without it (the plan depends on the input's size) they are spread linearly over the
    tiles in that order.
    """
    dt = element_type(dtype, "create_conv_weights type")
    if len(tuple(shape)) != 4:
        raise TensorError(f"create_conv_weights: shape must be (OC, C/groups, KH, KW), got {tuple(shape)}")
    oc, cg, kh, kw = (int(d) for d in shape)
    if groups < 1 or oc % groups:
        raise GraphError(f"create_conv_weights: {oc} output channels do not split into {groups} groups")
    label = name or "weights"
    store = graph.add_variable(dt, (groups, cg * kh * kw, oc // groups), label)
    if input_shape is None:
        map_tensor_linearly(graph, store)
    else:
        params = ConvParams.of(input_shape, shape, stride, padding, dilation, groups)
        plan = _pass_plan(graph, params, "fwd", dt, options, "create_conv_weights")
        map_operand(graph, store, plan.matmul, "rhs")
    return store.dim_shuffle([0, 2, 1]).reshape(oc, cg, kh, kw).named(label)


# ============================================================================ im2col index arrays
def forward_patch_index(params: ConvParams) -> np.ndarray:
    """``(G, N*OH*OW, C/g*KH*KW)`` flat positions in ``x`` of the forward patches; -1 in padding."""
    p = params
    G, Cg = p.groups, p.in_channels // p.groups
    g, n, oh, ow, c, kh, kw = _axes(G, p.batch, p.out_height, p.out_width, Cg, p.kernel_h, p.kernel_w)
    h = oh * p.stride_h - p.pad_h + kh * p.dilation_h
    w = ow * p.stride_w - p.pad_w + kw * p.dilation_w
    valid = (h >= 0) & (h < p.height) & (w >= 0) & (w < p.width)
    pos = ((n * p.in_channels + g * Cg + c) * p.height + h) * p.width + w
    index = np.where(valid, pos, -1)
    return index.reshape(G, p.batch * p.out_height * p.out_width, Cg * p.kernel_h * p.kernel_w)


def phase_taps(params: ConvParams, axis: str) -> np.ndarray:
    """``(stride, taps)`` table of the kernel taps each stride phase of the input gradient sees
    along ``axis`` ("h" or "w"): row ``r`` lists the ``k`` with ``(r + pad - k*dilation) % stride
    == 0``, padded with -1 to the longest row."""
    s, p, d, k = ((params.stride_h, params.pad_h, params.dilation_h, params.kernel_h) if axis == "h" else
                  (params.stride_w, params.pad_w, params.dilation_w, params.kernel_w))
    rows = [[kk for kk in range(k) if (r + p - kk * d) % s == 0] for r in range(s)]
    longest = max(len(row) for row in rows)
    return np.array([row + [-1] * (longest - len(row)) for row in rows], dtype=np.int64).reshape(s, longest)


def active_phases(params: ConvParams) -> np.ndarray:
    """``(A, 2)`` stride phases ``(rh, rw)`` of the input gradient that see at least one tap."""
    has_h = (phase_taps(params, "h") >= 0).any(axis=1)
    has_w = (phase_taps(params, "w") >= 0).any(axis=1)
    return np.argwhere(has_h[:, None] & has_w[None, :]).astype(np.int64).reshape(-1, 2)


def input_grad_patch_index(params: ConvParams) -> np.ndarray:
    """``(G*A, N*Hr*Wr, OC/g*Th*Tw)`` flat positions in ``dy`` of the input-gradient patches,
    one group per (group, active phase): entry ``((n, u, v), (o, t, t'))`` of phase ``(rh, rw)`` is
    ``dy[n, o, (h + p - kh*d) / s, ...]`` with ``h = rh + s*u``, ``kh`` the phase's tap ``t``;
    -1 (a zero) for padded taps, rows past the input and positions outside ``dy``."""
    p = params
    G, OCg = p.groups, p.out_channels // p.groups
    taps_h, taps_w = phase_taps(p, "h"), phase_taps(p, "w")
    hr, wr = -(-p.height // p.stride_h), -(-p.width // p.stride_w)
    phases = active_phases(p)
    g, a, n, u, v, o, th, tw = _axes(G, len(phases), p.batch, hr, wr, OCg, taps_h.shape[1], taps_w.shape[1])
    rh, rw = phases[a, 0], phases[a, 1]
    kh, kw = taps_h[rh, th], taps_w[rw, tw]
    h, w = rh + p.stride_h * u, rw + p.stride_w * v
    oh = (h + p.pad_h - kh * p.dilation_h) // p.stride_h
    ow = (w + p.pad_w - kw * p.dilation_w) // p.stride_w
    valid = ((kh >= 0) & (kw >= 0) & (h < p.height) & (w < p.width) & (oh >= 0) & (oh < p.out_height)
             & (ow >= 0) & (ow < p.out_width))
    pos = ((n * p.out_channels + g * OCg + o) * p.out_height + oh) * p.out_width + ow
    index = np.where(valid, pos, -1)
    return index.reshape(G * len(phases), p.batch * hr * wr, -1)


def input_grad_weight_index(params: ConvParams) -> np.ndarray:
    """``(G*A, OC/g*Th*Tw, C/g)`` flat positions in ``w`` of the phase weights: entry
    ``((o, t, t'), c)`` of phase ``(rh, rw)`` is ``w[g*OC/g + o, c, kh, kw]`` for the phase's
    taps; -1 (a zero) for padded taps."""
    p = params
    G, OCg, Cg = p.groups, p.out_channels // p.groups, p.in_channels // p.groups
    taps_h, taps_w = phase_taps(p, "h"), phase_taps(p, "w")
    phases = active_phases(p)
    g, a, o, th, tw, c = _axes(G, len(phases), OCg, taps_h.shape[1], taps_w.shape[1], Cg)
    kh, kw = taps_h[phases[a, 0], th], taps_w[phases[a, 1], tw]
    pos = (((g * OCg + o) * Cg + c) * p.kernel_h + kh) * p.kernel_w + kw
    index = np.where((kh >= 0) & (kw >= 0), pos, -1)
    return index.reshape(G * len(phases), -1, Cg)


def input_grad_output_index(params: ConvParams) -> tuple[np.ndarray, int]:
    """Where each element of ``dx`` ``(N, C, H, W)`` is: its flat position in the phase product's
    ``(G*A, N*Hr*Wr, C/g)`` output, or, for phases that see no tap, ``output size + its rank``
    among those zero elements.  Returns (positions, number of zero elements)."""
    p = params
    G, Cg = p.groups, p.in_channels // p.groups
    hr, wr = -(-p.height // p.stride_h), -(-p.width // p.stride_w)
    phases = active_phases(p)
    phase_of = np.full((p.stride_h, p.stride_w), -1, dtype=np.int64)
    phase_of[phases[:, 0], phases[:, 1]] = np.arange(len(phases))
    n, ch, h, w = _axes(p.batch, p.in_channels, p.height, p.width)
    phase = phase_of[h % p.stride_h, w % p.stride_w]
    row = (n * hr + h // p.stride_h) * wr + w // p.stride_w
    index = ((ch // Cg * len(phases) + phase) * (p.batch * hr * wr) + row) * Cg + ch % Cg
    index, inactive = np.broadcast_arrays(index, phase < 0)
    index = index.copy()
    count = int(inactive.sum())
    index[inactive] = G * len(phases) * p.batch * hr * wr * Cg + np.arange(count)
    return index, count


def _axes(*sizes: int) -> list[np.ndarray]:
    """Broadcastable int64 index arrays, one per axis of ``sizes`` (``np.ix_`` of aranges)."""
    return list(np.ix_(*(np.arange(s, dtype=np.int64) for s in sizes)))


# ============================================================================ helpers
def tile_zeros(graph: Graph, dtype: np.dtype) -> Tensor:
    """A constant ``(num_tiles,)`` of zeros, element ``t`` on tile ``t``; one per graph and type."""
    per_graph = graph.op_cache.setdefault("conv.tile_zeros", {})
    if dtype not in per_graph:
        T = graph.target.num_tiles
        zeros = graph.add_constant(dtype, (T,), 0, f"conv/zeros_{poplar_name(dtype)}")
        graph.set_tile_mapping(zeros, np.arange(T, dtype=np.int32))
        per_graph[dtype] = zeros
    return per_graph[dtype]


def _gather(graph: Graph, source: Tensor, index: np.ndarray, home_tiles) -> Tensor:
    """The view ``source.flatten()[index]`` with -1 entries reading a zero on the tile
    ``home_tiles(g, row, col)`` gives for that position."""
    pad = index < 0
    if not pad.any():
        return source.flatten()[index]
    zeros = tile_zeros(graph, source.dtype)
    g, r, c = np.nonzero(pad)
    index = index.copy()
    index[g, r, c] = source.numel + home_tiles(g, r, c)
    return concat([source.flatten(), zeros], 0)[index]


def _pass_plan(graph: Graph, params: ConvParams, phase: str, dtype: np.dtype, options: dict | None,
               who: str) -> ConvPlan:
    opts = matmul_options(options, who)
    pinned = opts.get("plan")
    if pinned is not None:
        if not isinstance(pinned, ConvPlan) or pinned.params != params or pinned.phase != phase:
            raise GraphError(f"{who}: option 'plan' must be the ConvPlan of this {phase} pass ({params})")
        check_pinned_start(pinned.matmul, opts, who)
        return pinned
    plan = plan_conv(graph.target, params.input_shape, params.weight_shape,
                     (params.stride_h, params.stride_w), (params.pad_h, params.pad_w),
                     (params.dilation_h, params.dilation_w), params.groups, dtype, phase,
                     opts["available_memory_proportion"], opts["partials_type"])
    return dataclasses.replace(plan, matmul=started(plan.matmul, opts, who))


def _build(graph: Graph, plan: ConvPlan, a: Tensor, b: Tensor, prog: Sequence, name: str, kind: str,
           extra_zeros: Tensor | None = None) -> Tensor:
    """Build the pass's product under the op name ``name`` (from ``op_name``) and record it."""
    c, compute_sets, temporaries = build_matmul(graph, plan.matmul, a, b, prog, name, extra_zeros)
    record(graph, name, kind, plan=plan.to_dict(), compute_sets=compute_sets, temporaries=temporaries,
           macs=plan.matmul.groups * plan.matmul.m * plan.matmul.k * plan.matmul.n)
    return c


def _check_tensors(who: str, **tensors: Tensor) -> None:
    first = None
    for what, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TensorError(f"{who}: {what} must be a pl.Tensor, got {type(t).__name__}")
        if t.rank != 4:
            raise TensorError(f"{who}: {what} ({t.name!r}) must be 4-D, got shape {t.shape}")
        if first is not None and t.dtype != first.dtype:
            raise DTypeError(f"{who}: {what} is {poplar_name(t.dtype)} but the other operand is "
                             f"{poplar_name(first.dtype)}")
        if first is None:
            first = t


def _check_shape(who: str, what: str, t: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(t.shape) != tuple(expected):
        raise TensorError(f"{who}: {what} ({t.name!r}) has shape {t.shape}, expected {expected}")


def _pair(value: object, what: str, minimum: int) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum
                             for v in pair):
        raise GraphError(f"conv2d: {what} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])
