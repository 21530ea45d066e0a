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


_tuned = False


def reuse_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse instead of returning it to the system at once.

    Building, compiling and running a big graph allocate and free arrays of tens of MB over and
    over; by default glibc maps each one afresh, so every one of its pages faults in again (in a
    virtual machine that is slow: ResNet-50's compile spent 33 s of its 67 in the kernel, 17 s
    with this).  The peak is unchanged; :func:`release_freed_memory` hands the excess back after
    a compile.  Applied once, by the first ``pl.Graph``; does nothing where glibc is absent.
    """
    global _tuned
    if _tuned:
        return
    _tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        libc.mallopt(m_mmap_threshold, 1 << 30)  # arrays up to 1 GiB come from the reusable heap
        libc.mallopt(m_trim_threshold, (1 << 31) - 1)  # and freeing them does not shrink it
    except (OSError, AttributeError):
        pass
