"""Softmax cross-entropy (popnn's calcLoss), row argmax and the count of correct predictions.

``softmax_cross_entropy`` follows torch's ``F.cross_entropy`` (mean over the batch) and is
numerically stable: row maxima first (a reduction over the class axis), then in one reduction
``sum(exp(x - max))`` and the logit of the label, then in one compute set the gradient
``(softmax - onehot) / N`` (mapped like the logits) and the per-row losses
``log(sum) + max - logit[label]``, then their mean.  A run-time label is compared with a
constant ``0..K-1`` (read through a broadcast view): the onehot never exists in memory.  A label
outside ``0..K-1`` stops the program with an error naming it.
"""

from __future__ import annotations

import numpy as np

from codelets import nn

from ..dtypes import FLOAT, HALF, INT, UNSIGNED_INT, poplar_name
from ..errors import DTypeError, TensorError
from ..graph import Execute, Graph, Sequence, Tensor, map_tensor_linearly
from .common import linear_variable, op_name, record, variable_like
from .elementwise import broadcast_to, elementwise_vertices, release_together
from .reduce import ReduceSpec, build_reduction, plain_spec


def _check(graph: Graph, logits: Tensor, labels: Tensor, who: str) -> tuple[int, int]:
    for t, what in ((logits, "logits"), (labels, "labels")):
        if not isinstance(t, Tensor) or t.graph is not graph:
            raise TensorError(f"{who}: {what} must be a tensor of this graph, got {t!r}")
    if logits.rank != 2 or logits.numel == 0:
        raise TensorError(f"{who}: logits must be a non-empty (N, K) tensor, got shape {logits.shape}")
    if logits.dtype not in (FLOAT, HALF):
        raise DTypeError(f"{who}: logits must be FLOAT or HALF, got {poplar_name(logits.dtype)}")
    if labels.shape != (logits.shape[0],):
        raise TensorError(f"{who}: labels must have shape ({logits.shape[0]},), got {labels.shape}")
    if labels.dtype not in (INT, UNSIGNED_INT):
        raise DTypeError(f"{who}: labels must be INT or UNSIGNED_INT, got {poplar_name(labels.dtype)}")
    return logits.shape


def _classes(graph: Graph, opname: str, logits: Tensor, dtype: np.dtype) -> Tensor:
    """Constant ``0..K-1`` of ``dtype`` (the labels' type), broadcast over the rows of the logits."""
    k = logits.shape[1]
    iota = graph.add_constant(dtype, (k,), np.arange(k), f"{opname}/classes")
    map_tensor_linearly(graph, iota)
    return broadcast_to(iota, logits.shape, opname)


def _row_max(graph: Graph, prog: Sequence, opname: str, logits: Tensor) -> tuple[Tensor, list, list, dict]:
    """Row maxima, each on the tile holding the row's first logit (so rows spread over tiles)."""
    row_max = graph.add_variable(FLOAT, (logits.shape[0],), f"{opname}/row_max")
    graph.set_tile_mapping(row_max, graph.tile_of_elements(logits[:, 0]).astype(np.int32))
    computes, temps, plan = build_reduction(graph, prog, opname, "max", logits, (1,),
                                            [plain_spec(logits, "max", row_max)])
    return row_max, computes, temps, plan


def softmax_cross_entropy(graph: Graph, logits: Tensor, labels: Tensor, prog: Sequence,
                          name: str = "") -> tuple[Tensor, Tensor]:
    """``(loss, dlogits)``: ``loss`` a FLOAT (1,) tensor, the batch mean of the cross entropy of
    ``softmax(logits)`` and ``labels`` (N,) INT or UNSIGNED_INT; ``dlogits = (softmax - onehot) / N``
    in the logits' type and mapping."""
    n, k = _check(graph, logits, labels, "softmax_cross_entropy")
    opname = op_name(graph, "softmax_cross_entropy", name)
    classes = _classes(graph, opname, logits, labels.dtype)
    row_max, computes, temps, plan_max = _row_max(graph, prog, opname, logits)
    row_sum = variable_like(graph, row_max, f"{opname}/row_sum")
    picked = variable_like(graph, row_max, f"{opname}/picked")
    sum_exp = ReduceSpec(lambda d: nn.MaskedSumExpDev[logits.dtype] if d == FLOAT else None, FLOAT, "sum",
                         row_sum, seg_inputs={"shift": row_max})
    pick = ReduceSpec(lambda d: nn.MaskedPick[logits.dtype, labels.dtype] if d == FLOAT else None, FLOAT,
                      "sum", picked, elem_inputs={"col": classes}, seg_inputs={"label": labels})
    c, t, plan_sums = build_reduction(graph, prog, opname, "sums", logits, (1,), [sum_exp, pick])
    computes += c
    temps += t
    # gradient and per-row losses, one superstep
    cs = graph.add_compute_set(f"{opname}/grad")
    dlogits = variable_like(graph, logits, f"{opname}/dlogits")
    rows = (n, 1)
    length = elementwise_vertices(
        graph, cs, nn.CrossEntropyGrad[logits.dtype, labels.dtype], dlogits,
        {"x": logits, "row_max": broadcast_to(row_max.reshape(rows), logits.shape, opname),
         "row_sum": broadcast_to(row_sum.reshape(rows), logits.shape, opname),
         "label": broadcast_to(labels.reshape(rows), logits.shape, opname), "col": classes, "out": dlogits},
        state={"scale": 1.0 / n})
    row_loss = variable_like(graph, row_max, f"{opname}/row_loss")
    elementwise_vertices(graph, cs, nn.CrossEntropyRowLoss[labels.dtype], row_loss,
                         {"row_max": row_max, "row_sum": row_sum, "picked": picked, "label": labels,
                          "out": row_loss}, state={"num_classes": k})
    prog.add(Execute(cs))
    loss = linear_variable(graph, FLOAT, (1,), f"{opname}/loss")
    c, t, plan_mean = build_reduction(graph, prog, opname, "mean", row_loss, (0,),
                                      [plain_spec(row_loss, "sum", loss, 1.0 / n)])
    computes += [cs] + c
    temps += t + [row_max, row_sum, picked, row_loss]
    release_together(prog, temps)
    record(graph, opname, "softmax_cross_entropy",
           {"batch": n, "classes": k, "vertex_length": length,
            "reductions": {"max": plan_max, "sums": plan_sums, "mean": plan_mean}}, computes, temps)
    return loss, dlogits


def _argmax_rows(graph: Graph, prog: Sequence, opname: str, logits: Tensor, dtype: np.dtype,
                 like: Tensor | None) -> tuple[Tensor, list, list, dict]:
    """First index of each row's maximum, of ``dtype``, mapped like ``like`` (else linearly)."""
    classes = _classes(graph, opname, logits, dtype)
    row_max, computes, temps, plan_max = _row_max(graph, prog, opname, logits)
    index = variable_like(graph, like if like is not None else row_max, f"{opname}/argmax", dtype)
    first = ReduceSpec(lambda d: nn.MaskedFirstMatch[logits.dtype, dtype] if d == dtype else None,
                       dtype, "min", index, elem_inputs={"col": classes}, seg_inputs={"shift": row_max})
    c, t, plan_argmax = build_reduction(graph, prog, opname, "argmax", logits, (1,), [first])
    return index, computes + c, temps + t + [row_max], {"max": plan_max, "argmax": plan_argmax}


def argmax(graph: Graph, logits: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """The first index of the maximum of each row of an (N, K) FLOAT or HALF tensor (as
    ``torch.argmax(logits, dim=1)``): an UNSIGNED_INT (N,) tensor, each element on the tile of its
    row's first logit."""
    if not isinstance(logits, Tensor) or logits.graph is not graph or logits.rank != 2 or logits.numel == 0:
        raise TensorError(f"argmax: expected a non-empty (N, K) tensor of this graph, got {logits!r}")
    if logits.dtype not in (FLOAT, HALF):
        raise DTypeError(f"argmax: logits must be FLOAT or HALF, got {poplar_name(logits.dtype)}")
    opname = op_name(graph, "argmax", name)
    index, computes, temps, plans = _argmax_rows(graph, prog, opname, logits, UNSIGNED_INT, None)
    release_together(prog, temps)
    record(graph, opname, "argmax", {"batch": logits.shape[0], "reductions": plans}, computes, temps)
    return index


def correct_count(graph: Graph, logits: Tensor, labels: Tensor, prog: Sequence, name: str = "") -> Tensor:
    """How many rows' argmax (the first maximum, as torch.argmax) equals the label: an
    UNSIGNED_INT (1,) tensor."""
    n, _ = _check(graph, logits, labels, "correct_count")
    opname = op_name(graph, "correct_count", name)
    index, computes, temps, plans = _argmax_rows(graph, prog, opname, logits, labels.dtype, labels)
    count = linear_variable(graph, UNSIGNED_INT, (1,), f"{opname}/count")
    equal = ReduceSpec(lambda d: nn.MaskedCountEqual[labels.dtype] if d == UNSIGNED_INT else None,
                       UNSIGNED_INT, "sum", count, elem_inputs={"other": labels})
    c, t, plans["count"] = build_reduction(graph, prog, opname, "count", index, (0,), [equal])
    temps += t + [index]
    release_together(prog, temps)
    record(graph, opname, "correct_count", {"batch": n, "reductions": plans}, computes + c, temps)
    return count
