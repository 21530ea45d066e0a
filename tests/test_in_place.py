"""The codelets' compiled in-place kernels (``codelets/_in_place.py``) against their vectorised
``compute``: the same bits in every word of tile memory (NaN payloads aside), the same errors, and
the engine's use of them (and its gather path where they cannot run)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import codelets
import poplar_like as pl
from codelets import _in_place
from poplar_like.codelet import INPUT, STATE
from poplar_like.dtypes import FLOAT, UNSIGNED_INT
from poplar_like.engine import kernels, local
from poplar_like.errors import CodeletError

from helpers import small_graph, variable

IN_PLACE = [cls for cls in codelets.all_codelets() if cls.in_place is not None]

pytestmark = pytest.mark.skipif(not kernels.available() or _in_place.kernels() is None,
                                reason="numba (or the BLAS its np.dot needs) is not installed")


def test_the_codelets_a_network_runs_most_have_kernels():
    assert {cls.__name__ for cls in IN_PLACE} == {"MatMulPartial_float", "ReduceAdd_float", "Relu_float",
                                                  "Add_float", "BnApply_float"}


def _lay_out(arrays: dict[str, np.ndarray], seed: int, runs: float = 0.6) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A store of 4-byte words holding every field at distinct words, with filler around them:
    each vector (last axis) of a field lies either in one run of consecutive words or scattered
    at random (a run with probability ``runs``), so both ways a kernel reads and writes are used.
    Returns (store as uint32, each field's word indices)."""
    rng = np.random.default_rng(seed)
    total = sum(a.size for a in arrays.values())
    store = rng.integers(0, 2**32, 3 * total + 5, dtype=np.uint64).astype(np.uint32)
    words, cursor = {}, int(rng.integers(0, 3))
    for name, values in arrays.items():
        length = values.shape[-1] if values.ndim > 1 else 1
        vectors = values.size // max(length, 1) if length else 0
        placed = np.empty((vectors, length), dtype=np.int64)
        for r in range(vectors):
            if rng.random() < runs:  # one run
                placed[r] = cursor + np.arange(length)
            else:  # scattered over twice the room
                placed[r] = cursor + rng.permutation(2 * length)[:length]
            cursor += 2 * length + int(rng.integers(0, 2))
        words[name] = placed.astype(np.int32).reshape(values.shape)
        store[words[name]] = values.view(np.uint32)
    return store, words


def _starts(cls, words: dict[str, np.ndarray]) -> local.VectorLayouts:
    return local.VectorLayouts(cls, words)


def _run_both(cls, arrays: dict[str, np.ndarray], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tile memory after the gather path (compute on gathered arrays, outputs scattered) and after
    ``in_place``, starting from the same memory."""
    store, words = _lay_out(arrays, seed)
    gathered = store.copy()
    args = {name: gathered.view(fld.type.dtype)[words[name]] for name, fld in cls.fields.items()}
    for name, fld in cls.fields.items():
        if fld.direction in (INPUT, STATE):
            args[name].flags.writeable = False
    cls.compute(**args)
    for name, fld in cls.fields.items():
        if fld.writes:
            gathered.view(fld.type.dtype)[words[name]] = args[name]
    in_place = store.copy()
    assert cls.in_place(in_place.view, words, _starts(cls, words)) is True
    return gathered, in_place


def assert_same_words(actual: np.ndarray, expected: np.ndarray) -> None:
    """Every word the same, except that a NaN may come out as another NaN: which NaN an operation
    on two NaNs (or inf * 0) gives is the processor's choice, and numpy's own vector and scalar
    loops already differ in it."""
    differ = actual != expected
    both_nan = np.isnan(actual.view(np.float32)) & np.isnan(expected.view(np.float32))
    bad = np.flatnonzero(differ & ~both_nan)
    assert bad.size == 0, f"{bad.size} words differ, first at {bad[:5]}: {actual[bad[:5]]} != {expected[bad[:5]]}"


def assert_in_place_gives_compute_bits(cls, store: np.ndarray, words: dict[str, np.ndarray],
                                      starts: dict[str, np.ndarray]) -> None:
    """``in_place`` on one copy of the store, ``compute`` on gathered fields (its ``out`` scattered
    back) on another: the same words."""
    gathered, in_place = store.copy(), store.copy()
    args = {name: gathered.view(fld.type.dtype)[words[name]] for name, fld in cls.fields.items()}
    cls.compute(**args)
    gathered.view(np.float32)[words["out"]] = args["out"]
    assert cls.in_place(in_place.view, words, starts) is True
    assert_same_words(in_place, gathered)


def _matmul_arrays(rng, count: int, m: int, k: int, n: int, specials: bool = False) -> dict[str, np.ndarray]:
    a = rng.standard_normal((count, m * k)).astype(np.float32)
    b = rng.standard_normal((count, k * n)).astype(np.float32)
    if specials and a.size:
        a.reshape(-1)[rng.integers(0, a.size, 2)] = [np.inf, np.nan]
    return {"a": a, "b": b, "out": np.zeros((count, m * n), np.float32),
            "m": np.full(count, m, UNSIGNED_INT), "k": np.full(count, k, UNSIGNED_INT),
            "n": np.full(count, n, UNSIGNED_INT)}


#: a product's rows or columns: one row or column is left to ``compute`` (tested below)
MATRIX_SIDE = st.integers(0, 9).filter(lambda side: side != 1)


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 6), m=MATRIX_SIDE, k=st.integers(0, 70), n=MATRIX_SIDE,
       specials=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_matmul_in_place_gives_compute_bits(count, m, k, n, specials, seed):
    arrays = _matmul_arrays(np.random.default_rng(seed), count, m, k, n, specials)
    gathered, in_place = _run_both(codelets.MatMulPartial[FLOAT], arrays, seed)
    assert_same_words(in_place, gathered)


def test_matmul_in_place_with_distinct_shapes_in_one_batch():
    # With k = 0 the lengths no longer fix the shape: each instance has its own (m, n).
    arrays = _matmul_arrays(np.random.default_rng(3), 3, 3, 0, 4)
    arrays["m"] = np.array([3, 4, 2], UNSIGNED_INT)
    arrays["n"] = np.array([4, 3, 6], UNSIGNED_INT)
    arrays["out"][:] = 7.0  # an empty product writes zeros over whatever was there
    gathered, in_place = _run_both(codelets.MatMulPartial[FLOAT], arrays)
    assert_same_words(in_place, gathered)


@pytest.mark.parametrize("m, k, n", [(4, 7, 1), (1, 7, 5), (1, 7, 1)])
def test_products_of_one_row_or_column_are_left_to_compute(m, k, n):
    # numba makes them matrix-vector (or dot) calls, which can round differently from numpy's
    # matmul (4x7 by 7x1 did, for some values): in_place declines, touching nothing.
    cls = codelets.MatMulPartial[FLOAT]
    store, words = _lay_out(_matmul_arrays(np.random.default_rng(0), 3, m, k, n), 0)
    before = store.copy()
    assert cls.in_place(store.view, words, _starts(cls, words)) is False
    np.testing.assert_array_equal(store, before)


def test_a_real_sized_product_block_gives_compute_bits():
    # a ResNet-50 cell: 49 x 64 times 64 x 32, blocked by BLAS
    arrays = _matmul_arrays(np.random.default_rng(4), 8, 49, 64, 32)
    gathered, in_place = _run_both(codelets.MatMulPartial[FLOAT], arrays)
    assert_same_words(in_place, gathered)


def _column_stored(words: np.ndarray, rows: int, cols: int, store: np.ndarray, which: np.ndarray) -> np.ndarray:
    """``words`` with the vectors ``which`` moved to one run each, holding their (rows, cols)
    matrix column by column, as a tile's exchange buffer holds a block that arrives in its
    owner's order (values moved along)."""
    moved = words.copy()
    for r in which.tolist():
        first = int(words[r].min())  # the room the vector had (twice its length) is enough
        order = (np.arange(rows * cols) % cols) * rows + np.arange(rows * cols) // cols
        values = store[words[r]].copy()
        moved[r] = first + order
        store[moved[r]] = values
    return moved


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 5), m=st.integers(2, 9), k=st.integers(1, 40), n=st.integers(2, 9),
       overlap=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_matmul_operands_stored_column_by_column_give_compute_bits(count, m, k, n, overlap, seed):
    # An operand block stored column by column in one run is read from it without indices: the
    # same bits as the gathered product, also when the output lies over it.
    rng = np.random.default_rng(seed)
    cls = codelets.MatMulPartial[FLOAT]
    store, words = _lay_out(_matmul_arrays(rng, count, m, k, n), seed, runs=0.3)
    words["a"] = _column_stored(words["a"], m, k, store, np.flatnonzero(rng.random(count) < 0.7))
    words["b"] = _column_stored(words["b"], k, n, store, np.flatnonzero(rng.random(count) < 0.7))
    if overlap:  # instance 0 writes its output over its own lhs, starting one word in
        first = int(words["a"][0].min())
        if m * k >= m * n + 1:
            words["out"][0] = first + 1 + np.arange(m * n)
    starts = _starts(cls, words)
    assert_in_place_gives_compute_bits(cls, store, words, starts)


def _in_runs(words: np.ndarray, store: np.ndarray, pieces: int, rng) -> np.ndarray:
    """``words`` with every vector moved to ``pieces`` runs at separate places (values moved
    along), as a product's block of weights lies: part on the vertex's tile, part received."""
    moved = words.copy()
    length = words.shape[1]
    cuts = np.sort(rng.choice(np.arange(1, length), pieces - 1, replace=False))
    top = int(store.size) - 3 * length * words.shape[0] - 8
    for r in range(words.shape[0]):
        values = store[words[r]].copy()
        parts = np.split(np.arange(length), cuts)
        places = top + r * 3 * length + np.cumsum([0] + [p.size + 3 for p in parts[:-1]])[::-1]
        moved[r] = np.concatenate([place + np.arange(p.size) for place, p in zip(places, parts)])
        store[moved[r]] = values
    return moved


@pytest.mark.parametrize("pieces", [2, 3, 8])
def test_operands_of_a_few_runs_are_found_and_read_run_by_run(pieces):
    rng = np.random.default_rng(pieces)
    cls = codelets.MatMulPartial[FLOAT]
    arrays = _matmul_arrays(rng, 4, 6, 32, 16)
    store, words = _lay_out(arrays, pieces, runs=0.0)
    store = np.concatenate([store, rng.integers(0, 2**32, 3 * 6 * 32 * 4 + 3 * 32 * 16 * 4 + 64,
                                                dtype=np.uint64).astype(np.uint32)])
    words["b"] = _in_runs(words["b"], store, pieces, rng)
    starts = _starts(cls, words)
    assert (starts["b.runs"] >= 0).all() and (starts["b"] == -1).all()
    table = starts["b.run_table"]
    assert table.shape == (4 * pieces, 2) and (table[:, 1].reshape(4, pieces).sum(axis=1) == 32 * 16).all()
    assert_in_place_gives_compute_bits(cls, store, words, starts)


def test_a_column_stored_block_is_found_and_read_in_place():
    # a 1x1 convolution's im2col block (49 positions x 64 channels) as the exchange delivers it:
    # channel by channel
    rng = np.random.default_rng(5)
    cls = codelets.MatMulPartial[FLOAT]
    store, words = _lay_out(_matmul_arrays(rng, 4, 49, 64, 32), 5, runs=0.0)
    words["a"] = _column_stored(words["a"], 49, 64, store, np.arange(4))
    starts = _starts(cls, words)
    assert (starts["a.columns"] == words["a"][:, 0]).all() and (starts["a"] == -1).all()
    assert (starts["b.columns"] == -1).all()
    assert_in_place_gives_compute_bits(cls, store, words, starts)


@settings(max_examples=40, deadline=None)
@given(count=st.integers(0, 6), partials=st.integers(0, 6), length=st.integers(0, 40),
       seed=st.integers(0, 2**32 - 1))
def test_reduce_add_in_place_gives_compute_bits(count, partials, length, seed):
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal((count, partials, length)) * 10.0 ** rng.integers(-8, 8, (count, partials, 1)))
    arrays = {"partials": values.astype(np.float32), "out": np.zeros((count, length), np.float32)}
    gathered, in_place = _run_both(codelets.ReduceAdd[FLOAT], arrays, seed)
    assert_same_words(in_place, gathered)


SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 3.4e38, -3.4e38],
                    np.float32)


def _floats(rng, shape) -> np.ndarray:
    """Random float32 values spanning many magnitudes, with signed zeros, infinities, NaNs
    (one with a payload) and subnormals among them."""
    values = (rng.standard_normal(shape) * 10.0 ** rng.integers(-30, 30, shape)).astype(np.float32)
    flat = values.reshape(-1)
    if flat.size:
        picks = rng.integers(0, flat.size, max(1, flat.size // 4))
        flat[picks] = rng.choice(SPECIALS, picks.size)
        flat.view(np.uint32)[picks[:1]] = 0x7FC01234  # a NaN with a payload
    return values


@settings(max_examples=40, deadline=None)
@given(which=st.sampled_from(["Relu", "Add", "BnApply"]), count=st.integers(0, 6), length=st.integers(0, 40),
       seed=st.integers(0, 2**32 - 1))
def test_elementwise_in_place_gives_compute_bits(which, count, length, seed):
    rng = np.random.default_rng(seed)
    cls = {"Relu": codelets.unary("relu", FLOAT), "Add": codelets.binary("add", FLOAT),
           "BnApply": codelets.nn.BnApply[FLOAT]}[which]
    arrays = {name: _floats(rng, (count, length)) for name, fld in cls.fields.items() if not fld.writes}
    arrays.update({name: np.zeros((count, length), np.float32) for name, fld in cls.fields.items() if fld.writes})
    gathered, in_place = _run_both(cls, arrays, seed)
    assert_same_words(in_place, gathered)


@pytest.mark.parametrize("how", ["shifted run", "rotated"])
@pytest.mark.parametrize("cls", IN_PLACE, ids=lambda cls: cls.__name__)
def test_an_output_over_the_vertexs_own_input(cls, how):
    # One vertex may write where it reads: its output one word past its first input's run (both
    # runs, so a product would hand BLAS two overlapping views), or its first input's words
    # rotated by one.  The gather path reads every input first, and so must the kernel.
    rng = np.random.default_rng(7)
    if cls is codelets.MatMulPartial[FLOAT]:
        arrays = _matmul_arrays(rng, 3, 8, 8, 8)  # small enough that BLAS does not copy a first
    elif cls is codelets.ReduceAdd[FLOAT]:
        arrays = {"partials": _floats(rng, (3, 2, 4)), "out": np.zeros((3, 4), np.float32)}
    else:
        arrays = {name: _floats(rng, (3, 4)) for name, fld in cls.fields.items()}
    store, words = _lay_out(arrays, 7, runs=1.0)
    first_input = next(name for name, fld in cls.fields.items() if fld.direction == INPUT)
    inputs = words[first_input].reshape(3, -1)
    length = words["out"].shape[1]
    if how == "shifted run":
        words["out"] = (inputs[:, :1] + 1 + np.arange(length)).astype(np.int32)
    else:
        words["out"] = np.ascontiguousarray(np.roll(inputs, -1, axis=1)[:, :length])
    gathered = store.copy()
    args = {name: gathered.view(fld.type.dtype)[words[name]] for name, fld in cls.fields.items()}
    cls.compute(**args)
    gathered.view(np.float32)[words["out"]] = args["out"]
    in_place = store.copy()
    assert cls.in_place(in_place.view, words, _starts(cls, words))
    assert_same_words(in_place, gathered)


def test_in_place_raises_what_compute_raises():
    cls = codelets.MatMulPartial[FLOAT]
    arrays = _matmul_arrays(np.random.default_rng(5), 3, 2, 3, 4)
    arrays["k"] = np.array([3, 3, 4], UNSIGNED_INT)
    store, words = _lay_out(arrays, 0)
    with pytest.raises(ValueError, match=r"instance 2 .* m\*k = 8, but field a has length 6"):
        cls.in_place(store.view, words, _starts(cls, words))
    reduce = codelets.ReduceAdd[FLOAT]
    store, words = _lay_out({"partials": np.zeros((2, 3, 5), np.float32), "out": np.zeros((2, 4), np.float32)}, 0)
    with pytest.raises(ValueError, match="partials has 5, out has 4"):
        reduce.in_place(store.view, words, _starts(reduce, words))


# ---------------------------------------------------------------- through the engine
def _product_graph(k: int = 3):
    """One MatMulPartial vertex on tile 1 (operands spread over both tiles) and one ReduceAdd."""
    graph = small_graph(2)
    a, b = variable(graph, "a", 2 * 3), variable(graph, "b", 3 * 4, shift=1)
    out = variable(graph, "out", 2 * 4, tile=1)
    total = variable(graph, "total", 4, tile=0)
    cs = graph.add_compute_set("product")
    graph.add_vertex(cs, codelets.MatMulPartial[FLOAT], {"a": a, "b": b, "out": out, "m": 2, "k": k, "n": 4},
                     tile=1)
    red = graph.add_compute_set("reduce")
    graph.add_vertex(red, codelets.ReduceAdd[FLOAT], {"partials": out.reshape(2, 4), "out": total}, tile=0)
    return graph, pl.Sequence([pl.Execute(cs), pl.Execute(red)]), (a, b, out, total)


def _run_product(graph, prog, tensors):
    a, b, out, total = tensors
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal(6).astype(np.float32), rng.standard_normal(12).astype(np.float32)
    engine = pl.Engine(graph, prog)
    engine.write_tensor(a, x)
    engine.write_tensor(b, y)
    engine.run()
    product = x.reshape(2, 3) @ y.reshape(3, 4)
    return engine, product, engine.read_tensor(out), engine.read_tensor(total)


def test_the_engine_runs_them_in_place():
    graph, prog, tensors = _product_graph()
    engine, product, out, total = _run_product(graph, prog, tensors)
    np.testing.assert_allclose(out.reshape(2, 4), product, rtol=1e-6)
    np.testing.assert_array_equal(total, out[:4] + out[4:])
    prepared = [p for blocks in engine.backend.steps._prepared.values() for batch in blocks for p in batch]
    assert len(prepared) == 2 and all(p.in_place and p._fields is None for p in prepared)


def test_without_the_kernels_the_engine_gathers_and_gets_the_same_bits(monkeypatch):
    graph, prog, tensors = _product_graph()
    _, _, fast_out, fast_total = _run_product(graph, prog, tensors)
    monkeypatch.setattr(_in_place, "kernels", lambda: None)  # as where numba or scipy is missing
    graph, prog, tensors = _product_graph()
    engine, _, out, total = _run_product(graph, prog, tensors)
    np.testing.assert_array_equal(out, fast_out)
    np.testing.assert_array_equal(total, fast_total)
    prepared = [p for blocks in engine.backend.steps._prepared.values() for batch in blocks for p in batch]
    assert not any(p.in_place for p in prepared) and all(p._fields is not None for p in prepared)


def test_a_bad_vertex_is_named_with_its_tile():
    graph, prog, tensors = _product_graph(k=4)  # a has 6 elements, m*k = 8
    with pytest.raises(CodeletError, match=r"MatMulPartial_float raised ValueError: .*m\*k = 8, but field a "
                                           r"has length 6 .*compute set 'product', tile 1"):
        _run_product(graph, prog, tensors)


def test_vector_layouts_are_worked_out_when_asked_for():
    cls = codelets.MatMulPartial[FLOAT]
    store, words = _lay_out(_matmul_arrays(np.random.default_rng(1), 3, 4, 8, 4), 1, runs=1.0)
    layouts = local.VectorLayouts(cls, words)
    assert len(layouts) == len(list(layouts)) == 12  # a, b, out: four layouts each; no state field
    np.testing.assert_array_equal(layouts["a"], words["a"][:, 0])
    assert set(layouts._found) == {"a"}  # nothing else was worked out yet
    for key in ("m", "a.rows", "c"):
        with pytest.raises(KeyError):
            layouts[key]
