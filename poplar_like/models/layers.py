"""Layers: the pieces networks are built from, each with a forward and a backward builder.

A layer owns its parameters (tensors in torchvision's layout, registered by their ``state_dict``
names) and appends steps to the forward or backward program of a :class:`Net`.  Backward is
explicit, layer by layer in reverse order, as PopLibs users write it: each layer keeps what its
forward produced that its gradient needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import ops
from ..dtypes import FLOAT
from ..graph import Graph, Sequence, Tensor


@dataclass
class Net:
    """The graph being built, its programs, and the registries of parameters and gradients."""

    graph: Graph
    dtype: np.dtype = FLOAT
    training: bool = True
    forward: Sequence = field(default_factory=lambda: Sequence(name="forward"))
    backward: Sequence = field(default_factory=lambda: Sequence(name="backward"))
    update: Sequence = field(default_factory=lambda: Sequence(name="update"))
    params: dict[str, Tensor] = field(default_factory=dict)  # trainable, by state_dict name
    buffers: dict[str, Tensor] = field(default_factory=dict)  # e.g. batch-norm running statistics
    grads: dict[str, Tensor] = field(default_factory=dict)
    activations: list[Tensor] = field(default_factory=list)  # released after their last use
    start_tiles: dict[str, int] = field(default_factory=dict)  # per layer, where its products start

    def parameter(self, name: str, shape: tuple[int, ...], create=None) -> Tensor:
        """The parameter called ``name``: created once, shared by every build of the network."""
        if self.params.get(name) is None:
            self.params[name] = create(name) if create is not None else \
                ops.linear_variable(self.graph, self.dtype, shape, name)
        return self.params[name]

    def reserve(self, name: str) -> None:
        """Hold ``name``'s place in the parameter order (torchvision's) for a parameter that is
        created later, where the shape of its layer's input is known."""
        self.params.setdefault(name, None)  # type: ignore[arg-type]

    def buffer(self, name: str, shape: tuple[int, ...]) -> Tensor:
        if name not in self.buffers:
            self.buffers[name] = ops.linear_variable(self.graph, FLOAT, shape, name)
        return self.buffers[name]

    def product_options(self, layer: str) -> dict:
        """Options for the products of ``layer``: each layer's grids start on another tile.

        A plan that uses fewer tiles than the target puts cell 0 on tile 0 and the others at a
        fixed stride, so without this the first tiles (and those at common strides) hold a cell
        of every layer, with its vertices and exchange code.  Layer ``i`` starts at
        ``frac(i x golden ratio) x tiles``, which spreads the starts evenly for any stride.
        """
        if layer not in self.start_tiles:
            position = (len(self.start_tiles) * 0.6180339887498949) % 1.0
            self.start_tiles[layer] = int(position * self.graph.target.num_tiles)
        return {"start_tile": self.start_tiles[layer]}

    def sibling(self, training: bool) -> "Net":
        """Another build of the same network (other mode) sharing parameters, buffers and the
        layers' start tiles (the weights are laid out for them)."""
        return Net(self.graph, self.dtype, training, params=self.params, buffers=self.buffers,
                   start_tiles=self.start_tiles)


class Layer:
    """Base: ``forward(net, x) -> y`` builds the forward steps; ``backward(net, dy) -> dx``."""

    name = ""

    def forward(self, net: Net, x: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, net: Net, dy: Tensor, need_dx: bool = True) -> Tensor | None:  # pragma: no cover
        raise NotImplementedError


class Conv2d(Layer):
    def __init__(self, net: Net, name: str, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                 padding: int = 0, groups: int = 1, bias: bool = False) -> None:
        self.name, self.stride, self.padding, self.groups = name, stride, padding, groups
        self.shape = (out_ch, in_ch // groups, kernel, kernel)
        net.reserve(f"{name}.weight")
        self.bias = net.parameter(f"{name}.bias", (out_ch,)) if bias else None

    def forward(self, net: Net, x: Tensor) -> Tensor:
        self.x = x
        # created at the first forward, laid out where the forward plan reads it (PopLibs'
        # createWeights): each tile holds a piece of the blocks it multiplies
        options = net.product_options(self.name)
        self.weight = net.parameter(
            f"{self.name}.weight", self.shape,
            lambda n: ops.create_conv_weights(net.graph, self.shape, net.dtype, n, input_shape=x.shape,
                                              stride=self.stride, padding=self.padding, groups=self.groups,
                                              options=options))
        y = ops.conv2d(net.graph, x, self.weight, net.forward, stride=self.stride, padding=self.padding,
                       groups=self.groups, name=f"{self.name}/conv", options=options)
        if self.bias is not None:
            y = ops.add(net.graph, y, self.bias.reshape(1, -1, 1, 1), net.forward, name=f"{self.name}/bias")
        return y

    def backward(self, net: Net, dy: Tensor, need_dx: bool = True) -> Tensor | None:
        g = net.graph
        options = net.product_options(self.name)
        net.grads[f"{self.name}.weight"] = ops.conv2d_weight_grad(
            g, self.x, dy, self.weight.shape, net.backward, stride=self.stride, padding=self.padding,
            groups=self.groups, name=f"{self.name}/weight_grad", options=options)
        if self.bias is not None:
            net.grads[f"{self.name}.bias"] = ops.reduce(g, dy, (0, 2, 3), net.backward, name=f"{self.name}/bias_grad")
        if not need_dx:
            return None
        return ops.conv2d_input_grad(g, dy, self.weight, self.x.shape, net.backward, stride=self.stride,
                                     padding=self.padding, groups=self.groups, name=f"{self.name}/input_grad",
                                     options=options)


class Linear(Layer):
    """``y = x @ weight.T + bias`` with ``weight`` in nn.Linear's (out, in) layout."""

    def __init__(self, net: Net, name: str, in_features: int, out_features: int, bias: bool = True) -> None:
        self.name = name
        self.features = (in_features, out_features)
        net.reserve(f"{name}.weight")
        self.bias = net.parameter(f"{name}.bias", (out_features,)) if bias else None

    def forward(self, net: Net, x: Tensor) -> Tensor:
        self.x = x
        # stored (in, out), as the product x @ weight.T reads it, and laid out where its plan
        # reads it (PopLibs' createMatMulInputRHS); the parameter is the (out, in) view
        k, n = self.features
        options = net.product_options(self.name)
        self.weight = net.parameter(
            f"{self.name}.weight", (n, k),
            lambda name: ops.create_matmul_rhs(net.graph, x.shape[0], k, n, net.dtype, name,
                                               options=options).transpose().named(name))
        y = ops.matmul(net.graph, x, self.weight.transpose(), net.forward, name=f"{self.name}/matmul",
                       options=options)
        if self.bias is not None:
            y = ops.add(net.graph, y, self.bias.reshape(1, -1), net.forward, name=f"{self.name}/bias")
        return y

    def backward(self, net: Net, dy: Tensor, need_dx: bool = True) -> Tensor | None:
        g = net.graph
        options = net.product_options(self.name)
        net.grads[f"{self.name}.weight"] = ops.matmul(g, dy.transpose(), self.x, net.backward,
                                                      name=f"{self.name}/weight_grad", options=options)
        if self.bias is not None:
            net.grads[f"{self.name}.bias"] = ops.reduce(g, dy, (0,), net.backward, name=f"{self.name}/bias_grad")
        if not need_dx:
            return None
        return ops.matmul(g, dy, self.weight, net.backward, name=f"{self.name}/input_grad", options=options)


class ReLU(Layer):
    def __init__(self, name: str) -> None:
        self.name = name

    def forward(self, net: Net, x: Tensor) -> Tensor:
        self.y = ops.unary(net.graph, "relu", x, net.forward, name=f"{self.name}/relu")
        return self.y

    def backward(self, net: Net, dy: Tensor, need_dx: bool = True) -> Tensor | None:
        return ops.relu_grad(net.graph, self.y, dy, net.backward, name=f"{self.name}/relu_grad")


class MaxPool2d(Layer):
    def __init__(self, name: str, kernel: int, stride: int, padding: int = 0) -> None:
        self.name, self.kernel, self.stride, self.padding = name, kernel, stride, padding

    def forward(self, net: Net, x: Tensor) -> Tensor:
        self.x = x
        self.y = ops.max_pool2d(net.graph, x, self.kernel, self.stride, self.padding, net.forward,
                                name=f"{self.name}/maxpool")
        return self.y

    def backward(self, net: Net, dy: Tensor, need_dx: bool = True) -> Tensor | None:
        return ops.max_pool2d_grad(net.graph, self.x, self.y, dy, self.kernel, self.stride, self.padding,
                                   net.backward, name=f"{self.name}/maxpool_grad")


class GlobalAvgPool(Layer):
    """AdaptiveAvgPool2d(1) followed by flatten: (N, C, H, W) -> (N, C)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def forward(self, net: Net, x: Tensor) -> Tensor:
        self.shape = x.shape
        return ops.global_avg_pool(net.graph, x, net.forward, name=f"{self.name}/avgpool")

    def backward(self, net: Net, dy: Tensor, need_dx: bool = True) -> Tensor | None:
        return ops.global_avg_pool_grad(net.graph, dy, self.shape, net.backward, name=f"{self.name}/avgpool_grad")


class BatchNorm2d(Layer):
    def __init__(self, net: Net, name: str, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        self.name, self.eps, self.momentum = name, eps, momentum
        self.weight = net.parameter(f"{name}.weight", (channels,))
        self.bias = net.parameter(f"{name}.bias", (channels,))
        self.running_mean = net.buffer(f"{name}.running_mean", (channels,))
        self.running_var = net.buffer(f"{name}.running_var", (channels,))

    def forward(self, net: Net, x: Tensor) -> Tensor:
        # per-channel parameters and statistics live with their channel's data (no exchange)
        tiles = ops.norm.channel_tiles(net.graph, x)
        for t in (self.weight, self.bias, self.running_mean, self.running_var):
            net.graph.set_tile_mapping(t, tiles)
        if not net.training:  # inference: the running statistics
            return ops.batch_norm_inference(net.graph, x, self.weight, self.bias, self.running_mean,
                                            self.running_var, self.eps, net.forward, name=f"{self.name}/bn")
        self.x = x
        y, self.mean, self.invstd = ops.batch_norm_training(net.graph, x, self.weight, self.bias, self.eps,
                                                             net.forward, name=f"{self.name}/bn")
        per_channel = int(np.prod(x.shape)) // x.shape[1]
        ops.update_running_stats(net.graph, self.running_mean, self.running_var, self.mean, self.invstd,
                                 self.momentum, per_channel, net.forward)
        return y

    def backward(self, net: Net, dy: Tensor, need_dx: bool = True) -> Tensor | None:
        dx, dgamma, dbeta = ops.batch_norm_grad(net.graph, self.x, dy, self.mean, self.invstd, self.weight,
                                                net.backward, name=f"{self.name}/bn_grad")
        net.grads[f"{self.name}.weight"] = dgamma
        net.grads[f"{self.name}.bias"] = dbeta
        return dx
