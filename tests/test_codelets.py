"""Tests of the built-in codelet library (``codelets/``).

Every codelet's vectorised ``compute`` is checked three ways: against a plain numpy expression
(usually in float64 or int64, then rounded or wrapped), against the slow obvious reference (the
same codelet called on one instance at a time, which must agree bit for bit), and for hygiene
(inputs are read-only and unchanged, outputs fully written, ``cycles`` gives one non-negative
count per instance).
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import codelets
from codelets import costs
from codelets.elementwise import BINARY_OPS, UNARY_OPS
from poplar_like.codelet import (INPUT, STATE, VECTOR, VECTOR_LIST, MultiVertex,
                                 estimate_cycles, resolve_codelet)
from poplar_like.dtypes import BOOL, FLOAT, HALF, INT, SUPPORTED, UNSIGNED_INT
from poplar_like.errors import DTypeError, UnknownCodeletError

SHAPES = [(1, 1), (3, 7), (6, 16), (4, 0), (2, 33)]  # (instances, vector length)
NUMERIC = (FLOAT, HALF, INT, UNSIGNED_INT)
INEXACT = {"exp", "log", "sigmoid", "tanh", "pow"}


# --- harness -------------------------------------------------------------------------------------

def _call(cls, arrays):
    """One vectorised compute: inputs as read-only views of the caller's arrays; writes go to
    copies."""
    args = {}
    for name, fld in cls.fields.items():
        arr = arrays[name]
        assert arr.dtype == fld.type.dtype, f"test bug: {name} is {arr.dtype}"
        if fld.direction == INPUT:
            arr = arr.view()
            arr.setflags(write=False)
        else:
            arr = arr.copy()
        args[name] = arr
    cls.compute(**args)
    return {name: args[name] for name, fld in cls.fields.items() if fld.writes}


def _call_per_instance(cls, arrays):
    """The slow reference: compute on one-instance slices, one instance at a time."""
    results = {name: arrays[name].copy() for name, fld in cls.fields.items() if fld.writes}
    count = next(iter(arrays.values())).shape[0]
    for i in range(count):
        one = _call(cls, {name: arr[i:i + 1] for name, arr in arrays.items()})
        for name, value in one.items():
            results[name][i] = value[0]
    return results


def _bits(arr):
    arr = np.asarray(arr)
    return arr.view(f"u{arr.itemsize}") if arr.dtype.kind == "f" else arr


def assert_same_bits(actual, expected, what=""):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    np.testing.assert_array_equal(_bits(actual), _bits(expected), err_msg=what)


def _sizes(cls, arrays):
    sizes = {}
    for name, fld in cls.fields.items():
        arr = arrays[name]
        if fld.type.kind == VECTOR:
            sizes[f"{name}_length"] = np.full(arr.shape[0], arr.shape[1])
        elif fld.type.kind == VECTOR_LIST:
            sizes[f"{name}_count"] = np.full(arr.shape[0], arr.shape[1])
            sizes[f"{name}_length"] = np.full(arr.shape[0], arr.shape[2])
        elif fld.direction == STATE:
            sizes[name] = arr
    return sizes


def run_checked(cls, arrays, expected=None, rtol=0.0, atol=0.0):
    """Run ``cls`` vectorised and per instance, compare, check hygiene; return the outputs."""
    before = {name: arr.copy() for name, arr in arrays.items()}
    fast = _call(cls, arrays)
    slow = _call_per_instance(cls, arrays)
    for name in fast:
        assert_same_bits(fast[name], slow[name], f"{cls.__name__}.{name}: batch vs one by one")
    for name, arr in arrays.items():
        assert_same_bits(arr, before[name], f"{cls.__name__}: argument {name} changed")
    for name, want in (expected or {}).items():
        got = fast[name]
        assert got.dtype == cls.fields[name].type.dtype
        if rtol == 0 and atol == 0:
            np.testing.assert_array_equal(got, want, err_msg=f"{cls.__name__}.{name}")
        else:
            np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                       rtol=rtol, atol=atol, equal_nan=True,
                                       err_msg=f"{cls.__name__}.{name}")
    count = next(iter(arrays.values())).shape[0]
    cycles = estimate_cycles(cls, _sizes(cls, arrays), count)
    assert cycles.shape == (count,) and np.all(cycles >= 0)
    return fast


def wide(x):
    """The exact reference type: float64, int64, uint64 (so wrapping is decided by the cast)."""
    if x.dtype.kind == "f":
        return x.astype(np.float64)
    if x.dtype == INT:
        return x.astype(np.int64)
    if x.dtype == UNSIGNED_INT:
        return x.astype(np.uint64)
    return x


def random_values(rng, shape, dtype, specials=False):
    """Typical values of ``dtype``: floats around +-4, integers over their whole range."""
    dtype = np.dtype(dtype)
    if dtype == BOOL:
        return rng.random(shape) < 0.5
    if dtype.kind == "f":
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        if specials and x.size >= 4:
            flat = x.reshape(-1)
            flat[rng.choice(flat.size, 4, replace=False)] = [np.nan, np.inf, -np.inf, -0.0]
        return x
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def garbage(rng, shape, dtype):
    """Initial content of an Output: must be overwritten everywhere."""
    return random_values(rng, shape, dtype)


def _float_tol(dt):
    return (1e-3, 1e-3) if dt == HALF else (4e-6, 1e-6)


# --- elementwise ---------------------------------------------------------------------------------

UNARY_REF = {
    "neg": np.negative, "abs": np.abs, "relu": lambda x: np.maximum(x, 0),
    "square": lambda x: x * x, "signum": np.sign, "exp": np.exp, "log": np.log,
    "sqrt": np.sqrt, "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "tanh": np.tanh,
    "logical_not": np.logical_not,
}


def _c_div(a, b):
    """C integer division on Python ints: the quotient truncated toward zero."""
    q = abs(int(a)) // abs(int(b))
    return q if (a < 0) == (b < 0) else -q


def _div_ref(a, b):
    if a.dtype.kind == "f":
        return a / b
    flat = [_c_div(x, y) for x, y in zip(a.reshape(-1), b.reshape(-1), strict=True)]
    return np.array(flat, dtype=np.int64).reshape(a.shape)


BINARY_REF = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": _div_ref,
    "max": np.maximum, "min": np.minimum, "pow": np.power, "equal": np.equal,
    "less": np.less, "greater": np.greater, "logical_and": np.logical_and,
    "logical_or": np.logical_or,
}


def _unary_input(rng, op, dt, shape):
    if op in ("log", "sqrt"):
        return rng.uniform(0.01, 100, shape).astype(dt)
    if op in ("exp", "sigmoid", "tanh"):
        return rng.uniform(-10, 10, shape).astype(dt)
    return random_values(rng, shape, dt, specials=True)


def _binary_inputs(rng, op, dt, shape):
    if op == "pow":
        return rng.uniform(0.1, 4, shape).astype(dt), rng.uniform(-3, 3, shape).astype(dt)
    a = random_values(rng, shape, dt, specials=True)
    b = random_values(rng, shape, dt, specials=True)
    if op in ("equal", "less", "greater") and b.size:
        b.reshape(-1)[::3] = a.reshape(-1)[::3]  # some ties
    if op == "div" and dt.kind in "iu":
        b[b == 0] = 1
    return a, b


def _expected(op_table, op, *operands):
    out_dt = op_table[op].result_dtype(operands[0].dtype)
    ref = UNARY_REF if op_table is UNARY_OPS else BINARY_REF
    with np.errstate(all="ignore"):
        return ref[op](*(wide(x) for x in operands)).astype(out_dt)


def _tolerance(op, dt):
    return _float_tol(dt) if op in INEXACT else (0.0, 0.0)


UNARY_CASES = [(op, dt) for op, spec in UNARY_OPS.items() for dt in spec.dtypes]
BINARY_CASES = [(op, dt) for op, spec in BINARY_OPS.items() for dt in spec.dtypes]


@pytest.mark.parametrize("op,dt", UNARY_CASES, ids=[f"{o}-{d}" for o, d in UNARY_CASES])
def test_unary(op, dt):
    rng = np.random.default_rng(1)
    cls = codelets.unary(op, dt)
    inplace = codelets.unary_inplace(op, dt)
    out_dt = cls.fields["out"].type.dtype
    rtol, atol = _tolerance(op, dt)
    for n, length in SHAPES:
        x = _unary_input(rng, op, dt, (n, length))
        want = _expected(UNARY_OPS, op, x)
        arrays = {"inp": x, "out": garbage(rng, (n, length), out_dt)}
        run_checked(cls, arrays, {"out": want}, rtol, atol)
        run_checked(inplace, {"data": x}, {"data": want}, rtol, atol)


@pytest.mark.parametrize("op,dt", BINARY_CASES, ids=[f"{o}-{d}" for o, d in BINARY_CASES])
def test_binary(op, dt):
    rng = np.random.default_rng(2)
    cls = codelets.binary(op, dt)
    out_dt = cls.fields["out"].type.dtype
    rtol, atol = _tolerance(op, dt)
    for n, length in SHAPES:
        a, b = _binary_inputs(rng, op, dt, (n, length))
        want = _expected(BINARY_OPS, op, a, b)
        run_checked(cls, {"a": a, "b": b, "out": garbage(rng, (n, length), out_dt)},
                    {"out": want}, rtol, atol)
        if BINARY_OPS[op].out_dtype is None:  # comparisons have no in-place form
            run_checked(codelets.binary_inplace(op, dt), {"a": a, "b": b}, {"a": want}, rtol, atol)


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(BINARY_CASES), n=st.integers(1, 6), length=st.integers(0, 24),
       seed=st.integers(0, 2**32 - 1))
def test_binary_property(case, n, length, seed):
    op, dt = case
    rng = np.random.default_rng(seed)
    a, b = _binary_inputs(rng, op, dt, (n, length))
    cls = codelets.binary(op, dt)
    out = garbage(rng, (n, length), cls.fields["out"].type.dtype)
    rtol, atol = _tolerance(op, dt)
    run_checked(cls, {"a": a, "b": b, "out": out}, {"out": _expected(BINARY_OPS, op, a, b)},
                rtol, atol)


def test_int_div_truncates_like_c():
    a = np.array([[-7, 7, -7, 7, np.iinfo(INT).min, 0]], dtype=INT)
    b = np.array([[2, -2, -2, 2, -1, 5]], dtype=INT)
    out = run_checked(codelets.binary("div", INT), {"a": a, "b": b, "out": np.zeros_like(a)})
    assert out["out"].tolist() == [[-3, -3, 3, 3, np.iinfo(INT).min, 0]]


def test_int_div_by_zero_raises():
    a = np.ones((2, 3), dtype=INT)
    b = np.array([[1, 2, 3], [4, 0, 6]], dtype=INT)
    with pytest.raises(ZeroDivisionError, match=r"Div_int: .*instance 1 element 1"):
        codelets.binary("div", INT).compute(a=a, b=b, out=np.zeros_like(a))


def test_float_ieee_results_without_warnings():
    x = np.array([[-1.0, 0.0, 1e30]], dtype=FLOAT)
    out = np.zeros_like(x)
    with np.errstate(all="raise"):
        codelets.unary("log", FLOAT).compute(inp=x, out=out)
        assert np.isnan(out[0, 0]) and out[0, 1] == -np.inf
        codelets.unary("sigmoid", FLOAT).compute(inp=np.array([[1e30, 0, -np.inf]], FLOAT),
                                                 out=out)
        assert out.tolist() == [[1.0, 0.5, 0.0]]
        codelets.binary("div", FLOAT).compute(a=x, b=np.zeros_like(x), out=out)
        assert np.isnan(out[0, 1]) and out[0, 2] == np.inf


def test_elementwise_lookup_errors():
    assert codelets.unary("relu", FLOAT).__name__ == "Relu_float"
    assert codelets.binary_inplace("add", HALF).__name__ == "AddInPlace_half"
    assert codelets.binary("less", INT).fields["out"].type.dtype == BOOL
    with pytest.raises(UnknownCodeletError, match="no unary elementwise op 'cube'"):
        codelets.unary("cube", FLOAT)
    with pytest.raises(DTypeError, match="no int variant; supported: float, half"):
        codelets.unary("exp", INT)
    with pytest.raises(DTypeError, match="no in-place form"):
        codelets.binary_inplace("equal", FLOAT)


def test_length_mismatch_is_an_error():
    a = np.zeros((2, 3), dtype=FLOAT)
    b = np.zeros((2, 4), dtype=FLOAT)
    with pytest.raises(ValueError, match="Add_float: .*a has 3, b has 4"):
        codelets.binary("add", FLOAT).compute(a=a, b=b, out=np.zeros_like(a))


# --- data ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dt", SUPPORTED, ids=str)
def test_fill_and_copy(dt):
    rng = np.random.default_rng(3)
    for n, length in SHAPES:
        value = random_values(rng, (n,), dt)
        want = np.repeat(value[:, None], length, axis=1)
        run_checked(codelets.Fill[dt], {"out": garbage(rng, (n, length), dt), "value": value},
                    {"out": want})
        x = random_values(rng, (n, length), dt, specials=True)
        got = run_checked(codelets.Copy[dt], {"inp": x, "out": garbage(rng, (n, length), dt)})
        assert_same_bits(got["out"], x)


def _cast_scalar(value, src, dst):
    """The documented cast rules, one Python value at a time."""
    if dst == BOOL:
        return bool(value != 0)
    if dst.kind == "f":
        with np.errstate(over="ignore"):  # to half: overflow to inf is the rule
            return np.array(value, dtype=np.float64 if src.kind == "f" else object).astype(dst)
    info = np.iinfo(dst)
    if src.kind == "f":
        if math.isnan(value):
            return 0
        if math.isinf(value):
            return info.max if value > 0 else info.min
        return min(max(math.trunc(value), info.min), info.max)
    wrapped = int(value) % 2**32
    return wrapped - 2**32 if dst == INT and wrapped >= 2**31 else wrapped


CAST_VALUES = [np.nan, np.inf, -np.inf, -0.0, 0.7, -0.7, 2.5, -2.5, 3e9, -3e9, 65520.0, 1e-8,
               70000.0, -1.0, 1.0, 255.0]


@pytest.mark.parametrize("src,dst", list(codelets.Cast.variants),
                         ids=[f"{s}->{d}" for s, d in codelets.Cast.variants])
def test_cast(src, dst):
    rng = np.random.default_rng(4)
    cls = codelets.Cast[src, dst]
    for n, length in SHAPES:
        x = random_values(rng, (n, length), src)
        if src.kind == "f" and x.size >= len(CAST_VALUES):
            with np.errstate(over="ignore"):
                x.reshape(-1)[:len(CAST_VALUES)] = np.array(CAST_VALUES).astype(src)
        want = np.array([_cast_scalar(v.item(), src, dst) for v in x.reshape(-1)], dtype=dst)
        run_checked(cls, {"inp": x, "out": garbage(rng, (n, length), dst)},
                    {"out": want.reshape(n, length)})


@pytest.mark.parametrize("dt", NUMERIC, ids=str)
def test_scaled_add_and_scale(dt):
    rng = np.random.default_rng(5)
    scale_dt = codelets.ScaledAdd[dt].fields["scale"].type.dtype
    assert scale_dt == (FLOAT if dt == HALF else dt)
    for n, length in SHAPES:
        data = random_values(rng, (n, length), dt)
        delta = random_values(rng, (n, length), dt)
        scale = random_values(rng, (n,), scale_dt)
        with np.errstate(all="ignore"):
            if dt.kind == "f":  # the plain expression in float32, rounded once
                product = scale[:, None] * delta.astype(np.float32)
                want_add = (data.astype(np.float32) + product).astype(dt)
                want_scale = product.astype(dt)
            else:  # exact in 64 bits, wrapped by the cast
                product = wide(scale)[:, None] * wide(delta)
                want_add = (wide(data) + product).astype(dt)
                want_scale = product.astype(dt)
        run_checked(codelets.ScaledAdd[dt], {"data": data, "delta": delta, "scale": scale},
                    {"data": want_add})
        run_checked(codelets.Scale[dt], {"inp": delta, "out": garbage(rng, (n, length), dt),
                                         "scale": scale}, {"out": want_scale})


# --- reductions ----------------------------------------------------------------------------------

def _assert_sum_close(got, want, magnitude, dt):
    """A float sum is right to float32 accumulation error plus one rounding to ``dt``."""
    rounding = 2.0**-10 if dt == HALF else 2.0**-23
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= rounding * np.abs(want) + 1e-6 * magnitude + 1e-30), (got, want)


@pytest.mark.parametrize("dt", NUMERIC, ids=str)
def test_reduce_sum_max_min(dt):
    rng = np.random.default_rng(6)
    for n, length in SHAPES + [(3, 1000)]:
        x = random_values(rng, (n, length), dt)
        arrays = {"inp": x, "out": garbage(rng, (n,), dt)}
        got = run_checked(codelets.ReduceSum[dt], arrays)["out"]
        if dt.kind == "f":
            _assert_sum_close(got, wide(x).sum(axis=1), np.abs(wide(x)).sum(axis=1), dt)
        else:
            np.testing.assert_array_equal(got, wide(x).sum(axis=1).astype(dt))
        low = -np.inf if dt.kind == "f" else np.iinfo(dt).min
        high = np.inf if dt.kind == "f" else np.iinfo(dt).max
        run_checked(codelets.ReduceMax[dt], arrays, {"out": np.max(x, axis=1, initial=low)})
        run_checked(codelets.ReduceMin[dt], arrays, {"out": np.min(x, axis=1, initial=high)})


@pytest.mark.parametrize("dt", NUMERIC, ids=str)
def test_argmax(dt):
    rng = np.random.default_rng(7)
    cls = codelets.ArgMax[dt]
    assert cls.fields["out"].type.dtype == UNSIGNED_INT
    for n, length in [s for s in SHAPES if s[1] > 0]:
        x = rng.integers(0, 4, (n, length)).astype(dt)  # many ties: the first index wins
        run_checked(cls, {"inp": x, "out": garbage(rng, (n,), UNSIGNED_INT)},
                    {"out": np.argmax(x, axis=1).astype(UNSIGNED_INT)})
    with pytest.raises(ValueError, match="empty"):
        cls.compute(inp=np.zeros((2, 0), dt), out=np.zeros(2, UNSIGNED_INT))


@pytest.mark.parametrize("key", list(codelets.ReduceAdd.variants), ids=str)
def test_reduce_add(key):
    src, dst = key
    rng = np.random.default_rng(8)
    cls = codelets.ReduceAdd[src, dst]
    for n, length in SHAPES:
        for count in (0, 1, 5):
            partials = random_values(rng, (n, count, length), src)
            arrays = {"partials": partials, "out": garbage(rng, (n, length), dst)}
            got = run_checked(cls, arrays)["out"]
            if src.kind == "f":
                _assert_sum_close(got, wide(partials).sum(axis=1),
                                  np.abs(wide(partials)).sum(axis=1), dst)
            else:
                np.testing.assert_array_equal(got, wide(partials).sum(axis=1).astype(dst))


def test_reduce_add_adds_in_list_order():
    partials = np.array([[[1e8], [1.0], [-1e8]]], dtype=FLOAT)  # ((1e8 + 1) - 1e8) in float32
    out = np.zeros((1, 1), dtype=FLOAT)
    codelets.ReduceAdd[FLOAT].compute(partials=partials, out=out)
    assert out[0, 0] == 0.0


# --- linear algebra ------------------------------------------------------------------------------

@pytest.mark.parametrize("dt", [FLOAT, HALF], ids=str)
def test_dot(dt):
    rng = np.random.default_rng(9)
    for n, length in SHAPES:
        a, b = random_values(rng, (n, length), dt), random_values(rng, (n, length), dt)
        got = run_checked(codelets.Dot[dt], {"a": a, "b": b, "out": garbage(rng, (n,), dt)})
        products = wide(a) * wide(b)
        _assert_sum_close(got["out"], products.sum(axis=1), np.abs(products).sum(axis=1), dt)


def _matmul_arrays(rng, dt, out_dt, count, m, k, n):
    return {"a": random_values(rng, (count, m * k), dt),
            "b": random_values(rng, (count, k * n), dt),
            "out": random_values(rng, (count, m * n), out_dt),
            "m": np.full(count, m, UNSIGNED_INT), "k": np.full(count, k, UNSIGNED_INT),
            "n": np.full(count, n, UNSIGNED_INT)}


def _check_matmul(cls, arrays):
    out_dt = cls.fields["out"].type.dtype
    count = arrays["out"].shape[0]
    got = run_checked(cls, arrays)["out"]
    for i in range(count):
        m, k, n = (int(arrays[f][i]) for f in "mkn")
        a = wide(arrays["a"][i]).reshape(m, k)
        b = wide(arrays["b"][i]).reshape(k, n)
        want = (a @ b).reshape(-1)  # out is written, not accumulated into
        magnitude = (np.abs(a) @ np.abs(b)).reshape(-1)
        _assert_sum_close(got[i], want, magnitude, out_dt)


@pytest.mark.parametrize("key", list(codelets.MatMulPartial.variants), ids=str)
def test_matmul_partial(key):
    cls = codelets.MatMulPartial[key]
    assert issubclass(cls, MultiVertex)
    rng = np.random.default_rng(10)
    for count, m, k, n in [(1, 1, 1, 1), (5, 2, 3, 4), (3, 4, 16, 8), (2, 0, 3, 2), (4, 3, 0, 2)]:
        _check_matmul(cls, _matmul_arrays(rng, *key, count, m, k, n))


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(list(codelets.MatMulPartial.variants)), count=st.integers(1, 5),
       m=st.integers(0, 6), k=st.integers(0, 6), n=st.integers(0, 6),
       seed=st.integers(0, 2**32 - 1))
def test_matmul_partial_property(key, count, m, k, n, seed):
    rng = np.random.default_rng(seed)
    _check_matmul(codelets.MatMulPartial[key], _matmul_arrays(rng, *key, count, m, k, n))


def test_matmul_partial_groups_distinct_shapes():
    # With k = 0 the lengths no longer fix the shape: (3, 4), (4, 3), (2, 6) all give |out| = 12.
    rng = np.random.default_rng(11)
    arrays = _matmul_arrays(rng, FLOAT, FLOAT, 4, 3, 0, 4)
    arrays["m"] = np.array([3, 4, 2, 3], UNSIGNED_INT)
    arrays["n"] = np.array([4, 3, 6, 4], UNSIGNED_INT)
    got = run_checked(codelets.MatMulPartial[FLOAT], arrays)
    assert_same_bits(got["out"], np.zeros_like(arrays["out"]))  # an empty product is zero


def test_matmul_partial_shape_mismatch_names_field():
    arrays = _matmul_arrays(np.random.default_rng(12), FLOAT, FLOAT, 3, 2, 3, 4)
    arrays["k"] = np.array([3, 3, 4], UNSIGNED_INT)
    with pytest.raises(ValueError, match=r"instance 2 .* m\*k = 8, but field a has length 6"):
        codelets.MatMulPartial[FLOAT].compute(**arrays)


# --- registry, families, costs -------------------------------------------------------------------

def test_every_codelet_resolves_by_path_and_pickles():
    classes = codelets.all_codelets()
    assert len(classes) == len({cls.path() for cls in classes}) > 150
    for cls in classes:
        assert cls.__qualname__ == cls.__name__
        assert resolve_codelet(cls.path()) is cls
        assert pickle.loads(pickle.dumps(cls)) is cls
        assert cls.code_size > 0 and cls.__doc__


def test_every_codelet_has_a_vectorised_estimate():
    rng = np.random.default_rng(13)
    for cls in codelets.all_codelets():
        sizes = {name: rng.integers(0, 50, 7) for name in cls.size_arguments()}
        cycles = estimate_cycles(cls, sizes, 7)
        assert cycles.shape == (7,) and np.all(cycles > 0), cls.__name__


def test_families():
    assert codelets.ReduceSum[FLOAT].__name__ == "ReduceSum_float"
    assert codelets.ReduceSum(HALF) is codelets.ReduceSum[HALF]
    assert codelets.Cast[HALF, FLOAT].__name__ == "Cast_half_to_float"
    assert codelets.ReduceAdd[FLOAT] is codelets.ReduceAdd[FLOAT, FLOAT]
    assert codelets.MatMulPartial[HALF].__name__ == "MatMulPartial_half"
    assert codelets.MatMulPartial[HALF, FLOAT].fields["out"].type.dtype == FLOAT
    assert len(codelets.Cast) == 25
    with pytest.raises(DTypeError, match="Dot has no variant for int"):
        codelets.Dot[INT]
    families = [cls for family in codelets.FAMILIES.values() for cls in family]
    assert set(families) <= set(codelets.all_codelets())


def test_cost_formulas():
    assert [costs.vector_width(dt) for dt in SUPPORTED] == [2, 4, 1, 1, 1]
    lengths = np.array([0, 1, 2, 9, 100])
    np.testing.assert_array_equal(costs.dot_cycles(lengths, FLOAT), 5 + (lengths + 1) // 2)
    np.testing.assert_array_equal(costs.binary_cycles("add", lengths, HALF),
                                  costs.ELEMENTWISE_OVERHEAD + (lengths + 3) // 4)
    # At peak the tile does 16 float MACs per cycle: 6 workers x matmul_cycles tile cycles.
    m, k, n = 16, 64, 96
    busy = costs.matmul_tile_cycles(m, k, n, FLOAT) - 6 * costs.MATMUL_OVERHEAD
    assert busy == m * k * n // 16
    assert costs.matmul_cycles(m, k, n, HALF) < costs.matmul_cycles(m, k, n, HALF, FLOAT)
    cls = codelets.MatMulPartial[FLOAT]
    state = {"m": np.array([m]), "k": np.array([k]), "n": np.array([n])}
    assert estimate_cycles(cls, state, 1)[0] == costs.matmul_cycles(m, k, n, FLOAT)
