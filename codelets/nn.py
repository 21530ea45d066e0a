"""Codelets of the layer library (popops reductions, popnn pooling, norms, losses, optimisers).

Families (index by element type, e.g. ``ReluGrad[FLOAT]``; two-type families ``[src, dst]``):

Elementwise and updates

* ``ReluGrad[dt]``  ``y, dy: Input(Vector(dt))`` -> ``out``: ``dy * (y > 0)``.
* ``ScaledAddTensor[dt, st]``  ``data: InOut(Vector(dt))``, ``delta: Input(Vector(dt))``,
  ``scale: Input(st)``: ``data += scale * delta`` with a run-time scale (a tensor element).
* ``SgdMomentum[dt]`` / ``SgdMomentumLr[dt]``  ``param, velocity: InOut``, ``grad: Input``:
  torch.optim.SGD with momentum and weight decay, the learning rate a state or a tensor element.

Masked reductions (the stages of ``ops.reduce``).  A vertex reduces several rows: ``out`` has one
element per row, ``inp`` (and ``other``/``col``) hold the rows one after the other, all of one
padded length, and ``count[r]`` (a vector, from a constant) says how many leading elements of row
``r`` are data; the padding (repeats of data elements, so the vertices of a batch share their
shapes) is ignored.  Per-row values (``shift``, ``label``) are vectors with one element per row.
Float results are multiplied by ``scale`` (1/n for a mean).

* ``MaskedSum[src, dst]`` (+ ``scale``), ``MaskedMax[src, dst]``, ``MaskedMin[src, dst]``;
* ``MaskedSumSqDev[src]``   ``sum((inp - shift)**2)``  (variance);
* ``MaskedSumExpDev[src]``  ``sum(exp(inp - shift))``  (softmax denominators);
* ``MaskedSumProdDev[src]`` ``sum(inp * (other - shift))`` (batch-norm gradient);
* ``MaskedPick[src, lt]``   ``sum(inp where col == label)`` (the logit of the label);
* ``MaskedFirstMatch[src, lt]``  ``min(col where inp == shift, else big)`` (first argmax);
* ``MaskedCountEqual[lt]``  ``count(inp == other)`` as UNSIGNED_INT.

Their ``cycles`` assume full rows; ops.reduce sets each vertex's exact estimate from its counts
with :func:`masked_cycles` (the same formula).

Row codelets (pooling): ``inp: Input(VectorList(dt))`` of ``count`` windows of ``length``
elements, one output per window: ``RowMax[dt]``, ``RowSum[dt]`` (times ``scale``), and
``MaxPoolWindowGrad[dt]`` (the window's gradient: ``dy`` at the first maximum, 0 elsewhere).

Batch norm and loss: ``BnCoefficients``, ``BnApply``, ``BnRunningStats``,
``BnRunningStatsFromInvStd``, ``BnGradCoefficients``, ``BnGradApply``, ``CrossEntropyGrad``,
``CrossEntropyRowLoss``.  Per-channel values are FLOAT vectors (broadcast views when a vertex
covers elements of several channels).

Half data is computed in float32 and rounded once; sums accumulate in float32 (integers wrap).
Cycle estimates use the formulas and constants of :mod:`codelets.costs` (loop overhead plus
cycles per data-path vector), one formula per family.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from poplar_like.codelet import InOut, Input, Output, State, Vector, VectorList, Vertex
from poplar_like.dtypes import FLOAT, HALF, INT, UNSIGNED_INT, poplar_name

from . import costs
from ._in_place import fields_in_place
from ._registry import CodeletFamily, check_same_length, make_codelet, suffix

_FLOATS = (FLOAT, HALF)
_LABELS = (INT, UNSIGNED_INT)
_NUMERIC = (FLOAT, HALF, INT, UNSIGNED_INT)
F32 = np.float32


def _f32(x: np.ndarray) -> np.ndarray:
    return x.astype(F32, copy=False)


def _name(stem: str, *dtypes: np.dtype) -> str:
    same = all(d == dtypes[0] for d in dtypes)
    return f"{stem}_{suffix(dtypes[0]) if same else suffix(*dtypes)}"


# ==================================================================== cycle formulas
# Cycles per data-path vector of the fused loops below, in the units of codelets.costs.
RELU_GRAD_CPV = 3  # compare, select, store
SGD_CPV = 6  # two loads, 3 multiply-adds, two stores
BN_APPLY_CPV = 2  # one multiply-add per vector, load/store paired
BN_GRAD_APPLY_CPV = 4
XENT_GRAD_CPV = costs.UNARY_CYCLES_PER_VECTOR["exp"][FLOAT] + 4  # exp, divide-by-multiply, select
PER_CHANNEL_CYCLES = 24  # per channel of the small coefficient codelets (sqrt, divide, 4 mul-adds)
MASKED_CPV = {"sum": 1, "max": 1, "min": 1, "sumsqdev": 2, "sumprod": 2, "pick": 3, "first": 3,
              "count": 3, "sumexp": costs.UNARY_CYCLES_PER_VECTOR["exp"][FLOAT] + 1}
ROW_PER_WINDOW = costs.REDUCE_ADD_PER_PARTIAL  # pointer load of the next window


MASKED_ROW_OVERHEAD = 4  # per row: load its count and pointer, store its result


def masked_cycles(kind: str, counts: np.ndarray, dtype: object) -> np.ndarray:
    """Masked reductions of rows of ``counts`` (n, rows) elements (the padding is not visited):
    the exact estimate of each of n vertices, which ops.reduce gives to the graph."""
    counts = np.asarray(counts, dtype=np.int64)
    per_row = costs.loop_cycles(counts, dtype, MASKED_CPV[kind], MASKED_ROW_OVERHEAD)
    return np.int64(costs.REDUCE_OVERHEAD) + per_row.sum(axis=-1)


def masked_cycles_bound(kind: str, inp_length: object, out_length: object, dtype: object) -> np.ndarray:
    """The same when only the field sizes are known: every row full (an upper bound)."""
    rows = np.asarray(out_length, dtype=np.int64)
    vectors = costs.loop_cycles(inp_length, dtype, MASKED_CPV[kind], 0)
    return np.int64(costs.REDUCE_OVERHEAD) + rows * MASKED_ROW_OVERHEAD + vectors


def row_cycles(count: object, length: object, cycles_per_element: int = 1) -> np.ndarray:
    """``count`` windows of ``length`` strided elements: a scalar loop per window."""
    count = np.asarray(count, dtype=np.int64)
    length = np.asarray(length, dtype=np.int64)
    return np.int64(costs.REDUCE_OVERHEAD) + count * (length * cycles_per_element + ROW_PER_WINDOW)


def per_channel_cycles(length: object) -> np.ndarray:
    return np.int64(costs.ELEMENTWISE_OVERHEAD) + np.asarray(length, dtype=np.int64) * PER_CHANNEL_CYCLES


# ==================================================================== elementwise and updates
def _build_relu_grad(dt: np.dtype) -> type[Vertex]:
    name = _name("ReluGrad", dt)

    def compute(y, dy, out):
        check_same_length(name, y=y, dy=dy, out=out)
        out[:] = np.where(y > 0, dy, dt.type(0))

    def cycles(y_length):
        return costs.loop_cycles(y_length, dt, RELU_GRAD_CPV, costs.ELEMENTWISE_OVERHEAD)

    fields = {"y": Input(Vector(dt)), "dy": Input(Vector(dt)), "out": Output(Vector(dt))}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 160,
                        f"``out = dy * (y > 0)`` on {poplar_name(dt)} vectors (relu backward).")


def _build_scaled_add_tensor(dt: np.dtype, st: np.dtype) -> type[Vertex]:
    name = _name("ScaledAddTensor", dt, st)

    def compute(data, delta, scale):
        check_same_length(name, data=data, delta=delta)
        with np.errstate(over="ignore", invalid="ignore"):
            data[:] = _f32(data) + _f32(scale)[:, None] * _f32(delta)

    def cycles(data_length):
        return costs.scaled_add_cycles(data_length, dt)

    fields = {"data": InOut(Vector(dt)), "delta": Input(Vector(dt)), "scale": Input(st)}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 200,
                        f"``data += scale * delta`` on {poplar_name(dt)} vectors, ``scale`` a "
                        f"{poplar_name(st)} tensor element (a run-time value).")


def _sgd(param, grad, velocity, lr, momentum, weight_decay):
    """torch.optim.SGD (dampening 0, no Nesterov): d = g + wd*p; v = m*v + d; p -= lr*v."""
    with np.errstate(over="ignore", invalid="ignore"):
        p = _f32(param)
        d = _f32(grad) + _f32(weight_decay)[:, None] * p
        v = _f32(momentum)[:, None] * _f32(velocity) + d
        velocity[:] = v
        param[:] = p - _f32(lr)[:, None] * v


def _build_sgd(dt: np.dtype, lr_tensor: bool) -> type[Vertex]:
    name = _name("SgdMomentumLr" if lr_tensor else "SgdMomentum", dt)

    def compute(param, grad, velocity, lr, momentum, weight_decay):
        check_same_length(name, param=param, grad=grad, velocity=velocity)
        _sgd(param, grad, velocity, lr, momentum, weight_decay)

    def cycles(param_length):
        return costs.loop_cycles(param_length, dt, SGD_CPV, costs.ELEMENTWISE_OVERHEAD)

    fields = {"param": InOut(Vector(dt)), "grad": Input(Vector(dt)), "velocity": InOut(Vector(dt)),
              "lr": Input(FLOAT) if lr_tensor else State(FLOAT),
              "momentum": State(FLOAT), "weight_decay": State(FLOAT)}
    where = "a FLOAT tensor element" if lr_tensor else "vertex state"
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 256,
                        f"One SGD-with-momentum step on {poplar_name(dt)} vectors (torch.optim.SGD "
                        f"semantics), the learning rate {where}.")


# ==================================================================== masked reductions
def _rows(name: str, inp: np.ndarray, count: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``inp`` as (n, rows, B) and the mask of each row's first ``count`` elements."""
    n, total = inp.shape
    rows = out.shape[1]
    if count.shape[1] != rows or (rows and total % rows) or (not rows and total):
        raise ValueError(f"{name}: {total} elements do not make {rows} equal rows with {count.shape[1]} counts")
    length = total // rows if rows else 0
    if np.any(count > length):
        i, r = (int(v) for v in np.argwhere(count > length)[0])
        raise ValueError(f"{name}: instance {i} row {r} has count {int(count[i, r])} but rows of {length} elements")
    mask = np.arange(length)[None, None, :] < count.astype(np.int64)[:, :, None]
    return inp.reshape(n, rows, length), mask


def _as_rows(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    return x.reshape(like.shape)


def _acc(x: np.ndarray) -> np.ndarray:
    """The accumulation type: float32 for floats, the type itself for integers."""
    return _f32(x) if x.dtype.kind == "f" else x


def _identity(kind: str, dt: np.dtype) -> object:
    if kind == "max":
        return -np.inf if dt.kind == "f" else np.iinfo(dt).min
    return np.inf if dt.kind == "f" else np.iinfo(dt).max


def _store(out: np.ndarray, value: np.ndarray, scale: np.ndarray | None) -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        if scale is not None:
            value = value * _f32(scale)[:, None]
        out[:] = value


def _masked_sum(terms: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.sum(np.where(mask, terms, terms.dtype.type(0)), axis=2)


def _masked_fields(src: np.dtype, dst: np.dtype, scaled: bool, **extra: object) -> dict:
    fields = {"inp": Input(Vector(src))}
    fields.update(extra)
    fields.update(count=Input(Vector(UNSIGNED_INT)), out=Output(Vector(dst)))
    if scaled:
        fields["scale"] = State(FLOAT)
    return fields


def _masked_codelet(kind: str, name: str, fields: dict, compute: Callable, src: np.dtype, doc: str) -> type[Vertex]:
    def cycles(inp_length, out_length):
        return masked_cycles_bound(kind, inp_length, out_length, src)

    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 256 if kind in ("sumexp", "pick") else 192,
                        doc + " Rows are the ``out_length`` equal parts of the vectors; row ``r`` "
                        "uses its first ``count[r]`` elements (the rest is padding).")


def _build_masked_plain(kind: str, src: np.dtype, dst: np.dtype) -> type[Vertex]:
    """MaskedSum / MaskedMax / MaskedMin from ``src`` to ``dst``."""
    stem = {"sum": "MaskedSum", "max": "MaskedMax", "min": "MaskedMin"}[kind]
    name = _name(stem, src, dst)
    scaled = kind == "sum" and dst.kind == "f"

    def reduce(inp, count, out):
        x, mask = _rows(name, inp, count, out)
        x = _acc(x)
        if kind == "sum":
            return _masked_sum(x, mask)
        fill = x.dtype.type(_identity(kind, x.dtype))
        func = np.max if kind == "max" else np.min
        return func(np.where(mask, x, fill), axis=2, initial=fill)

    if scaled:
        def compute(inp, count, out, scale):
            _store(out, reduce(inp, count, out), scale)
    else:
        def compute(inp, count, out):
            _store(out, reduce(inp, count, out), None)

    what = f"{kind} of each row" + (" times ``scale``" if scaled else "")
    return _masked_codelet(kind, name, _masked_fields(src, dst, scaled), compute, src,
                           f"``out[r]`` = {what} of a {poplar_name(src)} vector, as {poplar_name(dst)}.")


def _build_masked_dev(kind: str, src: np.dtype) -> type[Vertex]:
    """Float sums of a function of each row and its ``shift``."""
    stem = {"sumsqdev": "MaskedSumSqDev", "sumexp": "MaskedSumExpDev"}[kind]
    name = _name(stem, src)

    def compute(inp, shift, count, out, scale):
        x, mask = _rows(name, inp, count, out)
        with np.errstate(over="ignore", invalid="ignore"):
            d = _f32(x) - shift[:, :, None]
            _store(out, _masked_sum(d * d if kind == "sumsqdev" else np.exp(d), mask), scale)

    formula = "sum((inp - shift[r])**2)" if kind == "sumsqdev" else "sum(exp(inp - shift[r]))"
    fields = _masked_fields(src, FLOAT, True, shift=Input(Vector(FLOAT)))
    return _masked_codelet(kind, name, fields, compute, src,
                           f"``out[r] = scale * {formula}`` over each row of {poplar_name(src)} vectors, in float.")


def _build_masked_sum_prod(src: np.dtype) -> type[Vertex]:
    name = _name("MaskedSumProdDev", src)

    def compute(inp, other, shift, count, out, scale):
        check_same_length(name, inp=inp, other=other)
        x, mask = _rows(name, inp, count, out)
        with np.errstate(over="ignore", invalid="ignore"):
            terms = _f32(x) * (_f32(_as_rows(other, x)) - shift[:, :, None])
        _store(out, _masked_sum(terms, mask), scale)

    fields = _masked_fields(src, FLOAT, True, other=Input(Vector(src)), shift=Input(Vector(FLOAT)))
    return _masked_codelet("sumprod", name, fields, compute, src,
                           f"``out[r] = scale * sum(inp * (other - shift[r]))`` over each row of "
                           f"{poplar_name(src)} vectors, in float.")


def _build_masked_pick(src: np.dtype, lt: np.dtype) -> type[Vertex]:
    name = _name("MaskedPick", src, lt)

    def compute(inp, col, label, count, out, scale):
        check_same_length(name, inp=inp, col=col)
        x, mask = _rows(name, inp, count, out)
        mask = mask & (_as_rows(col, x) == label[:, :, None])
        _store(out, _masked_sum(_f32(x), mask), scale)

    fields = _masked_fields(src, FLOAT, True, col=Input(Vector(lt)), label=Input(Vector(lt)))
    return _masked_codelet("pick", name, fields, compute, src,
                           f"``out[r] = scale * sum(inp[j] where col[j] == label[r])`` over each row of "
                           f"{poplar_name(src)} vectors (the logit at a run-time label).")


def _build_masked_first_match(src: np.dtype, lt: np.dtype) -> type[Vertex]:
    name = _name("MaskedFirstMatch", src, lt)

    def compute(inp, col, shift, count, out):
        check_same_length(name, inp=inp, col=col)
        x, mask = _rows(name, inp, count, out)
        mask = mask & (_f32(x) == shift[:, :, None])
        big = lt.type(np.iinfo(lt).max)
        out[:] = np.min(np.where(mask, _as_rows(col, x), big), axis=2, initial=big)

    fields = _masked_fields(src, lt, False, col=Input(Vector(lt)), shift=Input(Vector(FLOAT)))
    return _masked_codelet("first", name, fields, compute, src,
                           f"``out[r] = min(col[j] where inp[j] == shift[r])`` (the largest {poplar_name(lt)} "
                           f"if none) over each row of {poplar_name(src)} vectors.")


def _build_masked_count_equal(lt: np.dtype) -> type[Vertex]:
    name = _name("MaskedCountEqual", lt)

    def compute(inp, other, count, out):
        check_same_length(name, inp=inp, other=other)
        x, mask = _rows(name, inp, count, out)
        out[:] = np.count_nonzero(mask & (x == _as_rows(other, x)), axis=2).astype(UNSIGNED_INT)

    fields = _masked_fields(lt, UNSIGNED_INT, False, other=Input(Vector(lt)))
    return _masked_codelet("count", name, fields, compute, lt,
                           f"``out[r] = count(inp[j] == other[j])`` over each row of {poplar_name(lt)} "
                           "vectors, as UNSIGNED_INT.")


# ==================================================================== rows (pooling windows)
def _build_row_max(dt: np.dtype) -> type[Vertex]:
    name = _name("RowMax", dt)

    def compute(inp, out):
        if inp.shape[1] != out.shape[1]:
            raise ValueError(f"{name}: {inp.shape[1]} windows but {out.shape[1]} outputs")
        if inp.shape[2] == 0:
            raise ValueError(f"{name}: a window has no elements")
        out[:] = np.max(inp, axis=2)

    def cycles(inp_count, inp_length):
        return row_cycles(inp_count, inp_length)

    fields = {"inp": Input(VectorList(dt)), "out": Output(Vector(dt))}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 192,
                        f"``out[i] = max(inp[i])`` for each window of a list of {poplar_name(dt)} "
                        "windows (max pooling).")


def _row_sum(inp: np.ndarray) -> np.ndarray:
    """Sum over the last axis in float32, in window order (a fixed order on every backend)."""
    acc = np.zeros(inp.shape[:2], dtype=F32)
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(inp.shape[2]):  # over the window (a handful), never over instances
            acc += inp[:, :, j]
    return acc


def _build_row_sum(dt: np.dtype) -> type[Vertex]:
    name = _name("RowSum", dt)

    def compute(inp, out, scale):
        if inp.shape[1] != out.shape[1]:
            raise ValueError(f"{name}: {inp.shape[1]} windows but {out.shape[1]} outputs")
        _store(out, _row_sum(inp), scale)

    def cycles(inp_count, inp_length):
        return row_cycles(inp_count, inp_length)

    fields = {"inp": Input(VectorList(dt)), "out": Output(Vector(dt)), "scale": State(FLOAT)}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 192,
                        f"``out[i] = scale * sum(inp[i])`` for each window of a list of "
                        f"{poplar_name(dt)} windows (average pooling, gradient gathers).")


def _build_max_pool_window_grad(dt: np.dtype) -> type[Vertex]:
    name = _name("MaxPoolWindowGrad", dt)

    def compute(inp, y, dy, out):
        n, g, c = inp.shape
        if y.shape[1] != g or dy.shape[1] != g or out.shape[1] != g * c:
            raise ValueError(f"{name}: {g} windows of {c}, but y has {y.shape[1]}, dy {dy.shape[1]} "
                             f"and out {out.shape[1]} elements (expected {g}, {g} and {g * c})")
        yy = y[:, :, None]
        match = (inp == yy) | (np.isnan(inp) & np.isnan(yy))
        first = np.argmax(match, axis=2)  # the first maximum, as torch picks it
        grad = np.zeros((n, g, c), dtype=dt)
        np.put_along_axis(grad, first[:, :, None], dy[:, :, None], axis=2)
        out[:] = grad.reshape(n, g * c)

    def cycles(inp_count, inp_length):
        return row_cycles(inp_count, inp_length, 2)

    fields = {"inp": Input(VectorList(dt)), "y": Input(Vector(dt)), "dy": Input(Vector(dt)),
              "out": Output(Vector(dt))}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 256,
                        f"Max-pool window gradients on {poplar_name(dt)}: ``out`` holds each window "
                        "in turn, ``dy[i]`` at the first element equal to ``y[i]``, 0 elsewhere.")


# ==================================================================== batch norm
def _build_bn_coefficients(gt: np.dtype, st: np.dtype) -> type[Vertex]:
    name = _name("BnCoefficients", gt, st)

    def compute(mean, var, gamma, beta, invstd, scale, shift, eps):
        check_same_length(name, mean=mean, var=var, gamma=gamma, beta=beta, invstd=invstd)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = F32(1) / np.sqrt(_f32(var) + _f32(eps)[:, None])
        a = _f32(gamma) * inv
        invstd[:] = inv
        scale[:] = a
        shift[:] = _f32(beta) - _f32(mean) * a

    def cycles(mean_length):
        return per_channel_cycles(mean_length)

    fields = {"mean": Input(Vector(st)), "var": Input(Vector(st)), "gamma": Input(Vector(gt)),
              "beta": Input(Vector(gt)), "invstd": Output(Vector(FLOAT)), "scale": Output(Vector(FLOAT)),
              "shift": Output(Vector(FLOAT)), "eps": State(FLOAT)}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 256,
                        "Per channel: ``invstd = 1/sqrt(var + eps)``, ``scale = gamma * invstd``, "
                        f"``shift = beta - mean * scale`` ({poplar_name(gt)} gamma and beta, "
                        f"{poplar_name(st)} mean and var).")


def _build_bn_apply(dt: np.dtype) -> type[Vertex]:
    name = _name("BnApply", dt)

    def compute(x, scale, shift, out):
        check_same_length(name, x=x, scale=scale, shift=shift, out=out)
        with np.errstate(over="ignore", invalid="ignore"):
            out[:] = _f32(x) * scale + shift

    def cycles(x_length):
        return costs.loop_cycles(x_length, dt, BN_APPLY_CPV, costs.ELEMENTWISE_OVERHEAD)

    check = functools.partial(check_same_length, name)
    fields = {"x": Input(Vector(dt)), "scale": Input(Vector(FLOAT)), "shift": Input(Vector(FLOAT)),
              "out": Output(Vector(dt))}
    in_place = fields_in_place("bn_apply", ("x", "scale", "shift"), "out", check) if dt == FLOAT else None
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 160,
                        f"``out = x * scale + shift`` on {poplar_name(dt)} vectors (batch norm).", in_place)


def _build_bn_running(rt: np.dtype, from_invstd: bool) -> type[Vertex]:
    name = _name("BnRunningStatsFromInvStd" if from_invstd else "BnRunningStats", rt)

    def update(running_mean, running_var, mean, var, momentum, unbias):
        m = _f32(momentum)[:, None]
        running_mean[:] = m * mean + (F32(1) - m) * _f32(running_mean)
        running_var[:] = m * (var * _f32(unbias)[:, None]) + (F32(1) - m) * _f32(running_var)

    if from_invstd:
        def compute(running_mean, running_var, mean, invstd, momentum, unbias, eps):
            check_same_length(name, running_mean=running_mean, running_var=running_var, mean=mean,
                              invstd=invstd)
            with np.errstate(divide="ignore", invalid="ignore"):
                var = F32(1) / (invstd * invstd) - _f32(eps)[:, None]
            update(running_mean, running_var, mean, var, momentum, unbias)
    else:
        def compute(running_mean, running_var, mean, var, momentum, unbias):
            check_same_length(name, running_mean=running_mean, running_var=running_var, mean=mean, var=var)
            update(running_mean, running_var, mean, var, momentum, unbias)

    def cycles(mean_length):
        return per_channel_cycles(mean_length)

    fields = {"running_mean": InOut(Vector(rt)), "running_var": InOut(Vector(rt)),
              "mean": Input(Vector(FLOAT))}
    if from_invstd:
        fields.update(invstd=Input(Vector(FLOAT)), momentum=State(FLOAT), unbias=State(FLOAT), eps=State(FLOAT))
    else:
        fields.update(var=Input(Vector(FLOAT)), momentum=State(FLOAT), unbias=State(FLOAT))
    stat = "var = 1/invstd**2 - eps" if from_invstd else "var (biased)"
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 224,
                        f"torch's running statistics update on {poplar_name(rt)} vectors from "
                        f"the batch mean and {stat}: ``r = momentum * stat + (1 - momentum) * r``, "
                        "the variance made unbiased by ``unbias = n / (n - 1)``.")


def _build_bn_grad_coefficients(gt: np.dtype) -> type[Vertex]:
    name = _name("BnGradCoefficients", gt)

    def compute(sum_dy, dotp, invstd, gamma, k, grad_mean, gscale, dgamma, dbeta, n):
        check_same_length(name, sum_dy=sum_dy, dotp=dotp, invstd=invstd, gamma=gamma, k=k)
        nn = _f32(n)[:, None]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            k[:] = dotp * invstd * invstd / nn
            grad_mean[:] = sum_dy / nn
            gscale[:] = invstd * _f32(gamma)
            dgamma[:] = dotp * invstd
            dbeta[:] = sum_dy

    def cycles(sum_dy_length):
        return per_channel_cycles(sum_dy_length)

    fields = {"sum_dy": Input(Vector(FLOAT)), "dotp": Input(Vector(FLOAT)), "invstd": Input(Vector(FLOAT)),
              "gamma": Input(Vector(gt)), "k": Output(Vector(FLOAT)), "grad_mean": Output(Vector(FLOAT)),
              "gscale": Output(Vector(FLOAT)), "dgamma": Output(Vector(gt)), "dbeta": Output(Vector(gt)),
              "n": State(FLOAT)}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 256,
                        "Per channel of the batch-norm gradient (torch's CPU formulas): "
                        "``k = dotp * invstd**2 / n``, ``grad_mean = sum_dy / n``, "
                        "``gscale = invstd * gamma``, ``dgamma = dotp * invstd``, ``dbeta = sum_dy``.")


def _build_bn_grad_apply(dt: np.dtype) -> type[Vertex]:
    name = _name("BnGradApply", dt)

    def compute(x, dy, mean, k, grad_mean, gscale, out):
        check_same_length(name, x=x, dy=dy, mean=mean, k=k, grad_mean=grad_mean, gscale=gscale, out=out)
        with np.errstate(over="ignore", invalid="ignore"):
            out[:] = (_f32(dy) - grad_mean - (_f32(x) - mean) * k) * gscale

    def cycles(x_length):
        return costs.loop_cycles(x_length, dt, BN_GRAD_APPLY_CPV, costs.ELEMENTWISE_OVERHEAD)

    fields = {"x": Input(Vector(dt)), "dy": Input(Vector(dt)), "mean": Input(Vector(FLOAT)),
              "k": Input(Vector(FLOAT)), "grad_mean": Input(Vector(FLOAT)), "gscale": Input(Vector(FLOAT)),
              "out": Output(Vector(dt))}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 192,
                        f"``out = (dy - grad_mean - (x - mean) * k) * gscale`` on {poplar_name(dt)} "
                        "vectors (batch-norm input gradient).")


# ==================================================================== softmax cross entropy
def _build_xent_grad(dt: np.dtype, lt: np.dtype) -> type[Vertex]:
    name = _name("CrossEntropyGrad", dt, lt)

    def compute(x, row_max, row_sum, label, col, out, scale):
        check_same_length(name, x=x, row_max=row_max, row_sum=row_sum, label=label, col=col, out=out)
        with np.errstate(over="ignore", invalid="ignore"):
            p = np.exp(_f32(x) - row_max) / row_sum
            out[:] = (p - (col == label).astype(F32)) * _f32(scale)[:, None]

    def cycles(x_length):
        return costs.loop_cycles(x_length, dt, XENT_GRAD_CPV, costs.ELEMENTWISE_OVERHEAD)

    fields = {"x": Input(Vector(dt)), "row_max": Input(Vector(FLOAT)), "row_sum": Input(Vector(FLOAT)),
              "label": Input(Vector(lt)), "col": Input(Vector(lt)), "out": Output(Vector(dt)),
              "scale": State(FLOAT)}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 320,
                        f"``out = scale * (exp(x - row_max) / row_sum - (col == label))`` on "
                        f"{poplar_name(dt)} logits (softmax cross-entropy gradient).")


def _build_xent_row_loss(lt: np.dtype) -> type[Vertex]:
    name = _name("CrossEntropyRowLoss", lt)

    def compute(row_max, row_sum, picked, label, out, num_classes):
        check_same_length(name, row_max=row_max, row_sum=row_sum, picked=picked, label=label, out=out)
        bad = (label.astype(np.int64) < 0) | (label.astype(np.int64) >= num_classes[:, None].astype(np.int64))
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"{name}: label {int(label[i, j])} is out of range for "
                             f"{int(num_classes[i])} classes (instance {i}, row {j} of its rows)")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out[:] = np.log(row_sum) + row_max - picked

    def cycles(row_max_length):
        return costs.loop_cycles(row_max_length, FLOAT, costs.UNARY_CYCLES_PER_VECTOR["log"][FLOAT] + 3,
                                 costs.ELEMENTWISE_OVERHEAD)

    fields = {"row_max": Input(Vector(FLOAT)), "row_sum": Input(Vector(FLOAT)),
              "picked": Input(Vector(FLOAT)), "label": Input(Vector(lt)), "out": Output(Vector(FLOAT)),
              "num_classes": State(UNSIGNED_INT)}
    return make_codelet(__name__, name, Vertex, fields, compute, cycles, 256,
                        "Per row: ``loss = log(row_sum) + row_max - picked`` (cross entropy of the "
                        f"label's logit); a {poplar_name(lt)} label outside 0..num_classes-1 is an error.")


# ==================================================================== families
def _family(name: str, build: Callable[..., type[Vertex]], keys: list[tuple[np.dtype, ...]],
            default_second: bool = False) -> CodeletFamily:
    return CodeletFamily(name, build, keys, default_second=default_second)


_PAIRS = [(FLOAT, FLOAT), (HALF, FLOAT), (FLOAT, HALF), (HALF, HALF), (INT, INT),
          (UNSIGNED_INT, UNSIGNED_INT)]
_FLOAT_LABEL = [(dt, lt) for dt in _FLOATS for lt in _LABELS]

ReluGrad = _family("ReluGrad", _build_relu_grad, [(dt,) for dt in _FLOATS])
ScaledAddTensor = _family("ScaledAddTensor", _build_scaled_add_tensor,
                          [(FLOAT, FLOAT), (HALF, FLOAT), (HALF, HALF)])
SgdMomentum = _family("SgdMomentum", lambda dt: _build_sgd(dt, False), [(dt,) for dt in _FLOATS])
SgdMomentumLr = _family("SgdMomentumLr", lambda dt: _build_sgd(dt, True), [(dt,) for dt in _FLOATS])

MaskedSum = _family("MaskedSum", lambda s, d: _build_masked_plain("sum", s, d), _PAIRS, True)
MaskedMax = _family("MaskedMax", lambda s, d: _build_masked_plain("max", s, d), _PAIRS, True)
MaskedMin = _family("MaskedMin", lambda s, d: _build_masked_plain("min", s, d), _PAIRS, True)
MaskedSumSqDev = _family("MaskedSumSqDev", lambda s: _build_masked_dev("sumsqdev", s), [(dt,) for dt in _FLOATS])
MaskedSumExpDev = _family("MaskedSumExpDev", lambda s: _build_masked_dev("sumexp", s), [(dt,) for dt in _FLOATS])
MaskedSumProdDev = _family("MaskedSumProdDev", _build_masked_sum_prod, [(dt,) for dt in _FLOATS])
MaskedPick = _family("MaskedPick", _build_masked_pick, _FLOAT_LABEL)
MaskedFirstMatch = _family("MaskedFirstMatch", _build_masked_first_match, _FLOAT_LABEL)
MaskedCountEqual = _family("MaskedCountEqual", _build_masked_count_equal, [(lt,) for lt in _LABELS])

RowMax = _family("RowMax", _build_row_max, [(dt,) for dt in _FLOATS])
RowSum = _family("RowSum", _build_row_sum, [(dt,) for dt in _FLOATS])
MaxPoolWindowGrad = _family("MaxPoolWindowGrad", _build_max_pool_window_grad, [(dt,) for dt in _FLOATS])

BnCoefficients = _family("BnCoefficients", _build_bn_coefficients,
                         [(gt, st) for gt in _FLOATS for st in _FLOATS], True)
BnApply = _family("BnApply", _build_bn_apply, [(dt,) for dt in _FLOATS])
BnRunningStats = _family("BnRunningStats", lambda dt: _build_bn_running(dt, False), [(dt,) for dt in _FLOATS])
BnRunningStatsFromInvStd = _family("BnRunningStatsFromInvStd", lambda dt: _build_bn_running(dt, True),
                                   [(dt,) for dt in _FLOATS])
BnGradCoefficients = _family("BnGradCoefficients", _build_bn_grad_coefficients, [(dt,) for dt in _FLOATS])
BnGradApply = _family("BnGradApply", _build_bn_grad_apply, [(dt,) for dt in _FLOATS])

CrossEntropyGrad = _family("CrossEntropyGrad", _build_xent_grad, _FLOAT_LABEL)
CrossEntropyRowLoss = _family("CrossEntropyRowLoss", _build_xent_row_loss, [(lt,) for lt in _LABELS])

FAMILIES: dict[str, CodeletFamily] = {f.name: f for f in (
    ReluGrad, ScaledAddTensor, SgdMomentum, SgdMomentumLr, MaskedSum, MaskedMax, MaskedMin,
    MaskedSumSqDev, MaskedSumExpDev, MaskedSumProdDev, MaskedPick, MaskedFirstMatch, MaskedCountEqual,
    RowMax, RowSum, MaxPoolWindowGrad, BnCoefficients, BnApply, BnRunningStats, BnRunningStatsFromInvStd,
    BnGradCoefficients, BnGradApply, CrossEntropyGrad, CrossEntropyRowLoss)}
