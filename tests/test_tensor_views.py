"""Tensor views, end to end: every view must read, write and copy like numpy indexing of the same array.

Each variable is spread over the 4 tiles of a small ipu2 target and filled with known values by
``engine.write_tensor``; then ``engine.read_tensor(view)`` is compared with the numpy view of the
host array, writes through a view must change exactly the numpy view's elements, and ``Copy``
programs between views (across tiles) must give what numpy assignment gives.  Tile mappings
(``get_tile_mapping``, ``map_tensor_linearly``) are checked against mappings worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import poplar_like as pl
from conftest import make_target, map_evenly

# ------------------------------------------------------------------------------------------------
# One graph and one engine for every read/write test (an empty program compiles them).

SHAPES = {"v": (12,), "m": (4, 6), "c": (2, 3, 4), "r": (1, 5), "s": (3, 1, 4, 1), "h": (256,)}
DTYPES = {"v": pl.FLOAT, "m": pl.FLOAT, "c": pl.INT, "r": pl.FLOAT, "s": pl.HALF, "h": pl.FLOAT}


def _initial(name: str) -> np.ndarray:
    shape, dtype = SHAPES[name], DTYPES[name]
    n = int(np.prod(shape))
    offset = 1000 * list(SHAPES).index(name)
    values = np.arange(n) * 0.5 - 3 + offset if dtype.kind == "f" else np.arange(n) * 7 - 40 + offset
    return values.astype(dtype).reshape(shape)


class Env:
    """A compiled graph with the variables of ``SHAPES`` and their host arrays."""

    def __init__(self) -> None:
        self.graph = pl.Graph(make_target())
        self.t = {name: self.graph.add_variable(DTYPES[name], shape, name) for name, shape in SHAPES.items()}
        for t in self.t.values():
            map_evenly(self.graph, t)
        self.engine = pl.Engine(self.graph, pl.Sequence())
        self.a: dict[str, np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        for name in SHAPES:
            self.a[name] = _initial(name)
            self.engine.write_tensor(self.t[name], self.a[name])


@pytest.fixture(scope="module")
def module_env() -> Env:
    return Env()


@pytest.fixture
def env(module_env: Env) -> Env:
    module_env.reset()
    return module_env


def check_read(env: Env, view: pl.Tensor, expected: np.ndarray) -> None:
    got = env.engine.read_tensor(view)
    assert got.shape == expected.shape, f"{view.name}: shape {got.shape} != numpy {expected.shape}"
    assert view.shape == expected.shape
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_every_variable_spans_all_tiles(env: Env) -> None:
    for name, t in env.t.items():
        if t.numel >= 4:
            assert set(np.unique(env.graph.tile_of_elements(t)).tolist()) == {0, 1, 2, 3}, name
        check_read(env, t, env.a[name])


def test_empty_program_compiles_and_runs(env: Env) -> None:
    env.engine.run()
    for name, t in env.t.items():
        check_read(env, t, env.a[name])


# ------------------------------------------------------------------------------------------------
# Reading views.  Each case: (variable, view of the Tensor, the same view of the numpy array).

READ_CASES = {
    # integer and negative indices
    "int": ("m", lambda t: t[2], lambda a: a[2]),
    "int-int": ("m", lambda t: t[1, 4], lambda a: a[1, 4]),
    "negative": ("m", lambda t: t[-1], lambda a: a[-1]),
    "negative-both": ("c", lambda t: t[-2, -1, -3], lambda a: a[-2, -1, -3]),
    "negative-1d": ("v", lambda t: t[-5], lambda a: a[-5]),
    # slices with steps
    "slice": ("v", lambda t: t[3:9], lambda a: a[3:9]),
    "slice-step": ("v", lambda t: t[1:11:3], lambda a: a[1:11:3]),
    "slice-neg-step": ("v", lambda t: t[::-2], lambda a: a[::-2]),
    "slice-neg-bounds": ("v", lambda t: t[-2:-9:-3], lambda a: a[-2:-9:-3]),
    "slice-2d-steps": ("m", lambda t: t[1:4:2, ::-2], lambda a: a[1:4:2, ::-2]),
    "slice-empty": ("m", lambda t: t[3:1], lambda a: a[3:1]),
    "slice-mixed": ("c", lambda t: t[1, ::2, 1:], lambda a: a[1, ::2, 1:]),
    "ellipsis": ("c", lambda t: t[..., 1], lambda a: a[..., 1]),
    "int-array": ("m", lambda t: t[[3, 0, 0]], lambda a: a[[3, 0, 0]]),
    # slice(begin, end, dim) and multi-dimensional slice
    "slice-dim0": ("m", lambda t: t.slice(1, 3, 0), lambda a: a[1:3]),
    "slice-dim1": ("m", lambda t: t.slice(2, 5, 1), lambda a: a[:, 2:5]),
    "slice-dim-neg": ("c", lambda t: t.slice(1, 4, -1), lambda a: a[:, :, 1:4]),
    "slice-dim-default": ("v", lambda t: t.slice(4, 8), lambda a: a[4:8]),
    "slice-dim-empty": ("m", lambda t: t.slice(2, 2, 1), lambda a: a[:, 2:2]),
    "slice-multi": ("m", lambda t: t.slice([1, 2], [3, 5]), lambda a: a[1:3, 2:5]),
    "slice-multi-3d": ("c", lambda t: t.slice([0, 1, 1], [2, 3, 3]), lambda a: a[0:2, 1:3, 1:3]),
    "slice-multi-prefix": ("c", lambda t: t.slice([1], [2]), lambda a: a[1:2]),
    # index
    "index-1": ("c", lambda t: t.index(1), lambda a: a[1]),
    "index-2": ("m", lambda t: t.index(1, 2), lambda a: a[1, 2]),
    "index-3": ("c", lambda t: t.index(0, 2, 3), lambda a: a[0, 2, 3]),
    # reshape and flatten
    "reshape": ("m", lambda t: t.reshape(3, 8), lambda a: a.reshape(3, 8)),
    "reshape-tuple": ("m", lambda t: t.reshape((2, 2, 6)), lambda a: a.reshape(2, 2, 6)),
    "reshape-3d-2d": ("c", lambda t: t.reshape(4, 6), lambda a: a.reshape(4, 6)),
    "reshape-scalar": ("v", lambda t: t[7:8].reshape(()), lambda a: a[7:8].reshape(())),
    "flatten": ("c", lambda t: t.flatten(), lambda a: a.flatten()),
    # transpose and dim_shuffle
    "transpose": ("m", lambda t: t.transpose(), lambda a: a.T),
    "T": ("r", lambda t: t.T, lambda a: a.T),
    "dim_shuffle": ("c", lambda t: t.dim_shuffle([2, 0, 1]), lambda a: a.transpose(2, 0, 1)),
    "dim_shuffle-id": ("c", lambda t: t.dim_shuffle([0, 1, 2]), lambda a: a),
    "dim_shuffle-2d": ("m", lambda t: t.dim_shuffle([1, 0]), lambda a: a.T),
    # broadcast: a size-1 dimension is repeated, a size-k dimension tiled (k * n)
    "broadcast-size1": ("r", lambda t: t.broadcast(3, 0), lambda a: np.broadcast_to(a, (3, 5))),
    "broadcast-size1-scalar": ("v", lambda t: t[4:5].broadcast(6, 0), lambda a: np.repeat(a[4:5], 6)),
    "broadcast-tiled-0": ("m", lambda t: t.broadcast(2, 0), lambda a: np.tile(a, (2, 1))),
    "broadcast-tiled-1": ("m", lambda t: t.broadcast(3, 1), lambda a: np.tile(a, (1, 3))),
    "broadcast-tiled-1d": ("v", lambda t: t.broadcast(2, 0), lambda a: np.tile(a, 2)),
    "broadcast-tiled-neg": ("c", lambda t: t.broadcast(2, -1), lambda a: np.tile(a, (1, 1, 2))),
    "broadcast-once": ("m", lambda t: t.broadcast(1, 1), lambda a: a),
    # expand and squeeze
    "expand-0": ("v", lambda t: t.expand([0]), lambda a: a[None]),
    "expand-end": ("m", lambda t: t.expand([2]), lambda a: a[:, :, None]),
    "expand-two": ("m", lambda t: t.expand([0, 2]), lambda a: np.expand_dims(a, (0, 2))),
    "squeeze-all": ("s", lambda t: t.squeeze(), lambda a: a.squeeze()),
    "squeeze-one": ("s", lambda t: t.squeeze([1]), lambda a: a.squeeze(1)),
    "squeeze-neg": ("s", lambda t: t.squeeze([-1]), lambda a: a.squeeze(-1)),
    "squeeze-none-left": ("m", lambda t: t.squeeze(), lambda a: a),
    # sub_sample and reverse
    "sub_sample-0": ("m", lambda t: t.sub_sample(3, 0), lambda a: a[::3]),
    "sub_sample-1": ("m", lambda t: t.sub_sample(2, 1), lambda a: a[:, ::2]),
    "sub_sample-1d": ("v", lambda t: t.sub_sample(5, 0), lambda a: a[::5]),
    "sub_sample-3d": ("c", lambda t: t.sub_sample(2, 2), lambda a: a[:, :, ::2]),
    "reverse-0": ("m", lambda t: t.reverse(0), lambda a: a[::-1]),
    "reverse-1": ("m", lambda t: t.reverse(1), lambda a: a[:, ::-1]),
    "reverse-neg": ("c", lambda t: t.reverse(-1), lambda a: a[..., ::-1]),
    # chains of views and views of views
    "chain-T-slice-reshape": ("m", lambda t: t.transpose()[1:5:2].reshape(2, 2, 2),
                              lambda a: a.T[1:5:2].reshape(2, 2, 2)),
    "chain-shuffle-rev-flat": ("c", lambda t: t.dim_shuffle([1, 2, 0])[::-1, 1:].flatten()[::3],
                               lambda a: a.transpose(1, 2, 0)[::-1, 1:].flatten()[::3]),
    "chain-broadcast-T": ("r", lambda t: t.broadcast(4, 0).T[1:4], lambda a: np.broadcast_to(a, (4, 5)).T[1:4]),
    "chain-reshape-slice-rev": ("m", lambda t: t.reshape(2, 12).slice(3, 9, 1).reverse(1)[1],
                                lambda a: a.reshape(2, 12)[:, 3:9][:, ::-1][1]),
    "chain-view-of-view": ("m", lambda t: t[1:][1:, ::2][0], lambda a: a[1:][1:, ::2][0]),
    "chain-expand-broadcast-squeeze": ("v", lambda t: t[2:6].expand([0]).broadcast(3, 0).sub_sample(2, 1),
                                       lambda a: np.broadcast_to(a[2:6][None], (3, 4))[:, ::2]),
    "chain-T-reshape": ("m", lambda t: t.T.reshape(4, 6), lambda a: a.T.reshape(4, 6)),
    "chain-index-of-T": ("c", lambda t: t.dim_shuffle([2, 1, 0]).index(3, 1), lambda a: a.transpose(2, 1, 0)[3, 1]),
    "chain-squeeze-reverse": ("s", lambda t: t.squeeze().reverse(1)[:, 1:3],
                              lambda a: a.squeeze()[:, ::-1][:, 1:3]),
}

CONCAT_CASES = {
    "concat-dim0": (lambda t: pl.concat([t["m"][:2], t["m"][3:]], 0),
                    lambda a: np.concatenate([a["m"][:2], a["m"][3:]], 0)),
    "concat-dim1": (lambda t: pl.concat([t["m"][:, 4:], t["m"][:, :2]], 1),
                    lambda a: np.concatenate([a["m"][:, 4:], a["m"][:, :2]], 1)),
    "concat-neg-dim": (lambda t: pl.concat([t["c"], t["c"][:, :, :1]], -1),
                       lambda a: np.concatenate([a["c"], a["c"][:, :, :1]], -1)),
    "concat-3d-dim1": (lambda t: pl.concat([t["c"][:, 1:], t["c"].reverse(1), t["c"][:, :1]], 1),
                       lambda a: np.concatenate([a["c"][:, 1:], a["c"][:, ::-1], a["c"][:, :1]], 1)),
    "concat-variables": (lambda t: pl.concat([t["m"].flatten()[:5], t["v"], t["r"][0]], 0),
                         lambda a: np.concatenate([a["m"].flatten()[:5], a["v"], a["r"][0]])),
    "concat-views-2d": (lambda t: pl.concat([t["m"][:, :2], t["m"].T[:4, :3]], 1),
                        lambda a: np.concatenate([a["m"][:, :2], a["m"].T[:4, :3]], 1)),
    "concat-one": (lambda t: pl.concat([t["v"][::2]]), lambda a: a["v"][::2]),
    "concat-then-views": (lambda t: pl.concat([t["m"], t["v"].reshape(2, 6)], 0).T[::2].reshape(2, 9),
                          lambda a: np.concatenate([a["m"], a["v"].reshape(2, 6)], 0).T[::2].reshape(2, 9)),
    "concat-of-concat": (lambda t: pl.concat([pl.concat([t["v"][:2], t["v"][-2:]]), t["v"][5:6]]),
                         lambda a: np.concatenate([a["v"][:2], a["v"][-2:], a["v"][5:6]])),
}


@pytest.mark.parametrize("case", list(READ_CASES))
def test_read_view(env: Env, case: str) -> None:
    name, view, np_view = READ_CASES[case]
    check_read(env, view(env.t[name]), np_view(env.a[name]))


@pytest.mark.parametrize("case", list(CONCAT_CASES))
def test_read_concat(env: Env, case: str) -> None:
    view, np_view = CONCAT_CASES[case]
    check_read(env, view(env.t), np_view(env.a))


def test_read_by_variable_name(env: Env) -> None:
    check_read(env, env.graph.tensor("c")[1], env.a["c"][1])
    np.testing.assert_array_equal(env.engine.read_tensor("m"), env.a["m"])


def test_views_do_not_copy_and_keep_dtype(env: Env) -> None:
    m = env.t["m"]
    for view in (m.T, m[1:, ::2], m.broadcast(2, 0), m.reverse(1), pl.concat([m, m], 1)):
        assert view.dtype == m.dtype
        assert view.graph is env.graph
        assert set(view.variables()) == {list(env.t).index("m")}
    assert m.T.ids.base is not None  # a numpy view of the id array, not a copy
    assert m.rank == 2 and m.numel == 24 and m.num_elements() == 24 and len(m) == 4 and m.dim(1) == 6


class _Sum(pl.Vertex):
    inp = pl.Input(pl.Vector(pl.FLOAT))
    out = pl.Output(pl.FLOAT)

    def compute(inp, out):
        out[:] = inp.sum(axis=1)

    def cycles(inp_length):
        return inp_length


def test_connecting_a_view_never_changes_it(graph: pl.Graph) -> None:
    """Reconnecting a field must not write the new element ids into the first tensor's view."""
    x = graph.add_variable(pl.FLOAT, (4,), "x")
    y = graph.add_variable(pl.FLOAT, (4,), "y")
    r = graph.add_variable(pl.FLOAT, (1, 4), "r")
    out = graph.add_variable(pl.FLOAT, (2,), "out")
    for t in (x, y, r, out):
        map_evenly(graph, t)
    x_ids, b = x.ids.copy(), r.broadcast(4, 0)[:, 1]
    cs = graph.add_compute_set("sums")
    v = graph.add_vertex(cs, _Sum, {"inp": x, "out": out[0]}, tile=0)
    graph.connect(v["inp"], y)  # the last connection wins
    np.testing.assert_array_equal(x.ids, x_ids)
    w = graph.add_vertex(cs, _Sum, {"inp": b, "out": out[1]}, tile=1)  # a read-only (broadcast) id array
    graph.connect(w["inp"], y[::-1])
    engine = pl.Engine(graph, pl.Execute(cs))
    engine.write_tensor(x, np.full(4, 100, dtype=np.float32))
    engine.write_tensor(y, np.array([1, 2, 3, 4], dtype=np.float32))
    engine.write_tensor(r, np.full((1, 4), 1000, dtype=np.float32))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(out), [10, 10])
    np.testing.assert_array_equal(engine.read_tensor(x), [100] * 4)


# ------------------------------------------------------------------------------------------------
# Writing through views: exactly the numpy view's elements change.

WRITE_CASES = {
    "int": ("m", lambda t: t[2], lambda a: a[2]),
    "scalar": ("m", lambda t: t[1, 2], lambda a: a[1, 2]),
    "negative-steps": ("m", lambda t: t[-1, 1:5:2], lambda a: a[-1, 1:5:2]),
    "transpose": ("m", lambda t: t.T, lambda a: a.T),
    "T-slice-reshape": ("m", lambda t: t.T[::2].reshape(4, 3), lambda a: a.T[::2].reshape(4, 3)),
    "slice-dim": ("m", lambda t: t.slice(1, 3, 1), lambda a: a[:, 1:3]),
    "slice-multi": ("c", lambda t: t.slice([0, 1], [2, 3]), lambda a: a[0:2, 1:3]),
    "reverse-slice": ("m", lambda t: t.reverse(1)[1:3], lambda a: a[:, ::-1][1:3]),
    "sub_sample": ("m", lambda t: t.sub_sample(2, 0), lambda a: a[::2]),
    "dim_shuffle-index": ("c", lambda t: t.dim_shuffle([2, 0, 1])[1], lambda a: a.transpose(2, 0, 1)[1]),
    "reshape-neg-step": ("c", lambda t: t.reshape(6, 4)[::-2], lambda a: a.reshape(6, 4)[::-2]),
    "ellipsis": ("c", lambda t: t[..., -1], lambda a: a[..., -1]),
    "expand-squeeze": ("s", lambda t: t.squeeze()[::2].expand([1]), lambda a: a.squeeze()[::2][:, None]),
    "flatten-of-view": ("m", lambda t: t[:, 1::2].flatten(), lambda a: a[:, 1::2].flatten()),
    "concat": ("m", lambda t: pl.concat([t[0], t[3, ::-1]], 0), lambda a: np.concatenate([a[0], a[3, ::-1]], 0)),
}


def _positions(shape: tuple[int, ...], np_view) -> np.ndarray:
    """Flat positions in the variable of the elements a numpy view expression selects."""
    return np.asarray(np_view(np.arange(int(np.prod(shape))).reshape(shape)))


@pytest.mark.parametrize("case", list(WRITE_CASES))
def test_write_through_view(env: Env, case: str) -> None:
    name, view, np_view = WRITE_CASES[case]
    t, before = env.t[name], env.a[name]
    v = view(t)
    values = (np.arange(v.numel).reshape(v.shape) * -2 - 100).astype(t.dtype)
    env.engine.write_tensor(v, values)
    expected = before.copy()
    expected.reshape(-1)[_positions(before.shape, np_view).reshape(-1)] = values.reshape(-1)
    check_read(env, t, expected)
    check_read(env, v, values)
    changed = expected != before
    assert changed.sum() == np.count_nonzero(values.reshape(-1) != np_view(before).reshape(-1))
    # other variables are untouched
    for other, array in env.a.items():
        if other != name:
            check_read(env, env.t[other], array)


def test_write_through_numpy_view_semantics(env: Env) -> None:
    """Plain numpy assignment through a basic-indexing view is the reference too."""
    m, expected = env.t["m"], env.a["m"].copy()
    values = np.full((2, 3), 77.5, dtype=np.float32)
    env.engine.write_tensor(m[::-2, 1::2], values)
    expected[::-2, 1::2] = values
    check_read(env, m, expected)


def test_write_accepts_exact_shape_and_int_values_for_float(env: Env) -> None:
    m = env.t["m"]
    env.engine.write_tensor(m[0], np.arange(6))  # ints into float is allowed, same shape
    check_read(env, m[0], np.arange(6, dtype=np.float32))


# ------------------------------------------------------------------------------------------------
# Copy programs between views, across tiles.

COPY_CASES = {
    # name: (source view, destination view, numpy source, numpy destination) over variables a, b
    "whole": (lambda a, b: a, lambda a, b: b, lambda A: A, lambda B: B),
    "transpose-to-reshape": (lambda a, b: a.T, lambda a, b: b.reshape(6, 4), lambda A: A.T, lambda B: B.reshape(6, 4)),
    "steps": (lambda a, b: a[1:3, ::2], lambda a, b: b[::2, 3:], lambda A: A[1:3, ::2], lambda B: B[::2, 3:]),
    "row-to-strided-flat": (lambda a, b: a[0], lambda a, b: b[:, 1:4].flatten()[::2],
                            lambda A: A[0], lambda B: B[:, 1:4].flatten()[::2]),
    "broadcast-source": (lambda a, b: a[2:3].broadcast(4, 0), lambda a, b: b,
                         lambda A: np.broadcast_to(A[2:3], (4, 6)), lambda B: B),
    "tiled-source": (lambda a, b: a[1, :3].broadcast(2, 0), lambda a, b: b[3],
                     lambda A: np.tile(A[1, :3], 2), lambda B: B[3]),
    "concat-source": (lambda a, b: pl.concat([a[:, 3:], a[:, :3]], 0), lambda a, b: b.reshape(8, 3),
                      lambda A: np.concatenate([A[:, 3:], A[:, :3]], 0), lambda B: B.reshape(8, 3)),
    "concat-destination": (lambda a, b: a, lambda a, b: pl.concat([b[2:], b[:2]], 0),
                           lambda A: A, lambda B: np.concatenate([B[2:], B[:2]], 0)),
    "reverse-destination": (lambda a, b: a[1], lambda a, b: b[2].reverse(0), lambda A: A[1], lambda B: B[2, ::-1]),
    "dim_shuffle": (lambda a, b: a.reshape(2, 3, 4).dim_shuffle([2, 0, 1]), lambda a, b: b.reshape(4, 2, 3),
                    lambda A: A.reshape(2, 3, 4).transpose(2, 0, 1), lambda B: B.reshape(4, 2, 3)),
    "scalar": (lambda a, b: a[3, 5], lambda a, b: b[0, 0], lambda A: A[3, 5], lambda B: B[0, 0]),
    "same-variable": (lambda a, b: a[0], lambda a, b: a[3, ::-1], lambda A: A[0], None),
    "sub_sample-expand": (lambda a, b: a.sub_sample(2, 1).expand([0]), lambda a, b: b[1:3].reshape(1, 4, 3),
                          lambda A: A[:, ::2][None], lambda B: B[1:3].reshape(1, 4, 3)),
}


class CopyEnv:
    """Variables ``a`` and ``b`` (4x6 floats) mapped to opposite tiles, one Copy program per case."""

    def __init__(self) -> None:
        graph = pl.Graph(make_target())
        self.a = graph.add_variable(pl.FLOAT, (4, 6), "a")
        self.b = graph.add_variable(pl.FLOAT, (4, 6), "b")
        tiles = map_evenly(graph, self.a)
        graph.set_tile_mapping(self.b, 3 - tiles)  # every element of b lives away from a's
        self.graph = graph
        self.names = list(COPY_CASES)
        programs = [pl.Copy(src(self.a, self.b), dst(self.a, self.b)) for src, dst, _, _ in COPY_CASES.values()]
        self.engine = pl.Engine(graph, programs)
        self.A = (np.arange(24, dtype=np.float32) * 1.25 + 1).reshape(4, 6)
        self.B = -(np.arange(24, dtype=np.float32) + 50).reshape(4, 6)


@pytest.fixture(scope="module")
def copy_env() -> CopyEnv:
    return CopyEnv()


@pytest.mark.parametrize("case", list(COPY_CASES))
def test_copy_between_views(copy_env: CopyEnv, case: str) -> None:
    e = copy_env
    _, _, np_src, np_dst = COPY_CASES[case]
    e.engine.write_tensor(e.a, e.A)
    e.engine.write_tensor(e.b, e.B)
    e.engine.run(e.names.index(case))
    A, B = e.A.copy(), e.B.copy()
    values = np.asarray(np_src(e.A))
    if np_dst is None:  # the destination is a view of `a` itself: a[3, ::-1] = a[0]
        A[3, ::-1] = values
    else:
        positions = _positions(B.shape, np_dst)
        assert positions.shape == values.shape
        B.reshape(-1)[positions.reshape(-1)] = values.reshape(-1)
    np.testing.assert_array_equal(e.engine.read_tensor(e.a), A)
    np.testing.assert_array_equal(e.engine.read_tensor(e.b), B)


def test_copy_crosses_tiles(copy_env: CopyEnv) -> None:
    tiles_a = copy_env.graph.tile_of_elements(copy_env.a)
    tiles_b = copy_env.graph.tile_of_elements(copy_env.b)
    assert np.all(tiles_a != tiles_b)
    assert set(tiles_a.reshape(-1).tolist()) == {0, 1, 2, 3}


# ------------------------------------------------------------------------------------------------
# Properties: random shapes and random basic-indexing keys.

@st.composite
def shaped_keys(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4))
    key = draw(hnp.basic_indices(shape, min_dims=0, allow_ellipsis=True, allow_newaxis=False))
    return shape, key


def _reshaped(env: Env, shape: tuple[int, ...]) -> tuple[pl.Tensor, np.ndarray]:
    n = int(np.prod(shape, dtype=np.int64))
    return env.t["h"][:n].reshape(shape), env.a["h"][:n].reshape(shape)


@settings(max_examples=150, deadline=None)
@given(shaped_keys())
def test_property_read_basic_index(module_env: Env, shape_key) -> None:
    shape, key = shape_key
    t, a = _reshaped(module_env, shape)
    check_read(module_env, t[key], a[key])


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_property_read_shuffled_then_indexed(module_env: Env, data) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
    perm = data.draw(st.permutations(range(len(shape))))
    t, a = _reshaped(module_env, shape)
    t, a = t.dim_shuffle(perm), a.transpose(perm)
    key = data.draw(hnp.basic_indices(a.shape, min_dims=0, allow_newaxis=False))
    check_read(module_env, t[key], a[key])
    check_read(module_env, t[key].flatten(), a[key].flatten())


@settings(max_examples=100, deadline=None)
@given(shaped_keys())
def test_property_write_basic_index(module_env: Env, shape_key) -> None:
    shape, key = shape_key
    env = module_env
    env.engine.write_tensor(env.t["h"], env.a["h"])
    t, a = _reshaped(env, shape)
    view = t[key]
    values = (np.arange(view.numel, dtype=np.float32) * -1 - 1).reshape(view.shape)
    env.engine.write_tensor(view, values)
    expected = a.copy()
    expected[key] = values
    full = env.a["h"].copy()
    full[:expected.size] = expected.reshape(-1)
    check_read(env, env.t["h"], full)
    env.engine.write_tensor(env.t["h"], env.a["h"])


# ------------------------------------------------------------------------------------------------
# Tile mappings.

def test_get_tile_mapping_round_trips_intervals(graph: pl.Graph) -> None:
    t = graph.add_variable(pl.FLOAT, (3, 4), "t")
    mapping = [[(0, 3)], [(3, 5), (8, 10)], [(5, 8)], [(10, 12)]]
    graph.set_tile_mapping(t, mapping)
    assert graph.get_tile_mapping(t) == mapping
    expected_tiles = np.array([0, 0, 0, 1, 1, 2, 2, 2, 1, 1, 3, 3]).reshape(3, 4)
    np.testing.assert_array_equal(graph.tile_of_elements(t), expected_tiles)
    # intervals of a view are intervals of the view's flattened order: t.T flattened lies on tiles
    # [0, 1, 1,  0, 2, 1,  0, 2, 3,  1, 2, 3]
    got = graph.get_tile_mapping(t.T)
    assert got == [[(0, 1), (3, 4), (6, 7)], [(1, 3), (5, 6), (9, 10)], [(4, 5), (7, 8), (10, 11)],
                   [(8, 9), (11, 12)]]
    flat = expected_tiles.T.reshape(-1)
    for tile, intervals in enumerate(got):
        for begin, end in intervals:
            assert np.all(flat[begin:end] == tile)
    assert sum(e - b for iv in got for b, e in iv) == 12


def test_get_tile_mapping_of_per_element_array_and_views(graph: pl.Graph) -> None:
    t = graph.add_variable(pl.INT, (2, 5), "t")
    tiles = np.array([[3, 3, 0, 0, 1], [1, 1, 2, 3, 3]])
    graph.set_tile_mapping(t, tiles)
    assert graph.get_tile_mapping(t) == [[(2, 4)], [(4, 7)], [(7, 8)], [(0, 2), (8, 10)]]
    assert graph.get_tile_mapping(t[1, ::-1]) == [[], [(3, 5)], [(2, 3)], [(0, 2)]]
    assert graph.get_tile_mapping(t[0, 2:4]) == [[(0, 2)], [], [], []]


def test_get_tile_mapping_incomplete(graph: pl.Graph) -> None:
    t = graph.add_variable(pl.FLOAT, (6,), "part")
    graph.set_tile_mapping(t[1:3], 2)
    assert graph.get_tile_mapping(t, require_complete=False) == [[], [], [(1, 3)], []]
    with pytest.raises(pl.TileMappingError, match=r"'part'.*element 0 .*part\[0\]"):
        graph.get_tile_mapping(t)
    graph.set_tile_mapping(t, 1)
    graph.set_tile_mapping(t[4], 3)  # a later mapping overrides
    assert graph.get_tile_mapping(t) == [[], [(0, 4), (5, 6)], [], [(4, 5)]]


@pytest.mark.parametrize("dtype, n, expected", [
    # floats: grain 2 (64-bit data path), at least 128 B = 32 floats per tile.
    # 100 floats = 50 grains; ceil(50 / 4) = 13 grains = 26 < 32, so 32 per tile.
    (pl.FLOAT, 100, [[(0, 32)], [(32, 64)], [(64, 96)], [(96, 100)]]),
    # 300 floats = 150 grains; ceil(150 / 4) = 38 grains = 76 per tile.
    (pl.FLOAT, 300, [[(0, 76)], [(76, 152)], [(152, 228)], [(228, 300)]]),
    # 305 floats = 153 grains; ceil(153 / 4) = 39 grains = 78 per tile (not ceil(305 / 4) = 77).
    (pl.FLOAT, 305, [[(0, 78)], [(78, 156)], [(156, 234)], [(234, 305)]]),
    # 5 floats: less than 128 B, all on tile 0.
    (pl.FLOAT, 5, [[(0, 5)], [], [], []]),
    # halves: grain 4, at least 128 B = 64 halves per tile.  100 halves: 64 per tile, tiles 2-3 empty.
    (pl.HALF, 100, [[(0, 64)], [(64, 100)], [], []]),
    # 1000 halves = 250 grains; ceil(250 / 4) = 63 grains = 252 per tile.
    (pl.HALF, 1000, [[(0, 252)], [(252, 504)], [(504, 756)], [(756, 1000)]]),
    # ints: 4 bytes like floats, grain 2, 32 per tile.
    (pl.INT, 70, [[(0, 32)], [(32, 64)], [(64, 70)], []]),
])
def test_map_tensor_linearly_follows_poplibs_rule(graph: pl.Graph, dtype, n, expected) -> None:
    assert graph.target.vector_width(pl.FLOAT) == 2 and graph.target.vector_width(pl.HALF) == 4
    t = graph.add_variable(dtype, (n,), "lin")
    pl.map_tensor_linearly(graph, t)
    assert graph.get_tile_mapping(t) == expected


def test_map_tensor_linearly_multi_dim_and_options(graph: pl.Graph) -> None:
    t = graph.add_variable(pl.FLOAT, (2, 50), "two_d")  # flattened like a (100,) float tensor
    pl.map_tensor_linearly(graph, t)
    assert graph.get_tile_mapping(t) == [[(0, 32)], [(32, 64)], [(64, 96)], [(96, 100)]]
    np.testing.assert_array_equal(graph.tile_of_elements(t)[1, :14], [1] * 14)
    u = graph.add_variable(pl.FLOAT, (10,), "fine")
    pl.map_tensor_linearly(graph, u, min_elements_per_tile=0, grain_size=1)  # ceil(10 / 4) = 3 per tile
    assert graph.get_tile_mapping(u) == [[(0, 3)], [(3, 6)], [(6, 9)], [(9, 10)]]
    w = graph.add_variable(pl.FLOAT, (10,), "coarse")
    pl.map_tensor_linearly(graph, w, min_elements_per_tile=0, grain_size=4)  # 3 grains of 4: tiles 0..2
    assert graph.get_tile_mapping(w) == [[(0, 4)], [(4, 8)], [(8, 10)], []]


def test_map_tensor_linearly_with_an_offset_wraps_round_the_tiles(graph: pl.Graph) -> None:
    t = graph.add_variable(pl.FLOAT, (10,), "offset")
    used = pl.map_tensor_linearly(graph, t, min_elements_per_tile=0, grain_size=1, offset=2)
    assert used == 4 and graph.get_tile_mapping(t) == [[(6, 9)], [(9, 10)], [(0, 3)], [(3, 6)]]
    small = graph.add_variable(pl.FLOAT, (40,), "small")  # 32 floats a tile at least: two tiles
    assert pl.map_tensor_linearly(graph, small, offset=7) == 2  # 7 is tile 3 of 4
    assert graph.get_tile_mapping(small) == [[(32, 40)], [], [], [(0, 32)]]
    with pytest.raises(pl.GraphError, match="'small'.*offset must be an int"):
        pl.map_tensor_linearly(graph, small, offset=1.5)


def test_map_tensor_linearly_of_a_view_follows_the_view_order(graph: pl.Graph) -> None:
    m = graph.add_variable(pl.FLOAT, (4, 6), "m")
    pl.map_tensor_linearly(graph, m.T, min_elements_per_tile=0, grain_size=1)  # 6 per tile along m.T
    assert graph.get_tile_mapping(m.T) == [[(0, 6)], [(6, 12)], [(12, 18)], [(18, 24)]]
    np.testing.assert_array_equal(graph.tile_of_elements(m), (np.arange(24).reshape(6, 4) // 6).T)
