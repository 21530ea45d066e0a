"""Generation and lookup of the type-specialised codelet classes.

A codelet's field dtypes are fixed per class, so every (operation, element type) pair is its own
class.  Instead of writing those classes out by hand, each module describes an operation once and
calls :func:`make_codelet` per element type at import time.  Every generated class is set as an
attribute of its module under its ``__qualname__``, so the ``module:QualName`` path executables use
(and pickle, and cloudpickle between MPI ranks) finds it again, and it is recorded here so tests and
tools can walk the whole library.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from poplar_like.codelet import Field, Vertex
from poplar_like.dtypes import BOOL, FLOAT, HALF, INT, UNSIGNED_INT, as_dtype, poplar_name
from poplar_like.errors import DTypeError

#: Suffixes of generated class names: ``Relu_float``, ``Cast_half_to_uint``.
DTYPE_SUFFIX: dict[np.dtype, str] = {
    FLOAT: "float", HALF: "half", INT: "int", UNSIGNED_INT: "uint", BOOL: "bool",
}

_ALL: dict[str, type[Vertex]] = {}


def make_codelet(module: str, name: str, base: type[Vertex], fields: dict[str, Field],
                 compute: Callable[..., Any], cycles: Callable[..., Any], code_size: int,
                 doc: str, in_place: Callable[..., bool] | None = None) -> type[Vertex]:
    """Create codelet class ``name`` and register it as attribute ``name`` of ``module``.

    ``fields`` must hold fresh :class:`Field` objects (a field remembers its owner class).
    ``in_place`` is the codelet's optional compiled fast path (``poplar_like.codelet``).
    Registering twice under one name is a bug in the generator, so it raises.
    """
    mod = sys.modules[module]
    if name in vars(mod):
        raise RuntimeError(f"codelet {module}:{name} is generated twice")
    namespace: dict[str, Any] = dict(fields)
    namespace.update(compute=compute, cycles=cycles, code_size=int(code_size), __doc__=doc,
                     __module__=module, __qualname__=name, in_place=in_place)
    cls = type(name, (base,), namespace)
    setattr(mod, name, cls)
    _ALL[cls.path()] = cls
    return cls


def all_codelets() -> list[type[Vertex]]:
    """Every generated built-in codelet class, in generation order."""
    return list(_ALL.values())


def suffix(*dtypes: np.dtype) -> str:
    """``"float"``, or ``"half_to_float"`` for a variant keyed by two element types."""
    return "_to_".join(DTYPE_SUFFIX[np.dtype(d)] for d in dtypes)


def dtype_names(keys: Iterable[tuple[np.dtype, ...]]) -> str:
    """Readable list of variant keys for error messages: ``float, half->float``."""
    return ", ".join("->".join(poplar_name(d) for d in key) for key in keys)


class CodeletFamily:
    """The type-specialised variants of one codelet, looked up by element type(s).

    ``ReduceSum[FLOAT]`` (or ``ReduceSum(FLOAT)``) is the class ``ReduceSum_float``; families keyed
    by two types take both: ``Cast[HALF, FLOAT]``.  All variants are built when the family is, so
    importing a variant by path never depends on someone having asked for it first.
    """

    def __init__(self, name: str, build: Callable[..., type[Vertex]],
                 keys: Iterable[tuple[np.dtype, ...]], default_second: bool = False) -> None:
        self.name = name
        self._default_second = default_second
        self._variants: dict[tuple[np.dtype, ...], type[Vertex]] = {}
        for key in keys:
            self._variants[tuple(np.dtype(d) for d in key)] = build(*key)

    def _key(self, dtypes: tuple[object, ...]) -> tuple[np.dtype, ...]:
        key = tuple(as_dtype(d, f"{self.name} element type") for d in dtypes)
        if self._default_second and len(key) == 1:
            key = (key[0], key[0])
        return key

    def __call__(self, *dtypes: object) -> type[Vertex]:
        key = self._key(dtypes)
        try:
            return self._variants[key]
        except KeyError:
            raise DTypeError(f"{self.name} has no variant for {dtype_names([key])}; supported: "
                             f"{dtype_names(self._variants)}") from None

    def __getitem__(self, dtypes: object) -> type[Vertex]:
        return self(*dtypes) if isinstance(dtypes, tuple) else self(dtypes)

    def __iter__(self) -> Iterator[type[Vertex]]:
        return iter(self._variants.values())

    def __len__(self) -> int:
        return len(self._variants)

    @property
    def variants(self) -> dict[tuple[np.dtype, ...], type[Vertex]]:
        """Element-type key -> class, a copy."""
        return dict(self._variants)

    def __repr__(self) -> str:
        return f"<codelet family {self.name}: {dtype_names(self._variants)}>"


def check_same_length(name: str, **vectors: np.ndarray) -> int:
    """Raise ValueError unless every vector field has the same length; return that length.

    Vector lengths are one per batch (the engine batches instances by field sizes), so one check
    on the trailing axis covers every instance.
    """
    lengths = {field: arr.shape[-1] for field, arr in vectors.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{field} has {length}" for field, length in lengths.items())
        raise ValueError(f"{name}: fields must have equal lengths, but {listed}")
    return next(iter(lengths.values()))


def compute_view(x: np.ndarray) -> np.ndarray:
    """The array in the type arithmetic runs in: half is computed in float32 and rounded once.

    One rounding to half after a single float32 operation is the correctly rounded half result,
    and for composite functions (sigmoid, pow) it is what a half unit with float internals gives.
    """
    return x.astype(np.float32) if x.dtype == HALF else x
