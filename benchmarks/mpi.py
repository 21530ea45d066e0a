"""MPI benchmark: the core benchmark's 1,000,000-vertex graph on 1, 2, 4 and 8 ranks.

Runs ``mpirun -n K python benchmarks/mpi.py --worker`` for each K and prints, per K: time per
superstep, bytes between ranks per superstep, the tile memory each rank holds and each rank's
peak RSS.  ``docs/benchmarks.md`` records the figures.

Every rank copies with one thread (``POPLAR_LIKE_THREADS=1``, ``--threads`` to change), so the
ranks are the only parallelism and the figures measure how the MPI backend scales; a single
process by default copies with a thread per core (``benchmarks/core.py`` measures that).

    python benchmarks/mpi.py [--ranks 1,2,4,8] [--vertices N] [--steps 5] [--threads 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def worker(args: argparse.Namespace) -> None:
    """One rank of the job (run under mpirun)."""
    import core
    import poplar_like as pl

    graph, program, tensors = core.build(args.vertices, args.chunk)
    t0 = time.perf_counter()
    engine = pl.Engine(graph, program, progress=False)
    compile_seconds = time.perf_counter() - t0
    times, out, _ = core.run_and_check(engine, tensors, args.vertices, args.chunk, args.steps)
    profile = engine.profile()
    if not engine.is_host:
        return
    host = profile["host"]
    ranks = host.get("per_rank", [{"rank": 0, "tiles": [0, engine.executable.target.num_tiles],
                                    "tile_memory_bytes": engine.executable.memory_bytes,
                                    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}])
    figures = {
        "ranks": engine.num_ranks,
        "backend": engine.backend_name,
        "compile_seconds": round(compile_seconds, 2),
        "superstep_seconds": round(float(np.median(times)), 3),
        "bytes_between_ranks_per_superstep": int(sum(host.get("bytes_between_ranks", {}).get("compute", [0]))),
        "checksum": float(np.float64(out.astype(np.float64).sum())),
        "per_rank": [{"rank": r["rank"], "tiles": r["tiles"], "tile_memory_mb": round(r["tile_memory_bytes"] / 2**20, 1),
                      "peak_rss_mb": round(r["peak_rss_bytes"] / 2**20, 1)} for r in ranks],
    }
    with open(args.worker_json, "w") as f:
        json.dump(figures, f)


def driver(args: argparse.Namespace) -> list[dict]:
    mpirun = os.path.join(os.path.dirname(sys.executable), "mpirun")
    results = []
    for k in [int(x) for x in args.ranks.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "figures.json")
            cmd = [mpirun, "-n", str(k), sys.executable, os.path.abspath(__file__), "--worker", "--worker-json", out,
                   "--vertices", str(args.vertices), "--chunk", str(args.chunk), "--steps", str(args.steps)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env={**os.environ, "POPLAR_LIKE_THREADS": str(args.threads)})
            figures = json.load(open(out))
            figures["job_seconds"] = round(time.perf_counter() - t0, 1)
        results.append(figures)
        rss = [r["peak_rss_mb"] for r in figures["per_rank"]]
        tile = [r["tile_memory_mb"] for r in figures["per_rank"]]
        print(f"{k} rank(s): superstep {figures['superstep_seconds']:.3f} s, "
              f"between ranks {figures['bytes_between_ranks_per_superstep']:,} B/superstep, "
              f"tile memory per rank {min(tile)}-{max(tile)} MB, peak RSS per rank {min(rss)}-{max(rss)} MB "
              f"(host {rss[0]} MB), compile {figures['compile_seconds']} s, job {figures['job_seconds']} s",
              flush=True)
    base = {r["ranks"]: r for r in results}
    if 1 in base and 2 in base:
        print(f"speed-up 2 ranks vs 1: {base[1]['superstep_seconds'] / base[2]['superstep_seconds']:.2f}x")
    if 2 in base and 8 in base:
        print(f"8 ranks vs 2 ranks time: {base[8]['superstep_seconds'] / base[2]['superstep_seconds']:.2f}x")
    if 1 in base and 8 in base:
        single = base[1]["per_rank"][0]["tile_memory_mb"]
        worst = max(r["tile_memory_mb"] for r in base[8]["per_rank"])
        workers = [r["peak_rss_mb"] for r in base[8]["per_rank"][1:]]
        print(f"8 ranks: tile memory per rank {worst} MB = {worst / single:.3f} of one process's {single} MB; "
              f"peak RSS of ranks 1-7 {max(workers)} MB = {max(workers) / base[1]['per_rank'][0]['peak_rss_mb']:.2f} "
              f"of one process's")
    checksums = {r["checksum"] for r in results}
    print("results identical on every rank count:", len(checksums) == 1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2,4,8")
    parser.add_argument("--vertices", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="copy threads per rank (default 1)")
    parser.add_argument("--json", help="write all figures to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main(sys.argv[1:])
