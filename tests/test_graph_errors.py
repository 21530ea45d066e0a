"""Bad input gets a specific exception and a message naming the culprit (DESIGN.md rule 7).

Every case asserts the exception type (a :class:`pl.GraphError` subclass while building and
compiling, :class:`pl.EngineError` while running) and substrings of the message that name the
tensor, element, vertex, codelet, field, tile, compute set or stream at fault.  Connection errors
must come from ``add_vertex``/``connect`` (the line that made the mistake), not from compilation.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import poplar_like as pl
from conftest import map_evenly


# ------------------------------------------------------------------------------------------------
# Codelets (module level: the engine imports them by module:qualname).

class Sum(pl.Vertex):
    inp = pl.Input(pl.Vector(pl.FLOAT))
    out = pl.Output(pl.FLOAT)

    def compute(inp, out):
        out[:] = inp.sum(axis=1)

    def cycles(inp_length):
        return 5 + inp_length


class Scale(pl.Vertex):
    inp = pl.Input(pl.FLOAT)
    out = pl.Output(pl.FLOAT)

    def compute(inp, out):
        out[:] = 2 * inp

    def cycles():
        return 3


class Triple(pl.Vertex):
    """A fixed-length vector field."""
    inp = pl.Input(pl.Vector(pl.FLOAT, 3))
    out = pl.Output(pl.FLOAT)

    def compute(inp, out):
        out[:] = inp.sum(axis=1)

    def cycles():
        return 4


class Fill(pl.Vertex):
    out = pl.Output(pl.Vector(pl.FLOAT))

    def compute(out):
        out[:] = 1

    def cycles(out_length):
        return out_length


class Increment(pl.Vertex):
    """Reads and writes its own element: not a race."""
    x = pl.InOut(pl.FLOAT)

    def compute(x):
        x += 1

    def cycles():
        return 2


class NoEstimate(pl.Vertex):
    inp = pl.Input(pl.FLOAT)
    out = pl.Output(pl.FLOAT)

    def compute(inp, out):
        out[:] = inp + 1


class Scaled(pl.Vertex):
    inp = pl.Input(pl.FLOAT)
    out = pl.Output(pl.FLOAT)
    factor = pl.State(pl.FLOAT)

    def compute(inp, out, factor):
        out[:] = inp * factor

    def cycles(factor):
        return 6


class SqrtOfNonNegative(pl.Vertex):
    """Raises if any input is negative."""
    inp = pl.Input(pl.Vector(pl.FLOAT))
    out = pl.Output(pl.FLOAT)

    def compute(inp, out):
        if (inp < 0).any():
            raise ValueError("negative input")
        out[:] = np.sqrt(inp).sum(axis=1)

    def cycles(inp_length):
        return 10 + inp_length


class WritesInput(pl.Vertex):
    inp = pl.Input(pl.FLOAT)
    out = pl.Output(pl.FLOAT)

    def compute(inp, out):
        inp[:] = 0

    def cycles():
        return 1


class NotACodelet:
    inp = pl.Input(pl.FLOAT)

    def compute(inp):
        pass


# ------------------------------------------------------------------------------------------------
# Helpers


def mapped(graph: pl.Graph, name: str, shape, dtype=pl.FLOAT) -> pl.Tensor:
    t = graph.add_variable(dtype, shape, name)
    map_evenly(graph, t)
    return t


def message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


# ================================================================================================
# Tile mappings


def test_unmapped_tensor_fails_at_compile_naming_variable_and_element(graph: pl.Graph) -> None:
    ok = mapped(graph, "ok", (4,))
    x = graph.add_variable(pl.FLOAT, (2, 3), "weights")
    graph.set_tile_mapping(x[0], 1)
    graph.set_tile_mapping(x[1, 0], 2)  # x[1, 1] and x[1, 2] are unmapped
    with pytest.raises(pl.TileMappingError, match=r"variable 'weights' .*weights\[1, 1\].*1 more"):
        pl.Engine(graph, pl.Sequence([pl.Copy(ok, ok)]))


def test_unmapped_constant_fails_at_compile(graph: pl.Graph) -> None:
    graph.add_constant(pl.FLOAT, (3,), 1.0, "ones")
    with pytest.raises(pl.TileMappingError, match=r"constant 'ones' .*ones\[0\]"):
        pl.Engine(graph, pl.Sequence())


def test_unmapped_vertex_fails_at_compile(graph: pl.Graph) -> None:
    x, y = mapped(graph, "x", (4,)), mapped(graph, "y", (1,))
    cs = graph.add_compute_set("reduce")
    graph.add_vertex(cs, Sum, {"inp": x, "out": y[0]})
    with pytest.raises(pl.TileMappingError, match=r"vertex #0 \(Sum\) in compute set 'reduce' has no tile mapping"):
        pl.Engine(graph, pl.Execute(cs))


@pytest.mark.parametrize("tile", [4, 100, -1])
def test_tensor_tile_out_of_range(graph: pl.Graph, tile: int) -> None:
    x = graph.add_variable(pl.FLOAT, (4,), "acts")
    with pytest.raises(pl.InvalidTileError, match=rf"'acts'.*tile {tile} is out of range.*4 tiles \(0\.\.3\)"):
        graph.set_tile_mapping(x, tile)


def test_tensor_tile_array_out_of_range(graph: pl.Graph) -> None:
    x = graph.add_variable(pl.FLOAT, (2, 2), "acts")
    with pytest.raises(pl.InvalidTileError, match=r"'acts'.*tile 7 is out of range.*0\.\.3"):
        graph.set_tile_mapping(x, np.array([[0, 1], [7, 2]]))
    with pytest.raises(pl.InvalidTileError, match=r"'acts'.*integers"):
        graph.set_tile_mapping(x, np.array([[0.0, 1.0], [2.0, 3.0]]))
    with pytest.raises(pl.TileMappingError, match=r"'acts'.*shape \(4,\).*\(2, 2\)"):
        graph.set_tile_mapping(x, np.array([0, 1, 2, 3]))


def test_tensor_interval_mapping_errors(graph: pl.Graph) -> None:
    x = graph.add_variable(pl.FLOAT, (6,), "acts")
    with pytest.raises(pl.InvalidTileError, match=r"'acts'.*lists 5 tiles.*has 4"):
        graph.set_tile_mapping(x, [[], [], [], [], [(0, 6)]])
    with pytest.raises(pl.TileMappingError, match=r"'acts'.*\[4, 9\) for tile 1.*6 elements"):
        graph.set_tile_mapping(x, [[(0, 4)], [(4, 9)]])
    with pytest.raises(pl.TileMappingError, match=r"'acts'.*cannot map"):
        graph.set_tile_mapping(x, "tile 0")


@pytest.mark.parametrize("tile", [4, -2])
def test_vertex_tile_out_of_range(graph: pl.Graph, tile: int) -> None:
    x, y = mapped(graph, "x", (4,)), mapped(graph, "y", (1,))
    cs = graph.add_compute_set("reduce")
    v = graph.add_vertex(cs, Sum, {"inp": x, "out": y[0]})
    with pytest.raises(pl.InvalidTileError, match=rf"Sum.*'reduce'.*tile {tile} is out of range.*0\.\.3"):
        graph.set_tile_mapping(v, tile)
    with pytest.raises(pl.InvalidTileError, match=rf"Sum.*tile {tile} is out of range"):
        graph.add_vertex(cs, Sum, {"inp": x, "out": y[0]}, tile=tile)
    with pytest.raises(pl.InvalidTileError, match=r"tile must be an int"):
        graph.set_tile_mapping(v, 1.0)


def test_vertices_tile_array_out_of_range(graph: pl.Graph) -> None:
    x, y = mapped(graph, "x", (4,)), mapped(graph, "y", (4,))
    cs = graph.add_compute_set("scale")
    with pytest.raises(pl.InvalidTileError, match=r"Scale.*'scale'.*tile 9 is out of range"):
        graph.add_vertices(cs, Scale, {"inp": x, "out": y}, np.array([0, 1, 9, 2]))
    assert cs.num_vertices == 0  # a failed bulk add leaves nothing behind
    rng = graph.add_vertices(cs, Scale, {"inp": x, "out": y}, 0)
    with pytest.raises(pl.TileMappingError, match=r"4 Scale vertices in compute set 'scale'.*shape \(3,\).*\(4,\)"):
        graph.set_tile_mapping(rng, np.array([0, 1, 2]))
    with pytest.raises(pl.InvalidTileError, match=r"4 Scale vertices.*tile 5 is out of range"):
        graph.set_tile_mapping(rng, 5)


# ================================================================================================
# Vertices and fields


def test_unconnected_field_fails_at_compile(graph: pl.Graph) -> None:
    x = mapped(graph, "x", (4,))
    cs = graph.add_compute_set("reduce")
    graph.add_vertex(cs, Sum, {"inp": x}, tile=0)
    with pytest.raises(pl.FieldConnectionError, match=r"field 'out' of vertex #0 \(Sum\) in compute set 'reduce' "
                                                      r"is not connected"):
        pl.Engine(graph, pl.Execute(cs))


def test_scalar_field_to_two_elements(graph: pl.Graph) -> None:
    x, y = mapped(graph, "x", (4,)), mapped(graph, "y", (4,))
    cs = graph.add_compute_set("scale")
    with pytest.raises(pl.FieldConnectionError, match=r"field 'inp' of vertex #0 \(Scale\) in compute set 'scale' "
                                                      r"is a scalar float but tensor 'x\[0:2\]' has shape \(2,\)"):
        graph.add_vertex(cs, Scale, {"inp": x[0:2], "out": y[0]})
    v = graph.add_vertex(cs, Scale)
    with pytest.raises(pl.FieldConnectionError, match=r"field 'out' .*Scale.*'y'.*shape \(4,\)"):
        graph.connect(v["out"], y)
    graph.connect(v["inp"], x[1:2])  # a 1-element view is fine for a scalar
    graph.connect(v["out"], y[3])


def test_vector_field_to_2d_tensor(graph: pl.Graph) -> None:
    m, y = mapped(graph, "m", (2, 3)), mapped(graph, "y", (1,))
    cs = graph.add_compute_set("reduce")
    with pytest.raises(pl.FieldConnectionError, match=r"field 'inp' of .*Sum.*Vector<float> and needs a 1-D tensor.*"
                                                      r"'m' has shape \(2, 3\)"):
        graph.add_vertex(cs, Sum, {"inp": m, "out": y[0]})
    v = graph.add_vertex(cs, Sum)
    with pytest.raises(pl.FieldConnectionError, match=r"'inp'.*needs a 1-D tensor"):
        graph.connect(v["inp"], m[0, 0])
    graph.connect(v["inp"], m.flatten())


def test_fixed_size_vector_wrong_length(graph: pl.Graph) -> None:
    x, y = mapped(graph, "x", (4,)), mapped(graph, "y", (1,))
    cs = graph.add_compute_set("triples")
    with pytest.raises(pl.FieldConnectionError, match=r"field 'inp' of .*Triple.*Vector<float, 3> of 3 elements, "
                                                      r"but 'x' has 4"):
        graph.add_vertex(cs, Triple, {"inp": x, "out": y[0]})
    graph.add_vertex(cs, Triple, {"inp": x[1:], "out": y[0]}, tile=0)


def test_wrong_dtype_connection(graph: pl.Graph) -> None:
    xi, y = mapped(graph, "ints", (4,), pl.INT), mapped(graph, "y", (1,))
    cs = graph.add_compute_set("reduce")
    with pytest.raises(pl.DTypeError, match=r"field 'inp' of .*Sum.*'reduce' is Vector<float> but tensor 'ints' is int"):
        graph.add_vertex(cs, Sum, {"inp": xi, "out": y[0]})
    v = graph.add_vertex(cs, Sum)
    with pytest.raises(pl.DTypeError, match=r"field 'inp'.*tensor 'ints\[1:3\]' is int"):
        graph.connect(v["inp"], xi[1:3])
    assert issubclass(pl.DTypeError, pl.GraphError)


def test_connect_non_tensor(graph: pl.Graph) -> None:
    cs = graph.add_compute_set("cs")
    v = graph.add_vertex(cs, Scale)
    with pytest.raises(pl.FieldConnectionError, match=r"field 'inp' of .*Scale.*must be connected to a tensor, "
                                                      r"got ndarray"):
        graph.connect(v["inp"], np.zeros(1, dtype=np.float32))
    with pytest.raises(pl.FieldConnectionError, match=r"connect needs vertex\['field'\]"):
        graph.connect("inp", mapped(graph, "x", (1,)))


def test_connect_tensor_of_another_graph(graph: pl.Graph) -> None:
    other = pl.Graph(graph.target)
    foreign = other.add_variable(pl.FLOAT, (1,), "foreign")
    cs = graph.add_compute_set("cs")
    v = graph.add_vertex(cs, Scale)
    with pytest.raises(pl.FieldConnectionError, match=r"'inp'.*'foreign' belongs to another graph"):
        graph.connect(v["inp"], foreign)


@pytest.mark.parametrize("bad", [NotACodelet, pl.Vertex, pl.MultiVertex, "Sum", Sum.compute, 3])
def test_unknown_codelet(graph: pl.Graph, bad) -> None:
    cs = graph.add_compute_set("cs")
    with pytest.raises(pl.UnknownCodeletError, match=re.escape(repr(bad)[:30])):
        graph.add_vertex(cs, bad)
    with pytest.raises(pl.UnknownCodeletError, match=r"not a codelet"):
        graph.add_vertices(cs, bad, {}, 0)


def test_codelet_without_compute(graph: pl.Graph) -> None:
    class Empty(pl.Vertex):
        out = pl.Output(pl.FLOAT)

    with pytest.raises(pl.UnknownCodeletError, match=r"Empty has no compute"):
        graph.add_vertex(graph.add_compute_set("cs"), Empty)


def test_unknown_field_name(graph: pl.Graph) -> None:
    x = mapped(graph, "x", (1,))
    cs = graph.add_compute_set("cs")
    with pytest.raises(pl.UnknownFieldError, match=r"codelet Scale has no field 'input'; its fields are \['inp', 'out'\]"):
        graph.add_vertex(cs, Scale, {"input": x})
    v = graph.add_vertex(cs, Scale)
    with pytest.raises(pl.UnknownFieldError, match=r"Scale has no field 'bogus'"):
        v["bogus"]
    with pytest.raises(pl.UnknownFieldError, match=r"Scale has no field 'bogus'"):
        graph.add_vertices(cs, Scale, {"bogus": x}, 0)
    with pytest.raises(KeyError):  # also a KeyError, with a readable message
        v["bogus"]


def test_missing_perf_estimate(graph: pl.Graph) -> None:
    x, y = mapped(graph, "x", (2,)), mapped(graph, "y", (2,))
    cs = graph.add_compute_set("plus_one")
    graph.add_vertex(cs, NoEstimate, {"inp": x[0], "out": y[0]}, tile=0)
    v = graph.add_vertex(cs, NoEstimate, {"inp": x[1], "out": y[1]}, tile=1)
    graph.set_perf_estimate(v, 12)  # only one of the two has an estimate
    with pytest.raises(pl.MissingPerfEstimateError, match=r"vertex #0 \(NoEstimate\) in compute set 'plus_one' "
                                                         r"has no cycle estimate.*set_perf_estimate"):
        pl.Engine(graph, pl.Execute(cs))


def test_set_perf_estimate_makes_it_compile(graph: pl.Graph) -> None:
    x, y = mapped(graph, "x", (4,)), mapped(graph, "y", (4,))
    cs = graph.add_compute_set("plus_one")
    for i in range(2):
        v = graph.add_vertex(cs, NoEstimate, {"inp": x[i], "out": y[i]}, tile=i)
        graph.set_perf_estimate(v, 10 + i)
    rng = graph.add_vertices(cs, NoEstimate, {"inp": x[2:], "out": y[2:]}, np.array([2, 3]),
                             perf_estimates=np.array([5, 6]))
    assert len(rng) == 2
    engine = pl.Engine(graph, pl.Execute(cs))
    engine.write_tensor(x, np.arange(4, dtype=np.float32))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(y), np.arange(4) + 1)
    with pytest.raises(pl.GraphError, match=r"set_perf_estimate.*non-negative"):
        graph.set_perf_estimate(rng, -1)


def test_state_field_without_initial_value(graph: pl.Graph) -> None:
    x, y = mapped(graph, "x", (1,)), mapped(graph, "y", (1,))
    cs = graph.add_compute_set("scaled")
    graph.add_vertex(cs, Scaled, {"inp": x[0], "out": y[0]}, tile=0)
    with pytest.raises(pl.FieldConnectionError, match=r"state field 'factor' of vertex #0 \(Scaled\) in compute set "
                                                      r"'scaled' has no value"):
        pl.Engine(graph, pl.Execute(cs))


def test_state_field_set_and_misused(graph: pl.Graph) -> None:
    x, y = mapped(graph, "x", (1,)), mapped(graph, "y", (1,))
    cs = graph.add_compute_set("scaled")
    v = graph.add_vertex(cs, Scaled, {"inp": x[0], "out": y[0], "factor": 3.0}, tile=0)
    with pytest.raises(pl.FieldConnectionError, match=r"field 'factor' of .*Scaled.*is vertex state.*set_initial_value"):
        graph.connect(v["factor"], x[0])
    with pytest.raises(pl.FieldConnectionError, match=r"field 'inp' of .*Scaled.*is an edge.*connect a tensor"):
        graph.set_initial_value(v["inp"], 1.0)
    with pytest.raises(pl.FieldConnectionError, match=r"state field 'factor' of .*Scaled.*shape \(2,\)"):
        graph.set_initial_value(v["factor"], [1.0, 2.0])
    engine = pl.Engine(graph, pl.Execute(cs))
    engine.write_tensor(x, np.array([2.5], dtype=np.float32))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(y), [7.5])


def test_failed_add_vertex_leaves_nothing_behind(graph: pl.Graph) -> None:
    x, y = mapped(graph, "x", (4,)), mapped(graph, "y", (4,))
    cs = graph.add_compute_set("scale")
    with pytest.raises(pl.FieldConnectionError, match=r"'inp'"):
        graph.add_vertex(cs, Scale, {"out": y[0], "inp": x})  # 'out' connects, then 'inp' fails
    with pytest.raises(pl.InvalidTileError, match=r"tile 8"):
        graph.add_vertex(cs, Scale, {"out": y[0], "inp": x[0]}, tile=8)
    assert cs.num_vertices == 0 and graph.num_vertices() == 0
    graph.add_vertex(cs, Scale, {"inp": x[1], "out": y[1]}, tile=1)
    engine = pl.Engine(graph, pl.Execute(cs))  # no half-built vertex makes this fail
    engine.write_tensor(x, np.arange(4, dtype=np.float32))
    engine.run()
    assert engine.read_tensor(y[1]) == 2


def test_add_vertices_disagreeing_sizes(graph: pl.Graph) -> None:
    x, y = mapped(graph, "x", (4,)), mapped(graph, "y", (3,))
    cs = graph.add_compute_set("bulk")
    with pytest.raises(pl.FieldConnectionError, match=r"add_vertices\(Scale\) in compute set 'bulk'.*\[3, 4\]"):
        graph.add_vertices(cs, Scale, {"inp": x, "out": y}, 0)


# ================================================================================================
# Data races and writes to constants (compile time)


def test_element_written_by_two_vertices(graph: pl.Graph) -> None:
    x, v = mapped(graph, "x", (4,)), mapped(graph, "v", (4,))
    cs = graph.add_compute_set("racy")
    graph.add_vertex(cs, Scale, {"inp": x[0], "out": v[2]}, tile=0)
    graph.add_vertex(cs, Scale, {"inp": x[1], "out": v[1]}, tile=1)
    graph.add_vertex(cs, Scale, {"inp": x[3], "out": v[2]}, tile=3)
    with pytest.raises(pl.DataRaceError, match=r"element v\[2\] is written by Scale vertex #\d field 'out' .* and by "
                                               r"Scale vertex #\d field 'out' .* in the same compute set 'racy'") as e:
        pl.Engine(graph, pl.Execute(cs))
    # both writers are named, in either order; the innocent vertex #1 is not
    assert "Scale vertex #0 field 'out' (tile 0)" in message(e)
    assert "Scale vertex #2 field 'out' (tile 3)" in message(e)
    assert "#1" not in message(e)


def test_element_written_and_read_by_different_vertices(graph: pl.Graph) -> None:
    v, y = mapped(graph, "v", (4,)), mapped(graph, "y", (1,))
    cs = graph.add_compute_set("read_write")
    graph.add_vertex(cs, Sum, {"inp": v[1:3], "out": y[0]}, tile=1)
    graph.add_vertex(cs, Fill, {"out": v[2:]}, tile=2)
    with pytest.raises(pl.DataRaceError, match=r"element v\[2\] is written by Fill vertex #1 field 'out' \(tile 2\) "
                                               r"and read by Sum vertex #0 field 'inp' \(tile 1\) in the same "
                                               r"compute set 'read_write'"):
        pl.Engine(graph, pl.Execute(cs))


def test_output_connected_to_broadcast_view(graph: pl.Graph) -> None:
    v = mapped(graph, "v", (4,))
    cs = graph.add_compute_set("twice")
    graph.add_vertex(cs, Fill, {"out": v[2:3].broadcast(3, 0)}, tile=0)  # add_vertex accepts it...
    with pytest.raises(pl.DataRaceError, match=r"Fill vertex #0 field 'out' \(tile 0\) in compute set 'twice' "
                                               r"writes element v\[2\] twice"):
        pl.Engine(graph, pl.Execute(cs))  # ...compilation refuses it


def test_own_read_and_write_is_not_a_race(graph: pl.Graph) -> None:
    v = mapped(graph, "v", (4,))
    cs = graph.add_compute_set("inc")
    graph.add_vertices(cs, Increment, {"x": v}, np.array([3, 2, 1, 0]))
    engine = pl.Engine(graph, pl.Repeat(2, pl.Execute(cs)))
    engine.write_tensor(v, np.arange(4, dtype=np.float32))
    engine.run()
    np.testing.assert_array_equal(engine.read_tensor(v), np.arange(4) + 2)


def test_races_in_different_compute_sets_are_fine(graph: pl.Graph) -> None:
    x, v = mapped(graph, "x", (2,)), mapped(graph, "v", (1,))
    a, b = graph.add_compute_set("a"), graph.add_compute_set("b")
    graph.add_vertex(a, Scale, {"inp": x[0], "out": v[0]}, tile=0)
    graph.add_vertex(b, Scale, {"inp": v[0], "out": x[1]}, tile=1)
    pl.Engine(graph, pl.Sequence([pl.Execute(a), pl.Execute(b)]))


def test_vertex_writes_a_constant(graph: pl.Graph) -> None:
    x = mapped(graph, "x", (1,))
    c = graph.add_constant(pl.FLOAT, (3,), [1.0, 2.0, 3.0], "coeffs")
    map_evenly(graph, c)
    cs = graph.add_compute_set("bad_write")
    graph.add_vertex(cs, Scale, {"inp": x[0], "out": c[1]}, tile=2)
    with pytest.raises(pl.FieldConnectionError, match=r"Scale vertex #0 field 'out' \(tile 2\) in compute set "
                                                      r"'bad_write' writes constant element coeffs\[1\]"):
        pl.Engine(graph, pl.Execute(cs))


def test_copy_into_a_constant(graph: pl.Graph) -> None:
    x = mapped(graph, "x", (3,))
    c = graph.add_constant(pl.FLOAT, (3,), 0.5, "half")
    map_evenly(graph, c)
    with pytest.raises(pl.FieldConnectionError, match=r"Copy into 'half\[::-1\]' writes constant element half\[2\]"):
        pl.Engine(graph, pl.Copy(x, c[::-1]))
    pl.Engine(graph, pl.Copy(c, x))  # reading a constant is fine


def test_copy_into_repeated_elements(graph: pl.Graph) -> None:
    x, v = mapped(graph, "x", (3,)), mapped(graph, "v", (2,))
    with pytest.raises(pl.DataRaceError, match=r"Copy into 'v\[1:2\]\.broadcast\(3, 0\)' writes element v\[1\] "
                                               r"more than once"):
        pl.Engine(graph, pl.Copy(x, v[1:2].broadcast(3, 0)))


def test_add_constant_bad_value(graph: pl.Graph) -> None:
    with pytest.raises(pl.TensorError, match=r"constant 'k': value has shape \(2,\).*\(3,\)"):
        graph.add_constant(pl.FLOAT, (3,), [1.0, 2.0], "k")
    with pytest.raises(pl.DTypeError, match=r"constant 'k'.*float64 is not supported"):
        graph.add_constant(np.float64, (3,), 1.0, "k")


# ================================================================================================
# Programs


def test_copy_shape_mismatch_no_broadcasting(graph: pl.Graph) -> None:
    x, m = mapped(graph, "x", (4,)), mapped(graph, "m", (4, 4))
    with pytest.raises(pl.ProgramError, match=r"Copy: source 'x' has shape \(4,\) but destination 'm' has shape "
                                              r"\(4, 4\); shapes must match exactly"):
        pl.Copy(x, m)
    with pytest.raises(pl.ProgramError, match=r"source 'x\[0\]' has shape \(\).*'m\[1\]' has shape \(4,\)"):
        pl.Copy(x[0], m[1])
    with pytest.raises(pl.ProgramError, match=r"'m\.transpose\(\)\[0:2\]' has shape \(2, 4\)"):
        pl.Copy(x.reshape(1, 4), m.T[0:2])


def test_copy_dtype_mismatch(graph: pl.Graph) -> None:
    x, n = mapped(graph, "x", (4,)), mapped(graph, "n", (4,), pl.INT)
    with pytest.raises(pl.DTypeError, match=r"Copy: source 'x' is float but destination 'n' is int"):
        pl.Copy(x, n)


def test_copy_bad_ends(graph: pl.Graph) -> None:
    x = mapped(graph, "x", (4,))
    other = pl.Graph(graph.target)
    y = other.add_variable(pl.FLOAT, (4,), "y")
    with pytest.raises(pl.ProgramError, match=r"'x' and 'y' belong to different graphs"):
        pl.Copy(x, y)
    with pytest.raises(pl.ProgramError, match=r"Copy destination: expected a tensor or a stream"):
        pl.Copy(x, np.zeros(4))


@pytest.mark.parametrize("make", [
    lambda p, body: pl.If(p, body),
    lambda p, body: pl.RepeatWhileTrue(pl.Sequence(), p, body),
])
def test_predicate_must_be_one_element(graph: pl.Graph, make) -> None:
    flags = mapped(graph, "flags", (2,), pl.BOOL)
    body = pl.Sequence()
    with pytest.raises(pl.ProgramError, match=r"predicate 'flags' must have exactly one element, got shape \(2,\)"):
        make(flags, body)
    with pytest.raises(pl.ProgramError, match=r"predicate must be a tensor"):
        make(True, body)
    make(flags[1], body)
    make(flags[0:1].reshape(1, 1), body)


def test_program_type_errors() -> None:
    with pytest.raises(pl.ProgramError, match=r"Sequence: expected a program"):
        pl.Sequence([pl.Sequence(), "step"])
    with pytest.raises(pl.ProgramError, match=r"Repeat: count must be a non-negative int, got -1"):
        pl.Repeat(-1, pl.Sequence())
    with pytest.raises(pl.ProgramError, match=r"Execute needs a compute set"):
        pl.Execute("cs")


def test_program_of_another_graph(graph: pl.Graph) -> None:
    other = pl.Graph(graph.target)
    cs = other.add_compute_set("elsewhere")
    with pytest.raises(pl.ProgramError, match=r"compute set 'elsewhere' belongs to another graph"):
        pl.Engine(graph, pl.Execute(cs))


# ================================================================================================
# Host streams


def test_stream_copy_wrong_direction(graph: pl.Graph) -> None:
    x = mapped(graph, "x", (4,))
    inp = graph.add_host_to_device_fifo("images", pl.FLOAT, 4)
    out = graph.add_device_to_host_fifo("results", pl.FLOAT, 4)
    with pytest.raises(pl.StreamError, match=r"stream 'images' is host-to-device: use Copy\(stream, tensor\)"):
        pl.Copy(x, inp)
    with pytest.raises(pl.StreamError, match=r"stream 'results' is device-to-host: use Copy\(tensor, stream\)"):
        pl.Copy(out, x)
    with pytest.raises(pl.ProgramError, match=r"stream to a stream"):
        pl.Copy(inp, out)


def test_stream_copy_wrong_count_and_dtype(graph: pl.Graph) -> None:
    x, n = mapped(graph, "x", (4,)), mapped(graph, "n", (4,), pl.INT)
    inp = graph.add_host_to_device_fifo("images", pl.FLOAT, 3)
    with pytest.raises(pl.StreamError, match=r"stream 'images' moves 3 elements per copy but tensor 'x' has 4"):
        pl.Copy(inp, x)
    with pytest.raises(pl.DTypeError, match=r"stream 'images' carries float but tensor 'n\[1:\]' is int"):
        pl.Copy(inp, n[1:])
    pl.Copy(inp, x[1:])


def test_stream_declaration_errors(graph: pl.Graph) -> None:
    graph.add_host_to_device_fifo("images", pl.FLOAT, 3)
    with pytest.raises(pl.StreamError, match=r"'images' already exists"):
        graph.add_device_to_host_fifo("images", pl.FLOAT, 3)
    with pytest.raises(pl.StreamError, match=r"stream 'empty': num_elements must be >= 1, got 0"):
        graph.add_host_to_device_fifo("empty", pl.FLOAT, 0)
    with pytest.raises(pl.StreamError, match=r"needs a name"):
        graph.add_host_to_device_fifo("", pl.FLOAT, 1)
    with pytest.raises(pl.DTypeError, match=r"stream 'wide'.*float64"):
        graph.add_host_to_device_fifo("wide", np.float64, 1)


@pytest.fixture
def stream_engine(graph: pl.Graph) -> pl.Engine:
    x = mapped(graph, "x", (4,))
    inp = graph.add_host_to_device_fifo("images", pl.FLOAT, 4)
    out = graph.add_device_to_host_fifo("results", pl.FLOAT, 2)
    return pl.Engine(graph, pl.Sequence([pl.Copy(inp, x), pl.Copy(x[::2], out)]))


def test_connect_stream_errors(stream_engine: pl.Engine) -> None:
    e = stream_engine
    with pytest.raises(pl.StreamError, match=r"connect_stream\('images'\): the stream carries float but the buffer "
                                             r"is float64"):
        e.connect_stream("images", np.zeros(4))
    with pytest.raises(pl.StreamError, match=r"connect_stream\('images'\): the buffer has 6 elements, expected a "
                                             r"positive multiple of the 4"):
        e.connect_stream("images", np.zeros(6, dtype=np.float32))
    with pytest.raises(pl.StreamError, match=r"connect_stream\('results'\).*0 elements.*multiple of the 2"):
        e.connect_stream("results", np.zeros(0, dtype=np.float32))
    with pytest.raises(pl.StreamError, match=r"no stream called 'labels'.*images, results"):
        e.connect_stream("labels", np.zeros(4, dtype=np.float32))
    with pytest.raises(pl.StreamError, match=r"'images'.*must be a numpy array, got list"):
        e.connect_stream("images", [0.0] * 4)
    readonly = np.zeros(2, dtype=np.float32)
    readonly.flags.writeable = False
    with pytest.raises(pl.StreamError, match=r"'results'.*read-only"):
        e.connect_stream("results", readonly)


def test_unconnected_stream_at_run(stream_engine: pl.Engine) -> None:
    e = stream_engine
    with pytest.raises(pl.StreamError, match=r"stream 'images'.*not connected.*connect_stream\('images'"):
        e.run()
    e.connect_stream("images", np.arange(8, dtype=np.float32))
    with pytest.raises(pl.StreamError, match=r"stream 'results'.*not connected"):
        e.run()
    results = np.zeros(4, dtype=np.float32)
    e.connect_stream("results", results)
    e.run()
    e.run()
    np.testing.assert_array_equal(results, [0, 2, 4, 6])


# ================================================================================================
# Host reads and writes


def test_write_tensor_wrong_shape(graph: pl.Graph) -> None:
    m = mapped(graph, "m", (2, 3))
    engine = pl.Engine(graph, pl.Sequence())
    with pytest.raises(pl.TensorError, match=r"write_tensor\('m'\): values have shape \(3,\) but the tensor has shape "
                                             r"\(2, 3\); no broadcasting"):
        engine.write_tensor(m, np.zeros(3, dtype=np.float32))
    with pytest.raises(pl.TensorError, match=r"write_tensor\('m\[0\]'\): values have shape \(\)"):
        engine.write_tensor(m[0], 1.0)
    with pytest.raises(pl.TensorError, match=r"values have shape \(3, 2\)"):
        engine.write_tensor(m, np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(pl.TensorError, match=r"write_tensor\('m'\): cannot write complex64 values into a float tensor"):
        engine.write_tensor(m, np.zeros((2, 3), dtype=np.complex64))


def test_write_tensor_to_repeated_elements(graph: pl.Graph) -> None:
    m = mapped(graph, "m", (2, 3))
    engine = pl.Engine(graph, pl.Sequence())
    with pytest.raises(pl.TensorError, match=r"write_tensor\('m\[0\]\.broadcast\(2, 0\)'\): the view repeats elements"):
        engine.write_tensor(m[0].broadcast(2, 0), np.zeros(6, dtype=np.float32))
    with pytest.raises(pl.TensorError, match=r"repeats elements"):
        engine.write_tensor(pl.concat([m[1], m[1, ::-1]]), np.zeros(6, dtype=np.float32))
    np.testing.assert_array_equal(engine.read_tensor(m[0].broadcast(2, 0)), np.zeros(6))  # reading is fine


def test_write_tensor_to_a_constant(graph: pl.Graph) -> None:
    c = graph.add_constant(pl.FLOAT, (3,), 1.0, "k")
    map_evenly(graph, c)
    engine = pl.Engine(graph, pl.Sequence())
    with pytest.raises(pl.GraphError, match=r"'k'.*constant"):
        engine.write_tensor(c[1:], np.zeros(2, dtype=np.float32))
    np.testing.assert_array_equal(engine.read_tensor(c), [1, 1, 1])


def test_write_tensor_wrong_dtype(graph: pl.Graph) -> None:
    n = mapped(graph, "n", (3,), pl.INT)
    engine = pl.Engine(graph, pl.Sequence())
    with pytest.raises(pl.TensorError, match=r"write_tensor\('n'\): cannot write float64 values into a int tensor"):
        engine.write_tensor(n, np.zeros(3))


def test_host_io_of_foreign_tensor(graph: pl.Graph) -> None:
    mapped(graph, "m", (2,))
    engine = pl.Engine(graph, pl.Sequence())
    other = pl.Graph(graph.target)
    z = other.add_variable(pl.FLOAT, (2,), "z")
    with pytest.raises(pl.TensorError, match=r"read_tensor: tensor 'z' belongs to a different graph"):
        engine.read_tensor(z)
    with pytest.raises(pl.TensorError, match=r"write_tensor needs a tensor or a variable name, got ndarray"):
        engine.write_tensor(np.zeros(2), np.zeros(2))


# ================================================================================================
# Bad views


def test_bad_views(graph: pl.Graph) -> None:
    m = graph.add_variable(pl.FLOAT, (4, 6), "m")
    c = graph.add_variable(pl.FLOAT, (2, 3, 4), "c")
    with pytest.raises(pl.TensorError, match=r"tensor 'm': cannot reshape \(4, 6\) \(24 elements\) into \(5, 5\)"):
        m.reshape(5, 5)
    with pytest.raises(pl.TensorError, match=r"'m\[1:3\]': cannot reshape .*\(12 elements\) into \(24,\)"):
        m[1:3].reshape(24)
    with pytest.raises(pl.TensorError, match=r"tensor 'c': transpose needs a 2-D tensor, got shape \(2, 3, 4\); "
                                             r"use dim_shuffle"):
        c.transpose()
    with pytest.raises(pl.TensorError, match=r"tensor 'm': slice \[2, 7\) of dimension 1 is outside 0\.\.6"):
        m.slice(2, 7, 1)
    with pytest.raises(pl.TensorError, match=r"'m': slice \[3, 2\) of dimension 0"):
        m.slice(3, 2)
    with pytest.raises(pl.TensorError, match=r"tensor 'm': slice \[0, 5\) of dimension 0 is outside 0\.\.4"):
        m.slice([0, 0], [5, 6])
    with pytest.raises(pl.TensorError, match=r"'m': slice bounds"):
        m.slice([0, 0], [1])
    with pytest.raises(pl.TensorError, match=r"tensor 'm' of rank 2 has no dimension 2"):
        m.slice(0, 1, 2)
    with pytest.raises(pl.TensorError, match=r"tensor 'c': dim_shuffle needs a permutation of 0\.\.2, got \[0, 1, 1\]"):
        c.dim_shuffle([0, 1, 1])
    with pytest.raises(pl.TensorError, match=r"dim_shuffle needs a permutation of 0\.\.2, got \[1, 0\]"):
        c.dim_shuffle([1, 0])
    with pytest.raises(pl.TensorError, match=r"tensor 'm' of shape \(4, 6\): bad index \(4, 0\)"):
        m[4, 0]
    with pytest.raises(pl.TensorError, match=r"'m' of shape \(4, 6\): bad index"):
        m[0, 0, 0]
    with pytest.raises(pl.TensorError, match=r"'m\[0\]' of shape \(6,\): bad index -7"):
        m[0][-7]
    with pytest.raises(pl.TensorError, match=r"tensor 'm' of rank 2 has no dimension -3"):
        m.reverse(-3)
    with pytest.raises(pl.TensorError, match=r"'m': dimensions \[1\] of shape \(4, 6\) are not size 1"):
        m.squeeze([1])
    with pytest.raises(pl.TensorError, match=r"'m': sub_sample stride must be >= 1, got 0"):
        m.sub_sample(0, 1)
    with pytest.raises(pl.TensorError, match=r"'m': broadcast count must be >= 1, got 0"):
        m.broadcast(0, 0)
    with pytest.raises(pl.TensorError, match=r"'m': cannot insert a dimension at 4"):
        m.expand([4])
    with pytest.raises(pl.TensorError, match=r"tensor 'm\[0, 0\]' is a scalar and has no length"):
        len(m[0, 0])
    assert issubclass(pl.TensorError, IndexError)


def test_bad_view_arguments_are_not_truncated_or_guessed(graph: pl.Graph) -> None:
    """Non-integers and impossible shapes get a TensorError, never a silent fix.  One -1 in a
    reshape asks explicitly for that dimension to be inferred, as in numpy."""
    m = graph.add_variable(pl.FLOAT, (4, 6), "m")
    s = graph.add_variable(pl.FLOAT, (3, 1, 4, 1), "s")
    assert m.reshape(-1, 4).shape == (6, 4)
    with pytest.raises(pl.TensorError, match=r"'m': cannot reshape \(4, 6\) \(24 elements\) into \(-1, 5\)"):
        m.reshape(-1, 5)
    with pytest.raises(pl.TensorError, match=r"'m': cannot reshape .* into \(-1, -1, 24\)"):
        m.reshape(-1, -1, 24)
    with pytest.raises(pl.TensorError, match=r"'m': cannot reshape .* into \(-4, -6\)"):
        m.reshape(-4, -6)  # the element count matches, the shape is still wrong
    with pytest.raises(pl.TensorError, match=r"'m': reshape: expected an int, got 2\.5"):
        m.reshape(2.5, 9.6)
    with pytest.raises(pl.TensorError, match=r"'s': squeeze names a dimension twice: \[1, -3\]"):
        s.squeeze([1, -3])
    with pytest.raises(pl.TensorError, match=r"'m': slice: expected an int, got 0\.5"):
        m.slice(0.5, 2, 0)
    with pytest.raises(pl.TensorError, match=r"'m': slice: expected an int, got 1\.5"):
        m.slice([0, 0], [1.5, 2])
    with pytest.raises(pl.TensorError, match=r"'m': slice: give begin and end both as ints or both as sequences"):
        m.slice([0, 0], 2)
    with pytest.raises(pl.TensorError, match=r"'m': broadcast count: expected an int, got 2\.0"):
        m.broadcast(2.0, 0)
    with pytest.raises(pl.TensorError, match=r"'m': sub_sample stride: expected an int, got 1\.5"):
        m.sub_sample(1.5, 0)
    with pytest.raises(pl.TensorError, match=r"variable 'q': shape \(2\.5,\) is not a sequence of ints"):
        graph.add_variable(pl.FLOAT, (2.5,), "q")
    assert m.reshape(np.int64(6), np.int32(4)).shape == (6, 4)
    assert m.slice(np.int64(1), np.int64(3), 1).shape == (4, 2)
    assert issubclass(pl.TensorError, IndexError)


def test_bad_concat(graph: pl.Graph) -> None:
    m = graph.add_variable(pl.FLOAT, (4, 6), "m")
    n = graph.add_variable(pl.INT, (4, 6), "n")
    with pytest.raises(pl.DTypeError, match=r"concat: tensor 'n' is int but 'm' is float"):
        pl.concat([m, n])
    with pytest.raises(pl.TensorError, match=r"concat along 1: shape \(3, 6\) of 'm\[1:\]' does not match \(4, 6\) "
                                             r"of 'm' outside dimension 1"):
        pl.concat([m, m[1:]], 1)
    with pytest.raises(pl.TensorError, match=r"concat: tensor 'm\[0\]' has rank 1, 'm' has rank 2"):
        pl.concat([m, m[0]])
    with pytest.raises(pl.TensorError, match=r"concat needs at least one tensor"):
        pl.concat([])
    with pytest.raises(pl.TensorError, match=r"(?s)concat: array\(.*is not a tensor"):
        pl.concat([m, np.zeros((4, 6))])
    with pytest.raises(pl.TensorError, match=r"'m' of rank 2 has no dimension 2"):
        pl.concat([m, m], 2)
    with pytest.raises(pl.TensorError, match=r"concat: array\(\[0\., 0\.\]\) is not a tensor"):  # first item too
        pl.concat([np.zeros(2), m[0]])
    with pytest.raises(pl.TensorError, match=r"concat: \[1, 2\] is not a tensor"):
        pl.concat([[1, 2]])
    other = pl.Graph(graph.target).add_variable(pl.FLOAT, (4, 6), "elsewhere")
    with pytest.raises(pl.TensorError, match=r"'m' and 'elsewhere' belong to different graphs"):
        pl.concat([m, other])


def test_bad_variable_declarations(graph: pl.Graph) -> None:
    with pytest.raises(pl.DTypeError, match=r"variable 'w'.*float64 is not supported"):
        graph.add_variable(np.float64, (2,), "w")
    with pytest.raises(pl.DTypeError, match=r"variable 'w': 'floaty' is not an element type"):
        graph.add_variable("floaty", (2,), "w")
    with pytest.raises(pl.TensorError, match=r"variable 'w': shape \(2, -1\) has a negative dimension"):
        graph.add_variable(pl.FLOAT, (2, -1), "w")
    with pytest.raises(pl.TensorError, match=r"no variable called 'nope'"):
        graph.tensor("nope")


# ================================================================================================
# Engine construction and running


def test_engine_without_programs(graph: pl.Graph) -> None:
    mapped(graph, "x", (2,))
    with pytest.raises(pl.EngineError, match=r"Engine\(graph, programs\): give the program"):
        pl.Engine(graph)
    with pytest.raises(pl.ProgramError, match=r"at least one program"):
        pl.Engine(graph, [])
    with pytest.raises(pl.EngineError, match=r"Engine needs a pl.Graph or a pl.Executable, got str"):
        pl.Engine("graph", pl.Sequence())
    with pytest.raises(pl.EngineError, match=r"unknown backend 'gpu'"):
        pl.Engine(graph, pl.Sequence(), backend="gpu")


def test_run_program_out_of_range(graph: pl.Graph) -> None:
    mapped(graph, "x", (2,))
    engine = pl.Engine(graph, pl.Sequence())
    with pytest.raises(pl.EngineError, match=r"run\(5\): the engine has 1 program\(s\) \(0\.\.0\)"):
        engine.run(5)
    with pytest.raises(pl.EngineError, match=r"run\(-1\)"):
        engine.run(-1)
    engine.run(0)


@pytest.mark.parametrize("split", [False, True], ids=["one call", "split over threads"])
def test_codelet_raising_on_one_tile_names_codelet_compute_set_and_tile(graph: pl.Graph, split: bool,
                                                                        monkeypatch) -> None:
    if split:  # the batch is cut into blocks that run side by side; the error still names tile 2
        from poplar_like.engine import local
        monkeypatch.setattr(local, "PARALLEL_MIN", 1)
        monkeypatch.setenv("POPLAR_LIKE_THREADS", "2")
    x = graph.add_variable(pl.FLOAT, (4, 3), "x")
    y = graph.add_variable(pl.FLOAT, (4,), "y")
    for i in range(4):
        graph.set_tile_mapping(x[i], i)
        graph.set_tile_mapping(y[i], i)
    cs = graph.add_compute_set("roots")
    graph.add_vertices(cs, SqrtOfNonNegative, {"inp": x, "out": y}, np.arange(4))
    engine = pl.Engine(graph, pl.Execute(cs))
    values = np.ones((4, 3), dtype=np.float32)
    engine.write_tensor(x, values)
    engine.run()
    np.testing.assert_allclose(engine.read_tensor(y), [3, 3, 3, 3])
    values[2, 1] = -1  # only tile 2's input is negative
    engine.write_tensor(x, values)
    with pytest.raises(pl.CodeletError, match=r"codelet SqrtOfNonNegative raised ValueError: negative input "
                                              r"\(compute set 'roots', tile 2\)") as excinfo:
        engine.run()
    assert isinstance(excinfo.value, pl.EngineError)
    assert isinstance(excinfo.value.__cause__, ValueError)


def test_codelet_writing_an_input_fails_loudly(graph: pl.Graph) -> None:
    x, y = mapped(graph, "x", (1,)), mapped(graph, "y", (1,))
    cs = graph.add_compute_set("sneaky")
    graph.add_vertex(cs, WritesInput, {"inp": x[0], "out": y[0]}, tile=0)
    engine = pl.Engine(graph, pl.Execute(cs))
    with pytest.raises(pl.CodeletError, match=r"codelet WritesInput raised ValueError: .*read-only.*"
                                              r"\(compute set 'sneaky', tile 0\)"):
        engine.run()


# ================================================================================================
# Codelet declarations (class definition time)


def test_compute_taking_self_is_refused() -> None:
    with pytest.raises(TypeError, match=r"codelet Bad: compute takes the field arrays, not self"):
        class Bad(pl.Vertex):
            inp = pl.Input(pl.FLOAT)

            def compute(self, inp):
                pass


def test_compute_naming_a_non_field_is_refused() -> None:
    with pytest.raises(TypeError, match=r"codelet Bad: compute parameters must be its fields \['inp', 'out'\]; "
                                        r"missing \['out'\], unknown \['result'\]"):
        class Bad(pl.Vertex):
            inp = pl.Input(pl.FLOAT)
            out = pl.Output(pl.FLOAT)

            def compute(inp, result):
                pass


def test_cycles_with_unknown_parameter_is_refused() -> None:
    with pytest.raises(TypeError, match=r"codelet Bad: cycles takes field sizes and state values \(and target\) \['inp_length', 'target'\]; "
                                        r"unknown parameters \['out_length'\]"):
        class Bad(pl.Vertex):
            inp = pl.Input(pl.Vector(pl.FLOAT))
            out = pl.Output(pl.FLOAT)

            def compute(inp, out):
                pass

            def cycles(out_length):
                return 1


def test_bad_field_declarations() -> None:
    with pytest.raises(TypeError, match=r"vertex state fields are scalars"):
        pl.State(pl.Vector(pl.FLOAT))
    with pytest.raises(pl.DTypeError, match=r"Vector element type.*float64"):
        pl.Vector(np.float64)
    with pytest.raises(TypeError, match=r"code_size"):
        class Big(pl.Vertex):
            out = pl.Output(pl.FLOAT)
            code_size = -1

            def compute(out):
                pass


# ================================================================================================
# Targets


def test_unknown_ipu_version() -> None:
    with pytest.raises(pl.GraphError, match=r"unknown version 'ipu9'; expected one of .*ipu2"):
        pl.IPUModel("ipu9").create_device()


def test_bad_target_knobs() -> None:
    with pytest.raises(pl.GraphError, match=r"tiles_per_ipu must be positive, got 0"):
        pl.IPUModel("ipu2", tiles_per_ipu=0).create_device()
    with pytest.raises(pl.GraphError, match=r"Graph needs a Target or Device"):
        pl.Graph("ipu2")


# ------------------------------------------------------------------------------------------------
# Graphs that keep no edges (the default on MPI ranks other than 0).

def _bulk_graph(**graph_options: object) -> tuple[pl.Graph, pl.Sequence]:
    graph = pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=4).create_device(), **graph_options)
    a = graph.add_variable(pl.FLOAT, (8, 3), "a")
    b = graph.add_variable(pl.FLOAT, (8,), "b")
    map_evenly(graph, a)
    map_evenly(graph, b)
    cs = graph.add_compute_set("sums")
    graph.add_vertices(cs, Sum, {"inp": a, "out": b}, tiles=np.arange(8) % 4)
    return graph, pl.Sequence([pl.Execute(cs)])


def test_graph_without_edges_counts_and_checks_but_refuses_to_compile() -> None:
    kept, _ = _bulk_graph()
    bare, prog = _bulk_graph(keep_edges=False)
    assert bare.num_vertices() == kept.num_vertices() == 8
    assert bare.compute_sets[0].blocks[0].num_edges() == kept.compute_sets[0].blocks[0].num_edges()
    assert bare.compute_sets[0].blocks[0].edges["inp"].nbytes > 0  # shape kept...
    assert bare.compute_sets[0].blocks[0].edges["inp"].strides == (0, 0)  # ...but no memory
    with pytest.raises(pl.DTypeError, match="field 'inp'"):  # connections are still checked
        c = bare.add_variable(pl.HALF, (8, 3), "c")
        bare.add_vertices(bare.add_compute_set("bad"), Sum, {"inp": c, "out": bare.add_variable(pl.FLOAT, (8,))},
                          tiles=np.zeros(8, dtype=np.int32))
    with pytest.raises(pl.GraphError, match=r"compile_graph: .*keep_edges=False.*keep_edges=True"):
        pl.compile_graph(bare, prog)


def test_graph_keeps_edges_by_default_only_on_rank_0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("PMI_RANK", "2")
    assert not pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=4).create_device()).keep_edges
    assert pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=4).create_device(), keep_edges=True).keep_edges
    monkeypatch.setenv("PMI_RANK", "0")
    assert pl.Graph(pl.IPUModel("ipu2", tiles_per_ipu=4).create_device()).keep_edges


def test_launcher_environment_is_read_from_mpich_and_open_mpi(monkeypatch: pytest.MonkeyPatch) -> None:
    from poplar_like import launch

    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "MPI_LOCALNRANKS",
                 "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (launch.launched_by_mpi(), launch.launcher_rank(), launch.oversubscribed()) == (False, 0, False)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")  # a single rank is not an MPI job for us
    assert not launch.launched_by_mpi()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "64")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "5")
    assert (launch.launched_by_mpi(), launch.launcher_rank()) == (True, 5)
    assert launch.oversubscribed() == (64 > (os.cpu_count() or 1))
