"""Compiled in-place kernels for the codelets that carry a network: products, their reductions,
and the elementwise steps between them.

The engine's general path runs a batch in three steps: gather every field of every instance into
one array, call the vectorised ``compute``, scatter the outputs back.  For a product that is one
array of ``a`` blocks and one of ``b`` blocks as big as everything the exchange has just brought
in: ResNet-50's inference gathers 265 million product operand elements, writes them to memory
once and reads them once more, and that was half of the time its products took.  A kernel here
runs the same instances where their fields live: per instance it copies the operands from tile
memory into a small scratch that stays in cache, computes, and writes the results to their
words.  The gathered arrays are never made.

Every kernel reads all of an instance's inputs before it writes any of its outputs, as the
gather path does: a vertex may write over what it reads (``out`` overlapping ``a``), while two
vertices of one compute set never touch the same element (the compiler refuses that), so the
order of instances does not matter.  Each kernel does exactly what its codelet's ``compute`` does,
so the bits are the same (NaN
payloads aside: which NaN an operation on two NaNs keeps differs between numpy's vector and scalar
loops already, and between those and these):

* ``MatMulPartial`` float: one BLAS product per instance, as ``np.matmul`` makes for a batch
  (numba's ``np.dot`` calls the BLAS that scipy ships, the one numpy itself uses);
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


# The kernels, as plain Python (numba compiles them in ``kernels``; they also run as they are).
def _matmul(view, a, b, out, m, k, n):
    """``out[v] = a[v] @ b[v]`` for every instance ``v``: ``a``, ``b``, ``out`` are word indices
    (instances, m*k / k*n / m*n) into ``view``; ``m``, ``k``, ``n`` per instance."""
    sa = np.empty(max(a.shape[1], 1), dtype=view.dtype)
    sb = np.empty(max(b.shape[1], 1), dtype=view.dtype)
    so = np.empty(max(out.shape[1], 1), dtype=view.dtype)
    for v in range(out.shape[0]):
        rows, inner, cols = m[v], k[v], n[v]
        if rows == 0 or cols == 0:
            continue
        if inner == 0:  # an empty sum: numpy's matmul gives zeros
            for e in range(rows * cols):
                view[out[v, e]] = 0
            continue
        for e in range(rows * inner):
            sa[e] = view[a[v, e]]
        for e in range(inner * cols):
            sb[e] = view[b[v, e]]
        product = so[:rows * cols].reshape(rows, cols)
        np.dot(sa[:rows * inner].reshape(rows, inner), sb[:inner * cols].reshape(inner, cols), product)
        for e in range(rows * cols):
            view[out[v, e]] = so[e]


def _reduce_add(view, partials, out):
    """``out[v] = partials[v, 0] + partials[v, 1] + ...`` in that order, for every instance:
    ``partials`` (instances, count, length) and ``out`` (instances, length) word indices."""
    length = out.shape[1]
    acc = np.empty(max(length, 1), dtype=view.dtype)
    for v in range(out.shape[0]):
        if partials.shape[1] == 0:
            for e in range(length):
                view[out[v, e]] = 0
            continue
        for e in range(length):
            acc[e] = view[partials[v, 0, e]]
        for j in range(1, partials.shape[1]):
            for e in range(length):
                acc[e] += view[partials[v, j, e]]
        for e in range(length):
            view[out[v, e]] = acc[e]


def _relu(view, inp, out):
    """``out = max(inp, 0)`` as ``np.maximum`` gives it: a NaN stays as it is, -0.0 becomes 0.0."""
    row = np.empty(max(out.shape[1], 1), dtype=view.dtype)
    for v in range(out.shape[0]):
        for e in range(out.shape[1]):
            x = view[inp[v, e]]
            row[e] = x if x > 0 or x != x else view.dtype.type(0)
        for e in range(out.shape[1]):
            view[out[v, e]] = row[e]


def _add(view, a, b, out):
    """``out = a + b``."""
    row = np.empty(max(out.shape[1], 1), dtype=view.dtype)
    for v in range(out.shape[0]):
        for e in range(out.shape[1]):
            row[e] = view[a[v, e]] + view[b[v, e]]
        for e in range(out.shape[1]):
            view[out[v, e]] = row[e]


def _bn_apply(view, x, scale, shift, out):
    """``out = x * scale + shift``, rounded after the product and after the sum (no fused
    multiply-add: numba contracts nothing unless asked to)."""
    row = np.empty(max(out.shape[1], 1), dtype=view.dtype)
    for v in range(out.shape[0]):
        for e in range(out.shape[1]):
            row[e] = view[x[v, e]] * view[scale[v, e]] + view[shift[v, e]]
        for e in range(out.shape[1]):
            view[out[v, e]] = row[e]


@functools.cache
def kernels() -> SimpleNamespace | None:
    """The compiled kernels, or None where numba or the BLAS its ``np.dot`` needs is missing."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; this is for Pythons it lacks
        return None
    if importlib.util.find_spec("scipy") is None:  # pragma: no cover - scipy is a dependency
        return None
    jit = numba.njit(nogil=True, cache=True, boundscheck=False)
    return SimpleNamespace(matmul=jit(_matmul), reduce_add=jit(_reduce_add), relu=jit(_relu), add=jit(_add),
                           bn_apply=jit(_bn_apply))


def matmul_in_place(check: Callable[..., None]) -> Callable[..., bool]:
    """The ``in_place`` of ``MatMulPartial[FLOAT]``; ``check(m, k, n, a_len, b_len, out_len)``
    raises as its ``compute`` does on sizes that do not match."""

    def in_place(view: Callable[[np.dtype], np.ndarray], words: dict[str, np.ndarray]) -> bool:
        compiled = kernels()
        if compiled is None:
            return False
        state = view(UNSIGNED_INT)
        m, k, n = (state[words[name]].astype(np.int64) for name in ("m", "k", "n"))
        a, b, out = words["a"], words["b"], words["out"]
        check(m, k, n, a.shape[1], b.shape[1], out.shape[1])
        compiled.matmul(view(FLOAT), a, b, out, m, k, n)
        return True

    return in_place


def reduce_add_in_place(check: Callable[..., None]) -> Callable[..., bool]:
    """The ``in_place`` of ``ReduceAdd[FLOAT]``; ``check(partials=..., out=...)`` raises as its
    ``compute`` does on lengths that do not match."""

    def in_place(view: Callable[[np.dtype], np.ndarray], words: dict[str, np.ndarray]) -> bool:
        compiled = kernels()
        if compiled is None:
            return False
        partials, out = words["partials"], words["out"]
        check(partials=partials, out=out)
        compiled.reduce_add(view(FLOAT), partials, out)
        return True

    return in_place


def elementwise_in_place(kernel: str, inputs: tuple[str, ...], output: str,
                         check: Callable[..., None]) -> Callable[..., bool]:
    """The ``in_place`` of a float elementwise codelet whose kernel is ``kernels().<kernel>``,
    called with the ``inputs`` fields' words and then the ``output``'s; ``check(**fields)``
    raises as its ``compute`` does on lengths that do not match."""

    def in_place(view: Callable[[np.dtype], np.ndarray], words: dict[str, np.ndarray]) -> bool:
        compiled = kernels()
        if compiled is None:
            return False
        fields = [words[name] for name in (*inputs, output)]
        check(**dict(zip((*inputs, output), fields, strict=True)))
        getattr(compiled, kernel)(view(FLOAT), *fields)
        return True

    return in_place
