"""Compiled element-copy loops for the backends (numba), with numpy as the fallback.

numpy moves a list of elements by index at about 2 ns an element whatever the memory does: it
widens every int32 index to ``intp`` first, and a copy from one place in the store to another
goes through a temporary.  ResNet-50 inference moves 257 million elements in exchanges, so those
copies were half of its run time.  A compiled loop reads the int32 indices as they are and copies
an exchange in one pass from source to destination, the stretches where both sides are runs of
consecutive words as slices (0.47 s -> 0.26 s an inference on 2 cores).  Fields that lie in runs
stay with numpy's window copies (``access``), which are as fast there.

Every loop works on raw unsigned views (1, 2, 4 or 8-byte items), so a copy is bit-exact whatever
the element type (half included) and only a few specialisations are ever compiled.  Each takes a
half-open range of positions so that callers can split a long list over threads (the loops release
the GIL).  numba is imported and the loops compiled the first time an engine needs them, not when
``poplar_like`` is imported; the machine code is cached beside this file, so later processes only
load it.

Without numba (a Python it has no wheel for), :func:`available` is False and ``access`` keeps its
numpy paths, which give the same bits; ``POPLAR_LIKE_KERNELS=numpy`` forces them (the tests
compare the two).
"""

from __future__ import annotations

import functools
import os
from types import SimpleNamespace

import numpy as np

RAW = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def raw(array: np.ndarray) -> np.ndarray:
    """``array`` viewed as unsigned integers of its item size (a copy moves bits, not values)."""
    return array.view(RAW[array.dtype.itemsize])


@functools.cache
def available() -> bool:
    """Whether the compiled loops can be used here: numba imports, and ``POPLAR_LIKE_KERNELS`` is
    unset or ``numba`` (``numpy`` asks for numpy's indexing)."""
    setting = os.environ.get("POPLAR_LIKE_KERNELS", "").strip().lower()
    if setting not in ("", "numba", "numpy"):
        raise ValueError(f"POPLAR_LIKE_KERNELS must be 'numba' or 'numpy', got {setting!r}")
    return setting != "numpy" and _loops() is not None


# The loops, as plain Python (numba compiles them in ``_loops``; they also run as they are).
def _gather(view, words, out, lo, hi):
    """``out[i] = view[words[i]]`` for ``lo <= i < hi``."""
    for i in range(lo, hi):
        out[i] = view[words[i]]


def _scatter(view, words, values, lo, hi):
    """``view[words[i]] = values[i]`` for ``lo <= i < hi``, in order (a repeated word keeps the
    last value, as numpy's assignment does)."""
    for i in range(lo, hi):
        view[words[i]] = values[i]


def _move(view, src, dst, lo, hi):
    """``view[dst[i]] = view[src[i]]`` for ``lo <= i < hi``: one pass, no temporary.  Only for lists
    whose sources and destinations are disjoint and whose destinations do not repeat."""
    for i in range(lo, hi):
        view[dst[i]] = view[src[i]]


def _move_runs(view, src, dst, length, lo, hi):
    """Runs ``lo <= r < hi``: ``view[dst[r]:dst[r] + length[r]] = view[src[r]:src[r] + length[r]]``
    (the parts of an exchange where both sides are consecutive words: no index per element)."""
    for r in range(lo, hi):
        a, b, n = src[r], dst[r], length[r]
        view[b:b + n] = view[a:a + n]


def _marks(src, dst, bits):
    """(whether a source is also a destination, whether a destination repeats), with a bit per
    word of the store (all clear on entry)."""
    repeated = False
    for i in range(dst.size):
        word = dst[i]
        byte, bit = word >> 3, np.uint8(1) << np.uint8(word & 7)
        if bits[byte] & bit:
            repeated = True
        bits[byte] |= bit
    overlap = False
    for i in range(src.size):
        word = src[i]
        if bits[word >> 3] & (np.uint8(1) << np.uint8(word & 7)):
            overlap = True
            break
    return overlap, repeated


@functools.cache
def _loops() -> SimpleNamespace | None:
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; this is for Pythons it lacks
        return None
    jit = numba.njit(nogil=True, cache=True, boundscheck=False)
    return SimpleNamespace(gather=jit(_gather), scatter=jit(_scatter), move=jit(_move),
                           move_runs=jit(_move_runs), marks=jit(_marks))


def gather(view: np.ndarray, words: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    _loops().gather(raw(view), words, raw(out), lo, hi)


def scatter(view: np.ndarray, words: np.ndarray, values: np.ndarray, lo: int, hi: int) -> None:
    _loops().scatter(raw(view), words, raw(values), lo, hi)


def move(view: np.ndarray, src: np.ndarray, dst: np.ndarray, lo: int, hi: int) -> None:
    _loops().move(raw(view), src, dst, lo, hi)


def move_runs(view: np.ndarray, src: np.ndarray, dst: np.ndarray, length: np.ndarray, lo: int, hi: int) -> None:
    _loops().move_runs(raw(view), src, dst, length, lo, hi)


def joint_runs(src: np.ndarray, dst: np.ndarray, shortest: int) -> tuple[np.ndarray, ...]:
    """Cut a move list into the runs of at least ``shortest`` elements where both sides step by
    one word (first source, first destination, length of each) and the rest, element by element
    (sources, destinations)."""
    if src.size == 0:
        empty = src[:0]
        return empty, dst[:0], empty, empty, dst[:0]
    breaks = np.flatnonzero((np.diff(src) != 1) | (np.diff(dst) != 1)) + 1
    starts = np.concatenate([[0], breaks])
    lengths = np.diff(np.append(starts, src.size))
    long = lengths >= shortest
    kind = np.int32 if src.size < 2**31 else np.int64
    in_long = np.repeat(long, lengths)
    return (src[starts[long]], dst[starts[long]], lengths[long].astype(kind),
            np.ascontiguousarray(src[~in_long]), np.ascontiguousarray(dst[~in_long]))


def check_disjoint(src: np.ndarray, dst: np.ndarray, words: int) -> tuple[bool, bool]:
    """For a copy ``store[dst] = store[src]`` over a store of ``words`` items: (no source is also
    a destination, no destination repeats).  Both must hold for a one-pass copy split over threads
    to give what reading every source first and then writing in order gives."""
    bits = np.zeros((words + 7) // 8, dtype=np.uint8)
    overlap, repeated = _loops().marks(src, dst, bits)
    return not overlap, not repeated
