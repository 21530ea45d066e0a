"""Model benchmark: ResNet-50 inference, batch 1, ipu2, in the emulator and in PyTorch, in one run.

Prints the emulator's compile time and wall time per inference, PyTorch's (CPU, same machine,
same process, the two taking turns) wall time, their ratio (emulator / PyTorch), the lowest and
highest ratio of one turn, the first inference's time, RSS after the runs and peak RSS.
``--table`` also builds
the three networks and prints the rows of docs/models.md.

    python benchmarks/models.py [--runs 3] [--table] [--json FILE]
    python benchmarks/models.py --row resnet50 train 2 2 64     # one row: net, mode, batch, IPUs, size
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import poplar_like as pl  # noqa: E402
from poplar_like import models  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """The process's resident memory now (Linux): what a running engine holds, past the compile's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def resnet50_ratio(runs: int) -> dict:
    import torch

    from torch_reference import seeded, state_dict

    torch.set_num_threads(os.cpu_count() or 1)
    reference = seeded("resnet50").eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    t0 = time.perf_counter()
    graph = pl.Graph(pl.IPUModel("ipu2").create_device())
    model = models.resnet50(graph, 1)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    exe = pl.compile_graph(graph, model.programs, progress=True)
    compile_seconds = time.perf_counter() - t0
    engine = pl.Engine(exe)
    model.load_state_dict(engine, state_dict(reference))
    # The two run in turns, an emulator inference then a PyTorch one, so that both see the same
    # machine: on a shared machine the speed drifts over a minute, and timing all of one and then
    # all of the other put that drift into the ratio (PyTorch alone varied 0.064-0.099 s here).
    xt = torch.from_numpy(x)
    with torch.no_grad():
        t0 = time.perf_counter()
        model.infer(engine, x)  # the first: loads the compiled kernels, works out every copy's path
        first = time.perf_counter() - t0
        reference(xt)
        times, torch_times = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            logits = model.infer(engine, x)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            expected = reference(xt).numpy()
            torch_times.append(time.perf_counter() - t0)
    ours, theirs = float(np.median(times)), float(np.median(torch_times))
    pairs = np.divide(times, torch_times)  # the ratio of each turn
    error = float(np.abs(logits - expected).max() / np.abs(expected).max())
    return {"build_seconds": round(build, 2), "compile_seconds": round(compile_seconds, 2),
            "first_inference_seconds": round(first, 2),
            "emulator_seconds": round(ours, 3), "pytorch_seconds": round(theirs, 4),
            "ratio": round(ours / theirs, 2),
            "ratio_range": [round(float(pairs.min()), 2), round(float(pairs.max()), 2)],
            "max_relative_error": error,
            "max_tile_bytes": int(exe.tile_bytes().max()), "tiles_over_capacity": len(exe.tiles_over_capacity),
            "vertices": exe.graph_stats["vertices"], "rss_mb": round(rss_mb(), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


# The rows of docs/models.md: (network, mode, batch, IPUs, image size).  The training steps are at
# the largest batch this 24 GB machine can compile, on the fewest IPUs they fit; ResNet-50's
# training step at 224x224 does not fit this machine's memory at all (docs/models.md), so it is
# at 64x64.
TABLE = (("mlp", "inference", 32, 1, 0), ("mlp", "train", 32, 1, 0),
         ("alexnet", "inference", 1, 1, 224), ("alexnet", "train", 2, 2, 224),
         ("resnet50", "inference", 1, 1, 224), ("resnet50", "train", 4, 2, 64))


def table_row(kind: str, mode: str, batch: int, num_ipus: int = 1, image_size: int = 224) -> dict:
    graph = pl.Graph(pl.IPUModel("ipu2", num_ipus=num_ipus).create_device())
    model = models.build(kind, graph, batch, train=mode == "train", inference=mode == "inference",
                         image_size=image_size or 224)  # the MLP has no image size
    exe = pl.compile_graph(graph, model.programs, allow_out_of_memory=True)
    profile = pl.Profile.from_executable(exe)
    used = exe.tile_bytes()
    cycles = profile["cycles"]["total"]
    return {"model": kind, "mode": mode, "batch": batch, "ipus": num_ipus, "image_size": image_size or None,
            "parameters": model.num_parameters(),
            "vertices": exe.graph_stats["vertices"], "edges": exe.graph_stats["edges"],
            "max_tile_bytes": int(used.max()), "mean_tile_bytes": int(used.mean()),
            "tiles_over_capacity": len(exe.tiles_over_capacity),
            "exchange_bytes": profile["exchange"]["total_bytes"], "estimated_cycles": cycles,
            "items_per_second": round(batch / (cycles / exe.target.clock_hz), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--table", action="store_true", help="also build the docs/models.md rows")
    parser.add_argument("--row", nargs=5, metavar=("NET", "MODE", "BATCH", "IPUS", "SIZE"),
                        help="build one row only, e.g. --row resnet50 train 4 2 64 (skips the ratio)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.row:
        kind, mode, batch, ipus, size = args.row
        print(json.dumps(table_row(kind, mode, int(batch), int(ipus), int(size))))
        return
    figures = {"resnet50_inference": resnet50_ratio(args.runs)}
    for key, value in figures["resnet50_inference"].items():
        print(f"{key:<24} {value}")
    if args.table:
        rows = []
        for kind, mode, batch, ipus, size in TABLE:
            row = table_row(kind, mode, batch, ipus, size)
            rows.append(row)
            print(json.dumps(row))
        figures["table"] = rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
