"""The Executable: everything needed to run a compiled graph, as plain data.

It holds numpy arrays and JSON-able values only, so it saves to one ``.npz`` file (arrays plus a
JSON header, loaded with ``allow_pickle=False``: a file is data, never code) and splits by MPI
rank by slicing arrays.  Codelets are named by import path.

Addresses: the engine's backing store concatenates the used part of every tile;
``tile_offsets[t]`` is where tile ``t`` starts.  A *word index* of item size ``s`` is a byte
address divided by ``s``: it indexes the store viewed as ``s``-byte items.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GraphError
from ..target import Target
from .lowering import OP_NAMES

FORMAT = "poplar_like.executable"
VERSION = 2  # 2: moves stored as runs


@dataclass
class Moves:
    """Element copies grouped by item size, stored as runs.

    For item size ``s``, run ``r`` copies ``length[s][r]`` consecutive words from word
    ``src_start[s][r]`` to word ``dst_start[s][r]``; the runs in order spell out the element list
    ``store[s][dst] = store[s][src]`` that :meth:`words` returns.  Runs rather than an index pair
    per element because the compiler orders each tile's exchange slots as their senders hold the
    elements: ResNet-50's inference moves 257 million elements in 43 million runs, a quarter of
    the memory, and the engine copies a run without reading an index per element.
    """

    src_start: dict[int, np.ndarray] = field(default_factory=dict)
    dst_start: dict[int, np.ndarray] = field(default_factory=dict)
    length: dict[int, np.ndarray] = field(default_factory=dict)
    #: the compiler's word that no source is also a destination and no destination repeats (an
    #: exchange: element homes to exchange slots or back), so the engine may copy in one pass
    #: without checking; a ``Copy`` program's moves leave it False and the engine checks them
    apart: bool = False

    @classmethod
    def from_words(cls, src: dict[int, np.ndarray], dst: dict[int, np.ndarray], apart: bool = False) -> "Moves":
        """The runs of element lists ``store[s][dst[s]] = store[s][src[s]]`` (same order)."""
        moves = cls(apart=apart)
        for size, words in src.items():
            if words.shape != dst[size].shape or words.ndim != 1:
                raise GraphError(f"moves of {size}-byte items: {words.shape[0]} sources but "
                                 f"{dst[size].shape[0]} destinations")
            if words.size:
                moves.src_start[size], moves.dst_start[size], moves.length[size] = runs_of(words, dst[size])
        return moves

    def sizes(self) -> list[int]:
        return list(self.length)

    def count(self, size: int) -> int:
        """Elements moved of ``size``-byte items."""
        return int(self.length[size].sum(dtype=np.int64)) if size in self.length else 0

    def words(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(sources, destinations): one word index per element, in order."""
        return (expand_runs(self.src_start[size], self.length[size]),
                expand_runs(self.dst_start[size], self.length[size]))

    def is_empty(self) -> bool:
        return not any(a.size for a in self.length.values())


def runs_of(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first source, first destination, length) of each run of a move list in which both sides
    step by one word; the lengths in the lists' own index type (int64 past 2**31 elements)."""
    steps = (np.diff(src) != 1) | (np.diff(dst) != 1)  # int32 differences cannot overflow
    firsts = np.flatnonzero(steps)
    firsts += 1
    firsts = np.concatenate([np.zeros(1, dtype=firsts.dtype), firsts])
    length = np.diff(np.append(firsts, src.size))
    kind = src.dtype if src.size < 2 ** 31 else np.dtype(np.int64)
    return src[firsts], dst[firsts], length.astype(kind)


def expand_runs(start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The word of every element of the runs (``start[r]``, ``length[r]``), in ``start``'s type."""
    total = int(length.sum(dtype=np.int64))
    first_position = np.cumsum(length, dtype=np.int64)
    first_position -= length
    out = np.arange(total, dtype=np.int64)
    out += np.repeat(start.astype(np.int64) - first_position, length)
    return out.astype(start.dtype, copy=False)


@dataclass
class BatchPlan:
    codelet: str  # import path
    tiles: np.ndarray  # (n,) int32 ascending
    fields: dict[str, np.ndarray]  # field -> word indices (n, *shape) in the field's item size
    state: dict[str, np.ndarray]  # state field -> word indices (n,)
    cycles: np.ndarray  # (n,) int64
    multi_worker: bool = False


@dataclass
class ComputeStep:
    name: str
    batches: list[BatchPlan]
    pre: Moves
    post: Moves
    tile_cycles: np.ndarray  # (T,) compute cycles by tile
    pre_sent: np.ndarray
    pre_received: np.ndarray
    post_sent: np.ndarray
    post_received: np.ndarray
    exchange_bytes: int
    inter_ipu_bytes: int
    compute_cycles: int
    exchange_cycles: int
    sync_cycles: int


@dataclass
class CopyStep:
    name: str
    kind: str  # copy | stream_in | stream_out
    moves: Moves  # for kind == copy
    words: np.ndarray  # stream end: word indices of the tensor (numel,)
    dtype: str
    stream: str
    sent: np.ndarray
    received: np.ndarray
    exchange_bytes: int
    inter_ipu_bytes: int
    host_bytes: int
    compute_cycles: int
    exchange_cycles: int
    sync_cycles: int
    host_cycles: int


@dataclass
class PrintStep:
    title: str
    dtype: str
    shape: list[int]
    words: np.ndarray
    host_cycles: int
    sync_cycles: int


@dataclass
class Predicate:
    name: str
    dtype: str
    word: int


@dataclass
class Executable:
    """A compiled graph and its programs."""

    target: Target
    variables: list[dict]  # name, dtype, shape, base, kind
    element_address: np.ndarray  # (E,) global byte address of every element
    tile_offsets: np.ndarray  # (T+1,)
    init_words: dict[str, np.ndarray]  # dtype name -> word indices written at load
    init_values: dict[str, np.ndarray]  # dtype name -> values
    code: np.ndarray  # (I, 3) int64 bytecode
    entries: list[int]
    num_counters: int
    computes: list[ComputeStep]
    copies: list[CopyStep]
    prints: list[PrintStep]
    predicates: list[Predicate]
    undefs: list[str]
    dead_at_end: list[list[int]]  # per program, variables undefined at its end
    temporaries: list[int]  # variables whose memory is shared with others
    categories: dict[str, np.ndarray]  # memory category -> (T,) bytes
    nal_by_step: np.ndarray  # (I, T) not-always-live bytes at each instruction
    pieces: dict[str, np.ndarray]  # variable pieces: var, tile, bytes
    graph_stats: dict[str, int]
    codelets: dict[str, int]  # codelet path -> code size
    ops: list[dict] = field(default_factory=list)  # the graph's op records (poplar_like.ops), JSON-able
    allow_out_of_memory: bool = False
    tiles_over_capacity: list[int] = field(default_factory=list)
    oom_message: str = ""
    #: the codelet classes compiled in this process, by key (never saved: a file names codelets by path)
    codelet_classes: dict = field(default_factory=dict, repr=False, compare=False, metadata={"transient": True})

    # ------------------------------------------------------------------ facts
    @property
    def num_programs(self) -> int:
        return len(self.entries)

    @property
    def memory_bytes(self) -> int:
        return int(self.tile_offsets[-1])

    def tile_bytes(self) -> np.ndarray:
        return sum(self.categories.values())  # type: ignore[return-value]

    def variable_index(self, name: str) -> int:
        found = [i for i, v in enumerate(self.variables) if v["name"] == name]
        if not found:
            raise GraphError(f"the executable has no variable called {name!r}")
        if len(found) > 1:
            raise GraphError(f"{len(found)} variables are called {name!r}; address the tensor object instead")
        return found[0]

    def variable_ids(self, index: int) -> np.ndarray:
        v = self.variables[index]
        size = int(np.prod(v["shape"], dtype=np.int64))
        return np.arange(v["base"], v["base"] + size, dtype=np.int64).reshape(v["shape"])

    def variable_of(self, ids: np.ndarray) -> np.ndarray:
        bases = np.array([v["base"] for v in self.variables], dtype=np.int64)
        return np.searchsorted(bases, ids, side="right") - 1

    def instruction_text(self) -> str:
        """The bytecode, one instruction a line, with step names."""
        lines = []
        for pc, (op, a, b) in enumerate(self.code.tolist()):
            name = OP_NAMES[op]
            detail = ""
            if name == "EXECUTE":
                detail = self.computes[a].name
            elif name in ("COPY", "STREAM_IN", "STREAM_OUT"):
                detail = self.copies[a].name
            elif name == "PRINT":
                detail = self.prints[a].title
            elif name == "BRANCH":
                detail = f"if {self.predicates[a].name} == 0 goto {b}"
            elif name in ("JUMP",):
                detail = f"goto {a}"
            elif name == "LOOP":
                detail = f"counter {a}, goto {b}"
            elif name == "SET":
                detail = f"counter {a} = {b}"
            head = f"program {self.entries.index(pc)}:" if pc in self.entries else ""
            lines.append(f"{head:>11} {pc:5d}  {name:<10} {detail}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ files
    def save(self, path: str) -> None:
        """Write the executable as one ``.npz`` (arrays + JSON header); no pickled objects."""
        arrays: dict[str, np.ndarray] = {}
        header = {"format": FORMAT, "version": VERSION, "executable": _to_plain(self, arrays)}
        arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str) -> "Executable":
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        header = json.loads(bytes(arrays.pop("__header__")).decode())
        if header.get("format") != FORMAT:
            raise GraphError(f"{path}: not a poplar_like executable (format {header.get('format')!r})")
        if header.get("version") != VERSION:
            raise GraphError(f"{path}: executable format version {header.get('version')}, this runtime reads "
                             f"version {VERSION}")
        return _from_plain(header["executable"], arrays)  # type: ignore[return-value]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, np.ndarray] = {}
        header = {"format": FORMAT, "version": VERSION, "executable": _to_plain(self, arrays)}
        arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez(buf, **arrays)
        return buf.getvalue()


_TYPES = {t.__name__: t for t in (Moves, BatchPlan, ComputeStep, CopyStep, PrintStep, Predicate, Executable, Target)}


def _to_plain(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__,
                **{f.name: _to_plain(getattr(obj, f.name), arrays) for f in dataclasses.fields(obj)
                   if not f.metadata.get("transient")}}
    if isinstance(obj, dict):
        return {"__dict__": [[_to_plain(k, arrays), _to_plain(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(x, arrays) for x in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.dtype):
        return str(obj)
    return obj


def _from_plain(data: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(data, dict):
        if "__array__" in data:
            return arrays[data["__array__"]]
        if "__dict__" in data:
            return {_from_plain(k, arrays): _from_plain(v, arrays) for k, v in data["__dict__"]}
        if "__type__" in data:
            cls = _TYPES[data["__type__"]]
            return cls(**{k: _from_plain(v, arrays) for k, v in data.items() if k != "__type__"})
        return {k: _from_plain(v, arrays) for k, v in data.items()}
    if isinstance(data, list):
        return [_from_plain(x, arrays) for x in data]
    return data
