"""The cycle cost model (docs/cost-model.md), applied to planned steps at compile time.

* compute: a tile deals its vertices to its worker contexts, longest first, round robin; the
  tile's time is ``workers x busiest worker + launch x vertices + compute-set overhead``
  (barrel threading: each worker issues once every ``workers`` cycles).  A multi-worker vertex
  adds its cycles to every worker.  The phase takes as long as the slowest tile.
* exchange: each tile moves ``exchange_bytes_per_cycle``; a phase takes the largest of bytes
  sent or received by any tile, or of bytes between one IPU and the others over its links.
* sync: ``global_sync_cycles`` per synchronisation; an Execute has two, a Copy, stream copy,
  print or branch one.
* host: stream bytes over PCIe (``host_bytes_per_second``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..target import Target

# Bytes an on-tile copy moves per cycle (Target::getMemcpyBytesPerCycle, 64-bit path).
MEMCPY_BYTES_PER_CYCLE = 8


@dataclass
class ExchangeStats:
    """Bytes and cycles of one exchange phase."""

    sent: np.ndarray  # (T,) bytes sent by each tile
    received: np.ndarray  # (T,) bytes received by each tile
    total_bytes: int
    inter_ipu_bytes: int
    cycles: int

    @staticmethod
    def empty(num_tiles: int) -> "ExchangeStats":
        z = np.zeros(num_tiles, dtype=np.int64)
        return ExchangeStats(z, z.copy(), 0, 0, 0)


def exchange_stats(target: Target, senders: np.ndarray, receivers: np.ndarray,
                   nbytes: np.ndarray) -> ExchangeStats:
    """Cost of moving ``nbytes[i]`` from tile ``senders[i]`` to ``receivers[i]``, vectorised."""
    T = target.num_tiles
    if senders.size == 0:
        return ExchangeStats.empty(T)
    if bool((nbytes == nbytes[0]).all()):
        sent = np.bincount(senders, minlength=T).astype(np.int64) * int(nbytes[0])
        received = np.bincount(receivers, minlength=T).astype(np.int64) * int(nbytes[0])
    else:
        sent = np.bincount(senders, weights=nbytes, minlength=T).astype(np.int64)
        received = np.bincount(receivers, weights=nbytes, minlength=T).astype(np.int64)
    per_tile = int(np.maximum(sent, received).max())
    cycles = -(-per_tile // target.exchange_bytes_per_cycle)
    if target.num_ipus == 1:
        return ExchangeStats(sent, received, int(nbytes.sum()), 0, int(cycles))
    ipu_s, ipu_r = senders // target.tiles_per_ipu, receivers // target.tiles_per_ipu
    cross = ipu_s != ipu_r
    inter = int(nbytes[cross].sum())
    if inter:
        out_b = np.bincount(ipu_s[cross], weights=nbytes[cross], minlength=target.num_ipus)
        in_b = np.bincount(ipu_r[cross], weights=nbytes[cross], minlength=target.num_ipus)
        link_cycles = int(np.ceil(np.maximum(out_b, in_b).max() / target.ipu_link_bytes_per_cycle()))
        cycles = max(cycles, link_cycles)
    return ExchangeStats(sent, received, int(nbytes.sum()), inter, int(cycles))


def compute_cycles_by_tile(target: Target, tiles: np.ndarray, cycles: np.ndarray,
                           multi_worker: np.ndarray) -> np.ndarray:
    """Per-tile cycles of one compute phase (0 on tiles with no vertex)."""
    T, W = target.num_tiles, target.num_worker_contexts
    out = np.zeros(T, dtype=np.int64)
    if tiles.size == 0:
        return out
    single = ~multi_worker
    st, sc = tiles[single].astype(np.int64), cycles[single]
    busiest = np.zeros(T, dtype=np.int64)
    if st.size:
        order = np.lexsort((-sc, st))
        st_sorted = st[order]
        counts = np.bincount(st_sorted, minlength=T)
        first = np.cumsum(counts) - counts
        worker = (np.arange(st_sorted.size) - first[st_sorted]) % W
        load = np.bincount(st_sorted * W + worker, weights=sc[order], minlength=T * W).reshape(T, W)
        busiest = load.max(axis=1).astype(np.int64)
    multi = np.bincount(tiles[multi_worker], weights=cycles[multi_worker], minlength=T).astype(np.int64)
    count = np.bincount(tiles, minlength=T)
    active = count > 0
    out[active] = (W * (busiest[active] + multi[active]) + target.vertex_launch_cycles * count[active]
                   + target.compute_set_overhead_cycles)
    return out


def local_copy_cycles_by_tile(target: Target, tiles: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """On-tile copies of a Copy program: memcpy rate plus the compute-set overhead."""
    T = target.num_tiles
    per_tile = np.bincount(tiles, weights=nbytes, minlength=T)
    out = np.ceil(per_tile / MEMCPY_BYTES_PER_CYCLE).astype(np.int64)
    out[per_tile > 0] += target.compute_set_overhead_cycles
    return out


def host_cycles(target: Target, nbytes: int) -> int:
    return int(np.ceil(nbytes / target.host_bytes_per_cycle()))
