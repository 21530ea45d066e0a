"""The profile: one plain dict in the documented format (docs/profile-format.md).

Built from an executable (memory, graph, static cycle estimates) and, after runs, from the
engine's execution counters.  Per-step-per-tile matrices go to a companion ``.npz``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..compiler import CATEGORIES, Executable, largest_consumers
from ..compiler.lowering import BRANCH, COPY, EXECUTE, OP_NAMES, PRINT, STREAM_IN, STREAM_OUT

FORMAT = "poplar_like.profile"
VERSION = 1
STEP_OPS = (EXECUTE, COPY, STREAM_IN, STREAM_OUT, PRINT, BRANCH)
KIND = {EXECUTE: "compute", COPY: "copy", STREAM_IN: "stream_in", STREAM_OUT: "stream_out", PRINT: "print",
        BRANCH: "branch"}


def _program_of(exe: Executable) -> np.ndarray:
    owner = np.zeros(len(exe.code), dtype=np.int64)
    for p, entry in enumerate(exe.entries):
        owner[entry:] = p
    return owner


def _step_rows(exe: Executable, counts: np.ndarray, seconds: np.ndarray) -> list[dict]:
    rows = []
    program = _program_of(exe)
    sync = exe.target.global_sync_cycles
    for pc, (op, a, _) in enumerate(exe.code.tolist()):
        if op not in STEP_OPS:
            continue
        row = {"index": pc, "program": int(program[pc]), "kind": KIND[op], "name": "", "executions": int(counts[pc]),
               "vertices": 0, "compute_cycles": 0, "exchange_cycles": 0, "sync_cycles": 0, "host_cycles": 0,
               "exchange_bytes": 0, "inter_ipu_bytes": 0, "host_bytes": 0,
               "host_seconds": float(seconds[pc]) if seconds is not None else 0.0}
        if op == EXECUTE:
            s = exe.computes[a]
            row.update(name=s.name, vertices=int(sum(b.tiles.size for b in s.batches)),
                       compute_cycles=s.compute_cycles, exchange_cycles=s.exchange_cycles, sync_cycles=s.sync_cycles,
                       exchange_bytes=s.exchange_bytes, inter_ipu_bytes=s.inter_ipu_bytes)
        elif op in (COPY, STREAM_IN, STREAM_OUT):
            s = exe.copies[a]
            row.update(name=s.name if s.kind == "copy" else f"{s.name} ({s.stream})", compute_cycles=s.compute_cycles,
                       exchange_cycles=s.exchange_cycles, sync_cycles=s.sync_cycles, host_cycles=s.host_cycles,
                       exchange_bytes=s.exchange_bytes, inter_ipu_bytes=s.inter_ipu_bytes, host_bytes=s.host_bytes)
        elif op == PRINT:
            s = exe.prints[a]
            nbytes = int(s.words.size * np.dtype(s.dtype).itemsize)
            row.update(name=s.title, host_cycles=s.host_cycles, sync_cycles=s.sync_cycles, host_bytes=nbytes)
        else:
            row.update(name=f"predicate {exe.predicates[a].name}", sync_cycles=sync)
        row["total_cycles"] = row["compute_cycles"] + row["exchange_cycles"] + row["sync_cycles"] + row["host_cycles"]
        rows.append(row)
    return rows


def _by_tile_exchange(exe: Executable, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    T = exe.target.num_tiles
    sent = np.zeros(T, dtype=np.int64)
    received = np.zeros(T, dtype=np.int64)
    for pc, (op, a, _) in enumerate(exe.code.tolist()):
        n = int(counts[pc])
        if not n:
            continue
        if op == EXECUTE:
            s = exe.computes[a]
            sent += n * (s.pre_sent + s.post_sent)
            received += n * (s.pre_received + s.post_received)
        elif op == COPY:
            sent += n * exe.copies[a].sent
            received += n * exe.copies[a].received
    return sent, received


def _op_rows(exe: Executable, steps: list[dict]) -> list[dict]:
    """Per op of the layer library: its plan, tiles, vertices, estimated cycles and temporary bytes."""
    if not exe.ops:
        return []
    by_name = {s.name: s for s in exe.computes}
    step_cycles: dict[str, int] = {}
    for row in steps:
        if row["kind"] == "compute":
            step_cycles[row["name"]] = step_cycles.get(row["name"], 0) + row["total_cycles"] * max(row["executions"], 1)
    var_index = {v["name"]: i for i, v in enumerate(exe.variables)}
    piece_bytes = np.bincount(exe.pieces["var"], weights=exe.pieces["bytes"], minlength=len(exe.variables)) \
        if exe.pieces["var"].size else np.zeros(len(exe.variables))
    rows = []
    for op in exe.ops:
        names = [n for n in op.get("compute_sets", []) if n in by_name]
        tiles = set()
        vertices = 0
        for n in names:
            for b in by_name[n].batches:
                tiles.update(np.unique(b.tiles).tolist())
                vertices += int(b.tiles.size)
        temps = [var_index[t] for t in op.get("temporaries", []) if t in var_index]
        rows.append({
            "name": op.get("name", ""), "kind": op.get("kind", ""), "plan": op.get("plan", {}),
            "compute_sets": names, "tiles_used": len(tiles), "vertices": vertices,
            "estimated_cycles": int(sum(step_cycles.get(n, 0) for n in names)),
            "temporary_bytes": int(sum(piece_bytes[t] for t in temps)),
        })
    return rows


def build_profile(exe: Executable, counts: np.ndarray | None = None, seconds: np.ndarray | None = None,
                  runs: list[dict] | None = None, host: dict | None = None) -> dict[str, Any]:
    """The profile dict.  Without ``counts`` (no run yet) every step counts once: basis "static"."""
    target = exe.target
    executed = counts is not None and int(counts.sum()) > 0
    weights = counts if executed else np.ones(len(exe.code), dtype=np.int64)
    steps = _step_rows(exe, weights, seconds if seconds is not None else np.zeros(len(exe.code)))
    if not executed:
        for row in steps:
            row["executions"] = 0
    totals = {k: 0 for k in ("compute", "exchange", "sync", "host")}
    exchange_total = inter_total = 0
    for row in steps:
        n = row["executions"] if executed else 1
        for k in totals:
            totals[k] += n * row[f"{k}_cycles"]
        exchange_total += n * row["exchange_bytes"]
        inter_total += n * row["inter_ipu_bytes"]
    total_cycles = sum(totals.values())
    sent, received = _by_tile_exchange(exe, weights)

    used = exe.tile_bytes()
    capacity = target.memory_bytes_per_tile
    max_tile = int(np.argmax(used)) if used.size else 0
    nal_category = exe.categories["variables_not_always_live"] + exe.categories["exchange_buffers"]
    always_live = used - nal_category
    step_pcs = [pc for pc, (op, _, _) in enumerate(exe.code.tolist()) if op in STEP_OPS]
    nal = exe.nal_by_step
    liveness = {
        "steps": step_pcs,
        "not_always_live_bytes": [int(nal[pc].sum()) for pc in step_pcs],
        "max_tile_not_always_live_bytes": [int(nal[pc].max(initial=0)) for pc in step_pcs],
    }
    profile = {
        "format": FORMAT,
        "version": VERSION,
        "target": {
            "name": target.name, "num_ipus": target.num_ipus, "tiles_per_ipu": target.tiles_per_ipu,
            "num_tiles": target.num_tiles, "memory_bytes_per_tile": capacity, "clock_hz": target.clock_hz,
            "num_worker_contexts": target.num_worker_contexts,
            "exchange_bytes_per_cycle": target.exchange_bytes_per_cycle,
            "global_sync_cycles": target.global_sync_cycles,
            "ipu_link_bytes_per_second": target.ipu_link_bytes_per_second,
        },
        "graph": {**exe.graph_stats, "codelets": dict(exe.codelets)},
        "memory": {
            "capacity_per_tile": capacity,
            "total_bytes": int(used.sum()),
            "total_bytes_by_tile": used.tolist(),
            "by_category": {name: exe.categories[name].tolist() for name in CATEGORIES},
            "category_totals": {name: int(exe.categories[name].sum()) for name in CATEGORIES},
            "always_live_bytes_by_tile": always_live.tolist(),
            "not_always_live_peak_bytes_by_tile": (nal.max(axis=0) if nal.size else np.zeros_like(used)).tolist(),
            "max_tile": max_tile,
            "max_tile_bytes": int(used[max_tile]) if used.size else 0,
            "mean_tile_bytes": float(used.mean()) if used.size else 0.0,
            "tiles_over_capacity": list(exe.tiles_over_capacity),
            "largest_consumers_on_max_tile": [{"name": n, "bytes": b} for n, b in largest_consumers(exe, max_tile, 10)],
            "temporaries": [exe.variables[v]["name"] for v in exe.temporaries],
            "liveness": liveness,
        },
        "exchange": {
            "total_bytes": int(exchange_total),
            "intra_ipu_bytes": int(exchange_total - inter_total),
            "inter_ipu_bytes": int(inter_total),
            "bytes_sent_by_tile": sent.tolist(),
            "bytes_received_by_tile": received.tolist(),
        },
        "steps": steps,
        "cycles": {
            "basis": "executed" if executed else "static",
            "total": int(total_cycles),
            **{k: int(v) for k, v in totals.items()},
            "estimated_seconds": total_cycles / target.clock_hz,
        },
        "ops": _op_rows(exe, steps),
        "programs": exe.instruction_text().splitlines(),
        "execution": {"runs": list(runs or []), "wall_seconds": float(sum(r["seconds"] for r in runs or []))},
        "host": dict(host or {"backend": "local", "ranks": 1}),
    }
    return profile


def step_tile_matrices(exe: Executable) -> dict[str, np.ndarray]:
    """Per-step-per-tile arrays for the companion ``.npz`` (rows follow ``liveness.steps``)."""
    pcs = [pc for pc, (op, _, _) in enumerate(exe.code.tolist()) if op in STEP_OPS]
    T = exe.target.num_tiles
    compute = np.zeros((len(pcs), T), dtype=np.int64)
    sent = np.zeros((len(pcs), T), dtype=np.int64)
    received = np.zeros((len(pcs), T), dtype=np.int64)
    for row, pc in enumerate(pcs):
        op, a, _ = exe.code[pc].tolist()
        if op == EXECUTE:
            s = exe.computes[a]
            compute[row] = s.tile_cycles
            sent[row] = s.pre_sent + s.post_sent
            received[row] = s.pre_received + s.post_received
        elif op == COPY:
            sent[row] = exe.copies[a].sent
            received[row] = exe.copies[a].received
    return {"steps": np.array(pcs, dtype=np.int64), "compute_cycles": compute, "bytes_sent": sent,
            "bytes_received": received, "not_always_live_bytes": exe.nal_by_step[pcs] if pcs else
            np.zeros((0, T), dtype=np.int64), "total_bytes_by_tile": exe.tile_bytes()}


def save_profile(profile: dict, matrices: dict[str, np.ndarray], path: str) -> str:
    """Write ``path`` (JSON) and its companion ``.npz``; returns the companion's path."""
    companion = os.path.splitext(path)[0] + ".npz"
    data = dict(profile)
    data["companion"] = os.path.basename(companion)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    np.savez_compressed(companion, **matrices)
    return companion


__all__ = ["FORMAT", "VERSION", "OP_NAMES", "build_profile", "step_tile_matrices", "save_profile"]
