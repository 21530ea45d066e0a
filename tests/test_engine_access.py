"""The engine's element access (poplar_like/engine/access.py, and the compiled loops of
engine/kernels.py it uses for long lists) against plain numpy indexing."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poplar_like.engine import access, kernels
from poplar_like.engine.access import FieldAccess, WordList, Workers, copy_words
from poplar_like.engine.local import TileMemory

#: both ways of moving elements: numpy's indexing, and the compiled loops (numba) where present
PATHS = ["numpy", "compiled"] if kernels.available() else ["numpy"]
#: (threads, path) pairs every property test runs through
WAYS = [(threads, path) for threads in (1, 3) for path in PATHS]


@contextlib.contextmanager
def small_chunks(threads: int, path: str = "numpy"):
    """Tiny chunks, so that even small cases take the chunked and threaded paths; ``path`` says
    whether even the shortest list goes to the compiled loops or none does."""
    saved = access.CHUNK, access.PARALLEL_MIN, access.KERNEL_MIN
    access.CHUNK, access.PARALLEL_MIN = 7, 16
    access.KERNEL_MIN = 0 if path == "compiled" else 1 << 62
    w = Workers(threads)
    try:
        yield w
    finally:
        w.close()
        access.CHUNK, access.PARALLEL_MIN, access.KERNEL_MIN = saved


@pytest.fixture(params=WAYS, ids=[f"{t} thread(s), {p}" for t, p in WAYS])
def workers(request):
    with small_chunks(*request.param) as w:
        yield w


def _store(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(size).astype(np.float32)


@st.composite
def field_words(draw):
    """Word indices of a field (rows, width) mixing runs of several lengths, matrices stored
    column by column and scattered words."""
    rows = draw(st.integers(0, 12))
    width = draw(st.integers(1, 40))
    size = 400
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["rows", "runs", "columns", "scattered", "mixed"]))
    run = draw(st.sampled_from([d for d in range(1, width + 1) if width % d == 0]))
    words = np.empty((rows, width), dtype=np.int32)
    for r in range(rows):
        row_kind = kind if kind != "mixed" else str(rng.choice(["rows", "columns", "scattered"], p=[0.5, 0.3, 0.2]))
        if row_kind == "columns":  # a (width // run, run) matrix, stored column by column
            e = np.arange(width)
            words[r] = rng.integers(0, size - width) + (e % run) * (width // run) + e // run
        elif row_kind == "rows":
            words[r] = rng.integers(0, size - width) + np.arange(width)
        elif row_kind == "runs":
            starts = rng.integers(0, size - run, size=width // run)
            words[r] = (starts[:, None] + np.arange(run)).reshape(-1)
        else:
            words[r] = rng.integers(0, size, size=width)
    shape = draw(st.sampled_from(["flat", "matrix", "scalar"]))
    if shape == "scalar" and width == 1:
        return words.reshape(rows)
    if shape == "matrix" and width % 2 == 0:
        return words.reshape(rows, 2, width // 2)
    return words


@settings(max_examples=150, deadline=None)
@given(words=field_words())
def test_field_read_matches_fancy_indexing(words):
    view = _store(400)
    for way in WAYS:
        with small_chunks(*way) as w:
            got = FieldAccess(words).read(view, w)
        assert got.shape == words.shape
        np.testing.assert_array_equal(got, view[words])


@settings(max_examples=150, deadline=None)
@given(words=field_words())
def test_field_write_matches_fancy_assignment(words):
    flat = words.reshape(-1)
    # a write field never names one element twice (the compiler rejects that as a data race)
    _, first = np.unique(flat, return_index=True)
    keep = np.zeros(flat.size, dtype=bool)
    keep[first] = True
    if not keep.all():
        words = np.arange(flat.size, dtype=np.int32).reshape(words.shape) * 3 + 1
    values = np.random.default_rng(1).standard_normal(words.shape).astype(np.float32)
    expected = _store(max(400, int(words.max(initial=0)) + 1))
    start = expected.copy()
    expected[words] = values
    for way in WAYS:
        got = start.copy()
        with small_chunks(*way) as w:
            FieldAccess(words).write(got, values, w)
        np.testing.assert_array_equal(got, expected)


@settings(max_examples=100, deadline=None)
@given(lengths=st.lists(st.integers(1, 200), max_size=30), seed=st.integers(0, 2**32 - 1))
def test_word_list_in_runs_matches_fancy_indexing(lengths, seed):
    """Lists made of runs (an exchange's receive side) are moved partly in blocks."""
    rng = np.random.default_rng(seed)
    size = 20_000
    # disjoint runs at random places, in random order
    slots = rng.permutation(size // 200)[:len(lengths)] * 200
    words = np.concatenate([s + np.arange(n) for s, n in zip(slots, lengths, strict=True)] or [[]])
    words = words.astype(np.int32)
    view = _store(size)
    values = np.random.default_rng(2).standard_normal(words.size).astype(np.float32)
    for way in WAYS:
        with small_chunks(*way) as w:
            listed = WordList(words)
            np.testing.assert_array_equal(listed.take(view, w), view[words])
            got = view.copy()
            listed.put(got, values, w)
        expected = view.copy()
        expected[words] = values
        np.testing.assert_array_equal(got, expected)
    if sum(lengths) > 0 and sum(n - n % 16 for n in lengths) >= 0.8 * sum(lengths):
        assert listed.run in (16, 64)


def test_contiguous_rows_are_read_as_runs():
    words = np.array([[10, 11, 12, 13, 14, 15, 16, 17], [30, 31, 32, 33, 34, 35, 36, 37]], dtype=np.int32)
    assert FieldAccess(words).describe() == "2 rows: 2 in runs of 8"
    mixed = np.concatenate([words, [[0, 5, 1, 6, 2, 7, 3, 8]]])
    assert FieldAccess(mixed).describe() == "3 rows: 2 in runs of 8, 1 element by element"
    halves = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 40, 41, 42, 43, 44, 45, 46, 47]], dtype=np.int32)
    assert FieldAccess(halves).describe() == "1 rows: 1 in runs of 8"


def test_copy_reads_every_source_before_writing(workers):
    view = np.arange(100, dtype=np.float32)
    src = np.arange(0, 60, dtype=np.int32)
    dst = src + 10  # overlaps its own source, as a single numpy assignment allows
    expected = view.copy()
    expected[dst] = expected[src]
    copy_words(view, src, dst, workers)
    np.testing.assert_array_equal(view, expected)


def test_threads_setting(monkeypatch):
    monkeypatch.setenv("POPLAR_LIKE_THREADS", "3")
    assert access.default_threads() == 3
    for wrong in ("0", "two", "-1"):
        monkeypatch.setenv("POPLAR_LIKE_THREADS", wrong)
        with pytest.raises(ValueError, match=f"POPLAR_LIKE_THREADS must be a positive whole number.*{wrong}"):
            access.default_threads()
    monkeypatch.delenv("POPLAR_LIKE_THREADS")
    monkeypatch.setenv("PMI_SIZE", "64")
    monkeypatch.setenv("PMI_RANK", "1")
    assert access.default_threads() == 1  # many ranks on few cores: one thread each


# ------------------------------------------------------------------ batches split over threads

def _sum_graph():
    """16 tiles, 64 ``ReduceAdd``-like sum vertices reading rows that cross tiles."""
    import poplar_like as pl
    from codelets import ReduceSum

    graph = pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=16).create_device())
    x = graph.add_variable(pl.FLOAT, (64, 40), "x")
    y = graph.add_variable(pl.FLOAT, (64,), "y")
    graph.set_tile_mapping(x, (np.arange(64 * 40) // 7 % 16).astype(np.int32).reshape(64, 40))
    graph.set_tile_mapping(y, (np.arange(64) % 16).astype(np.int32))
    cs = graph.add_compute_set("sums")
    graph.add_vertices(cs, ReduceSum[pl.FLOAT], {"inp": x, "out": y}, np.arange(64) % 16)
    return graph, pl.Execute(cs), x, y


@pytest.mark.parametrize("threads", [1, 3])
def test_batches_split_over_threads_give_the_same_result(threads, monkeypatch):
    import poplar_like as pl
    from poplar_like.engine import local

    monkeypatch.setattr(local, "PARALLEL_MIN", 1)  # split even this small batch
    monkeypatch.setenv("POPLAR_LIKE_THREADS", str(threads))
    graph, prog, x, y = _sum_graph()
    engine = pl.Engine(graph, prog)
    values = np.random.default_rng(3).standard_normal((64, 40)).astype(np.float32)
    engine.write_tensor(x, values)
    engine.run()
    blocks = engine.backend.steps._prepared[0][0]
    assert len(blocks) == min(threads, 64)
    np.testing.assert_allclose(engine.read_tensor(y), values.sum(axis=1), rtol=1e-5)
    values[37, 5] = np.nan  # still computed row by row: only row 37 is NaN
    engine.write_tensor(x, values)
    engine.run()
    got = engine.read_tensor(y)
    assert np.isnan(got[37]) and np.isfinite(np.delete(got, 37)).all()
    engine.backend.close()


# ------------------------------------------------------------------ exchange moves (TileMemory.apply)

@st.composite
def move_lists(draw):
    """A copy ``store[dst] = store[src]``: an exchange (disjoint sides), one that overlaps itself, or
    one that writes a word twice, with 1, 2, 4 or 8-byte items."""
    itemsize = draw(st.sampled_from([1, 2, 4, 8]))
    words = 300  # the store has 8 * 300 bytes: room for every item size
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    count = draw(st.integers(0, 120))
    kind = draw(st.sampled_from(["exchange", "exchange in runs", "overlapping", "repeated"]))
    if kind == "exchange":  # senders' words in the low half, receive buffers in the high half
        src = rng.integers(0, words // 2, count)
        dst = words // 2 + rng.permutation(words // 2)[:count]
    elif kind == "exchange in runs":  # runs of 1 to 20 words on both sides, some cut short
        lengths = rng.integers(1, 21, 12)
        src = np.concatenate([s + np.arange(n) for s, n in zip(rng.integers(0, words // 2 - 20, 12), lengths)])
        src = src[:words // 2 - 10]
        # receive buffers in order, with a few gaps: runs break on the receiving side too
        dst = words // 2 + np.sort(rng.choice(words // 2, src.size, replace=False))
    elif kind == "overlapping":
        src = rng.integers(0, words, count)
        dst = rng.permutation(words)[:count]
    else:
        src = rng.integers(0, words // 2, count)
        dst = words // 2 + rng.integers(0, 10, count)
    dtype = draw(st.sampled_from([np.int32, np.int64]))
    return itemsize, src.astype(dtype), dst[:src.size].astype(dtype)


@settings(max_examples=150, deadline=None)
@given(case=move_lists())
def test_moves_match_numpy_assignment(case):
    """Every way of applying a move list gives numpy's ``store[dst] = store[src]``, bit for bit."""
    from poplar_like.compiler.executable import Moves

    itemsize, src, dst = case
    start = np.random.default_rng(5).integers(0, 256, 300 * 8, dtype=np.uint8)
    expected = start.copy()
    view = expected.view(kernels.RAW[itemsize])
    view[dst] = view[src]
    for way in WAYS:
        with small_chunks(*way) as w:
            memory = TileMemory(start.size, w)
            memory.store[:] = start
            moves = Moves.from_words({itemsize: src}, {itemsize: dst})
            memory.apply(moves)
            memory.apply(moves)  # the second time through the plan made the first time
            twice = expected.copy()
            twice.view(kernels.RAW[itemsize])[dst] = twice.view(kernels.RAW[itemsize])[src]
            np.testing.assert_array_equal(memory.store[:start.size], twice, err_msg=str(way))


@settings(max_examples=100, deadline=None)
@given(case=move_lists())
def test_sends_and_receives_match_numpy_assignment(case):
    """A rank packing its send buffer (``buffer[dst] = store[src]``) and unpacking its receive
    buffer (``store[dst] = buffer[src]``, a repeated word keeping the later value) from runs
    gives numpy's assignment, bit for bit, every way."""
    from poplar_like.compiler.executable import Moves

    itemsize, words, other = case
    words = words % 300
    positions = (other % 300)[:words.size]
    start = np.random.default_rng(6).integers(0, 256, 300 * 8, dtype=np.uint8)
    buffer_start = np.random.default_rng(7).integers(0, 256, 300 * 8, dtype=np.uint8)
    raw = kernels.RAW[itemsize]
    sent = buffer_start.copy()
    unique = np.unique(positions, return_index=True)[1]  # a send buffer position is written once
    sent.view(raw)[positions[unique]] = start.view(raw)[words[unique]]
    received = start.copy()
    received.view(raw)[words] = buffer_start.view(raw)[positions]
    for way in WAYS:
        with small_chunks(*way) as w:
            memory = TileMemory(start.size, w)
            memory.store[:] = start
            buffer = buffer_start.copy()
            memory.send(Moves.from_words({itemsize: words[unique]}, {itemsize: positions[unique]}), buffer)
            np.testing.assert_array_equal(buffer, sent, err_msg=str(way))
            memory.receive(Moves.from_words({itemsize: positions}, {itemsize: words}), buffer_start)
            np.testing.assert_array_equal(memory.store[:start.size], received, err_msg=str(way))


def test_kernels_setting(monkeypatch):
    try:
        for value, expected in (("numpy", False), ("NumPy", False), ("", kernels._loops() is not None)):
            monkeypatch.setenv("POPLAR_LIKE_KERNELS", value)
            kernels.available.cache_clear()
            assert kernels.available() is expected
        monkeypatch.setenv("POPLAR_LIKE_KERNELS", "fortran")
        kernels.available.cache_clear()
        with pytest.raises(ValueError, match="POPLAR_LIKE_KERNELS must be 'numba' or 'numpy', got 'fortran'"):
            kernels.available()
    finally:
        monkeypatch.undo()
        kernels.available.cache_clear()


@pytest.mark.skipif(not kernels.available(), reason="numba is not installed")
def test_disjoint_check_finds_overlaps_and_repeats():
    def check(src, dst, length):
        return kernels.check_disjoint(*(np.array(a, dtype=np.int32) for a in (src, dst, length)), 64)

    assert check([0], [10], [3]) == (True, True)
    assert check([0, 5], [10, 2], [2, 1]) == (True, True)  # sources are words 0, 1 and 5
    assert check([0, 5], [10, 4], [1, 2]) == (False, True)  # destination word 5 is a source
    assert check([0, 5], [10, 12], [3, 1]) == (True, False)  # word 12 written twice
    assert check([0, 60], [63, 60], [1, 4]) == (False, False)


@pytest.mark.skipif(not kernels.available(), reason="numba is not installed")
@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), runs=st.integers(1, 12), longest=st.sampled_from([1, 9, 40]))
def test_disjoint_check_matches_numpy_on_runs(seed, runs, longest):
    """Runs that start anywhere in a byte and span whole bytes or none: the byte-wise marking
    finds exactly the overlaps and repeats that numpy finds word by word."""
    from poplar_like.compiler.executable import expand_runs

    rng = np.random.default_rng(seed)
    length = rng.integers(1, longest + 1, runs).astype(np.int32)
    src = rng.integers(0, 200, runs).astype(np.int32)
    dst = rng.integers(0, 200, runs).astype(np.int32)
    src_words, dst_words = expand_runs(src, length), expand_runs(dst, length)
    expected = (not np.isin(src_words, dst_words).any(), np.unique(dst_words).size == dst_words.size)
    assert kernels.check_disjoint(src, dst, length, 256) == expected


@settings(max_examples=150, deadline=None)
@given(case=move_lists())
def test_moves_as_runs_spell_out_their_element_list(case):
    """``Moves.from_words`` keeps a move list as runs, in order, and ``words`` gives it back."""
    from poplar_like.compiler.executable import Moves

    itemsize, src, dst = case
    moves = Moves.from_words({itemsize: src}, {itemsize: dst})
    if src.size == 0:
        assert moves.is_empty() and moves.count(itemsize) == 0
        return
    back_src, back_dst = moves.words(itemsize)
    assert back_src.dtype == src.dtype and back_dst.dtype == dst.dtype
    np.testing.assert_array_equal(back_src, src)
    np.testing.assert_array_equal(back_dst, dst)
    length = moves.length[itemsize]
    assert moves.count(itemsize) == src.size and (length > 0).all()
    # maximal runs: where one run ends and the next starts, one side does not step by one word
    ends = np.cumsum(length)[:-1] - 1
    assert ((src[ends] + 1 != src[ends + 1]) | (dst[ends] + 1 != dst[ends + 1])).all()


@pytest.mark.skipif(not kernels.available(), reason="numba is not installed")
@settings(max_examples=100, deadline=None)
@given(words=field_words(), as_list=st.booleans(), wide=st.booleans())
def test_compiled_vector_starts_match_numpy(words, as_list, wide):
    words = words.reshape(-1, words.shape[-1] if words.size else 1)
    if as_list and words.shape[0] % 2 == 0:  # a VectorList field: (instances, count, length)
        words = words.reshape(words.shape[0] // 2, 2, words.shape[-1])
    words = words.astype(np.int64 if wide else np.int32)
    got, want = kernels.vector_starts(words), kernels.vector_starts_numpy(words)
    assert got.shape == want.shape == words.shape[:-1] and got.dtype == want.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def test_vector_starts_of_runs_single_words_and_empty_vectors():
    words = np.array([[4, 5, 6], [4, 6, 7], [9, 8, 7]], dtype=np.int32)
    np.testing.assert_array_equal(kernels.vector_starts_numpy(words), [4, -1, -1])
    np.testing.assert_array_equal(kernels.vector_starts_numpy(words[:, :1]), [4, 4, 9])
    assert kernels.vector_starts_numpy(words[:, :0]).tolist() == [-1, -1, -1]
    if kernels.available():
        np.testing.assert_array_equal(kernels.vector_starts(words[:, :1]), [4, 4, 9])
        assert kernels.vector_starts(words[:, :0]).tolist() == [-1, -1, -1]


@pytest.mark.skipif(not kernels.available(), reason="numba is not installed")
@settings(max_examples=100, deadline=None)
@given(words=field_words(), wide=st.booleans())
def test_compiled_vector_columns_match_numpy(words, wide):
    words = words.astype(np.int64 if wide else np.int32)
    got, want = kernels.vector_columns(words), kernels.vector_columns_numpy(words)
    assert got.shape == want.shape == words.shape[:-1] and got.dtype == want.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not kernels.available(), reason="numba is not installed")
@settings(max_examples=100, deadline=None)
@given(words=field_words(), wide=st.booleans())
def test_compiled_vector_runs_match_numpy(words, wide):
    words = words.astype(np.int64 if wide else np.int32)
    (rows, table), (want_rows, want_table) = kernels.vector_runs(words), kernels.vector_runs_numpy(words)
    assert rows.shape == want_rows.shape == words.shape[:-1] and rows.dtype == want_rows.dtype == np.int64
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(table, want_table)


def test_vector_runs_lists_vectors_of_a_few_long_runs():
    runs = [(100, 20), (5, 20)]
    words = np.array([np.concatenate([first + np.arange(n) for first, n in runs]),  # two runs of 20
                      np.arange(40),  # one run: not listed (starts has it)
                      np.arange(40) * 2,  # 40 single words
                      np.concatenate([300 + np.arange(10), np.arange(30)]),  # runs of 10 and 30
                      np.concatenate([k * 100 + np.arange(4) for k in range(10)])],  # 10 runs: too many
                     dtype=np.int32)
    for rows, table in [kernels.vector_runs_numpy(words)] + ([kernels.vector_runs(words)] if kernels.available() else []):
        assert rows.tolist() == [0, -1, -1, 2, -1]
        assert table.tolist() == [[100, 20], [5, 20], [300, 10], [0, 30]]
        assert kernels.vector_runs_numpy(words[:, :0])[0].tolist() == [-1] * 5


def test_vector_columns_finds_matrices_stored_column_by_column():
    e = np.arange(6)
    words = np.array([10 + (e % 3) * 2 + e // 3,  # a 2x3 matrix stored by columns
                      10 + (e % 2) * 3 + e // 2,  # a 3x2 one
                      10 + e,  # a run (a matrix of one row, or one column)
                      [10, 12, 14, 11, 13, 16],  # a wrong last word
                      [10, 10, 10, 10, 10, 10]], dtype=np.int32)
    want = [10, 10, -1, -1, -1]
    np.testing.assert_array_equal(kernels.vector_columns_numpy(words), want)
    assert kernels.vector_columns_numpy(words[:, :3]).tolist() == [-1] * 5  # too short for 2x2
    assert kernels.vector_columns_numpy(words[:, :0]).tolist() == [-1] * 5
    if kernels.available():
        np.testing.assert_array_equal(kernels.vector_columns(words), want)
        assert kernels.vector_columns(words[:, :0]).tolist() == [-1] * 5


@pytest.mark.skipif(not kernels.available(), reason="numba is not installed")
def test_compiled_loops_copy_bits_not_values():
    """NaN payloads and half values pass through unchanged (the loops move raw words)."""
    payloads = np.array([0x7FC00001, 0xFFC12345, 0x00000001, 0x7F800000], dtype=np.uint32)
    view = np.zeros(8, dtype=np.uint32)
    view[:4] = payloads
    with small_chunks(1, "compiled") as w:
        words = np.array([3, 2, 1, 0], dtype=np.int32)
        np.testing.assert_array_equal(access.take_words(view.view(np.float32), words, w).view(np.uint32),
                                      payloads[::-1])
        halves = np.array([1.5, -0.0, np.inf, 65504], dtype=np.float16)
        store = np.zeros(8, dtype=np.float16)
        access.put_words(store, np.array([7, 6, 5, 4], dtype=np.int32), halves, w)
        np.testing.assert_array_equal(store[4:].view(np.uint16), halves[::-1].view(np.uint16))


def test_what_one_tile_sends_another_arrives_in_the_senders_order():
    # A vertex on tile 1 reads a block of tile 0's matrix transposed (an im2col block of a 1x1
    # convolution reads the input channel-minor like this).  Its exchange slots are in element
    # order, so the exchange is one run of words on both sides (one memmove), and the field reads
    # the slots as a matrix stored column by column.
    import codelets
    import poplar_like as pl

    graph = pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=2).create_device())
    x = graph.add_variable(pl.FLOAT, (8, 6), "x")
    graph.set_tile_mapping(x, 0)
    y = graph.add_variable(pl.FLOAT, (6, 8), "y")
    graph.set_tile_mapping(y, 1)
    cs = graph.add_compute_set("relu")
    graph.add_vertex(cs, codelets.unary("relu", pl.FLOAT), {"inp": x[2:7].transpose().flatten(),
                                                            "out": y[:, :5].flatten()}, tile=1)
    exe = pl.compile_graph(graph, pl.Execute(cs))
    pre = exe.computes[0].pre
    assert pre.length[4].tolist() == [30]  # the 5 rows x 6 columns block, one run
    (batch,) = exe.computes[0].batches
    np.testing.assert_array_equal(kernels.vector_columns_numpy(batch.fields["inp"]), [pre.dst_start[4][0]])
    engine = pl.Engine(exe)
    values = np.arange(-24, 24, dtype=np.float32).reshape(8, 6)
    engine.write_tensor(x, values)
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(y)[:, :5], np.maximum(values[2:7].T, 0))
