"""AlexNet (torchvision layout, 61,100,840 parameters) in the emulator: inference on real
ImageNet photos by default, one training step with --train.

    python examples/alexnet.py [--batch-size 1] [--train] [--weights alexnet.npz]
    mpirun -n 4 python examples/alexnet.py
"""

import imagenet_net

if __name__ == "__main__":
    imagenet_net.run("alexnet", __doc__.splitlines()[0])
