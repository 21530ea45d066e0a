"""The reference networks, with torchvision's parameter names and layouts.

Each builder defines the forward pass as a list of layers (plus the residual wiring of
ResNet-50); :mod:`poplar_like.models.model` turns that into inference and training programs.
"""

from __future__ import annotations

from ..graph import Tensor
from .. import ops
from .layers import BatchNorm2d, Conv2d, GlobalAvgPool, Layer, Linear, MaxPool2d, Net, ReLU


class Sequential(Layer):
    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers

    def forward(self, net: Net, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer.forward(net, x)
        return x

    def backward(self, net: Net, dy: Tensor, need_dx: bool = True) -> Tensor | None:
        for i, layer in enumerate(reversed(self.layers)):
            last = i == len(self.layers) - 1
            dy = layer.backward(net, dy, need_dx or not last)  # type: ignore[assignment]
            if dy is None:
                return None
        return dy


class Flatten(Layer):
    def __init__(self) -> None:
        self.shape: tuple[int, ...] = ()

    def forward(self, net: Net, x: Tensor) -> Tensor:
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, net: Net, dy: Tensor, need_dx: bool = True) -> Tensor | None:
        return dy.reshape(self.shape)


class Identity(Layer):
    """A layer that passes data through (torchvision's Dropout in our deterministic training, and
    AlexNet's AdaptiveAvgPool2d((6, 6)) on a 6x6 input)."""

    def __init__(self, expect: tuple[int, ...] | None = None, what: str = "") -> None:
        self.expect, self.what = expect, what

    def forward(self, net: Net, x: Tensor) -> Tensor:
        if self.expect is not None and x.shape[-len(self.expect):] != self.expect:
            raise ValueError(f"{self.what}: expected input spatial size {self.expect}, got {x.shape}; use a "
                             "224x224 input")
        return x

    def backward(self, net: Net, dy: Tensor, need_dx: bool = True) -> Tensor | None:
        return dy


def mlp(net: Net, in_features: int = 784, hidden: int = 128, classes: int = 10) -> Layer:
    """The MNIST MLP: fc1 (784 -> 128), ReLU, fc2 (128 -> 10), in nn.Linear layout."""
    return Sequential([Linear(net, "fc1", in_features, hidden), ReLU("relu1"), Linear(net, "fc2", hidden, classes)])


def alexnet(net: Net, classes: int = 1000) -> Layer:
    """torchvision's AlexNet (61,100,840 parameters at 1,000 classes); Dropout is the identity."""
    return Sequential([
        Conv2d(net, "features.0", 3, 64, 11, stride=4, padding=2, bias=True), ReLU("features.1"),
        MaxPool2d("features.2", 3, 2),
        Conv2d(net, "features.3", 64, 192, 5, padding=2, bias=True), ReLU("features.4"),
        MaxPool2d("features.5", 3, 2),
        Conv2d(net, "features.6", 192, 384, 3, padding=1, bias=True), ReLU("features.7"),
        Conv2d(net, "features.8", 384, 256, 3, padding=1, bias=True), ReLU("features.9"),
        Conv2d(net, "features.10", 256, 256, 3, padding=1, bias=True), ReLU("features.11"),
        MaxPool2d("features.12", 3, 2),
        Identity((6, 6), "AlexNet avgpool"), Flatten(),
        Identity(), Linear(net, "classifier.1", 256 * 6 * 6, 4096), ReLU("classifier.2"),
        Identity(), Linear(net, "classifier.4", 4096, 4096), ReLU("classifier.5"),
        Linear(net, "classifier.6", 4096, classes),
    ])


class Bottleneck(Layer):
    """torchvision's ResNet v1.5 bottleneck: 1x1, 3x3 (stride), 1x1 (x4), residual, ReLU."""

    def __init__(self, net: Net, name: str, in_ch: int, width: int, stride: int) -> None:
        out_ch = width * 4
        self.name = name
        self.main = Sequential([
            Conv2d(net, f"{name}.conv1", in_ch, width, 1), BatchNorm2d(net, f"{name}.bn1", width), ReLU(f"{name}.relu1"),
            Conv2d(net, f"{name}.conv2", width, width, 3, stride=stride, padding=1),
            BatchNorm2d(net, f"{name}.bn2", width), ReLU(f"{name}.relu2"),
            Conv2d(net, f"{name}.conv3", width, out_ch, 1), BatchNorm2d(net, f"{name}.bn3", out_ch),
        ])
        self.down = None
        if stride != 1 or in_ch != out_ch:
            self.down = Sequential([Conv2d(net, f"{name}.downsample.0", in_ch, out_ch, 1, stride=stride),
                                    BatchNorm2d(net, f"{name}.downsample.1", out_ch)])
        self.relu = ReLU(f"{name}.relu")

    def forward(self, net: Net, x: Tensor) -> Tensor:
        main = self.main.forward(net, x)
        skip = self.down.forward(net, x) if self.down is not None else x
        total = ops.add(net.graph, main, skip, net.forward, name=f"{self.name}/add")
        return self.relu.forward(net, total)

    def backward(self, net: Net, dy: Tensor, need_dx: bool = True) -> Tensor | None:
        d_total = self.relu.backward(net, dy)
        dx_main = self.main.backward(net, d_total)
        dx_skip = self.down.backward(net, d_total) if self.down is not None else d_total
        return ops.add(net.graph, dx_main, dx_skip, net.backward, name=f"{self.name}/add_grad")


def resnet50(net: Net, classes: int = 1000) -> Layer:
    """torchvision's ResNet-50 (25,557,032 parameters at 1,000 classes)."""
    layers: list[Layer] = [Conv2d(net, "conv1", 3, 64, 7, stride=2, padding=3), BatchNorm2d(net, "bn1", 64),
                           ReLU("relu"), MaxPool2d("maxpool", 3, 2, 1)]
    in_ch = 64
    for stage, (blocks, width, stride) in enumerate([(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)], start=1):
        for b in range(blocks):
            layers.append(Bottleneck(net, f"layer{stage}.{b}", in_ch, width, stride if b == 0 else 1))
            in_ch = width * 4
    layers += [GlobalAvgPool("avgpool"), Linear(net, "fc", 2048, classes)]
    return Sequential(layers)


BUILDERS = {"mlp": mlp, "alexnet": alexnet, "resnet50": resnet50}
