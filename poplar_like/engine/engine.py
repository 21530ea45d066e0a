"""``pl.Engine``: compiles (or takes) an executable and runs its programs.

The engine interprets the bytecode the same way on every backend: the local backend holds all
tiles in this process; the MPI backend spreads them over ranks, every rank running this same
loop (SPMD).  Host I/O (``write_tensor``, ``read_tensor``, streams, ``PrintTensor``) looks the
same from the script either way: the host is rank 0, and what it decides (an address list, an
error) reaches the other ranks through ``backend.on_host``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from ..arrays import unique_sorted
from ..compiler import Executable, compile_graph
from ..compiler.lowering import (BRANCH, COPY, END, EXECUTE, JUMP, LOOP, PRINT, SET, STREAM_IN, STREAM_OUT,
                                 UNDEF)
from ..dtypes import poplar_name
from ..errors import EngineError, OutOfMemoryError, StreamError, TensorError, TensorNotLiveError
from ..graph import Graph, Program, Tensor
from ..launch import launched_by_mpi
from .local import LocalBackend

BACKENDS = ("auto", "local", "mpi")
def _distinct(ids: np.ndarray) -> bool:
    """True if no element id repeats (cheap for the common increasing case)."""
    if ids.size < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return True
    return unique_sorted(ids).size == ids.size


class Engine:
    """Runs the programs of a graph (Poplar's ``Engine``).

    ``Engine(graph, program_or_programs, ...)`` compiles; ``Engine(executable)`` runs a compiled
    or loaded executable.  ``backend`` is ``"auto"`` (MPI when launched as several MPI ranks),
    ``"local"`` or ``"mpi"``.  Under MPI the script runs on every rank; the graph is compiled
    once, on rank 0, and each rank receives only its own tiles.
    """

    def __init__(self, graph: Graph | Executable, programs: Program | list[Program] | None = None, *,
                 backend: str = "auto", allow_out_of_memory: bool = False, checks: bool = True,
                 progress: bool | Callable[[str], None] | None = None, comm: Any = None) -> None:
        if backend not in BACKENDS:
            raise EngineError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        if backend == "auto":
            backend = "mpi" if (comm is not None or launched_by_mpi()) else "local"
        self.graph: Graph | None = None
        if isinstance(graph, Executable):
            if programs is not None:
                raise EngineError("Engine(executable) takes no programs: they were compiled into it")
            loaded = graph
            make: Callable[[], Executable] = lambda: loaded  # noqa: E731
        elif isinstance(graph, Graph):
            if programs is None:
                raise EngineError("Engine(graph, programs): give the program (or list of programs) to run")
            self.graph = graph
            source = graph

            def make() -> Executable:
                return compile_graph(source, programs, allow_out_of_memory=allow_out_of_memory,  # type: ignore
                                     checks=checks, progress=progress)
        else:
            raise EngineError(f"Engine needs a pl.Graph or a pl.Executable, got {type(graph).__name__}")
        if backend == "mpi":
            from .mpi import MPIBackend  # lazily: only MPI runs import mpi4py

            self.backend: Any = MPIBackend.create(make, comm, progress)
        else:
            self.backend = LocalBackend(make())
        self.executable: Executable = self.backend.exe
        exe = self.executable
        self._streams: dict[str, np.ndarray] = {}
        self._cursors: dict[str, int] = {}
        self.executions = np.zeros(len(exe.code), dtype=np.int64)
        self.step_seconds = np.zeros(len(exe.code), dtype=np.float64)
        self.runs: list[dict] = []
        self.last_program: int | None = None
        self._temporaries = np.zeros(len(exe.variables), dtype=bool)
        self._temporaries[exe.temporaries] = True

    @property
    def is_host(self) -> bool:
        """True on the process that holds host data (rank 0 under MPI): print from here."""
        return bool(self.backend.is_host)

    @property
    def rank(self) -> int:
        return int(self.backend.rank)

    @property
    def num_ranks(self) -> int:
        return int(self.backend.size)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # ================================================================ host I/O
    def _resolve(self, tensor: Tensor | str, what: str) -> tuple[np.ndarray, np.dtype, str]:
        exe = self.executable
        if isinstance(tensor, str):
            index = exe.variable_index(tensor)
            return exe.variable_ids(index), np.dtype(exe.variables[index]["dtype"]), tensor
        if not isinstance(tensor, Tensor):
            raise TensorError(f"{what} needs a tensor or a variable name, got {type(tensor).__name__}")
        if self.graph is not None and tensor.graph is not self.graph:
            raise TensorError(f"{what}: tensor {tensor.name!r} belongs to a different graph than this engine's")
        ids = tensor.ids
        if ids.size and (ids.min() < 0 or ids.max() >= exe.element_address.size):
            raise TensorError(f"{what}: tensor {tensor.name!r} does not belong to this executable's graph")
        variables = unique_sorted(exe.variable_of(ids.reshape(-1))) if ids.size else []
        for v in variables:
            if np.dtype(exe.variables[v]["dtype"]) != tensor.dtype:
                raise TensorError(f"{what}: tensor {tensor.name!r} does not match this executable's variables")
        return ids, tensor.dtype, tensor.name

    def _check_live(self, ids: np.ndarray, name: str, what: str) -> None:
        if not self._temporaries.any() or ids.size == 0:
            return
        variables = self.executable.variable_of(ids.reshape(-1))
        temp = self._temporaries[variables]
        if temp.any():
            var = self.executable.variables[int(variables[np.argmax(temp)])]["name"]
            raise TensorNotLiveError(
                f"{what}: {name!r} is (part of) variable {var!r}, a temporary of the programs: it is written "
                "before it is read and undefined (WriteUndef) at the end of every program, so its memory is "
                "shared with other variables and the host cannot see it. Print it inside the program with "
                "pl.PrintTensor, or remove its WriteUndef.")

    def write_tensor(self, tensor: Tensor | str, values: object) -> None:
        """Write host data into a tensor view; the shape must match exactly (rank 0's data under MPI)."""
        def prepare() -> tuple[Any, Any]:
            ids, dtype, name = self._resolve(tensor, "write_tensor")
            self._check_live(ids, name, "write_tensor")
            array = np.asarray(values)
            if array.shape != ids.shape:
                raise TensorError(f"write_tensor({name!r}): values have shape {array.shape} but the tensor has "
                                  f"shape {ids.shape}; no broadcasting is done")
            if not np.can_cast(array.dtype, dtype, casting="same_kind") and not (
                    array.dtype.kind in "iub" and dtype.kind in "iuf"):
                raise TensorError(f"write_tensor({name!r}): cannot write {array.dtype} values into a "
                                  f"{poplar_name(dtype)} tensor")
            flat_ids = ids.reshape(-1)
            constants = [v for v in unique_sorted(self.executable.variable_of(flat_ids)).tolist()
                         if self.executable.variables[v]["kind"] == "constant"] if flat_ids.size else []
            if constants:
                raise TensorError(f"write_tensor({name!r}): {self.executable.variables[constants[0]]['name']!r} "
                                  "is a constant; constants are set when the graph is built (add_constant)")
            if not _distinct(flat_ids):
                raise TensorError(f"write_tensor({name!r}): the view repeats elements, so the write is ambiguous")
            addresses = self.executable.element_address[flat_ids]
            return (addresses, array.reshape(-1).astype(dtype)), str(dtype)

        payload, dtype = self.backend.on_host(prepare)
        addresses, flat = payload if payload is not None else (None, None)
        self.backend.write_bytes(addresses, np.dtype(dtype), flat)

    def read_tensor(self, tensor: Tensor | str) -> np.ndarray:
        """A copy of a tensor view's current value, shaped like it (on every rank under MPI)."""
        def prepare() -> tuple[Any, Any]:
            ids, dtype, name = self._resolve(tensor, "read_tensor")
            self._check_live(ids, name, "read_tensor")
            return self.executable.element_address[ids.reshape(-1)], (str(dtype), ids.shape)

        addresses, (dtype, shape) = self.backend.on_host(prepare)
        values = self.backend.read_bytes(addresses, np.dtype(dtype))
        return self.backend.share(np.asarray(values).reshape(shape).copy() if values is not None else None)

    def connect_stream(self, name: str, buffer: np.ndarray) -> None:
        """Attach a host buffer to a stream; copies walk it circularly, ``num_elements`` at a time."""
        streams = {c.stream: c for c in self.executable.copies if c.stream}
        if name not in streams:
            known = sorted(streams) or ["(none used by the programs)"]
            raise StreamError(f"no stream called {name!r} is used by this engine's programs; streams: "
                              f"{', '.join(known)}")
        step = streams[name]
        if not isinstance(buffer, np.ndarray):
            raise StreamError(f"connect_stream({name!r}): the buffer must be a numpy array, got "
                              f"{type(buffer).__name__}")
        if buffer.dtype != np.dtype(step.dtype):
            raise StreamError(f"connect_stream({name!r}): the stream carries {poplar_name(np.dtype(step.dtype))} "
                              f"but the buffer is {buffer.dtype}")
        per_copy = _stream_elements(step)
        if buffer.size == 0 or buffer.size % per_copy:
            raise StreamError(f"connect_stream({name!r}): the buffer has {buffer.size} elements, expected a "
                              f"positive multiple of the {per_copy} elements each copy moves")
        if step.kind == "stream_out" and not buffer.flags.writeable:
            raise StreamError(f"connect_stream({name!r}): the device writes into this buffer; it is read-only")
        if not buffer.flags.c_contiguous:
            raise StreamError(f"connect_stream({name!r}): the buffer must be C-contiguous (the device reads and "
                              "writes it in place)")
        self._streams[name] = buffer.reshape(-1)
        self._cursors[name] = 0

    def _stream_chunk(self, name: str, count: int) -> tuple[np.ndarray, slice]:
        buffer = self._streams[name]
        start = self._cursors[name]
        self._cursors[name] = (start + count) % buffer.size
        return buffer, slice(start, start + count)

    def _check_before_run(self, program: int) -> None:
        exe = self.executable
        if isinstance(program, (bool, np.bool_)) or not isinstance(program, (int, np.integer)):
            raise EngineError(f"run({program!r}): the program is chosen by its index, an int")
        if not 0 <= program < exe.num_programs:
            raise EngineError(f"run({program}): the engine has {exe.num_programs} program(s) "
                              f"(0..{exe.num_programs - 1})")
        if exe.tiles_over_capacity:
            raise OutOfMemoryError(exe.oom_message, exe.tiles_over_capacity)
        pc = exe.entries[program]
        while exe.code[pc, 0] != END:
            if exe.code[pc, 0] in (STREAM_IN, STREAM_OUT):
                name = exe.copies[int(exe.code[pc, 1])].stream
                if name not in self._streams:
                    raise StreamError(f"program {program} copies through stream {name!r}, which is not connected; "
                                      f"call engine.connect_stream({name!r}, buffer) first")
            pc += 1

    # ================================================================ running
    def run(self, program: int = 0) -> None:
        """Run program ``program`` (an index into the list the engine was built with)."""
        self.backend.on_host(lambda: (self._check_before_run(program), None))
        exe = self.executable
        start = time.perf_counter()
        code = exe.code.tolist()
        counters = [0] * max(1, exe.num_counters)
        executions, seconds = self.executions, self.step_seconds
        backend, host = self.backend, self.backend.is_host
        pc = exe.entries[program]
        while True:
            op, a, b = code[pc]
            executions[pc] += 1
            t0 = time.perf_counter()
            if op == EXECUTE:
                backend.execute(a)
            elif op == COPY:
                backend.copy(a)
            elif op == STREAM_IN:
                step = exe.copies[a]
                values = None
                if host:
                    buffer, where = self._stream_chunk(step.stream, _stream_elements(step))
                    values = buffer[where]
                backend.stream_in(a, values)
            elif op == STREAM_OUT:
                step = exe.copies[a]
                values = backend.stream_out(a)
                if host:
                    buffer, where = self._stream_chunk(step.stream, _stream_elements(step))
                    buffer[where] = values
            elif op == PRINT:
                step = exe.prints[a]
                values = backend.print_values(a)
                if host:
                    text = np.array2string(np.asarray(values).reshape(step.shape), max_line_width=100)
                    print(f"{step.title}: {text}", flush=True)
            elif op == BRANCH:
                if not backend.predicate(a):
                    seconds[pc] += time.perf_counter() - t0
                    pc = b
                    continue
            elif op == SET:
                counters[a] = b
            elif op == LOOP:
                counters[a] -= 1
                if counters[a] > 0:
                    pc = b
                    continue
            elif op == JUMP:
                pc = a
                continue
            elif op == END:
                break
            elif op != UNDEF:
                raise EngineError(f"corrupt executable: unknown instruction {op} at {pc}")
            seconds[pc] += time.perf_counter() - t0
            pc += 1
        backend.end_run()
        self.last_program = program
        self.runs.append({"program": program, "seconds": time.perf_counter() - start})

    def profile(self) -> Any:
        """The report: memory, graph, exchange and cycles; execution counts after runs.

        Under MPI every rank must call it (it gathers per-rank timings); all get the same report.
        """
        from ..profile import Profile

        return Profile.from_engine(self)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stream_elements(step: Any) -> int:
    return int(step.host_bytes // np.dtype(step.dtype).itemsize)
