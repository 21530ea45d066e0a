"""The local backend: one process holds every tile's memory and runs every vertex.

Tile memory is one ``uint8`` array (the used part of each tile, concatenated) viewed as 1-, 2- and
4-byte items.  Every operand was resolved to word indices at compile time, so a superstep is a
handful of numpy gathers, one codelet call per batch, and scatters (``access`` finds the fast way
to do each, once per batch).  A codelet with a compiled ``in_place`` kernel (float products,
their partial-sum reductions, ReLU, addition and batch-norm apply) skips the gather and the
scatter: its kernel reads and writes the fields where they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codelet import INPUT, STATE, Field, Vertex, resolve_codelet
from ..compiler.executable import BatchPlan, Executable, Moves
from ..errors import CodeletError
from . import kernels
from .access import PARALLEL_MIN, FieldAccess, WordList, Workers, compiled, put_words, take_words
from .kernels import RAW


#: elements of a batch run by an in-place kernel above which it is split over the copy threads
IN_PLACE_PARALLEL_MIN = 1 << 16


_ONE_THREAD = Workers(1)  # for copies that must write in order


class TileMemory:
    """The backing store of a range of tiles, with typed and raw views."""

    def __init__(self, nbytes: int, workers: Workers | None = None) -> None:
        self.store = np.zeros(nbytes + (-nbytes) % 8, dtype=np.uint8)
        self._views: dict[Any, np.ndarray] = {}
        self.workers = workers or Workers()
        self._moves: dict[int, tuple[Moves, list[Any]]] = {}
        self._words: dict[tuple[int, int], tuple[Moves, np.ndarray, np.ndarray]] = {}

    def view(self, dtype: np.dtype | str) -> np.ndarray:
        # keyed by the object asked with (a superstep asks thousands of times, and normalising
        # the key cost more than the lookup); two keys of one type give two views of one memory
        found = self._views.get(dtype)
        if found is None:
            found = self._views[dtype] = self.store.view(np.dtype(dtype))
        return found

    def raw(self, itemsize: int) -> np.ndarray:
        return self.view(RAW[itemsize])

    def apply(self, moves: Moves) -> None:
        """Copy elements (bit-exact, whatever their type).  Every source is read before any
        destination is written, so a copy may overlap itself."""
        known = self._moves.get(id(moves))
        if known is None or known[0] is not moves:  # first use: find each list's fastest path
            known = (moves, [self._plan_moves(moves, size) for size in moves.sizes()])
            self._moves[id(moves)] = known
        for size, one_pass, src, dst in known[1]:
            view = self.raw(size)
            if one_pass is None:
                dst.put(view, src.take(view, self.workers), self.workers)
                continue
            # an exchange: sources and destinations apart, so copy in one pass, run by run
            length, count = one_pass
            self.workers.run(lambda chunk: kernels.move_runs(view, view, src, dst, length, chunk.start, chunk.stop),
                             length.size, max(1, count // max(length.size, 1)))

    def send(self, moves: Moves, buffer: np.ndarray) -> None:
        """``buffer[dst] = store[src]`` for each item size of ``moves``: a rank packing what it
        sends (the destinations are positions in the byte buffer viewed as items, each written
        once, so big lists are split over threads)."""
        for size in moves.sizes():
            self._between(buffer.view(RAW[size]), self.raw(size), moves, size, threads=True)

    def receive(self, moves: Moves, buffer: np.ndarray) -> None:
        """``store[dst] = buffer[src]`` for each item size of ``moves``, in order (a word written
        twice keeps the later value)."""
        for size in moves.sizes():
            self._between(self.raw(size), buffer.view(RAW[size]), moves, size, threads=False)

    def _between(self, to_view: np.ndarray, from_view: np.ndarray, moves: Moves, size: int, threads: bool) -> None:
        count = moves.count(size)
        workers = self.workers if threads else _ONE_THREAD  # one thread: chunks in order
        if compiled(count):
            src, dst, length = moves.src_start[size], moves.dst_start[size], moves.length[size]
            workers.run(lambda chunk: kernels.move_runs(to_view, from_view, src, dst, length, chunk.start, chunk.stop),
                        length.size, max(1, count // length.size))
            return
        known = self._words.get((id(moves), size))
        if known is None or known[0] is not moves:  # numpy's path: one word per element, kept
            known = self._words[(id(moves), size)] = (moves, *moves.words(size))
        put_words(to_view, known[2], take_words(from_view, known[1], self.workers), workers)

    def _plan_moves(self, moves: Moves, size: int) -> tuple:
        """(size, one pass, sources, destinations).  One pass from source to destination, run by
        run, when the compiled loops are there and no element is both read and written (or
        written twice): the compiler says so of every exchange (``Moves.apart``), other copies
        are checked by marking their words.  ``one_pass`` then holds the runs' lengths and their
        element count, and the sources and destinations are the runs' first words.  Else it is
        None and the lists are ``WordList``s of every element's word."""
        count = moves.count(size)
        if compiled(count):
            src, dst, length = (np.ascontiguousarray(a) for a in
                                (moves.src_start[size], moves.dst_start[size], moves.length[size]))
            if moves.apart or all(kernels.check_disjoint(src, dst, length, self.raw(size).size)):
                return size, (length, count), src, dst
        src, dst = moves.words(size)
        return size, None, WordList(src), WordList(dst)


def load_codelets(exe: Executable) -> dict[str, type[Vertex]]:
    """The executable's codelet classes: those it was compiled with, else imported by path."""
    return {key: exe.codelet_classes.get(key) or resolve_codelet(key.split("#")[0]) for key in exe.codelets}


def runs_in_place(codelet: type[Vertex]) -> bool:
    """Whether the engine hands the codelet's batches to its ``in_place`` kernel.  The choice
    depends only on the codelet and this machine, never on a batch's size, so every backend runs
    an instance the same way (in-place kernels give compute's bits anyway)."""
    return codelet.in_place is not None and kernels.available()


@dataclass
class PreparedBatch:
    """A batch and how it runs: in place by its codelet's compiled kernel, or gathered, with the
    access path of each field worked out the first time it is gathered."""

    batch: BatchPlan
    codelet: type[Vertex]
    workers: Workers  # the threads its field copies may use
    in_place: bool  # the codelet's ``in_place`` kernel runs it (until it says it cannot)
    _fields: list[tuple[str, Field, FieldAccess]] | None = None
    _starts: VectorLayouts | None = None

    @classmethod
    def of(cls, batch: BatchPlan, codelet: type[Vertex], workers: Workers) -> "PreparedBatch":
        return cls(batch, codelet, workers, runs_in_place(codelet))

    def words(self) -> dict[str, np.ndarray]:
        """Each field's word indices, instance-major (what ``in_place`` reads)."""
        return {name: self.batch.state[name] if fld.direction == STATE else self.batch.fields[name]
                for name, fld in self.codelet.fields.items()}

    def starts(self) -> VectorLayouts:
        """The :class:`VectorLayouts` of the batch's fields (each worked out on first use)."""
        if self._starts is None:
            self._starts = VectorLayouts(self.codelet, self.batch.fields)
        return self._starts

    @property
    def fields(self) -> list[tuple[str, Field, FieldAccess]]:
        """(name, field, access path) of every field, analysed on first use."""
        if self._fields is None:
            self._fields = [(name, fld, FieldAccess(words)) for (name, words), fld
                            in zip(self.words().items(), self.codelet.fields.values(), strict=True)]
        return self._fields


class VectorLayouts(Mapping[str, np.ndarray]):
    """What ``in_place`` gets as ``starts``: for each edge field ``f``, ``[f]``, where each of its
    vectors starts if it is one run of words, else -1 (``kernels.vector_starts``);
    ``[f + ".columns"]``, where it starts if it is a matrix stored column by column, else -1
    (``kernels.vector_columns``); and ``[f + ".runs"]`` and ``[f + ".run_table"]``, the runs of
    the vectors made of a few (``kernels.vector_runs``).  Each is worked out the first time a
    kernel asks for it: only the products read the last three."""

    def __init__(self, codelet: type[Vertex], fields: dict[str, np.ndarray]) -> None:
        self._fields = {name: fields[name] for name, fld in codelet.fields.items() if fld.direction != STATE}
        self._found: dict[str, np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        found = self._found.get(key)
        if found is None:
            name, _, layout = key.partition(".")
            words = self._fields[name]
            if layout == "":
                found = self._found[key] = kernels.vector_starts(words)
            elif layout == "columns":
                found = self._found[key] = kernels.vector_columns(words)
            elif layout in ("runs", "run_table"):
                self._found[f"{name}.runs"], self._found[f"{name}.run_table"] = kernels.vector_runs(words)
                found = self._found[key]
            else:
                raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return (f"{name}{layout}" for name in self._fields for layout in ("", ".columns", ".runs", ".run_table"))

    def __len__(self) -> int:
        return 4 * len(self._fields)


def rows_of(batch: BatchPlan, lo: int, hi: int) -> BatchPlan:
    """The instances ``lo:hi`` of a batch (views, no copies)."""
    return dataclasses.replace(batch, tiles=batch.tiles[lo:hi], cycles=batch.cycles[lo:hi],
                               fields={k: v[lo:hi] for k, v in batch.fields.items()},
                               state={k: v[lo:hi] for k, v in batch.state.items()})


class StepRunner:
    """Runs the batches of compute steps, preparing each step's batches the first time it runs.

    A big batch is cut into one block of instances per copy thread, and the blocks run side by
    side, each gathering, computing and scattering its own rows (numpy releases the GIL in all
    three).  That is safe because the compiler refuses an element that one vertex writes and
    another reads or writes in the same compute set, and the codelet sees the same instances
    either way: a codelet is vectorised over instances, which the MPI backend splits too.
    """

    def __init__(self, memory: TileMemory, codelets: dict[str, type[Vertex]]) -> None:
        self.memory = memory
        self.codelets = codelets
        self._serial = Workers(1)
        self._prepared: dict[int, list[list[PreparedBatch]]] = {}

    def _prepare(self, batch: BatchPlan) -> list[PreparedBatch]:
        codelet = self.codelets[batch.codelet]
        threads, n = self.memory.workers.threads, batch.tiles.size
        elements = sum(words.size for words in batch.fields.values())
        # a compiled in-place kernel has no per-call setup to amortise: smaller batches pay to split
        smallest = IN_PLACE_PARALLEL_MIN if runs_in_place(codelet) else PARALLEL_MIN
        if threads == 1 or n < 2 or elements < smallest:
            return [PreparedBatch.of(batch, codelet, self.memory.workers)]
        bounds = np.linspace(0, n, min(threads, n) + 1).astype(np.int64).tolist()
        return [PreparedBatch.of(rows_of(batch, lo, hi), codelet, self._serial)
                for lo, hi in zip(bounds[:-1], bounds[1:])]

    def run(self, index: int, batches: list[BatchPlan], step_name: str) -> None:
        prepared = self._prepared.get(index)
        if prepared is None:
            prepared = [self._prepare(b) for b in batches]
            self._prepared[index] = prepared
        for blocks in prepared:
            if len(blocks) == 1:
                run_batch(self.memory, blocks[0], step_name)
            else:
                self.memory.workers.map(lambda block: run_batch(self.memory, block, step_name), blocks)


def run_batch(memory: TileMemory, prepared: PreparedBatch, step_name: str) -> None:
    """Run a batch in place by its codelet's compiled kernel; else gather its fields, call the
    codelet once and scatter what it wrote."""
    codelet = prepared.codelet
    if prepared.in_place:
        try:
            done = codelet.in_place(memory.view, prepared.words(), prepared.starts())  # type: ignore[misc]
        except Exception as exc:
            raise _locate_failure(memory, prepared.batch, codelet, step_name, exc) from exc
        if done:
            return
        prepared.in_place = False  # no compiler here, or a batch it leaves to compute: gather from now on
    args: dict[str, np.ndarray] = {}
    for name, fld, access in prepared.fields:
        array = access.read(memory.view(fld.type.dtype), prepared.workers)
        if fld.direction in (INPUT, STATE):
            array.flags.writeable = False
        args[name] = array
    try:
        codelet.compute(**args)  # type: ignore[misc]
    except Exception as exc:
        raise _locate_failure(memory, prepared.batch, codelet, step_name, exc) from exc
    for name, fld, access in prepared.fields:
        if fld.writes:
            access.write(memory.view(fld.type.dtype), args[name], prepared.workers)


def _locate_failure(memory: TileMemory, batch: BatchPlan, codelet: type[Vertex], step_name: str,
                    exc: Exception) -> CodeletError:
    """Re-run the batch tile by tile (error path only) to name the tile whose vertex raised."""
    tiles = batch.tiles
    failing = int(tiles[0]) if tiles.size else -1
    for tile in np.unique(tiles).tolist():
        subset = np.flatnonzero(tiles == tile)
        try:
            args = {name: memory.view(f.type.dtype)[
                (batch.state[name] if f.direction == STATE else batch.fields[name])[subset]].copy()
                for name, f in codelet.fields.items()}
            codelet.compute(**args)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - any failure marks the tile
            failing = tile
            break
    return CodeletError(f"codelet {codelet.__name__} raised {type(exc).__name__}: {exc} "
                        f"(compute set {step_name!r}, tile {failing})")


class LocalBackend:
    """Runs every tile in this process; it is also the host."""

    name = "local"
    rank = 0
    size = 1
    is_host = True

    def __init__(self, exe: Executable) -> None:
        self.exe = exe
        self.memory = TileMemory(exe.memory_bytes)
        self.codelets = load_codelets(exe)
        self.steps = StepRunner(self.memory, self.codelets)
        for dtype, words in exe.init_words.items():
            self.memory.view(dtype)[words] = exe.init_values[dtype]

    # ---- supersteps (by step index)
    def execute(self, index: int) -> None:
        step = self.exe.computes[index]
        self.memory.apply(step.pre)
        self.steps.run(index, step.batches, step.name)
        self.memory.apply(step.post)

    def copy(self, index: int) -> None:
        self.memory.apply(self.exe.copies[index].moves)

    def stream_in(self, index: int, values: np.ndarray | None) -> None:
        step = self.exe.copies[index]
        self.memory.view(step.dtype)[step.words] = values

    def stream_out(self, index: int) -> np.ndarray | None:
        step = self.exe.copies[index]
        return self.memory.view(step.dtype)[step.words]

    def print_values(self, index: int) -> np.ndarray | None:
        step = self.exe.prints[index]
        return self.memory.view(step.dtype)[step.words]

    def predicate(self, index: int) -> bool:
        pred = self.exe.predicates[index]
        return bool(self.memory.view(pred.dtype)[pred.word] != 0)

    # ---- host side
    def on_host(self, prepare: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
        """Run ``prepare`` on the host; it returns (payload for the host, facts for every rank)."""
        return prepare()

    def write_bytes(self, addresses: np.ndarray | None, dtype: np.dtype, values: np.ndarray | None) -> None:
        self.memory.view(dtype)[addresses // dtype.itemsize] = values

    def read_bytes(self, addresses: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
        return self.memory.view(dtype)[addresses // dtype.itemsize]

    def host_report(self) -> dict:
        return {"backend": "local", "ranks": 1}

    def share(self, value: Any) -> Any:
        """The host's value on every rank (nothing to do in one process)."""
        return value

    def end_run(self) -> None:
        """Nothing to synchronise in one process."""

    def close(self) -> None:
        self.memory.workers.close()
