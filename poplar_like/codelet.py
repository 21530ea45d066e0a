"""Codelets: the small programs vertices run, declared as Python classes.

A codelet declares its fields (edges to tensor regions, or scalar vertex state) and gives:

* ``compute(**fields)``: vectorised over the instances of one batch.  Every field arrives as an
  array whose first axis is the instance: a scalar field is ``(n,)``, a ``Vector`` field
  ``(n, length)``, a ``VectorList`` field ``(n, count, length)``.  Outputs are filled in place.
  Inputs are read-only arrays, so a codelet that writes one fails loudly.
* ``cycles(**sizes)``: the per-instance cycle estimate, vectorised, from field sizes
  (``<field>_length`` for vectors, ``<field>_count``/``<field>_length`` for vector lists),
  vertex state values (by field name) and, if it asks for it, ``target`` (the
  :class:`~poplar_like.target.Target`, as Poplar hands its perf estimators).  Omitting it is allowed only if every vertex gets a
  ``graph.set_perf_estimate``; a missing estimate is an error, never a silent zero.
* ``code_size``: bytes of code on each tile that runs the codelet.
* ``in_place`` (optional): a compiled fast path that runs a batch where its fields live in tile
  memory, instead of the engine gathering every field into one array, calling ``compute`` and
  scattering the outputs.  It is called as ``in_place(view, words, starts)``: ``view(dtype)`` is the
  tile memory as an array of that type, ``words`` maps each field name to its word indices in
  that view, instance-major as ``compute`` would see the field, and ``starts`` maps each edge
  field to the first word of each of its vectors where that vector is one run of consecutive
  words, else -1 (so a kernel can read and write runs as slices); ``"<field>.columns"`` to
  the first word of each vector that is a matrix stored column by column in one run, else -1
  (``engine.kernels.vector_columns``: how a block read transposed arrives by exchange); and
  ``"<field>.runs"`` and ``"<field>.run_table"`` to the runs of each vector made of a few
  (``engine.kernels.vector_runs``: a block of weights, part local and part received).  It must
  compute exactly what ``compute`` computes, bit for bit (NaN payloads aside: which NaN an
  operation on two NaNs gives is the processor's choice; the tests hold the built-in ones to
  that), raise as ``compute`` does on bad sizes, and return False, touching nothing, when it
  cannot run here (its compiler is missing, or the batch is one it leaves to ``compute``); the
  engine then takes the gather path.

The same estimate functions are what the op planners use, so "one cost formula, used twice".
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .dtypes import as_dtype, poplar_name
from .errors import UnknownCodeletError

SCALAR, VECTOR, VECTOR_LIST = "scalar", "vector", "vector_list"
INPUT, OUTPUT, INOUT, STATE = "input", "output", "inout", "state"

DEFAULT_CODE_SIZE = 256  # bytes; documented in docs/cost-model.md


@dataclass(frozen=True)
class FieldType:
    """Element type and shape class of a field: a scalar, a ``Vector`` or a ``VectorList``."""

    dtype: np.dtype
    kind: str = SCALAR
    size: int | None = None  # fixed length of a Vector, when the codelet requires one

    def __str__(self) -> str:
        name = poplar_name(self.dtype)
        if self.kind == VECTOR:
            return f"Vector<{name}>" if self.size is None else f"Vector<{name}, {self.size}>"
        if self.kind == VECTOR_LIST:
            return f"VectorList<{name}>"
        return name


def Vector(dtype: object, size: int | None = None) -> FieldType:  # noqa: N802 - Poplar's name
    """A 1-D contiguous vector field; ``size`` fixes its length when the codelet needs it."""
    return FieldType(as_dtype(dtype, "Vector element type"), VECTOR, size)


def VectorList(dtype: object) -> FieldType:  # noqa: N802 - Poplar's name
    """A list of vectors of one length (connected to a list of 1-D tensors or a 2-D tensor)."""
    return FieldType(as_dtype(dtype, "VectorList element type"), VECTOR_LIST)


def _as_field_type(value: object) -> FieldType:
    if isinstance(value, FieldType):
        return value
    return FieldType(as_dtype(value, "field type"), SCALAR)


class Field:
    """A declared field of a codelet; ``name`` and ``owner`` are filled in by the class."""

    def __init__(self, direction: str, ftype: object) -> None:
        self.direction = direction
        self.type = _as_field_type(ftype)
        if direction == STATE and self.type.kind != SCALAR:
            raise TypeError("vertex state fields are scalars")
        self.name = ""
        self.owner = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner = owner.__name__

    @property
    def is_edge(self) -> bool:
        return self.direction != STATE

    @property
    def reads(self) -> bool:
        return self.direction in (INPUT, INOUT)

    @property
    def writes(self) -> bool:
        return self.direction in (OUTPUT, INOUT)

    def __repr__(self) -> str:
        kind = {INPUT: "Input", OUTPUT: "Output", INOUT: "InOut", STATE: "State"}[self.direction]
        return f"{kind}({self.type})"


def Input(ftype: object) -> Any:  # noqa: N802 - Poplar's name
    """A field the vertex reads."""
    return Field(INPUT, ftype)


def Output(ftype: object) -> Any:  # noqa: N802
    """A field the vertex writes; it may live on another tile (sent in the exchange after compute)."""
    return Field(OUTPUT, ftype)


def InOut(ftype: object) -> Any:  # noqa: N802
    """A field the vertex reads and writes."""
    return Field(INOUT, ftype)


def State(ftype: object) -> Any:  # noqa: N802
    """Scalar vertex state set with ``graph.set_initial_value`` (a plain member in Poplar)."""
    return Field(STATE, ftype)


class Vertex:
    """Base class of codelets that run on one worker thread (Poplar's ``Vertex``).

    Subclasses declare fields as class attributes and define ``compute`` and ``cycles`` without
    ``self``; they are never instantiated.
    """

    fields: dict[str, Field] = {}
    code_size: int = DEFAULT_CODE_SIZE
    #: True for codelets whose instance spreads its work over all worker contexts of the tile.
    multi_worker: bool = False
    compute: Callable[..., Any] | None = None
    cycles: Callable[..., Any] | None = None
    #: Optional compiled fast path ``in_place(view, words, starts) -> bool`` (module docstring).
    in_place: Callable[..., bool] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, Field] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(getattr(base, "fields", {}) or {})
        for name, value in vars(cls).items():
            if isinstance(value, Field):
                fields[name] = value
        cls.fields = fields
        for name in ("compute", "cycles", "in_place"):
            func = vars(cls).get(name)
            if isinstance(func, (staticmethod, classmethod)):
                func = func.__func__
            if func is not None:
                setattr(cls, name, staticmethod(func))
        if cls.compute is not None and not inspect.isabstract(cls):
            _check_compute_signature(cls)
        if cls.cycles is not None:
            _check_cycles_signature(cls)
        if not isinstance(cls.code_size, (int, np.integer)) or cls.code_size < 0:
            raise TypeError(f"codelet {cls.__name__}: code_size must be a non-negative int")

    @classmethod
    def path(cls) -> str:
        """Import path ``module:QualName`` by which executables refer to the codelet."""
        return f"{cls.__module__}:{cls.__qualname__}"

    @classmethod
    def size_arguments(cls) -> set[str]:
        """Names ``cycles`` may take: vector lengths, list counts and state values."""
        names: set[str] = set()
        for name, fld in cls.fields.items():
            if fld.type.kind == VECTOR:
                names.add(f"{name}_length")
            elif fld.type.kind == VECTOR_LIST:
                names.update({f"{name}_count", f"{name}_length"})
            elif fld.direction == STATE:
                names.add(name)
        return names


class MultiVertex(Vertex):
    """A codelet whose instance uses every worker of its tile (Poplar's ``MultiVertex``).

    Its ``cycles`` give one worker's share; the cost model charges them on all workers.
    """

    multi_worker = True


def _check_compute_signature(cls: type[Vertex]) -> None:
    params = list(inspect.signature(cls.compute).parameters)
    if params and params[0] == "self":
        raise TypeError(f"codelet {cls.__name__}: compute takes the field arrays, not self "
                        f"(write `def compute({', '.join(cls.fields)})`)")
    missing = [f for f in cls.fields if f not in params]
    extra = [p for p in params if p not in cls.fields]
    if missing or extra:
        raise TypeError(f"codelet {cls.__name__}: compute parameters must be its fields "
                        f"{list(cls.fields)}; missing {missing}, unknown {extra}")


def _check_cycles_signature(cls: type[Vertex]) -> None:
    allowed = cls.size_arguments() | {"target"}
    params = list(inspect.signature(cls.cycles).parameters)
    unknown = [p for p in params if p not in allowed]
    if unknown:
        raise TypeError(f"codelet {cls.__name__}: cycles takes field sizes and state values (and target) "
                        f"{sorted(allowed)}; unknown parameters {unknown}")


def is_codelet(value: object) -> bool:
    """True for a :class:`Vertex` subclass other than the two base classes."""
    return (isinstance(value, type) and issubclass(value, Vertex)
            and value not in (Vertex, MultiVertex))


def check_codelet(value: object) -> type[Vertex]:
    """Return ``value`` if it is a codelet class, else raise UnknownCodeletError naming it."""
    if not is_codelet(value):
        raise UnknownCodeletError(f"{value!r} is not a codelet: expected a subclass of pl.Vertex "
                                  "or pl.MultiVertex with fields and a compute function")
    if value.compute is None:  # type: ignore[union-attr]
        raise UnknownCodeletError(f"codelet {value.__name__} has no compute function")
    return value  # type: ignore[return-value]


def resolve_codelet(path: str) -> type[Vertex]:
    """Import a codelet by its ``module:QualName`` path (how executables name codelets)."""
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UnknownCodeletError(f"codelet {path!r} cannot be imported: {exc}") from exc
    return check_codelet(obj)


def estimate_cycles(codelet: type[Vertex], sizes: dict[str, np.ndarray], n: int,
                    target: Any = None) -> np.ndarray:
    """Call a codelet's vectorised estimate with only the arguments it declares; int64 (n,)."""
    params = inspect.signature(codelet.cycles).parameters  # type: ignore[arg-type]
    given = {**sizes, "target": target}
    result = codelet.cycles(**{p: given[p] for p in params})  # type: ignore[misc]
    cycles = np.asarray(result, dtype=np.float64)
    if cycles.ndim == 0:
        cycles = np.full(n, float(cycles))
    if cycles.shape != (n,):
        raise ValueError(f"codelet {codelet.__name__}: cycles returned shape {cycles.shape}, "
                         f"expected ({n},) or a scalar")
    if not np.all(np.isfinite(cycles)) or np.any(cycles < 0):
        raise ValueError(f"codelet {codelet.__name__}: cycles must be finite and non-negative")
    return np.ceil(cycles).astype(np.int64)
