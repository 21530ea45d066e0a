"""Compiled element-copy loops for the backends (numba), with numpy as the fallback.

numpy moves a list of elements by index at about 2 ns an element whatever the memory does: it
widens every int32 index to ``intp`` first, and a copy from one place in the store to another
goes through a temporary.  ResNet-50 inference moves 257 million elements in exchanges, so those
copies were half of its run time.  A compiled loop copies an exchange in one pass from source to
destination, reading the executable's own move runs (0.47 s -> 0.26 s an inference on 2 cores).
A run of 8 words or more is one ``memmove`` (LLVM's intrinsic, so libc's): numba's own slice
assignment is an element loop it cannot vectorise, 3-4 times slower on runs of 8 to 500 words.
The compiler orders each tile's exchange slots as the senders hold the elements, so almost every
exchanged element (237 of ResNet-50's 257 million) lies in such a run.  Field gathers read int32
word indices as they are, where numpy would widen them.  Fields that lie in runs stay with
numpy's window copies (``access``), which are as fast there.

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


def _move_runs(to_view, from_view, src, dst, length, lo, hi):
    """Runs ``lo <= r < hi`` of a move list (:class:`~poplar_like.compiler.executable.Moves`):
    ``to_view[dst[r]:dst[r] + length[r]] = from_view[src[r]:src[r] + length[r]]``, a long run
    with one memmove, a short one word by word.  One pass, no temporary: within one store, only
    for lists whose sources and destinations are disjoint; in order, so where a destination
    repeats, the later run's value stays (on one thread)."""
    for r in range(lo, hi):
        n = length[r]
        if n >= SHORTEST_MEMMOVE:
            _copy_run(to_view, dst[r], from_view, src[r], n)
        else:
            to, frm = dst[r], src[r]
            for e in range(n):
                to_view[to + e] = from_view[frm + e]


def _copy_run_python(to_view, to, from_view, frm, n):
    """``to_view[to:to + n] = from_view[frm:frm + n]`` (the runs may overlap)."""
    to_view[to:to + n] = from_view[frm:frm + n]


_copy_run = _copy_run_python  # ``_loops`` rebinds it to libc's memmove before compiling
SHORTEST_MEMMOVE = 8  # a memmove call costs about as much as copying 8 words one by one


def _compiled_copy_run(numba):
    """``_copy_run`` as one call of LLVM's memmove (so libc's): numba compiles a slice assignment
    into an element loop that it cannot vectorise (the two slices may overlap), 3-4 times slower
    than memmove on runs of 8 to 500 words."""
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def copy_run(typingctx, to_view, to, from_view, frm, n):
        def codegen(context, builder, signature, args):
            kinds = signature.args
            to_array = context.make_array(kinds[0])(context, builder, args[0])
            from_array = context.make_array(kinds[2])(context, builder, args[2])
            to_, frm_, n_ = (context.cast(builder, args[i], kinds[i], types.intp) for i in (1, 3, 4))
            cgutils.raw_memmove(builder, builder.gep(to_array.data, [to_]), builder.gep(from_array.data, [frm_]),
                                n_, context.get_abi_sizeof(context.get_data_type(kinds[0].dtype)))
            return context.get_dummy_value()

        if to_view.dtype != from_view.dtype:
            return None  # no typing: a run copies items of one size
        return types.void(to_view, to, from_view, frm, n), codegen

    return copy_run


def _marks(src, dst, length, bits):
    """(whether a source is also a destination, whether a destination repeats) for runs of
    words, with a bit per word of the store (all clear on entry).  Where a run covers a whole
    byte (8 words from a multiple of 8), the byte is set or tested at once: most words lie in
    long runs."""
    repeated = False
    for r in range(dst.size):
        word, end = dst[r], dst[r] + length[r]
        while word < end:
            if word & 7 == 0 and word + 8 <= end:
                repeated |= bits[word >> 3] != 0
                bits[word >> 3] = 255
                word += 8
            else:
                bit = np.uint8(1) << np.uint8(word & 7)
                repeated |= bits[word >> 3] & bit != 0
                bits[word >> 3] |= bit
                word += 1
    for r in range(src.size):
        word, end = src[r], src[r] + length[r]
        while word < end:
            whole = word & 7 == 0 and word + 8 <= end
            if bits[word >> 3] & (np.uint8(255) if whole else np.uint8(1) << np.uint8(word & 7)):
                return True, repeated
            word += 8 if whole else 1
    return False, repeated


def _vector_starts(words, starts):
    """``starts[r]`` = ``words[r, 0]`` where row ``r`` steps by one word, else -1."""
    for r in range(words.shape[0]):
        first = words[r, 0]
        run = True
        for e in range(1, words.shape[1]):
            if words[r, e] != first + e:
                run = False
                break
        starts[r] = first if run else -1


def _vector_columns(words, starts):
    """``starts[r]`` = ``words[r, 0]`` where row ``r`` is a matrix stored column by column (see
    :func:`vector_columns`), else -1."""
    length = words.shape[1]
    for r in range(words.shape[0]):
        starts[r] = -1
        if length < 4:
            continue
        first = words[r, 0]
        rows = words[r, 1] - first  # the step along a matrix row is the column length
        if rows < 2 or length % rows or length // rows < 2:
            continue
        columns = length // rows
        stored = True
        for e in range(length):
            if words[r, e] != first + (e % columns) * rows + e // columns:
                stored = False
                break
        if stored:
            starts[r] = first


def _vector_runs(words, shortest, most, first_row, table):
    """Where row ``r`` of ``words`` breaks into 2 to ``most`` runs of consecutive words, ``shortest``
    words or more on average: its runs (first word, length) go to ``table`` from row
    ``first_row[r]``; else ``first_row[r]`` is -1.  Returns how many table rows were filled."""
    length = words.shape[1]
    filled = 0
    for r in range(words.shape[0]):
        first_row[r] = -1
        runs = 1
        for e in range(1, length):
            if words[r, e] != words[r, e - 1] + 1:
                runs += 1
                if runs > most:
                    break
        if runs < 2 or runs > most or length < shortest * runs:
            continue
        first_row[r] = filled
        begin = 0
        for e in range(1, length + 1):
            if e == length or words[r, e] != words[r, e - 1] + 1:
                table[filled, 0] = words[r, begin]
                table[filled, 1] = e - begin
                filled += 1
                begin = e
    return filled


@functools.cache
def _loops() -> SimpleNamespace | None:
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; this is for Pythons it lacks
        return None
    global _copy_run
    jit = numba.njit(nogil=True, cache=True, boundscheck=False)
    _copy_run = _compiled_copy_run(numba)
    return SimpleNamespace(gather=jit(_gather), scatter=jit(_scatter), move_runs=jit(_move_runs),
                           marks=jit(_marks), vector_starts=jit(_vector_starts),
                           vector_columns=jit(_vector_columns), vector_runs=jit(_vector_runs))


def gather(view: np.ndarray, words: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    _loops().gather(raw(view), words, raw(out), lo, hi)


def scatter(view: np.ndarray, words: np.ndarray, values: np.ndarray, lo: int, hi: int) -> None:
    _loops().scatter(raw(view), words, raw(values), lo, hi)


def move_runs(to_view: np.ndarray, from_view: np.ndarray, src: np.ndarray, dst: np.ndarray, length: np.ndarray,
              lo: int, hi: int) -> None:
    """Runs ``lo <= r < hi``: ``to_view[dst[r]:...] = from_view[src[r]:...]`` (see ``_move_runs``);
    the two views may be one store."""
    _loops().move_runs(raw(to_view), raw(from_view), src, dst, length, lo, hi)


def check_disjoint(src: np.ndarray, dst: np.ndarray, length: np.ndarray, words: int) -> tuple[bool, bool]:
    """For the runs of a copy ``store[dst] = store[src]`` over a store of ``words`` items: (no
    source is also a destination, no destination repeats).  Both must hold for a one-pass copy
    split over threads to give what reading every source first and then writing in order gives."""
    bits = np.zeros((words + 7) // 8, dtype=np.uint8)
    overlap, repeated = _loops().marks(src, dst, length, bits)
    return not overlap, not repeated


def vector_starts(words: np.ndarray) -> np.ndarray:
    """For every vector of a field (its word indices' last axis): its first word where the vector
    is one run of consecutive words, else -1; shape ``words.shape[:-1]``, int64.  A codelet's
    ``in_place`` kernel reads and writes such a vector as a slice, without its indices."""
    return _per_vector(words, 1, _loops().vector_starts)


def vector_starts_numpy(words: np.ndarray) -> np.ndarray:
    """:func:`vector_starts` with numpy's whole-array operations (the reference the tests compare)."""
    if words.shape[-1] == 0:
        return np.full(words.shape[:-1], -1, dtype=np.int64)
    wide = words.astype(np.int64)
    run = (np.diff(wide, axis=-1) == 1).all(axis=-1)
    return np.where(run, wide[..., 0], -1)


def vector_columns(words: np.ndarray) -> np.ndarray:
    """For every vector of a field: its first word where the vector, read as a row-major matrix
    of ``R`` rows and ``C`` columns (``R, C >= 2``), lies in memory column by column as one run
    of words (its element ``e`` at ``first + (e % C) * R + e // C``), else -1; shape
    ``words.shape[:-1]``, int64.  ``R`` is the step from the first word to the second, so a
    kernel that knows the matrix's shape checks that it has ``R`` rows.  That is how a product's
    operand block arrives when the exchange delivers a tile's slots in its senders' order: an
    im2col block of a 1x1 convolution is a block of channels of the input, channel by channel,
    which the product kernel copies from its run without reading an index per element."""
    return _per_vector(words, 4, _loops().vector_columns)  # 2x2 is the smallest such matrix


def _per_vector(words: np.ndarray, shortest: int, loop) -> np.ndarray:
    """``loop(rows, starts)`` over the field's vectors as rows; -1 for all where vectors are
    shorter than ``shortest`` words."""
    shape = words.shape[:-1]
    if words.shape[-1] < shortest:
        return np.full(shape, -1, dtype=np.int64)
    rows = np.ascontiguousarray(words).reshape(-1, words.shape[-1])
    starts = np.empty(rows.shape[0], dtype=np.int64)
    loop(rows, starts)
    return starts.reshape(shape)


def vector_columns_numpy(words: np.ndarray) -> np.ndarray:
    """:func:`vector_columns` with numpy's whole-array operations (the reference the tests compare)."""
    shape, length = words.shape[:-1], words.shape[-1]
    if length < 4:
        return np.full(shape, -1, dtype=np.int64)
    flat = words.reshape(-1, length).astype(np.int64)
    found = np.full(flat.shape[0], -1, dtype=np.int64)
    rows = flat[:, 1] - flat[:, 0]
    e = np.arange(length)
    for count in np.unique(rows[(rows >= 2) & (length % np.maximum(rows, 1) == 0)]).tolist():
        columns = length // count
        if columns < 2:
            continue
        candidates = np.flatnonzero(rows == count)
        pattern = (e % columns) * count + e // columns
        stored = ((flat[candidates] - flat[candidates, :1]) == pattern).all(axis=1)
        found[candidates[stored]] = flat[candidates[stored], 0]
    return found.reshape(shape)


#: the most runs, and the shortest average run, of a vector that :func:`vector_runs` lists
FEW_RUNS, SHORTEST_AVERAGE_RUN = 8, 8


def vector_runs(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every vector of a field that breaks into a few runs of consecutive words (2 to
    ``FEW_RUNS``, ``SHORTEST_AVERAGE_RUN`` words or more on average): (the row of its first run
    in the table, else -1, shape ``words.shape[:-1]``; the table, (rows, 2): each run's first
    word and length, a vector's runs in order).  A product's block of weights is such a vector
    (part of it on the vertex's tile, the rest received in one run), and a kernel copies it run
    by run instead of reading an index per element."""
    shape, length = words.shape[:-1], words.shape[-1]
    rows = np.ascontiguousarray(words).reshape(-1, length) if length else None
    if rows is None or length < 2 * SHORTEST_AVERAGE_RUN:
        return np.full(shape, -1, dtype=np.int64), np.zeros((0, 2), dtype=np.int64)
    first_row = np.empty(rows.shape[0], dtype=np.int64)
    table = np.empty((rows.shape[0] * min(FEW_RUNS, length // SHORTEST_AVERAGE_RUN), 2), dtype=np.int64)
    filled = _loops().vector_runs(rows, SHORTEST_AVERAGE_RUN, FEW_RUNS, first_row, table)
    return first_row.reshape(shape), table[:filled].copy()


def vector_runs_numpy(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`vector_runs` with numpy's whole-array operations (the reference the tests compare)."""
    shape, length = words.shape[:-1], words.shape[-1]
    if length < 2 * SHORTEST_AVERAGE_RUN:
        return np.full(shape, -1, dtype=np.int64), np.zeros((0, 2), dtype=np.int64)
    flat = words.reshape(-1, length).astype(np.int64)
    breaks = np.diff(flat, axis=1) != 1
    runs = breaks.sum(axis=1) + 1
    listed = (runs >= 2) & (runs <= FEW_RUNS) & (length >= SHORTEST_AVERAGE_RUN * runs)
    first_row = np.full(flat.shape[0], -1, dtype=np.int64)
    first_row[listed] = np.concatenate([[0], np.cumsum(runs[listed])[:-1]]).astype(np.int64)
    starts = [np.concatenate([[0], np.flatnonzero(breaks[r]) + 1]) for r in np.flatnonzero(listed)]
    table = np.zeros((int(runs[listed].sum()), 2), dtype=np.int64)
    for r, begin, row in zip(np.flatnonzero(listed), starts, first_row[listed], strict=True):
        table[row:row + begin.size, 0] = flat[r, begin]
        table[row:row + begin.size, 1] = np.diff(np.append(begin, length))
    return first_row.reshape(shape), table
