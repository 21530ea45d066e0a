"""Shared body of examples/alexnet.py and examples/resnet50.py: inference on real ImageNet photos
(or one training step with --train) in the emulator, with a summary and a profile."""

from __future__ import annotations

import time

import numpy as np

import _common
import poplar_like as pl
from poplar_like import models


def run(kind: str, description: str) -> None:
    p = _common.parser(description, batch_size=1)
    p.add_argument("--train", action="store_true", help="run one training step (SGD, momentum 0.9)")
    p.add_argument("--weights", metavar="FILE.npz", help="torchvision-named weights (default: seeded random)")
    p.add_argument("--lr", type=float, default=0.01)
    args = p.parse_args()
    report = _common.Reporter()
    start = time.perf_counter()
    report.host = pl.launcher_rank() == 0
    graph = pl.Graph(_common.device(args))
    model = models.build(kind, graph, args.batch_size, dtype=args.dtype, train=args.train, inference=not args.train)
    report(f"{kind}: built {graph.num_vertices():,} vertices for {args.target} x{args.num_ipus}; compiling")
    engine = pl.Engine(graph, model.programs, progress=True, allow_out_of_memory=True)
    report(f"compiled; running on {engine.num_ranks} rank(s)")
    over = engine.executable.tiles_over_capacity
    if over:
        report(f"does not fit: {engine.executable.oom_message}")
        report("(the profile is still written; try more IPUs with --num-ipus or a smaller --batch-size)")
        _common.write_outputs(args, engine, model, "train" if args.train else "inference", time.perf_counter() - start)
        raise SystemExit(1)
    images, labels, source = _common.imagenet_batch(args.batch_size)
    weights = _common.load_weights(args.weights, model, engine)
    report(f"inputs: {source}; {weights}")
    if args.train:
        engine.write_tensor(model.learning_rate, np.array([args.lr], np.float32))
        loss = model.train_step(engine, images, labels)
        report(f"one training step: loss {loss:.4f}")
        mode, extra = "train", {"loss": loss}
    else:
        logits = model.infer(engine, images)
        top = np.argsort(-logits, axis=1)[:, :5]
        for i in range(len(labels)):
            report(f"image {i}: label {labels[i]}, top-5 classes {top[i].tolist()}")
        mode, extra = "inference", {}
    summary = _common.write_outputs(args, engine, model, mode, time.perf_counter() - start, extra)
    _common.print_summary(report, summary)
