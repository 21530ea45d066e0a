"""The reference networks (MNIST MLP, AlexNet, ResNet-50) built from the layer library."""

from .model import INFER, TRAIN, Model, alexnet, build, mlp, resnet50

__all__ = ["INFER", "TRAIN", "Model", "alexnet", "build", "mlp", "resnet50"]
