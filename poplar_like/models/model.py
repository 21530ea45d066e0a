"""A built network: its graph, programs, tensors, and helpers to load weights, infer and train.

``build(kind, graph, batch_size, ...)`` builds an inference program (index ``INFER``) and, with
``train=True``, a training step (index ``TRAIN``): forward with batch statistics, softmax
cross-entropy, backward, and SGD with momentum, as one program, so one ``engine.run`` is one
training step.  Parameters are addressed by torchvision ``state_dict`` names and layouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import ops
from ..dtypes import FLOAT, INT, as_dtype
from ..graph import Graph, Program, Sequence, Tensor
from .layers import Net
from .nets import BUILDERS

INFER, TRAIN = 0, 1
WITH_BATCH_NORM = ("resnet50",)


@dataclass
class Model:
    """A network built into a graph."""

    kind: str
    graph: Graph
    batch_size: int
    input: Tensor
    labels: Tensor
    logits: Tensor
    params: dict[str, Tensor]
    buffers: dict[str, Tensor]
    programs: list[Program]
    loss: Tensor | None = None
    learning_rate: Tensor | None = None
    train_logits: Tensor | None = None
    velocities: dict[str, Tensor] = field(default_factory=dict)

    @property
    def trains(self) -> bool:
        return self.loss is not None

    def num_parameters(self) -> int:
        return int(sum(t.numel for t in self.params.values()))

    def state_dict_names(self) -> list[str]:
        return list(self.params) + list(self.buffers)

    # ---------------------------------------------------------------- host helpers
    def load_state_dict(self, engine, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Write numpy arrays named like torchvision's ``state_dict`` into the engine."""
        tensors = {**self.params, **self.buffers}
        unknown = [k for k in state if k not in tensors and not k.endswith("num_batches_tracked")]
        missing = [k for k in tensors if k not in state]
        if strict and (unknown or missing):
            raise KeyError(f"{self.kind}: state dict mismatch; unknown keys {unknown[:5]}, missing keys {missing[:5]}")
        for name, tensor in tensors.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != tensor.shape:
                raise ValueError(f"{self.kind}: {name!r} has shape {value.shape}, the model expects {tensor.shape}")
            engine.write_tensor(tensor, value if value.dtype == tensor.dtype else value.astype(tensor.dtype))
        if self.velocities:
            for v in self.velocities.values():
                engine.write_tensor(v, np.zeros(v.shape, v.dtype))

    def state_dict(self, engine) -> dict[str, np.ndarray]:
        return {name: engine.read_tensor(t) for name, t in {**self.params, **self.buffers}.items()}

    def program_index(self, which: int) -> int:
        """The engine index of INFER or TRAIN (a model built for training only has one program)."""
        return 0 if len(self.programs) == 1 else which

    def infer(self, engine, images: np.ndarray) -> np.ndarray:
        engine.write_tensor(self.input, np.asarray(images, dtype=self.input.dtype))
        engine.run(self.program_index(INFER))
        return engine.read_tensor(self.logits)

    def train_step(self, engine, images: np.ndarray, labels: np.ndarray, learning_rate: float | None = None) -> float:
        if not self.trains:
            raise RuntimeError(f"{self.kind} was built without a training program (build(..., train=True))")
        engine.write_tensor(self.input, np.asarray(images, dtype=self.input.dtype))
        engine.write_tensor(self.labels, np.asarray(labels, dtype=np.int32))
        if learning_rate is not None:
            engine.write_tensor(self.learning_rate, np.array([learning_rate], dtype=np.float32))
        engine.run(self.program_index(TRAIN))
        return float(engine.read_tensor(self.loss)[0])


def input_shape(kind: str, batch_size: int, image_size: int) -> tuple[int, ...]:
    return (batch_size, 784) if kind == "mlp" else (batch_size, 3, image_size, image_size)


def build(kind: str, graph: Graph, batch_size: int = 1, *, dtype: object = FLOAT, image_size: int = 224,
          classes: int | None = None, train: bool = False, inference: bool = True, momentum: float = 0.9,
          weight_decay: float = 0.0, learning_rate: float = 0.01) -> Model:
    """Build ``kind`` ("mlp", "alexnet", "resnet50") into ``graph``."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown model {kind!r}; expected one of {', '.join(BUILDERS)}")
    if not (train or inference):
        raise ValueError("build at least one of the inference and training programs")
    dtype = as_dtype(dtype)
    classes = classes or (10 if kind == "mlp" else 1000)
    x = ops.linear_variable(graph, dtype, input_shape(kind, batch_size, image_size), "input")
    labels = ops.linear_variable(graph, INT, (batch_size,), "labels")
    root = Net(graph, dtype, training=not inference)
    programs: list[Program] = []
    network = BUILDERS[kind](root, classes=classes)
    logits = network.forward(root, x)
    if inference:
        programs.append(Sequence([root.forward], name="inference"))
    model = Model(kind, graph, batch_size, x, labels, logits, root.params, root.buffers, programs)
    if train:
        net = root
        train_logits = logits
        if inference and kind in WITH_BATCH_NORM:  # training normalises by batch statistics: a second forward
            net = root.sibling(training=True)
            network = BUILDERS[kind](net, classes=classes)
            train_logits = network.forward(net, x)
        loss_prog = Sequence(name="loss")
        loss, dlogits = ops.softmax_cross_entropy(graph, train_logits, labels, loss_prog, name="loss")
        network.backward(net, dlogits, need_dx=False)
        lr = graph.add_variable(FLOAT, (1,), "learning_rate")
        graph.set_tile_mapping(lr, 0)
        velocities = {}
        for name, p in net.params.items():
            v = ops.variable_like(graph, p, f"{name}.momentum_buffer")
            velocities[name] = v
            ops.sgd_momentum_step(graph, p, net.grads[name], v, lr, momentum, weight_decay, net.update,
                                  name=f"{name}/sgd")
        programs.append(Sequence([net.forward, loss_prog, net.backward, net.update], name="training step"))
        model.loss, model.learning_rate, model.velocities = loss, lr, velocities
        model.train_logits = train_logits
    model.programs = programs
    return model


def mlp(graph: Graph, batch_size: int = 32, **kwargs) -> Model:
    """The MNIST MLP 784-128-10 (101,770 parameters)."""
    return build("mlp", graph, batch_size, **kwargs)


def alexnet(graph: Graph, batch_size: int = 1, **kwargs) -> Model:
    """torchvision's AlexNet (61,100,840 parameters)."""
    return build("alexnet", graph, batch_size, **kwargs)


def resnet50(graph: Graph, batch_size: int = 1, **kwargs) -> Model:
    """torchvision's ResNet-50 (25,557,032 parameters)."""
    return build("resnet50", graph, batch_size, **kwargs)
