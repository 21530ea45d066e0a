"""Element types of tensors, fields and streams.

Poplar's element types map onto numpy dtypes one to one.  Users may pass either the Poplar-style
constants (``pl.FLOAT``) or numpy dtypes; :func:`as_dtype` turns both into a numpy dtype and refuses
anything else, naming what it got.
"""

from __future__ import annotations

import numpy as np

from .errors import DTypeError

FLOAT = np.dtype(np.float32)
HALF = np.dtype(np.float16)
INT = np.dtype(np.int32)
UNSIGNED_INT = np.dtype(np.uint32)
BOOL = np.dtype(np.bool_)

SUPPORTED: tuple[np.dtype, ...] = (FLOAT, HALF, INT, UNSIGNED_INT, BOOL)

_POPLAR_NAMES = {FLOAT: "float", HALF: "half", INT: "int", UNSIGNED_INT: "unsigned int", BOOL: "bool"}


def as_dtype(value: object, what: str = "element type") -> np.dtype:
    """Return the numpy dtype for a Poplar type constant, numpy dtype or dtype name.

    Raises DTypeError when the type is not one that tile memory holds (float32, float16, int32,
    uint32, bool).
    """
    try:
        dtype = np.dtype(value)  # type: ignore[arg-type]
    except TypeError as exc:
        raise DTypeError(f"{what}: {value!r} is not an element type; expected one of "
                         f"{', '.join(poplar_name(d) for d in SUPPORTED)}") from exc
    if dtype not in SUPPORTED:
        raise DTypeError(f"{what}: {dtype} is not supported; expected one of "
                         f"{', '.join(poplar_name(d) for d in SUPPORTED)}")
    return dtype


def poplar_name(dtype: np.dtype) -> str:
    """The Poplar spelling of a dtype (``float``, ``half``...), used in reports and messages."""
    return _POPLAR_NAMES.get(np.dtype(dtype), str(dtype))


def from_name(name: str) -> np.dtype:
    """Inverse of ``str(np.dtype)``; used when executables are loaded from JSON."""
    return as_dtype(np.dtype(name))
