"""ResNet-50 (torchvision layout, 25,557,032 parameters) in the emulator: inference on real
ImageNet photos by default, one training step with --train.

    python examples/resnet50.py [--batch-size 1] [--train] [--weights resnet50.npz]
    mpirun -n 8 python examples/resnet50.py
"""

import imagenet_net

if __name__ == "__main__":
    imagenet_net.run("resnet50", __doc__.splitlines()[0])
