"""Optimiser steps (popnn/poplar's weight updates): SGD with momentum and weight decay.

One compute set per step, vertices on the parameter's tiles: each vertex reads a run of the
gradient and updates the same run of the parameter and its velocity in place, with
torch.optim.SGD's arithmetic (dampening 0, no Nesterov)::

    d = grad + weight_decay * param
    velocity = momentum * velocity + d      # torch starts the buffer at d: a zero velocity
    param = param - lr * velocity           # gives the same first step

The learning rate is a Python number (fixed in the vertex state) or a 1-element FLOAT tensor that
the program reads at run time, so a training script can change it between runs with
``engine.write_tensor``; the first step in a sequence broadcasts it to a copy on every tile, which
the later steps of that sequence read (``elementwise.per_tile_copy``), so no tile talks to every
tile in every step.  Half parameters are updated in float32 and rounded once.
"""

from __future__ import annotations

from codelets import nn

from ..dtypes import FLOAT, HALF, poplar_name
from ..errors import DTypeError, TensorError
from ..graph import Execute, Graph, Sequence, Tensor
from .common import gather, op_name, record, split_by_tile
from .elementwise import check_dtype, max_tile_elements, per_tile_copy, plan_elementwise


def sgd_momentum_step(graph: Graph, param: Tensor, grad: Tensor, velocity: Tensor, lr: float | Tensor,
                      momentum: float, weight_decay: float, prog: Sequence, name: str = "") -> None:
    """One torch.optim.SGD step on ``param`` and ``velocity`` (both updated in place).

    ``grad`` and ``velocity`` have ``param``'s shape and type; mapping ``velocity`` like ``param``
    (``graph.clone``) keeps the step free of exchange.  ``velocity`` must start at zero.
    """
    for t, what in ((param, "param"), (grad, "grad"), (velocity, "velocity")):
        if not isinstance(t, Tensor) or t.graph is not graph:
            raise TensorError(f"sgd_momentum_step: {what} must be a tensor of this graph, got {t!r}")
        if t.shape != param.shape or t.dtype != param.dtype:
            raise TensorError(f"sgd_momentum_step: {what} {t.name!r} is {t.shape} {poplar_name(t.dtype)}, "
                              f"param is {param.shape} {poplar_name(param.dtype)}")
    check_dtype(param, (FLOAT, HALF), "sgd_momentum_step")
    opname = op_name(graph, "sgd", name)
    cs = graph.add_compute_set(f"{opname}/update")
    state = {"momentum": float(momentum), "weight_decay": float(weight_decay)}
    if isinstance(lr, Tensor):
        if lr.graph is not graph or lr.numel != 1:
            raise TensorError(f"sgd_momentum_step: lr must be a 1-element tensor of this graph, got {lr!r}")
        if lr.dtype != FLOAT:
            raise DTypeError(f"sgd_momentum_step: lr must be FLOAT, got {poplar_name(lr.dtype)}")
        codelet = nn.SgdMomentumLr[param.dtype]
        lr_flat, _ = per_tile_copy(graph, lr, prog, f"{opname}/lr_copies")
    else:
        codelet = nn.SgdMomentum[param.dtype]
        state["lr"] = float(lr)
        lr_flat = None
    length = plan_elementwise(graph.target, max_tile_elements(graph, param), param.dtype)["vertex_length"]
    for positions, tiles in split_by_tile(graph, param, length).groups():
        fields = {"param": gather(param, positions), "grad": gather(grad, positions),
                  "velocity": gather(velocity, positions)}
        if lr_flat is not None:
            fields["lr"] = lr_flat[tiles]
        graph.add_vertices(cs, codelet, fields, tiles, state=state)
    prog.add(Execute(cs))
    record(graph, opname, "sgd_momentum_step",
           {"vertex_length": length, "lr": "tensor" if lr_flat is not None else float(lr), **state}, [cs])
