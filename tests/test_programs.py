"""Control programs end to end on a 4-tile target.

Every program type (Sequence, Execute, Copy, Repeat, RepeatWhileTrue, If, PrintTensor, WriteUndef,
host stream copies), engines holding several programs, execution counts in the profile, the
program tree's text form and equality, and the executable's save/load round trip.
"""

from __future__ import annotations

import numpy as np
import pytest

import codelets
import poplar_like as pl
from helpers import (check_memory_report, constant, elementwise, fill, small_graph, step_executions,
                     variable)

F32 = np.float32
ADD = codelets.binary_inplace("add", pl.FLOAT)
MUL = codelets.binary_inplace("mul", pl.FLOAT)


def counter_graph(tile: int | None = None):
    """``acc`` (4 floats over the tiles) and a compute set ``inc`` adding 1 to every element."""
    g = small_graph()
    acc = variable(g, "acc", 4, tile=tile)
    one = constant(g, "one", 4, 1.0, tile=tile)
    inc = elementwise(g, "inc", ADD, {"a": acc, "b": one})
    return g, acc, inc


def run(graph: pl.Graph, program: pl.Program, inputs: dict | None = None, outputs=()) -> list[np.ndarray]:
    engine = pl.Engine(graph, program)
    for tensor, value in (inputs or {}).items():
        engine.write_tensor(tensor, value)
    engine.run()
    return [engine.read_tensor(t) for t in outputs]


# ================================================================== Sequence and Execute

def test_nested_sequences_run_in_order():
    g = small_graph()
    x = variable(g, "x", 4)
    one = constant(g, "one", 4, 1.0)
    two = constant(g, "two", 4, 2.0)
    inc = elementwise(g, "inc", ADD, {"a": x, "b": one})
    dbl = elementwise(g, "dbl", MUL, {"a": x, "b": two})
    # ((((x + 1) * 2) * 2) + 1): the order of nested sequences is depth first, left to right
    prog = pl.Sequence([
        pl.Sequence([pl.Execute(inc), pl.Sequence([pl.Execute(dbl)])]),
        pl.Sequence(),
        pl.Sequence([pl.Sequence([pl.Sequence([pl.Execute(dbl)])]), pl.Execute(inc)]),
    ])
    x0 = np.array([0, 1, -2, 3.5], dtype=F32)
    (out,) = run(g, prog, {x: x0}, [x])
    np.testing.assert_array_equal(out, ((x0 + 1) * 2 * 2) + 1)


def test_sequence_add_returns_itself_and_appends():
    g, acc, inc = counter_graph()
    seq = pl.Sequence()
    assert seq.add(pl.Execute(inc)) is seq
    seq.add(pl.Execute(inc))
    assert len(seq.children()) == 2
    (out,) = run(g, seq, {acc: np.zeros(4, F32)}, [acc])
    np.testing.assert_array_equal(out, [2, 2, 2, 2])


def test_empty_program_runs_and_changes_nothing():
    g, acc, _ = counter_graph()
    x0 = np.arange(4, dtype=F32)
    (out,) = run(g, pl.Sequence(), {acc: x0}, [acc])
    np.testing.assert_array_equal(out, x0)


def test_execute_reads_and_writes_other_tiles():
    g = small_graph()
    src = variable(g, "src", (4, 3))
    dst = variable(g, "dst", 4)
    for i in range(4):
        g.set_tile_mapping(src[i], i)
        g.set_tile_mapping(dst[i], i)
    cs = g.add_compute_set("shifted_sums")
    for i in range(4):
        # vertex on tile i reads the row of tile i+1 and writes the element of tile i+2
        g.add_vertex(cs, codelets.ReduceSum[pl.FLOAT], {"inp": src[(i + 1) % 4], "out": dst[(i + 2) % 4]},
                     tile=i)
    x0 = np.arange(12, dtype=F32).reshape(4, 3)
    engine = pl.Engine(g, pl.Execute(cs))
    engine.write_tensor(src, x0)
    engine.run()
    expected = np.empty(4, F32)
    for i in range(4):
        expected[(i + 2) % 4] = x0[(i + 1) % 4].sum()
    np.testing.assert_array_equal(engine.read_tensor(dst), expected)
    row = next(r for r in engine.profile()["steps"] if r["name"] == "shifted_sums")
    assert row["kind"] == "compute" and row["executions"] == 1 and row["vertices"] == 4
    assert row["exchange_bytes"] == 4 * (3 * 4 + 4)  # every vertex: a remote row in, a remote float out


def test_same_compute_set_executed_twice_in_one_program():
    g, acc, inc = counter_graph()
    prog = pl.Sequence([pl.Execute(inc), pl.Execute(inc), pl.Execute(inc)])
    engine = pl.Engine(g, prog)
    engine.write_tensor(acc, np.zeros(4, F32))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(acc), [3, 3, 3, 3])
    rows = [r for r in engine.profile()["steps"] if r["name"] == "inc"]
    assert [r["executions"] for r in rows] == [1, 1, 1]


# ================================================================== Copy

@pytest.mark.parametrize("dtype, values", [
    (pl.FLOAT, np.array([1.5, -0.0, np.inf, -7, 3e38, 1e-45, 2, 3], dtype=np.float32)),
    (pl.HALF, np.array([1.5, -0.0, np.inf, -7, 65504, 6e-8, 2, 3], dtype=np.float16)),
    (pl.INT, np.array([0, -1, 2**31 - 1, -2**31, 5, 6, 7, 8], dtype=np.int32)),
    (pl.UNSIGNED_INT, np.array([0, 1, 2**32 - 1, 4, 5, 6, 7, 8], dtype=np.uint32)),
    (pl.BOOL, np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)),
])
def test_copy_across_tiles_is_bit_exact(dtype, values):
    g = small_graph()
    src = variable(g, "src", 8, dtype=dtype)
    dst = variable(g, "dst", 8, dtype=dtype, shift=1)  # every element moves to another tile
    engine = pl.Engine(g, pl.Copy(src, dst))
    engine.write_tensor(src, values)
    engine.run()
    out = engine.read_tensor(dst)
    assert out.dtype == values.dtype
    assert out.tobytes() == values.tobytes()
    np.testing.assert_array_equal(engine.read_tensor(src), values)
    row = next(r for r in engine.profile()["steps"] if r["kind"] == "copy")
    assert row["executions"] == 1
    assert row["exchange_bytes"] == 8 * np.dtype(dtype).itemsize


def test_copy_nan_payload_is_preserved():
    g = small_graph()
    src = variable(g, "src", 4)
    dst = variable(g, "dst", 4, tile=3)
    bits = np.array([0x7FC00001, 0xFFC12345, 0x7F800001, 0x00000001], dtype=np.uint32)
    engine = pl.Engine(g, pl.Copy(src, dst))
    engine.write_tensor(src, bits.view(np.float32))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(dst).view(np.uint32), bits)


def test_copy_on_one_tile_has_no_exchange():
    g = small_graph()
    src = variable(g, "src", (2, 3), tile=2)
    dst = variable(g, "dst", (2, 3), tile=2)
    engine = pl.Engine(g, pl.Copy(src, dst, name="local"))
    x0 = np.arange(6, dtype=F32).reshape(2, 3)
    engine.write_tensor(src, x0)
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(dst), x0)
    row = next(r for r in engine.profile()["steps"] if r["name"] == "local")
    assert row["exchange_bytes"] == 0


def test_copy_between_views():
    g = small_graph()
    a = variable(g, "a", (2, 3))
    b = variable(g, "b", (3, 2), shift=3)
    c = variable(g, "c", 8, tile=1)
    prog = pl.Sequence([
        pl.Copy(a.transpose(), b),                 # b = a.T
        pl.Copy(a[1].reverse(0), c[5:8]),          # c[5:8] = a[1, ::-1]
        pl.Copy(a[:, 0], c[0:2]),                  # a column
        pl.Copy(b.flatten()[::2], c[2:5]),         # a strided view of a variable on other tiles
    ])
    a0 = np.arange(6, dtype=F32).reshape(2, 3) + 10
    c0 = np.full(8, -1, F32)
    bo, co = run(g, prog, {a: a0, c: c0}, [b, c])
    np.testing.assert_array_equal(bo, a0.T)
    expected_c = c0.copy()
    expected_c[5:8] = a0[1, ::-1]
    expected_c[0:2] = a0[:, 0]
    expected_c[2:5] = a0.T.reshape(-1)[::2]
    np.testing.assert_array_equal(co, expected_c)


def test_copy_within_one_variable_and_from_concat():
    g = small_graph()
    x = variable(g, "x", 8)
    y = variable(g, "y", 4, tile=0)
    prog = pl.Sequence([
        pl.Copy(x[0:4], x[4:8]),
        pl.Copy(pl.concat([x[1:2], y[2:4], x[0:1]]), y),
    ])
    x0 = np.arange(8, dtype=F32)
    y0 = np.array([10, 11, 12, 13], F32)
    xo, yo = run(g, prog, {x: x0, y: y0}, [x, y])
    np.testing.assert_array_equal(xo, [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(yo, [1, 12, 13, 0])


def test_copy_from_broadcast_source():
    g = small_graph()
    s = variable(g, "s", 1, tile=3)
    y = variable(g, "y", (2, 4))
    (out,) = run(g, pl.Copy(s.reshape(1, 1).broadcast(4, 1).broadcast(2, 0), y), {s: np.array([7], F32)}, [y])
    np.testing.assert_array_equal(out, np.full((2, 4), 7, F32))


def test_copy_from_constant():
    g = small_graph()
    k = constant(g, "k", (2, 2), np.array([[1, 2], [3, 4]], dtype=F32))
    y = variable(g, "y", (2, 2), shift=2)
    (out,) = run(g, pl.Copy(k, y), {}, [y])
    np.testing.assert_array_equal(out, [[1, 2], [3, 4]])


def test_copy_rejects_bad_ends():
    g = small_graph()
    a = variable(g, "a", 4)
    b = variable(g, "b", (2, 2))
    i = variable(g, "i", 4, dtype=pl.INT)
    k = constant(g, "k", 4, 1.0)
    with pytest.raises(pl.ProgramError, match="shape"):
        pl.Copy(a, b)
    with pytest.raises(pl.DTypeError):
        pl.Copy(a, i)
    with pytest.raises(pl.ProgramError):
        pl.Copy(a, "b")
    with pytest.raises(pl.DataRaceError, match="more than once"):
        pl.Engine(g, pl.Copy(a, pl.concat([b[0], b[0]])))
    with pytest.raises(pl.FieldConnectionError, match="constant"):
        pl.Engine(g, pl.Copy(a, k))


# ================================================================== Repeat

@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_repeat_counts(n):
    g, acc, inc = counter_graph()
    engine = pl.Engine(g, pl.Repeat(n, pl.Execute(inc)))
    engine.write_tensor(acc, np.full(4, 0.5, F32))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(acc), np.full(4, 0.5 + n, F32))
    assert step_executions(engine).get("inc", 0) == n


@pytest.mark.parametrize("n, m", [(3, 4), (0, 5), (5, 0), (1, 1), (2, 6)])
def test_nested_repeat_multiplies(n, m):
    g, acc, inc = counter_graph()
    engine = pl.Engine(g, pl.Repeat(n, pl.Sequence([pl.Repeat(m, pl.Execute(inc))])))
    engine.write_tensor(acc, np.zeros(4, F32))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(acc), np.full(4, n * m, F32))
    assert step_executions(engine).get("inc", 0) == n * m


def test_three_deep_repeats_with_steps_between():
    g = small_graph()
    acc = variable(g, "acc", 4)
    other = variable(g, "other", 4, shift=1)
    one = constant(g, "one", 4, 1.0)
    inc = elementwise(g, "inc", ADD, {"a": acc, "b": one})
    inc_other = elementwise(g, "inc_other", ADD, {"a": other, "b": one})
    prog = pl.Repeat(2, pl.Sequence([
        pl.Execute(inc_other),
        pl.Repeat(3, pl.Sequence([pl.Repeat(4, pl.Execute(inc)), pl.Execute(inc_other)])),
    ]))
    engine = pl.Engine(g, prog)
    engine.write_tensor(acc, np.zeros(4, F32))
    engine.write_tensor(other, np.zeros(4, F32))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(acc), np.full(4, 2 * 3 * 4, F32))
    np.testing.assert_array_equal(engine.read_tensor(other), np.full(4, 2 * (1 + 3), F32))
    engine.run()  # loop counters start afresh on every run
    np.testing.assert_array_equal(engine.read_tensor(acc), np.full(4, 2 * 2 * 3 * 4, F32))


def test_same_repeat_object_used_twice():
    g, acc, inc = counter_graph()
    rep = pl.Repeat(3, pl.Execute(inc))
    (out,) = run(g, pl.Sequence([rep, pl.Repeat(2, rep)]), {acc: np.zeros(4, F32)}, [acc])
    np.testing.assert_array_equal(out, np.full(4, 9, F32))


@pytest.mark.parametrize("count", [-1, 2.0, True, "3", None])
def test_repeat_rejects_bad_counts(count):
    g, _, inc = counter_graph()
    with pytest.raises(pl.ProgramError):
        pl.Repeat(count, pl.Execute(inc))


def test_repeat_body_must_be_a_program():
    g, _, inc = counter_graph()
    with pytest.raises(pl.ProgramError):
        pl.Repeat(2, inc)


# ================================================================== RepeatWhileTrue

def countdown_graph():
    """``counter`` counts down to zero; ``iterations`` counts the body runs; ``pred`` is
    ``counter > 0``, computed by the condition program."""
    g = small_graph()
    counter = variable(g, "counter", 1, dtype=pl.INT, tile=1)
    iterations = variable(g, "iterations", 1, dtype=pl.INT, tile=2)
    pred = variable(g, "pred", 1, dtype=pl.BOOL, tile=3)
    zero = constant(g, "zero", 1, 0, dtype=pl.INT, tile=0)
    one = constant(g, "one", 1, 1, dtype=pl.INT, tile=0)
    test = g.add_compute_set("test")
    g.add_vertex(test, codelets.binary("greater", pl.INT), {"a": counter, "b": zero, "out": pred}, tile=0)
    body = g.add_compute_set("body")
    g.add_vertex(body, codelets.binary_inplace("sub", pl.INT), {"a": counter, "b": one}, tile=1)
    g.add_vertex(body, codelets.binary_inplace("add", pl.INT), {"a": iterations, "b": one}, tile=2)
    prog = pl.RepeatWhileTrue(pl.Execute(test), pred, pl.Execute(body))
    return g, prog, counter, iterations


@pytest.mark.parametrize("start", [0, 1, 5, 13])
def test_repeat_while_true_counts_down(start):
    g, prog, counter, iterations = countdown_graph()
    engine = pl.Engine(g, prog)
    engine.write_tensor(counter, np.array([start], np.int32))
    engine.write_tensor(iterations, np.array([0], np.int32))
    engine.run()
    assert engine.read_tensor(counter).tolist() == [0]
    assert engine.read_tensor(iterations).tolist() == [start]
    counts = step_executions(engine)
    assert counts["test"] == start + 1  # the condition runs once more than the body
    assert counts["body"] == start
    assert counts["predicate pred"] == start + 1


def test_repeat_while_true_with_negative_start_never_runs_body():
    g, prog, counter, iterations = countdown_graph()
    engine = pl.Engine(g, prog)
    engine.write_tensor(counter, np.array([-3], np.int32))
    engine.write_tensor(iterations, np.array([0], np.int32))
    engine.run()
    assert engine.read_tensor(counter).tolist() == [-3]
    assert engine.read_tensor(iterations).tolist() == [0]


def test_repeat_while_true_nested_in_repeat():
    g, loop, counter, iterations = countdown_graph()
    three = constant(g, "three", 1, 3, dtype=pl.INT, tile=1)
    # each outer iteration resets the counter to 3 and counts it down
    prog = pl.Repeat(4, pl.Sequence([pl.Copy(three, counter), loop]))
    engine = pl.Engine(g, prog)
    engine.write_tensor(iterations, np.array([0], np.int32))
    engine.write_tensor(counter, np.array([0], np.int32))
    engine.run()
    assert engine.read_tensor(iterations).tolist() == [12]
    assert step_executions(engine)["test"] == 16


def test_repeat_while_true_predicate_must_be_one_element():
    g, _, counter, _ = countdown_graph()
    two = variable(g, "two", 2, dtype=pl.INT)
    with pytest.raises(pl.ProgramError, match="one element"):
        pl.RepeatWhileTrue(pl.Sequence(), two, pl.Sequence())
    with pytest.raises(pl.ProgramError):
        pl.RepeatWhileTrue(pl.Sequence(), "pred", pl.Sequence())


# ================================================================== If

def if_graph(pred_dtype=pl.INT):
    g = small_graph()
    pred = variable(g, "pred", 1, dtype=pred_dtype, tile=2)
    x = variable(g, "x", 4)
    then = fill(g, "then", x, 1.0, tile=1)
    else_ = fill(g, "else", x, 2.0, tile=3)
    return g, pred, x, then, else_


@pytest.mark.parametrize("pred_dtype, value, branch", [
    (pl.INT, 1, "then"), (pl.INT, 0, "else"), (pl.INT, -7, "then"),
    (pl.BOOL, True, "then"), (pl.BOOL, False, "else"),
    (pl.FLOAT, 0.5, "then"), (pl.FLOAT, 0.0, "else"),
    (pl.UNSIGNED_INT, 2**32 - 1, "then"),
])
def test_if_takes_one_branch(pred_dtype, value, branch):
    g, pred, x, then, else_ = if_graph(pred_dtype)
    engine = pl.Engine(g, pl.If(pred, pl.Execute(then), pl.Execute(else_)))
    engine.write_tensor(pred, np.array([value], dtype=pred_dtype))
    engine.write_tensor(x, np.zeros(4, F32))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(x), np.full(4, 1.0 if branch == "then" else 2.0, F32))
    counts = step_executions(engine)
    assert counts["then"] == (branch == "then")
    assert counts["else"] == (branch == "else")
    assert counts["predicate pred"] == 1


def test_if_both_branches_in_one_engine():
    g, pred, x, then, else_ = if_graph()
    engine = pl.Engine(g, pl.If(pred, pl.Execute(then), pl.Execute(else_)))
    for value, expected in [(1, 1.0), (0, 2.0), (3, 1.0)]:
        engine.write_tensor(pred, np.array([value], np.int32))
        engine.run()
        np.testing.assert_array_equal(engine.read_tensor(x), np.full(4, expected, F32))
    counts = step_executions(engine)
    assert (counts["then"], counts["else"]) == (2, 1)


@pytest.mark.parametrize("value", [0, 1])
def test_if_without_else(value):
    g, pred, x, then, _ = if_graph()
    prog = pl.If(pred, pl.Execute(then))
    assert prog.else_ == pl.Sequence()
    x0 = np.array([5, 6, 7, 8], F32)
    (out,) = run(g, prog, {pred: np.array([value], np.int32), x: x0}, [x])
    np.testing.assert_array_equal(out, np.ones(4, F32) if value else x0)


def test_if_inside_repeat_sees_predicate_written_by_the_loop():
    """x counts 0, 1, 2, ...; ``odd`` is set by a compute set; the If adds 10 on odd rounds."""
    g = small_graph()
    i = variable(g, "i", 1, dtype=pl.INT, tile=0)
    odd = variable(g, "odd", 1, dtype=pl.INT, tile=1)
    total = variable(g, "total", 1, dtype=pl.INT, tile=2)
    one = constant(g, "one", 1, 1, dtype=pl.INT, tile=3)
    ten = constant(g, "ten", 1, 10, dtype=pl.INT, tile=3)
    step = g.add_compute_set("step")
    g.add_vertex(step, codelets.binary_inplace("add", pl.INT), {"a": i, "b": one}, tile=0)
    parity = g.add_compute_set("parity")
    # odd = i - 2 * (i / 2), with integer division
    half = variable(g, "half", 1, dtype=pl.INT, tile=1)
    two = constant(g, "two", 1, 2, dtype=pl.INT, tile=1)
    g.add_vertex(parity, codelets.binary("div", pl.INT), {"a": i, "b": two, "out": half}, tile=1)
    parity2 = g.add_compute_set("parity2")
    g.add_vertex(parity2, codelets.binary_inplace("mul", pl.INT), {"a": half, "b": two}, tile=1)
    parity3 = g.add_compute_set("parity3")
    g.add_vertex(parity3, codelets.binary("sub", pl.INT), {"a": i, "b": half, "out": odd}, tile=1)
    bonus = g.add_compute_set("bonus")
    g.add_vertex(bonus, codelets.binary_inplace("add", pl.INT), {"a": total, "b": ten}, tile=2)
    prog = pl.Repeat(7, pl.Sequence([
        pl.Execute(step), pl.Execute(parity), pl.Execute(parity2), pl.Execute(parity3),
        pl.If(odd, pl.Execute(bonus)),
    ]))
    zero = np.array([0], np.int32)
    (out,) = run(g, prog, {i: zero, total: zero}, [total])
    assert out.tolist() == [10 * 4]  # i = 1, 3, 5, 7


def test_if_rejects_bad_predicate():
    g, pred, x, then, _ = if_graph()
    with pytest.raises(pl.ProgramError, match="one element"):
        pl.If(x, pl.Execute(then))
    with pytest.raises(pl.ProgramError):
        pl.If(pred, then)


# ================================================================== PrintTensor

def test_print_tensor_format(capsys):
    g = small_graph()
    x = variable(g, "x", 3)
    m = variable(g, "m", (2, 2), dtype=pl.INT)
    prog = pl.Sequence([pl.PrintTensor("values", x), pl.PrintTensor(m), pl.PrintTensor("row", m[1])])
    engine = pl.Engine(g, prog)
    engine.write_tensor(x, np.array([1, 2.5, -3], F32))
    engine.write_tensor(m, np.array([[1, 2], [3, 4]], np.int32))
    engine.run()
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["values: [ 1.   2.5 -3. ]", "m: [[1 2]", " [3 4]]", "row: [3 4]"]


def test_print_tensor_in_a_loop_prints_every_iteration(capsys):
    g, acc, inc = counter_graph()
    prog = pl.Repeat(3, pl.Sequence([pl.Execute(inc), pl.PrintTensor("acc", acc[0:2])]))
    run(g, prog, {acc: np.zeros(4, F32)})
    assert capsys.readouterr().out.splitlines() == ["acc: [1. 1.]", "acc: [2. 2.]", "acc: [3. 3.]"]


def test_print_tensor_needs_a_tensor():
    with pytest.raises(pl.ProgramError):
        pl.PrintTensor("title")
    with pytest.raises(pl.ProgramError):
        pl.PrintTensor("title", np.zeros(3))


# ================================================================== WriteUndef

def test_write_undef_has_no_effect_on_other_variables():
    g = small_graph()
    x = variable(g, "x", 4)
    y = variable(g, "y", 4, shift=1)
    z = variable(g, "z", 4, shift=2)
    keep = variable(g, "keep", 4, shift=3)
    t1 = variable(g, "t1", 4, shift=1)
    t2 = variable(g, "t2", 4, shift=3)
    one = constant(g, "one", 4, 1.0)
    three = constant(g, "three", 4, 3.0)
    prog = pl.Sequence([
        pl.Execute(elementwise(g, "t1=x+1", codelets.binary("add", pl.FLOAT), {"a": x, "b": one, "out": t1})),
        pl.Execute(elementwise(g, "y=t1*t1", codelets.binary("mul", pl.FLOAT), {"a": t1, "b": t1, "out": y})),
        pl.WriteUndef(t1),
        pl.Execute(elementwise(g, "t2=y+3", codelets.binary("add", pl.FLOAT), {"a": y, "b": three, "out": t2})),
        pl.Execute(elementwise(g, "z=t2-x", codelets.binary("sub", pl.FLOAT), {"a": t2, "b": x, "out": z})),
        pl.WriteUndef(t2),
    ])
    engine = pl.Engine(g, prog)
    x0 = np.array([0, 1, 2, -5], F32)
    k0 = np.array([9, 8, 7, 6], F32)
    engine.write_tensor(x, x0)
    engine.write_tensor(keep, k0)
    engine.run()
    y_expected = (x0 + 1) ** 2
    np.testing.assert_array_equal(engine.read_tensor(y), y_expected)
    np.testing.assert_array_equal(engine.read_tensor(z), y_expected + 3 - x0)
    np.testing.assert_array_equal(engine.read_tensor(x), x0)
    np.testing.assert_array_equal(engine.read_tensor(keep), k0)
    temporaries = engine.profile()["memory"]["temporaries"]
    assert sorted(temporaries) == ["t1", "t2"]
    with pytest.raises(pl.TensorNotLiveError):
        engine.read_tensor(t1)
    with pytest.raises(pl.TensorNotLiveError):
        engine.write_tensor("t2", np.zeros(4, F32))
    row = next(r for r in engine.profile()["steps"] if r["name"] == "y=t1*t1")
    assert row["executions"] == 1
    assert all(r["kind"] != "undef" for r in engine.profile()["steps"])


def test_write_undef_in_a_loop_keeps_results_right():
    g = small_graph()
    acc = variable(g, "acc", 4)
    tmp = variable(g, "tmp", 4, shift=2)
    two = constant(g, "two", 4, 2.0)
    prog = pl.Repeat(5, pl.Sequence([
        pl.Execute(elementwise(g, "tmp=acc*2", codelets.binary("mul", pl.FLOAT), {"a": acc, "b": two, "out": tmp})),
        pl.Execute(elementwise(g, "acc+=tmp", ADD, {"a": acc, "b": tmp})),
        pl.WriteUndef(tmp),
    ]))
    (out,) = run(g, prog, {acc: np.array([1, 2, 0, -1], F32)}, [acc])
    np.testing.assert_array_equal(out, np.array([1, 2, 0, -1], F32) * 3 ** 5)


def test_write_undef_of_temporaries_in_a_repeat_while_true_body(capsys):
    """Temporaries written, printed and undefined inside a loop body that may run zero times:
    results stay right whatever the compiler decides to share."""
    g, loop, counter, iterations = countdown_graph()
    acc = variable(g, "acc", 4)
    t1 = variable(g, "t1", 4, shift=1)
    t2 = variable(g, "t2", 4, shift=2)
    two = constant(g, "two", 4, 2.0)
    body = pl.Sequence([
        loop.body,
        pl.Execute(elementwise(g, "t1=acc*2", codelets.binary("mul", pl.FLOAT), {"a": acc, "b": two, "out": t1})),
        pl.Execute(elementwise(g, "t2=t1+acc", codelets.binary("add", pl.FLOAT), {"a": t1, "b": acc, "out": t2})),
        pl.PrintTensor("t2", t2),
        pl.WriteUndef(t1),
        pl.Execute(elementwise(g, "acc=t2-2", codelets.binary("sub", pl.FLOAT), {"a": t2, "b": two, "out": acc})),
        pl.WriteUndef(t2),
    ])
    engine = pl.Engine(g, pl.RepeatWhileTrue(loop.condition, loop.predicate, body))
    engine.write_tensor(counter, np.array([4], np.int32))
    engine.write_tensor(iterations, np.array([0], np.int32))
    engine.write_tensor(acc, np.arange(4, dtype=F32))
    engine.run()
    expected = np.arange(4, dtype=F32)
    printed = []
    for _ in range(4):
        printed.append(f"t2: {np.array2string(3 * expected)}")
        expected = 3 * expected - 2
    np.testing.assert_array_equal(engine.read_tensor(acc), expected)
    assert capsys.readouterr().out.splitlines() == printed


def test_write_undef_needs_a_tensor():
    with pytest.raises(pl.ProgramError):
        pl.WriteUndef("x")


# ================================================================== host streams

def test_stream_in_wraps_around_the_buffer():
    g = small_graph()
    x = variable(g, "x", 4)
    acc = variable(g, "acc", 4, shift=1)
    inp = g.add_host_to_device_fifo("in", pl.FLOAT, 4)
    add = elementwise(g, "acc+=x", ADD, {"a": acc, "b": x})
    prog = pl.Repeat(5, pl.Sequence([pl.Copy(inp, x), pl.Execute(add)]))
    engine = pl.Engine(g, prog)
    buffer = np.arange(12, dtype=F32).reshape(3, 4)  # 3 copies' worth: the fifth copy reads chunk 1
    engine.connect_stream("in", buffer)
    engine.write_tensor(acc, np.zeros(4, F32))
    engine.run()
    chunks = buffer[[0, 1, 2, 0, 1]]
    np.testing.assert_array_equal(engine.read_tensor(acc), chunks.sum(axis=0))
    np.testing.assert_array_equal(engine.read_tensor(x), buffer[1])
    np.testing.assert_array_equal(buffer, np.arange(12, dtype=F32).reshape(3, 4))  # the host buffer is untouched
    # the cursor carries over to the next run: chunks 2, 0, 1, 2, 0
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(x), buffer[0])
    np.testing.assert_array_equal(engine.read_tensor(acc), chunks.sum(axis=0) + buffer[[2, 0, 1, 2, 0]].sum(axis=0))
    row = next(r for r in engine.profile()["steps"] if r["kind"] == "stream_in")
    assert row["executions"] == 10
    assert row["host_bytes"] == 16
    # connecting again rewinds
    engine.connect_stream("in", buffer[2:].copy())
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(x), buffer[2])


def test_stream_in_to_a_view_lands_in_view_order():
    g = small_graph()
    m = variable(g, "m", (2, 3))
    inp = g.add_host_to_device_fifo("in", pl.FLOAT, 6)
    engine = pl.Engine(g, pl.Copy(inp, m.transpose()))
    engine.connect_stream("in", np.arange(6, dtype=F32))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(m), np.arange(6, dtype=F32).reshape(3, 2).T)


def test_stream_out_wraps_around_the_buffer():
    g, acc, inc = counter_graph()
    out = g.add_device_to_host_fifo("out", pl.FLOAT, 2)
    prog = pl.Repeat(5, pl.Sequence([pl.Execute(inc), pl.Copy(acc[1:3], out)]))
    engine = pl.Engine(g, prog)
    buffer = np.full(6, -1, F32)
    engine.connect_stream("out", buffer)
    engine.write_tensor(acc, np.zeros(4, F32))
    engine.run()
    # copies 1..5 write chunks 0, 1, 2, 0, 1: the last two overwrite the first two
    np.testing.assert_array_equal(buffer, [4, 4, 5, 5, 3, 3])
    row = next(r for r in engine.profile()["steps"] if r["kind"] == "stream_out")
    assert row["executions"] == 5


def test_stream_round_trip_through_device():
    g = small_graph()
    x = variable(g, "x", 3, dtype=pl.INT)
    to_dev = g.add_host_to_device_fifo("to", pl.INT, 3)
    from_dev = g.add_device_to_host_fifo("from", pl.INT, 3)
    neg = elementwise(g, "neg", codelets.unary_inplace("neg", pl.INT), {"data": x})
    prog = pl.Repeat(4, pl.Sequence([pl.Copy(to_dev, x), pl.Execute(neg), pl.Copy(x, from_dev)]))
    engine = pl.Engine(g, prog)
    src = np.arange(12, dtype=np.int32).reshape(4, 3) - 5
    dst = np.zeros((4, 3), np.int32)
    engine.connect_stream("to", src)
    engine.connect_stream("from", dst)
    engine.run()
    np.testing.assert_array_equal(dst, -src)


def test_stream_errors():
    g = small_graph()
    x = variable(g, "x", 4)
    i = variable(g, "i", 4, dtype=pl.INT)
    inp = g.add_host_to_device_fifo("in", pl.FLOAT, 4)
    out = g.add_device_to_host_fifo("out", pl.FLOAT, 4)
    with pytest.raises(pl.StreamError, match="already exists"):
        g.add_host_to_device_fifo("in", pl.FLOAT, 4)
    with pytest.raises(pl.StreamError):
        g.add_host_to_device_fifo("empty", pl.FLOAT, 0)
    with pytest.raises(pl.StreamError, match="elements"):
        pl.Copy(inp, x[0:3])
    with pytest.raises(pl.DTypeError):
        pl.Copy(inp, i)
    with pytest.raises(pl.StreamError, match="host-to-device"):
        pl.Copy(x, inp)
    with pytest.raises(pl.StreamError, match="device-to-host"):
        pl.Copy(out, x)
    with pytest.raises(pl.ProgramError):
        pl.Copy(inp, out)
    engine = pl.Engine(g, pl.Sequence([pl.Copy(inp, x), pl.Copy(x, out)]))
    with pytest.raises(pl.StreamError, match="no stream called"):
        engine.connect_stream("nope", np.zeros(4, F32))
    with pytest.raises(pl.StreamError, match="carries"):
        engine.connect_stream("in", np.zeros(4, np.float64))
    with pytest.raises(pl.StreamError, match="multiple"):
        engine.connect_stream("in", np.zeros(6, F32))
    with pytest.raises(pl.StreamError, match="numpy array"):
        engine.connect_stream("in", [0.0] * 4)
    readonly = np.zeros(4, F32)
    readonly.flags.writeable = False
    with pytest.raises(pl.StreamError, match="read-only"):
        engine.connect_stream("out", readonly)
    engine.connect_stream("in", readonly)  # the device only reads this one
    # the device walks buffers in place: views that are not C-contiguous are refused, never copied
    with pytest.raises(pl.StreamError, match="contiguous"):
        engine.connect_stream("in", np.zeros((4, 2), F32).T)
    with pytest.raises(pl.StreamError, match="contiguous"):
        engine.connect_stream("out", np.zeros(8, F32)[::2])
    with pytest.raises(pl.StreamError, match="not connected"):
        engine.run()


# ================================================================== several programs

def test_engine_with_several_programs_sharing_variables():
    g = small_graph()
    x = variable(g, "x", 4)
    one = constant(g, "one", 4, 1.0)
    two = constant(g, "two", 4, 2.0)
    programs = [
        pl.Execute(fill(g, "reset", x, 0.0)),
        pl.Execute(elementwise(g, "inc", ADD, {"a": x, "b": one})),
        pl.Execute(elementwise(g, "double", MUL, {"a": x, "b": two})),
    ]
    engine = pl.Engine(g, programs)
    assert engine.executable.num_programs == 3

    def play(order):
        for p in order:
            engine.run(p)
        return engine.read_tensor(x)[0]

    assert play([0, 1, 2, 1]) == 3
    assert play([0, 1, 1, 2]) == 4
    assert play([2, 0, 2, 1, 2, 2]) == 4
    assert play([1]) == 5  # x persists between runs
    assert engine.last_program == 1
    assert [r["program"] for r in engine.runs] == [0, 1, 2, 1, 0, 1, 1, 2, 2, 0, 2, 1, 2, 2, 1]
    steps = engine.profile()["steps"]
    by_name = {r["name"]: r for r in steps}
    assert [by_name[n]["executions"] for n in ("reset", "inc", "double")] == [3, 6, 6]
    assert (by_name["reset"]["program"], by_name["inc"]["program"], by_name["double"]["program"]) == (0, 1, 2)
    with pytest.raises(pl.EngineError, match="3 program"):
        engine.run(3)
    with pytest.raises(pl.EngineError):
        engine.run(-1)


def test_profile_counts_executions_over_runs():
    g, acc, inc = counter_graph()
    k = constant(g, "k", 4, 5.0)
    prog = pl.Sequence([pl.Repeat(3, pl.Execute(inc)), pl.Copy(k, acc, name="reset")])
    engine = pl.Engine(g, prog)
    static = engine.profile()
    assert static["cycles"]["basis"] == "static"
    assert all(r["executions"] == 0 for r in static["steps"])
    for runs in range(1, 4):
        engine.run()
        profile = engine.profile()
        assert profile["cycles"]["basis"] == "executed"
        assert step_executions(engine) == {"inc": 3 * runs, "reset": runs}
        rows = {r["name"]: r for r in profile["steps"]}
        expected_total = sum(r["executions"] * r["total_cycles"] for r in profile["steps"])
        assert profile["cycles"]["total"] == expected_total
        assert rows["inc"]["total_cycles"] > 0
    assert len(engine.runs) == 3
    check_memory_report(engine.profile())


# ================================================================== text form and equality

def test_program_tree_text():
    g, acc, inc = counter_graph()
    pred = variable(g, "flag", 1, dtype=pl.INT, tile=0)
    s = g.add_host_to_device_fifo("feed", pl.FLOAT, 4)
    prog = pl.Sequence([
        pl.Copy(s, acc),
        pl.Repeat(3, pl.Sequence([pl.Execute(inc), pl.PrintTensor("acc", acc)])),
        pl.If(pred, pl.Execute(inc)),
        pl.RepeatWhileTrue(pl.Sequence(), pred, pl.WriteUndef(acc)),
    ], name="main")
    assert str(prog) == "\n".join([
        "Sequence main",
        "  Copy stream 'feed' -> 'acc'[4]",
        "  Repeat x3",
        "    Sequence",
        "      Execute 'inc' (4 vertices)",
        "      PrintTensor 'acc'",
        "  If 'flag'",
        "    Execute 'inc' (4 vertices)",
        "    Sequence",
        "  RepeatWhileTrue 'flag'",
        "    Sequence",
        "    WriteUndef 'acc'",
    ])


def test_programs_compare_equal_by_structure():
    g, acc, inc = counter_graph()
    other = g.add_compute_set("inc")  # same name, different compute set
    pred = variable(g, "flag", 1, dtype=pl.INT, tile=0)

    def build(count=3, cs=inc, src=acc[0:2]):
        return pl.Sequence([pl.Repeat(count, pl.Execute(cs)), pl.Copy(src, acc[2:4]),
                            pl.If(pred, pl.PrintTensor("p", acc))])

    assert build() == build()
    assert build(src=acc[0:2]) == build(src=g.tensor("acc")[0:2])  # same elements, a new view
    assert hash(build()) == hash(build())
    assert build() != build(count=4)
    assert build() != build(cs=other)
    assert build() != build(src=acc[1:3])
    assert pl.Sequence([pl.Execute(inc)]) != pl.Sequence([pl.Execute(inc), pl.Execute(inc)])
    assert pl.Sequence([pl.Execute(inc)]) != pl.Repeat(1, pl.Execute(inc))
    assert pl.If(pred, pl.Execute(inc)) == pl.If(pred, pl.Execute(inc), pl.Sequence())
    assert pl.WriteUndef(acc) != pl.WriteUndef(acc[0:2])
    assert pl.PrintTensor("a", acc) != pl.PrintTensor("b", acc)
    assert pl.Execute(inc) != "Execute"


def test_equal_programs_hash_equal():
    g = small_graph()
    x = variable(g, "x", 4)
    pairs = [
        (pl.Sequence([], name="a"), pl.Sequence([], name="b")),
        (pl.Copy(x[0:2], x[2:4]), pl.Copy(x.flatten()[0:2], x[2:4])),
    ]
    for a, b in pairs:
        assert a == b
    for a, b in pairs:
        assert hash(a) == hash(b)
        assert len({a, b}) == 1


def test_program_hash_is_stable_while_the_graph_grows():
    g, acc, inc = counter_graph()
    programs = {pl.Execute(inc)}
    g.add_vertex(inc, ADD, {"a": acc[0:1], "b": g.tensor("one")[0:1]}, tile=0)
    assert pl.Execute(inc) in programs


# ================================================================== executables

def save_load_graph():
    """A graph whose programs use every program type, with streams and host inputs."""
    g = small_graph()
    x = variable(g, "x", (2, 4))
    y = variable(g, "y", 4, shift=1)
    flag = variable(g, "flag", 1, dtype=pl.INT, tile=3)
    tmp = variable(g, "tmp", 4, shift=2)
    half = variable(g, "h", 4, dtype=pl.HALF)
    scale = constant(g, "scale", 4, np.array([0.5, 3, -1, 1e-3], F32))
    hk = constant(g, "hk", 4, np.array([1.5, -2, 0.25, 65504], np.float16), dtype=pl.HALF)
    bk = constant(g, "bk", 4, np.array([1, 0, 0, 1], bool), dtype=pl.BOOL)
    hb = variable(g, "hb", 4, dtype=pl.HALF, shift=3)
    mask = variable(g, "mask", 4, dtype=pl.BOOL, shift=2)
    count = variable(g, "count", 2, dtype=pl.INT, tile=1)
    feed = g.add_host_to_device_fifo("feed", pl.FLOAT, 4)
    drain = g.add_device_to_host_fifo("drain", pl.FLOAT, 4)
    reduce_cs = g.add_compute_set("rows")
    for r in range(2):
        for c in range(2):
            g.add_vertex(reduce_cs, codelets.ReduceSum[pl.FLOAT], {"inp": x[r, 2 * c:2 * c + 2], "out": y[2 * r + c]},
                         tile=(r + c) % 4)
    scale_cs = elementwise(g, "tmp=y*scale", codelets.binary("mul", pl.FLOAT), {"a": y, "b": scale, "out": tmp})
    back = elementwise(g, "x0+=tmp", ADD, {"a": x[0], "b": tmp})
    cast = elementwise(g, "h=cast(y)", codelets.Cast[pl.FLOAT, pl.HALF], {"inp": y, "out": half})
    hadd = elementwise(g, "hb=h+hk", codelets.binary("add", pl.HALF), {"a": half, "b": hk, "out": hb})
    bor = elementwise(g, "mask|=bk", codelets.binary_inplace("logical_or", pl.BOOL), {"a": mask, "b": bk})
    set_count = fill(g, "count=-3", count, -3, tile=2)
    programs = [
        pl.Sequence([pl.Copy(feed, x[1]), pl.Execute(reduce_cs)]),
        pl.Sequence([
            pl.Repeat(3, pl.Sequence([pl.Execute(scale_cs), pl.Execute(back), pl.WriteUndef(tmp)])),
            pl.If(flag, pl.Execute(cast), pl.Copy(y, x[1])),
            pl.Copy(x[0], drain),
            pl.Execute(hadd), pl.Execute(bor), pl.Execute(set_count),
        ]),
    ]
    return g, programs, x, y, flag, half, hb, mask, count


def drive(engine: pl.Engine, by_name: bool, tensors) -> list[np.ndarray]:
    x, y, flag, half, hb, mask, count = tensors
    key = (lambda t: t.name) if by_name else (lambda t: t)
    rng = np.random.default_rng(7)
    engine.write_tensor(key(x), rng.standard_normal((2, 4)).astype(F32))
    engine.write_tensor(key(half), np.zeros(4, np.float16))
    engine.write_tensor(key(mask), np.array([0, 0, 1, 0], bool))
    engine.write_tensor(key(count), np.array([5, 6], np.int32))
    feed = rng.standard_normal((3, 4)).astype(F32)
    drain = np.zeros((2, 4), F32)
    engine.connect_stream("feed", feed)
    engine.connect_stream("drain", drain)
    results = []
    for p, flag_value in [(0, 1), (1, 1), (0, 0), (1, 0), (1, 2)]:
        engine.write_tensor(key(flag), np.array([flag_value], np.int32))
        engine.run(p)
        results += [engine.read_tensor(key(t)) for t in (x, y, half, hb, mask, count)]
    return results + [drain]


def test_an_executable_of_another_format_version_is_refused(tmp_path):
    """Version 1 stored moves as one index pair per element; this runtime reads version 2 (runs)."""
    import json

    g, programs, *_ = save_load_graph()
    path = str(tmp_path / "program.npz")
    pl.compile_graph(g, programs).save(path)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(bytes(arrays["__header__"]).decode())
    header["version"] = 1
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(pl.GraphError, match="executable format version 1, this runtime reads version 2"):
        pl.Executable.load(path)


@pytest.mark.parametrize("by_name", [False, True])
def test_executable_save_load_round_trip(tmp_path, by_name):
    g, programs, *tensors = save_load_graph()
    exe = pl.compile_graph(g, programs)
    path = str(tmp_path / "program.npz")
    exe.save(path)
    with np.load(path, allow_pickle=False) as npz:  # plain data: arrays and a JSON header
        assert "__header__" in npz.files
        assert all(npz[k].dtype != object for k in npz.files)
    loaded = pl.Executable.load(path)
    assert loaded.num_programs == 2
    assert loaded.instruction_text() == exe.instruction_text()
    np.testing.assert_array_equal(loaded.code, exe.code)
    np.testing.assert_array_equal(loaded.element_address, exe.element_address)
    for before, after in zip(exe.computes, loaded.computes, strict=True):  # moves: runs and their flag
        for a, b in ((before.pre, after.pre), (before.post, after.post)):
            assert a.apart and b.apart and a.sizes() == b.sizes()
            for size in a.sizes():
                for x, y in zip(a.words(size), b.words(size), strict=True):
                    np.testing.assert_array_equal(x, y)

    reference = drive(pl.Engine(g, programs), False, tensors)
    original = drive(pl.Engine(exe), by_name, tensors)
    reloaded = drive(pl.Engine(loaded), by_name, tensors)
    for a, b, c in zip(reference, original, reloaded, strict=True):
        assert a.dtype == b.dtype == c.dtype
        assert a.tobytes() == b.tobytes() == c.tobytes()
    # the flag took both branches, the reduction and the loop did something
    assert not np.array_equal(reference[0], reference[6])  # program 1 changed x
    assert not np.array_equal(reference[1], reference[13])  # program 0 again, on new data
    np.testing.assert_array_equal(reference[10], [1, 0, 1, 1])  # mask |= bk ran
    np.testing.assert_array_equal(reference[11], [-3, -3])  # the INT fill's state survived

    e1, e2 = pl.Engine(exe), pl.Engine(loaded)
    p1, p2 = e1.profile(), e2.profile()
    assert p1["memory"] == p2["memory"]
    assert p1["steps"] == p2["steps"]
    check_memory_report(p2)


def test_executable_to_bytes_matches_save(tmp_path):
    g, programs, *_ = save_load_graph()
    exe = pl.compile_graph(g, programs)
    path = tmp_path / "exe.npz"
    exe.save(str(path))
    import io

    with np.load(io.BytesIO(exe.to_bytes()), allow_pickle=False) as a, np.load(str(path), allow_pickle=False) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


def test_loading_a_file_that_is_not_an_executable(tmp_path):
    path = str(tmp_path / "other.npz")
    np.savez(path, __header__=np.frombuffer(b'{"format": "something else"}', dtype=np.uint8))
    with pytest.raises(pl.GraphError, match="not a poplar_like executable"):
        pl.Executable.load(path)


def test_engine_from_executable_takes_no_programs():
    g, acc, inc = counter_graph()
    exe = pl.compile_graph(g, pl.Execute(inc))
    with pytest.raises(pl.EngineError):
        pl.Engine(exe, pl.Execute(inc))
    with pytest.raises(pl.EngineError):
        pl.Engine(g)
    with pytest.raises(pl.ProgramError):
        pl.compile_graph(g, [])


def test_a_repeat_that_never_runs_is_still_checked() -> None:
    """Repeat(0, body) never runs its body, but the body is compiled: its errors are reported."""
    graph = small_graph()
    x = variable(graph, "x", 4)
    racy = graph.add_compute_set("racy")
    add = codelets.binary("add", pl.FLOAT)
    graph.add_vertex(racy, add, {"a": x, "b": x, "out": x}, tile=0)
    graph.add_vertex(racy, add, {"a": x, "b": x, "out": x}, tile=1)
    with pytest.raises(pl.DataRaceError, match="'racy'"):
        pl.Engine(graph, pl.Repeat(0, pl.Execute(racy)))
