"""The MPI backend: the same executable spread over the ranks of an ``mpirun`` job.

Every rank runs the user's script (SPMD).  The host (rank 0) compiles the graph once, splits the
executable by tile blocks (compiler/partition.py) and sends each rank only its part; codelets
defined in the script itself travel with cloudpickle.  A superstep on a rank is: its local
moves, one packed ``Alltoallv`` with the other ranks (also the superstep's synchronisation), its
vertices, and the same again for outputs.  Host I/O goes through rank 0.  Only this module
imports mpi4py.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any, Callable

import numpy as np

from ..arrays import stable_order
from ..codelet import Vertex, resolve_codelet
from ..compiler import Executable
from ..compiler.compile import AUTO_PROGRESS_VERTICES, Progress
from ..compiler.partition import (RankExchange, RankGather, RankPart, assemble, memory_bounds_of, partition_tiles,
                                  skeleton, split_pieces)
from ..errors import EngineError, UnknownCodeletError
from ..launch import launcher_rank
from . import faults
from .local import StepRunner, TileMemory, load_codelets


def _codelet_payload(exe: Executable) -> dict[str, bytes]:
    """cloudpickle codelets that other processes cannot import by path (script or local classes)."""
    import cloudpickle

    payload = {}
    for key, cls in load_codelets(exe).items():
        module = cls.__module__
        if module == "__main__" or "<locals>" in cls.__qualname__ or key != cls.path():
            payload[key] = cloudpickle.dumps(cls)
    return payload


class MPIBackend:
    """Runs one rank's tiles and takes part in every exchange and host transfer."""

    name = "mpi"

    @classmethod
    def create(cls, make: Callable[[], Executable], comm: Any = None,
               progress: bool | Callable[[str], None] | None = None) -> "MPIBackend":
        early: tuple[Executable | None, BaseException | None] | None = None
        if comm is None and "mpi4py.MPI" not in sys.modules and launcher_rank() == 0:
            # compile before MPI_Init: initialising waits for every rank to arrive, and the other
            # ranks may still be building their graphs (on 8 ranks of 2 cores, 40 s of ResNet-50)
            try:
                early = (make(), None)
            except BaseException as exc:  # reported to every rank once MPI is up
                early = (None, exc)
        from mpi4py import MPI

        comm = comm or MPI.COMM_WORLD
        faults.install(comm)
        rank, size = comm.Get_rank(), comm.Get_size()
        polite = size > (os.cpu_count() or 1)
        if rank == 0:
            try:
                if early is not None and early[1] is not None:
                    raise early[1]
                exe = early[0] if early is not None else make()
                assert exe is not None
                bounds = partition_tiles(exe, size)
                shell = skeleton(exe)
                payload = _codelet_payload(exe)
            except BaseException as exc:
                _polite_wait(comm.Ibarrier(), polite)
                comm.bcast(("error", exc), root=0)
                raise
            _polite_wait(comm.Ibarrier(), polite)
            comm.bcast(("ok", None), root=0)
            if progress is None:
                progress = exe.graph_stats.get("vertices", 0) >= AUTO_PROGRESS_VERTICES
            say = Progress(progress, "mpi")
            say(f"sending {size - 1} ranks their parts (about {exe.target.num_tiles // size} tiles a rank)")
            for r in range(1, size):
                comm.send((shell, payload, bounds), dest=r, tag=11)
            # every rank's part, one piece (a step's batches, an exchange phase...) at a time, so
            # the host never holds all the parts at once
            mine = []
            total = 2 + 3 * len(exe.computes) + len(exe.copies) + len(exe.prints)
            for count, (kind, values) in enumerate(split_pieces(exe, bounds), 1):
                if count * 4 // total > (count - 1) * 4 // total and count < total:
                    say(f"sent {count}/{total} pieces")
                for r in range(1, size):
                    comm.send((kind, values[r]), dest=r, tag=12)
                mine.append((kind, values[0]))
            for r in range(1, size):
                comm.send(None, dest=r, tag=12)
            part = assemble(0, bounds, memory_bounds_of(exe, bounds), mine)
            rank_bytes = comm.gather(_rank_bytes(part), root=0)
            rank_bytes = comm.bcast(_merge_rank_bytes(rank_bytes), root=0)
            say("every rank has its part")
            return cls(comm, exe, part, load_codelets(exe), rank_bytes)
        _polite_wait(comm.Ibarrier(), polite)  # the host compiles meanwhile: do not spin on its cores
        status, exc = comm.bcast(None, root=0)
        if status == "error":
            raise faults.mark_mirrored(exc)
        shell, payload, bounds = _polite_recv(comm, 11, polite)
        pieces = []
        while True:
            piece = _polite_recv(comm, 12, polite)
            if piece is None:
                break
            pieces.append(piece)
        part = assemble(rank, bounds, memory_bounds_of(shell, bounds), pieces)
        rank_bytes = comm.gather(_rank_bytes(part), root=0)
        rank_bytes = comm.bcast(None, root=0)
        return cls(comm, shell, part, _receive_codelets(shell, payload), rank_bytes)

    def __init__(self, comm: Any, exe: Executable, part: RankPart, codelets: dict[str, type[Vertex]],
                 rank_bytes: dict[str, list[int]]) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.is_host = self.rank == 0
        self.exe = exe
        self.part = part
        self.codelets = codelets
        self.rank_bytes = rank_bytes
        self.memory = TileMemory(part.memory_bytes)
        self.steps = StepRunner(self.memory, codelets)
        for dtype, words in part.init_words.items():
            self.memory.view(dtype)[words] = part.init_values[dtype]
        # more ranks than cores: poll politely instead of spinning in MPI's wait
        self.poll = 2e-4 if self.size > (os.cpu_count() or 1) else 0.0
        self.seconds = {"compute": 0.0, "exchange": 0.0, "waiting": 0.0, "host": 0.0}
        self.bytes_sent = 0

    # ---------------------------------------------------------------- helpers
    def _wait(self, request: Any) -> None:
        _polite_wait(request, self.poll > 0, self.poll)

    def _exchange(self, x: RankExchange) -> None:
        """Every source is read before any destination is written (a copy may overlap itself):
        pack what goes to other ranks, then do the local moves, then receive."""
        t0 = time.perf_counter()
        if not x.active:
            self.memory.apply(x.local)
            self.seconds["compute"] += time.perf_counter() - t0
            return
        send = np.empty(int(x.send_counts.sum()), dtype=np.uint8)
        recv = np.empty(int(x.recv_counts.sum()), dtype=np.uint8)
        self.memory.send(x.sends, send)
        self.memory.apply(x.local)
        t1 = time.perf_counter()
        self._wait(self.comm.Ibarrier())
        t2 = time.perf_counter()
        byte = self.MPI.BYTE
        self._wait(self.comm.Ialltoallv([send, (x.send_counts, x.send_displs), byte],
                                        [recv, (x.recv_counts, x.recv_displs), byte]))
        t3 = time.perf_counter()
        self.memory.receive(x.receives, recv)
        self.bytes_sent += send.size
        self.seconds["compute"] += (t1 - t0) + (time.perf_counter() - t3)
        self.seconds["waiting"] += t2 - t1
        self.seconds["exchange"] += t3 - t2

    # ---------------------------------------------------------------- supersteps
    def execute(self, index: int) -> None:
        step = self.exe.computes[index]
        self._exchange(self.part.pre[index])
        t0 = time.perf_counter()
        try:
            self.steps.run(index, self.part.batches[index], step.name)
        except Exception as exc:  # a failure on one rank must end every rank, not hang them
            faults.abort(exc)
        self.seconds["compute"] += time.perf_counter() - t0
        self._exchange(self.part.post[index])

    def copy(self, index: int) -> None:
        self._exchange(self.part.copies[index])  # type: ignore[arg-type]

    def _scatter_to_owners(self, g: RankGather, dtype: np.dtype, values: np.ndarray | None) -> np.ndarray:
        t0 = time.perf_counter()
        counts = g.counts * dtype.itemsize
        displs = np.cumsum(counts) - counts
        recv = np.empty(g.words.size, dtype=dtype)
        send = None
        if self.is_host:
            send = [np.ascontiguousarray(np.asarray(values, dtype=dtype)[g.order]).view(np.uint8),
                    (counts, displs), self.MPI.BYTE]
        self.comm.Scatterv(send, [recv.view(np.uint8), self.MPI.BYTE], root=0)
        self.seconds["host"] += time.perf_counter() - t0
        return recv

    def _gather_from_owners(self, g: RankGather, dtype: np.dtype, local: np.ndarray) -> np.ndarray | None:
        t0 = time.perf_counter()
        counts = g.counts * dtype.itemsize
        displs = np.cumsum(counts) - counts
        out = None
        recv = None
        if self.is_host:
            out = np.empty(int(g.counts.sum()), dtype=dtype)
            recv = [out.view(np.uint8), (counts, displs), self.MPI.BYTE]
        self.comm.Gatherv([np.ascontiguousarray(local).view(np.uint8), self.MPI.BYTE], recv, root=0)
        self.seconds["host"] += time.perf_counter() - t0
        if out is None:
            return None
        result = np.empty_like(out)
        result[g.order] = out
        return result

    def stream_in(self, index: int, values: np.ndarray | None) -> None:
        g = self.part.copies[index]
        dtype = np.dtype(self.exe.copies[index].dtype)
        self.memory.view(dtype)[g.words] = self._scatter_to_owners(g, dtype, values)  # type: ignore[arg-type]

    def stream_out(self, index: int) -> np.ndarray | None:
        g = self.part.copies[index]
        dtype = np.dtype(self.exe.copies[index].dtype)
        return self._gather_from_owners(g, dtype, self.memory.view(dtype)[g.words])  # type: ignore[union-attr]

    def print_values(self, index: int) -> np.ndarray | None:
        g = self.part.prints[index]
        dtype = np.dtype(self.exe.prints[index].dtype)
        return self._gather_from_owners(g, dtype, self.memory.view(dtype)[g.words])

    def predicate(self, index: int) -> bool:
        owner = self.part.predicate_owner[index]
        value = None
        if self.rank == owner:
            dtype = self.exe.predicates[index].dtype
            value = bool(self.memory.view(dtype)[self.part.predicate_word[index]] != 0)
        return bool(self.comm.bcast(value, root=owner))

    # ---------------------------------------------------------------- host I/O
    def on_host(self, prepare: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
        if self.is_host:
            try:
                payload, facts = prepare()
            except Exception as exc:
                self.comm.bcast(("error", exc), root=0)
                raise
            self.comm.bcast(("ok", facts), root=0)
            return payload, facts
        status, facts = self.comm.bcast(None, root=0)
        if status == "error":
            raise faults.mark_mirrored(facts)
        return None, facts

    def _route(self, addresses: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Host addresses grouped by owning rank: (my local byte offsets, counts, host order)."""
        order = counts = send = None
        if self.is_host:
            owner = np.searchsorted(self.part.memory_bounds, addresses, side="right") - 1
            order = stable_order(owner, max(self.size, 2))
            order = np.arange(owner.size) if order is None else order
            counts = np.bincount(owner, minlength=self.size).astype(np.int64)
            send = np.ascontiguousarray(addresses[order], dtype=np.int64)
        counts = self.comm.bcast(counts, root=0)
        mine = np.empty(int(counts[self.rank]), dtype=np.int64)
        displs = np.cumsum(counts) - counts
        self.comm.Scatterv([send, (counts, displs), self.MPI.INT64_T] if self.is_host else None,
                           [mine, self.MPI.INT64_T], root=0)
        mine -= int(self.part.memory_bounds[self.rank])
        return mine, counts, order

    def write_bytes(self, addresses: np.ndarray | None, dtype: np.dtype, values: np.ndarray | None) -> None:
        mine, counts, order = self._route(addresses)
        g = RankGather(mine // dtype.itemsize, counts, order if order is not None else np.zeros(0, np.int64))
        received = self._scatter_to_owners(g, dtype, values)
        self.memory.view(dtype)[g.words] = received

    def read_bytes(self, addresses: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
        mine, counts, order = self._route(addresses)
        g = RankGather(mine // dtype.itemsize, counts, order if order is not None else np.zeros(0, np.int64))
        return self._gather_from_owners(g, dtype, self.memory.view(dtype)[g.words])

    def share(self, value: Any) -> Any:
        return self.comm.bcast(value, root=0)

    def host_report(self) -> dict:
        mine = {
            "rank": self.rank,
            "tiles": [int(self.part.tile_bounds[self.rank]), int(self.part.tile_bounds[self.rank + 1])],
            "tile_memory_bytes": self.part.memory_bytes,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "bytes_sent": self.bytes_sent,
            **{f"{k}_seconds": v for k, v in self.seconds.items()},
        }
        ranks = self.comm.gather(mine, root=0)
        if not self.is_host:
            return {}
        compute = np.array([r["compute_seconds"] for r in ranks])
        return {"backend": "mpi", "ranks": self.size, "per_rank": ranks,
                "imbalance": float(compute.max() / compute.mean()) if compute.mean() > 0 else 1.0,
                "bytes_between_ranks": self.rank_bytes}

    def end_run(self) -> None:
        """The run's final sync: no rank leaves a run that failed on another rank."""
        t0 = time.perf_counter()
        self._wait(self.comm.Ibarrier())
        self.seconds["waiting"] += time.perf_counter() - t0

    def close(self) -> None:
        self.memory.workers.close()


def _polite_wait(request: Any, polite: bool, interval: float = 0.005) -> None:
    """Wait for a non-blocking MPI request; with more ranks than cores, sleep between tests instead
    of letting MPI spin on a core another rank needs."""
    if not polite:
        request.Wait()
        return
    while not request.Test():
        time.sleep(interval)


def _rank_bytes(part: RankPart) -> dict[str, list[int]]:
    """Bytes this rank sends to other ranks in each compute step (in + out exchange) and copy."""
    return {"compute": [pre.bytes_sent + post.bytes_sent for pre, post in zip(part.pre, part.post, strict=True)],
            "copy": [c.bytes_sent if isinstance(c, RankExchange) else 0 for c in part.copies]}


def _merge_rank_bytes(per_rank: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    """Bytes sent between ranks by each compute step and copy, summed over the ranks."""
    return {key: [int(sum(values)) for values in zip(*(r[key] for r in per_rank), strict=True)]
            for key in per_rank[0]}


def _polite_recv(comm: Any, tag: int, polite: bool) -> Any:
    """Receive the host's next message with ``tag``, sleeping between probes when oversubscribed."""
    while polite and not comm.Iprobe(source=0, tag=tag):
        time.sleep(0.002)
    return comm.recv(source=0, tag=tag)


def _receive_codelets(exe: Executable, payload: dict[str, bytes]) -> dict[str, type[Vertex]]:
    import cloudpickle

    codelets = {}
    for key in exe.codelets:
        if key in payload:
            codelets[key] = cloudpickle.loads(payload[key])
        else:
            try:
                codelets[key] = resolve_codelet(key)
            except UnknownCodeletError as exc:
                raise EngineError(f"rank cannot load codelet {key!r}: {exc}") from exc
    return codelets
