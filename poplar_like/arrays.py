"""Array helpers for the compiler's hot paths.

numpy 2's ``np.unique`` hashes, which is slow on the tens of millions of ids a big graph has;
these helpers sort (radix sort for small integer keys) or scatter instead, and skip work when the
input is already in order, which tile-sorted data usually is.
"""

from __future__ import annotations

import numpy as np


def is_sorted(a: np.ndarray) -> bool:
    return bool(a.size < 2 or np.all(a[1:] >= a[:-1]))


def unique_sorted(a: np.ndarray) -> np.ndarray:
    """Sorted unique values (like ``np.unique``, by sorting)."""
    s = a if is_sorted(a) else np.sort(a)
    if s.size == 0:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def stable_order(tiles: np.ndarray, num_tiles: int) -> np.ndarray | None:
    """Stable sort order of tile numbers, or None if they are already sorted."""
    if is_sorted(tiles):
        return None
    key = tiles.astype(np.uint16) if num_tiles <= 65536 else tiles
    return np.argsort(key, kind="stable")


def present(indices: np.ndarray, size: int) -> np.ndarray:
    """Sorted distinct values of ``indices`` in ``[0, size)``, by a scatter into a mask."""
    mask = np.zeros(size, dtype=bool)
    mask[indices] = True
    return np.flatnonzero(mask)


def release_freed_memory() -> None:
    """Hand memory that was freed back to the operating system (glibc's ``malloc_trim``).

    A compile frees many arrays of a few MB, which glibc keeps in its heap; on ResNet-50 that is
    3 GB of resident memory that no one uses, which matters when eight MPI ranks share a machine.
    Does nothing where glibc is absent.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
