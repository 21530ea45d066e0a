"""Compiled in-place kernels for the codelets that carry a network: products, their reductions,
and the elementwise steps between them.

The engine's general path runs a batch in three steps: gather every field of every instance into
one array, call the vectorised ``compute``, scatter the outputs back.  For a product that is one
array of ``a`` blocks and one of ``b`` blocks as big as everything the exchange has just brought
in: ResNet-50's inference gathers 265 million product operand elements, writes them to memory
once and reads them once more, and that was half of the time its products took.  A kernel here
runs the same instances where their fields live: an operand that lies in one run of words (a
block of weights in its exchange buffer, a partial) is handed to BLAS as a view of tile memory,
or read as a slice; one stored column by column in a run (a 1x1 convolution's im2col block, as
the exchange delivers it: channel by channel) or made of a few runs (a block of weights, part
on the vertex's tile and part received) is copied from its runs into a small scratch that stays
in cache, and the rest (3x3 im2col patches) word by word by index.  The gathered arrays are
never made.

Every kernel reads all of an instance's inputs before it writes any of its outputs, as the
gather path does: a vertex may write over what it reads (``out`` overlapping ``a``), while two
vertices of one compute set never touch the same element (the compiler refuses that), so the
order of instances does not matter.  Each kernel does exactly what its codelet's ``compute``
does, so the bits are the same (NaN payloads aside: which NaN an operation on two NaNs keeps
differs between numpy's vector and scalar loops already, and between those and these):

* ``MatMulPartial`` float: one BLAS product per instance, as ``np.matmul`` makes for a batch
  (numba's ``np.dot`` calls the BLAS that scipy ships, the one numpy itself uses).  A batch
  with a product of one row or one column is left to the gather path: numba turns those into
  matrix-vector calls that may round differently from numpy's;
* ``ReduceAdd`` float: the partials added in list order in float32;
* ``Relu``, ``Add`` and ``BnApply`` float, the elementwise steps between the products: the
  same float32 operations, one element at a time.

They are compiled (numba, cached beside this file) the first time an engine runs one; where
numba or scipy's BLAS is missing, :func:`kernels` is None, ``in_place`` returns False and the
engine gathers as before.  The engine asks for them only when its compiled loops are enabled
(``POPLAR_LIKE_KERNELS=numpy`` keeps everything on numpy).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np

from poplar_like.dtypes import FLOAT, UNSIGNED_INT


# The kernels, as plain Python.  ``kernels`` compiles them with numba; they call the helpers
# (``_load``, ``_store``, ``_apart``, ``_word`` and ``_load_matrix``) by their module names,
# which it first rebinds to compiled versions.
#
# Every field comes as its word indices (instances, ..., length) and ``starts`` (instances, ...):
# where a vector of the field is one contiguous run of words, the first of them, else -1.  A run
# is read or written as a slice, with no index per element (the engine works the starts out once).
#
# Indices into tile memory are made unsigned (``_unsigned``): numba wraps a negative signed index
# round the array's end, a test per element that also keeps LLVM from vectorising the loop; with
# unsigned ones a sum of runs runs 5 times as fast.  (A word index is never negative.)
def _load_python(view, words, starts, at, buf, n):
    """``buf[:n]`` = the vector ``at`` of a field (``at`` indexes ``words`` and ``starts``)."""
    s = starts[at]
    if s >= 0:
        first = _unsigned(s)
        for e in range(_unsigned(n)):
            buf[e] = view[first + e]
    else:
        row = words[at]
        for e in range(_unsigned(n)):
            buf[e] = view[_unsigned(row[e])]


def _store_python(view, words, starts, at, buf, n):
    """The vector ``at`` of a field = ``buf[:n]``."""
    s = starts[at]
    if s >= 0:
        first = _unsigned(s)
        for e in range(_unsigned(n)):
            view[first + e] = buf[e]
    else:
        row = words[at]
        for e in range(_unsigned(n)):
            view[_unsigned(row[e])] = buf[e]


_unsigned = np.uint64  # an index numba knows is not negative (see the note above ``_load_python``)


def _apart_python(first, first_len, second, second_len):
    """Whether two runs of words (a start of -1: not a run, never aliased) do not overlap."""
    return first < 0 or second < 0 or first + first_len <= second or second + second_len <= first


def _matmul(view, a, a_starts, a_columns, a_runs, a_table, b, b_starts, b_columns, b_runs, b_table, out, out_starts,
            m, k, n):
    """``out[v] = a[v] @ b[v]`` for every instance ``v`` (``a``, ``b``, ``out``: (instances,
    m*k / k*n / m*n) word indices; ``m``, ``k``, ``n`` per instance).  An operand that is one
    run of words goes to BLAS as a view of tile memory, and so does the output when it overlaps
    neither; the rest goes through a scratch block, filled without indices where the operand is
    a matrix stored column by column in one run (``*_columns``) or a few runs (``*_runs``, rows
    of ``*_table``), else word by word.  (Handing BLAS a column-stored run as a transposed view
    would skip the copy, but OpenBLAS's kernels for small transposed operands round differently
    from the ones ``compute``'s gathered blocks get.)"""
    sa = np.empty(max(a.shape[1], 1), dtype=view.dtype)
    sb = np.empty(max(b.shape[1], 1), dtype=view.dtype)
    so = np.empty(max(out.shape[1], 1), dtype=view.dtype)
    for v in range(out.shape[0]):
        rows, inner, cols = m[v], k[v], n[v]
        if rows == 0 or cols == 0:
            continue
        if inner == 0:  # an empty sum: numpy's matmul gives zeros
            so[:rows * cols] = 0
            _store(view, out, out_starts, v, so, rows * cols)
            continue
        sa_, sb_, so_ = a_starts[v], b_starts[v], out_starts[v]
        if sa_ >= 0:
            lhs = view[sa_:sa_ + rows * inner].reshape(rows, inner)
        else:
            _load_matrix(view, a, a_starts, a_columns, a_runs, a_table, v, sa, rows, inner)
            lhs = sa[:rows * inner].reshape(rows, inner)
        if sb_ >= 0:
            rhs = view[sb_:sb_ + inner * cols].reshape(inner, cols)
        else:
            _load_matrix(view, b, b_starts, b_columns, b_runs, b_table, v, sb, inner, cols)
            rhs = sb[:inner * cols].reshape(inner, cols)
        if so_ >= 0 and _apart(so_, rows * cols, sa_, rows * inner) and _apart(so_, rows * cols, sb_, inner * cols):
            np.dot(lhs, rhs, view[so_:so_ + rows * cols].reshape(rows, cols))
        else:
            np.dot(lhs, rhs, so[:rows * cols].reshape(rows, cols))
            _store(view, out, out_starts, v, so, rows * cols)


def _load_matrix_python(view, words, starts, columns, runs, table, at, buf, rows, cols):
    """``buf`` = the (rows, cols) matrix ``at`` of a field, row-major: read column by column from
    its run where it is stored so (a column's step is ``rows`` words), run by run where it is a
    few runs, else by ``_load``."""
    first = columns[at]
    if first >= 0 and rows >= 2 and cols >= 2 and words[at, 1] - words[at, 0] == rows:
        for j in range(cols):
            for i in range(rows):
                buf[i * cols + j] = view[_unsigned(first + j * rows + i)]
    elif runs[at] >= 0:
        row, e = runs[at], 0
        while e < rows * cols:
            word, length = _unsigned(table[row, 0]), table[row, 1]
            for j in range(_unsigned(length)):
                buf[e + j] = view[word + j]
            e += length
            row += 1
    else:
        _load(view, words, starts, at, buf, rows * cols)


def _reduce_add(view, partials, partials_starts, out, out_starts):
    """``out[v] = partials[v, 0] + partials[v, 1] + ...`` in that order, for every instance
    (``partials``: (instances, count, length) word indices, ``out``: (instances, length))."""
    length, count = out.shape[1], partials.shape[1]
    acc = np.empty(max(length, 1), dtype=view.dtype)
    for v in range(out.shape[0]):
        if count == 0:
            acc[:length] = 0
        else:
            _load(view, partials[v], partials_starts[v], 0, acc, length)
            for j in range(1, count):
                s = partials_starts[v, j]
                if s >= 0:
                    first = _unsigned(s)
                    for e in range(_unsigned(length)):
                        acc[e] += view[first + e]
                else:
                    row = partials[v, j]
                    for e in range(_unsigned(length)):
                        acc[e] += view[_unsigned(row[e])]
        _store(view, out, out_starts, v, acc, length)


def _word_python(words, start, v, e):
    """The word of element ``e`` of vector ``v``: by its run's start when it has one (a branch the
    compiler hoists out of the loop over ``e``), else by its index."""
    return _unsigned(start + e) if start >= 0 else _unsigned(words[v, e])


def _relu(view, inp, inp_starts, out, out_starts):
    """``out = max(inp, 0)`` as ``np.maximum`` gives it: a NaN stays as it is, -0.0 becomes 0.0."""
    length = out.shape[1]
    row = np.empty(max(length, 1), dtype=view.dtype)
    for v in range(out.shape[0]):
        si = inp_starts[v]
        for e in range(length):
            x = view[_word(inp, si, v, e)]
            row[e] = x if x > 0 or x != x else view.dtype.type(0)
        _store(view, out, out_starts, v, row, length)


def _add(view, a, a_starts, b, b_starts, out, out_starts):
    """``out = a + b``."""
    length = out.shape[1]
    row = np.empty(max(length, 1), dtype=view.dtype)
    for v in range(out.shape[0]):
        sa, sb = a_starts[v], b_starts[v]
        for e in range(length):
            row[e] = view[_word(a, sa, v, e)] + view[_word(b, sb, v, e)]
        _store(view, out, out_starts, v, row, length)


def _bn_apply(view, x, x_starts, scale, scale_starts, shift, shift_starts, out, out_starts):
    """``out = x * scale + shift``, rounded after the product and after the sum (no fused
    multiply-add: numba contracts nothing unless asked to)."""
    length = out.shape[1]
    row = np.empty(max(length, 1), dtype=view.dtype)
    for v in range(out.shape[0]):
        sx, sc, sh = x_starts[v], scale_starts[v], shift_starts[v]
        for e in range(length):
            row[e] = view[_word(x, sx, v, e)] * view[_word(scale, sc, v, e)] + view[_word(shift, sh, v, e)]
        _store(view, out, out_starts, v, row, length)


_load, _store, _apart, _word = _load_python, _store_python, _apart_python, _word_python
_load_matrix = _load_matrix_python


@functools.cache
def kernels() -> SimpleNamespace | None:
    """The compiled kernels, or None where numba or the BLAS its ``np.dot`` needs is missing."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; this is for Pythons it lacks
        return None
    if importlib.util.find_spec("scipy") is None:  # pragma: no cover - scipy is a dependency
        return None
    global _load, _store, _apart, _word, _load_matrix
    jit = numba.njit(nogil=True, cache=True, boundscheck=False)
    _load, _store, _apart, _word = jit(_load_python), jit(_store_python), jit(_apart_python), jit(_word_python)
    _load_matrix = jit(_load_matrix_python)
    return SimpleNamespace(matmul=jit(_matmul), reduce_add=jit(_reduce_add), relu=jit(_relu), add=jit(_add),
                           bn_apply=jit(_bn_apply))


def _fields(words: dict[str, np.ndarray], starts: dict[str, np.ndarray], names: tuple[str, ...]) -> list:
    """(words, starts) of each named field, in order, flattened into one argument list."""
    return [array for name in names for array in (words[name], starts[name])]


def matmul_in_place(check: Callable[..., None]) -> Callable[..., bool]:
    """The ``in_place`` of ``MatMulPartial[FLOAT]``; ``check(m, k, n, a_len, b_len, out_len)``
    raises as its ``compute`` does on sizes that do not match."""

    def in_place(view: Callable[[np.dtype], np.ndarray], words: dict[str, np.ndarray],
                 starts: dict[str, np.ndarray]) -> bool:
        compiled = kernels()
        if compiled is None:
            return False
        state = view(UNSIGNED_INT)
        m, k, n = (state[words[name]].astype(np.int64) for name in ("m", "k", "n"))
        check(m, k, n, words["a"].shape[1], words["b"].shape[1], words["out"].shape[1])
        if bool(((m == 1) | (n == 1)).any()):
            # numba hands a product with one row or one column to BLAS's matrix-vector (or dot)
            # routine, where numpy's matmul, in ``compute``, can round differently (seen for a
            # 4x7 by 7x1 product): such a batch (a classifier at batch 1) is gathered instead
            return False
        compiled.matmul(view(FLOAT), *_operand(words, starts, "a"), *_operand(words, starts, "b"), words["out"],
                        starts["out"], m, k, n)
        return True

    return in_place


def _operand(words: dict[str, np.ndarray], starts: dict[str, np.ndarray], name: str) -> tuple:
    """A product operand's arguments: its words and every layout the engine found for it."""
    return (words[name], starts[name], starts[f"{name}.columns"], starts[f"{name}.runs"],
            starts[f"{name}.run_table"])


def fields_in_place(kernel: str, inputs: tuple[str, ...], output: str,
                    check: Callable[..., None]) -> Callable[..., bool]:
    """The ``in_place`` of a codelet with float vector fields only (``ReduceAdd`` and the
    elementwise ones) whose kernel is ``kernels().<kernel>``, called with the ``inputs`` fields'
    words and starts and then the ``output``'s; ``check(**fields)`` raises as its ``compute``
    does on lengths that do not match."""

    def in_place(view: Callable[[np.dtype], np.ndarray], words: dict[str, np.ndarray],
                 starts: dict[str, np.ndarray]) -> bool:
        compiled = kernels()
        if compiled is None:
            return False
        names = (*inputs, output)
        check(**{name: words[name] for name in names})
        getattr(compiled, kernel)(view(FLOAT), *_fields(words, starts, names))
        return True

    return in_place
