"""Property test: random small graphs and programs against a plain numpy interpretation.

Each example builds a random graph on a 4-tile target: 1-3 float variables (rank 1 or 2, 1-12
elements a dimension) and a float constant, every element mapped to a random tile, an INT
``flags`` variable for ``If`` predicates, then a random program of 1-6 steps:

* an elementwise binary (add, sub, mul, max, min) or unary (relu, neg, abs) compute set: the
  output view's elements are split into random contiguous chunks, one vertex a chunk on a random
  tile; the inputs are the same chunks of input views, which may be views of other variables,
  of the constant, concatenations, or the output itself;
* a reduce compute set (``ReduceSum``): each vertex sums a random (possibly empty) chunk of an
  input view into one element of the output view;
* a ``Copy`` between random views of equal shape, within or across variables and tiles;
* a ``Repeat(k, ...)`` (k = 0..3) wrapping some steps, or an ``If`` on a host-set flag;
* a temporary: a new variable written by a unary compute set, used by a binary step or a Copy,
  then declared dead with ``WriteUndef`` (the compiler may share its memory with other
  temporaries, so wrong liveness would show up as wrong results).

Values are small integers stored as float32, and the reference applies the same float32 numpy
operations in the same order, so results must agree exactly.  The generator does not avoid data
races: it predicts them (an element written twice in one compute set, or written by one vertex
and read by another; a Copy destination that repeats elements) and the engine must raise
DataRaceError exactly when a reachable step has one, naming the first such step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import codelets
import poplar_like as pl
from helpers import check_memory_report, small_graph

F32 = np.float32
BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "max": np.maximum, "min": np.minimum}
UNARY = {"relu": lambda x: np.maximum(x, F32(0)), "neg": np.negative, "abs": np.abs}
NUM_FLAGS = 4


# ============================================================================ the generator

@dataclass
class RefVertex:
    """One vertex of a reference compute set: element ids written and read, in field order."""

    out: np.ndarray
    ins: list[np.ndarray]


@dataclass
class Step:
    kind: str  # binary | unary | reduce | copy | repeat | if | undef
    name: str = ""
    op: str = ""
    vertices: list[RefVertex] = field(default_factory=list)
    src: np.ndarray | None = None
    dst: np.ndarray | None = None
    count: int = 0
    flag: int = -1
    body: list["Step"] = field(default_factory=list)
    other: list["Step"] = field(default_factory=list)
    racy: bool = False


class Builder:
    """Draws a random graph and program, keeping a reference description of every step."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
        self.graph = small_graph()
        self.num_tiles = self.graph.target.num_tiles
        self.variables: list[pl.Tensor] = []  # writable, host-visible float variables
        self.sources: list[pl.Tensor] = []  # readable float tensors: variables and the constant
        self.temps: list[pl.Tensor] = []
        self.names = 0
        self.racy_names: list[tuple[str, str]] = []  # (kind, name) of reachable racy steps
        for v in range(self.draw(st.integers(1, 3), "variables")):
            self.variables.append(self.new_variable(f"v{v}"))
        value = self.rng.integers(-3, 4, size=self.random_shape()).astype(F32)
        const = self.graph.add_constant(pl.FLOAT, value.shape, value, "k")
        self.map_randomly(const)
        self.sources = self.variables + [const]
        self.flags = self.graph.add_variable(pl.INT, (NUM_FLAGS,), "flags")
        self.map_randomly(self.flags)

    # ---- drawing helpers
    def draw(self, strategy: st.SearchStrategy, label: str):
        return self.data.draw(strategy, label=label)

    def random_shape(self) -> tuple[int, ...]:
        rank = self.draw(st.integers(1, 2), "rank")
        return tuple(self.draw(st.integers(1, 12), "dim") for _ in range(rank))

    def map_randomly(self, tensor: pl.Tensor) -> None:
        self.graph.set_tile_mapping(tensor, self.rng.integers(0, self.num_tiles, size=tensor.shape).astype(np.int32))

    def new_variable(self, name: str, shape: tuple[int, ...] | None = None) -> pl.Tensor:
        t = self.graph.add_variable(pl.FLOAT, shape or self.random_shape(), name)
        self.map_randomly(t)
        return t

    def fresh(self, kind: str) -> str:
        self.names += 1
        return f"{kind}{self.names}"

    def tile(self) -> int:
        return int(self.rng.integers(0, self.num_tiles))

    # ---- views
    def simple_view(self, tensor: pl.Tensor, n: int) -> pl.Tensor:
        """A 1-D view of ``n`` distinct elements of ``tensor`` (which has at least ``n``)."""
        options = [tensor.flatten(), tensor.flatten().reverse(0)]
        if tensor.rank == 2:
            options += [tensor.transpose().flatten(), tensor[::-1].flatten(), tensor[:, ::-1].transpose().flatten()]
            options += [tensor[i] for i in range(tensor.shape[0])] + [tensor[:, j] for j in range(tensor.shape[1])]
        options += [tensor.flatten()[start::stride] for stride in (2, 3) for start in range(stride)]
        options = [o for o in options if o.numel >= n]
        view = options[self.draw(st.integers(0, len(options) - 1), "view")]
        lo = self.draw(st.integers(0, view.numel - n), "window")
        return view[lo:lo + n]

    def view(self, pool: list[pl.Tensor], n: int, allow_concat: bool) -> pl.Tensor:
        """A 1-D view of length ``n`` from the tensors of ``pool``, maybe a concat of two views
        (of the same tensor or not: a concat may repeat elements)."""
        if n >= 2 and allow_concat and self.draw(st.integers(0, 4), "concat?") == 0:
            first = self.draw(st.integers(1, n - 1), "split")
            parts = [self.view(pool, k, False) for k in (first, n - first)]
            return pl.concat(parts)
        candidates = [t for t in pool if t.numel >= n]
        return self.simple_view(candidates[self.draw(st.integers(0, len(candidates) - 1), "tensor")], n)

    def output_view(self, allow_overlap: bool, max_n: int | None = None) -> tuple[pl.Tensor, pl.Tensor]:
        """(whole variable, 1-D view of it, or a concat that may repeat) to write to."""
        var = self.variables[self.draw(st.integers(0, len(self.variables) - 1), "out var")]
        top = var.numel if max_n is None else min(var.numel, max_n)
        n = self.draw(st.integers(1, top), "n")
        if allow_overlap:
            return var, self.view(self.variables, n, allow_concat=True)
        return var, self.simple_view(var, n)

    def input_view(self, out_var: pl.Tensor, out: pl.Tensor, n: int, allow_overlap: bool) -> pl.Tensor:
        """A 1-D input view of length ``n``: anything if overlaps are allowed, else the output view
        itself (in place) or a view of another tensor."""
        if allow_overlap:
            return self.view(self.sources, n, allow_concat=True)
        others = [t for t in self.sources if t is not out_var and t.numel >= n]
        if not others or self.draw(st.integers(0, 3), "in place?") == 0:
            return out
        return self.view(others, n, allow_concat=True)

    def chunks(self, n: int, max_parts: int, allow_empty: bool = False) -> list[tuple[int, int]]:
        """Contiguous chunks covering 0..n, ``parts`` of them, non-empty unless ``allow_empty``."""
        if allow_empty:
            parts = max_parts
            cuts = sorted(self.draw(st.integers(0, n), "cut") for _ in range(parts - 1))
        else:
            parts = self.draw(st.integers(1, max(1, min(n, max_parts))), "parts")
            cuts = sorted(self.rng.choice(np.arange(1, n), size=parts - 1, replace=False).tolist()) \
                if parts > 1 else []
        bounds = [0] + cuts + [n]
        return list(zip(bounds[:-1], bounds[1:], strict=True))

    # ---- steps
    def steps(self, count: int, depth: int, reachable: bool) -> tuple[list[Step], list[pl.Program]]:
        steps, programs = [], []
        for _ in range(count):
            step, program = self.step(depth, reachable)
            steps.append(step)
            programs.append(program)
        return steps, programs

    def step(self, depth: int, reachable: bool) -> tuple[Step, pl.Program]:
        kinds = ["binary", "unary", "reduce", "copy", "temp"] + (["repeat", "if"] if depth < 2 else [])
        kind = kinds[self.draw(st.integers(0, len(kinds) - 1), "kind")]
        if kind == "repeat":
            count = self.draw(st.integers(0, 3), "count")
            # a Repeat(0) body never runs but is compiled and checked all the same
            body, programs = self.steps(self.draw(st.integers(1, 3), "body"), depth + 1, reachable)
            return Step("repeat", count=count, body=body), pl.Repeat(count, pl.Sequence(programs))
        if kind == "if":
            flag = self.draw(st.integers(0, NUM_FLAGS - 1), "flag")
            then, then_p = self.steps(self.draw(st.integers(1, 2), "then"), depth + 1, reachable)
            other, other_p = self.steps(self.draw(st.integers(0, 2), "else"), depth + 1, reachable)
            pred = self.flags[flag]
            program = pl.If(pred, pl.Sequence(then_p), pl.Sequence(other_p)) if other_p else \
                pl.If(pred, pl.Sequence(then_p))
            return Step("if", flag=flag, body=then, other=other), program
        if kind == "temp":
            return self.temp_step(reachable)
        allow_overlap = self.draw(st.integers(0, 2), "overlap?") == 0
        if kind == "copy":
            return self.copy_step(allow_overlap, reachable)
        if kind == "reduce":
            return self.reduce_step(allow_overlap, reachable)
        return self.elementwise_step(kind, allow_overlap, reachable)

    def record(self, step: Step, reachable: bool) -> None:
        step.racy = predict_race(step)
        if step.racy and reachable:
            self.racy_names.append((step.kind, step.name))

    def elementwise_step(self, kind: str, allow_overlap: bool, reachable: bool,
                         out_var: pl.Tensor | None = None, out: pl.Tensor | None = None,
                         given: tuple[pl.Tensor, ...] = ()) -> tuple[Step, pl.Program]:
        ops = BINARY if kind == "binary" else UNARY
        op = sorted(ops)[self.draw(st.integers(0, len(ops) - 1), "op")]
        if out is None:
            out_var, out = self.output_view(allow_overlap)
        n = out.numel
        inputs = list(given)
        while len(inputs) < (2 if kind == "binary" else 1):
            inputs.append(self.input_view(out_var, out, n, allow_overlap))
        name = self.fresh(kind)
        codelet = codelets.binary(op, pl.FLOAT) if kind == "binary" else codelets.unary(op, pl.FLOAT)
        in_fields = ["a", "b"] if kind == "binary" else ["inp"]
        cs = self.graph.add_compute_set(name)
        step = Step(kind, name=name, op=op)
        for lo, hi in self.chunks(n, 5):
            fields = {"out": out[lo:hi], **{f: t[lo:hi] for f, t in zip(in_fields, inputs, strict=True)}}
            self.graph.add_vertex(cs, codelet, fields, tile=self.tile())
            step.vertices.append(RefVertex(out.flat_ids()[lo:hi], [t.flat_ids()[lo:hi] for t in inputs]))
        self.record(step, reachable)
        return step, pl.Execute(cs)

    def reduce_step(self, allow_overlap: bool, reachable: bool) -> tuple[Step, pl.Program]:
        out_var, out = self.output_view(allow_overlap, max_n=6)
        pool = self.sources if allow_overlap else [t for t in self.sources if t is not out_var]
        longest = max(t.numel for t in pool)
        length = self.draw(st.integers(0, longest), "length")
        inp = self.view(pool, length, allow_concat=True) if length else None
        name = self.fresh("reduce")
        cs = self.graph.add_compute_set(name)
        step = Step("reduce", name=name)
        codelet = codelets.ReduceSum[pl.FLOAT]
        for i, (lo, hi) in enumerate(self.chunks(length, out.numel, allow_empty=True)):
            chunk = inp[lo:hi] if inp is not None else out[0:0]
            self.graph.add_vertex(cs, codelet, {"inp": chunk, "out": out[i]}, tile=self.tile())
            step.vertices.append(RefVertex(out.flat_ids()[i:i + 1], [chunk.flat_ids()]))
        self.record(step, reachable)
        return step, pl.Execute(cs)

    def copy_step(self, allow_overlap: bool, reachable: bool, source: pl.Tensor | None = None
                  ) -> tuple[Step, pl.Program]:
        if source is None:
            _, dst = self.output_view(allow_overlap)
            src = self.view(self.sources, dst.numel, allow_concat=True)
        else:
            src = source.flatten()
            dst = self.view(self.variables, src.numel, allow_concat=allow_overlap) \
                if any(v.numel >= src.numel for v in self.variables) else None
            if dst is None:
                return Step("undef"), pl.Sequence()
        n = src.numel
        rows = [r for r in (2, 3) if n % r == 0]
        if rows and self.draw(st.booleans(), "2-D copy?"):  # the same copy between 2-D views
            r = rows[self.draw(st.integers(0, len(rows) - 1), "rows")]
            src, dst = src.reshape(r, n // r), dst.reshape(r, n // r)
        name = self.fresh("copy")
        step = Step("copy", name=name, src=src.flat_ids().copy(), dst=dst.flat_ids().copy())
        self.record(step, reachable)
        return step, pl.Copy(src, dst, name=name)

    def temp_step(self, reachable: bool) -> tuple[Step, pl.Program]:
        """tmp = unary(view) (maybe a second temporary too, live at the same time); then a binary
        step reading the temporaries or a Copy from tmp; then WriteUndef of the temporaries."""
        n = self.draw(st.integers(1, max(t.numel for t in self.sources)), "temp size")
        temps = []
        steps, programs = [], []
        for _ in range(1 + self.draw(st.booleans(), "two temporaries?")):
            shape = (n,) if n % 2 or self.draw(st.booleans(), "temp rank") else (2, n // 2)
            tmp = self.new_variable(self.fresh("tmp"), shape)
            self.temps.append(tmp)
            temps.append(tmp)
            source = self.view(self.sources, n, allow_concat=True)
            step, program = self.elementwise_step("unary", False, reachable, out_var=tmp, out=tmp.flatten(),
                                                  given=(source,))
            steps.append(step)
            programs.append(program)
        out_var, out = self.output_view(False)
        m = out.numel
        if m <= n and (len(temps) == 2 or self.draw(st.booleans(), "use by compute?")):
            step, program = self.elementwise_step("binary", False, reachable, out_var=out_var, out=out,
                                                  given=tuple(t.flatten()[:m] for t in temps))
        else:
            step, program = self.copy_step(False, reachable, source=temps[-1])
        steps.append(step)
        programs.append(program)
        for tmp in temps:
            undef_view = [tmp, tmp.flatten().reverse(0), tmp.transpose() if tmp.rank == 2 else tmp][
                self.draw(st.integers(0, 2), "undef view")]
            programs.append(pl.WriteUndef(undef_view))
        return Step("repeat", count=1, body=steps), pl.Sequence(programs)


def predict_race(step: Step) -> bool:
    """True if the step has a data race the compiler must refuse."""
    if step.kind == "copy":
        return np.unique(step.dst).size != step.dst.size
    if not step.vertices:
        return False
    writes = np.concatenate([v.out for v in step.vertices])
    if np.unique(writes).size != writes.size:
        return True
    writer = {int(e): i for i, v in enumerate(step.vertices) for e in v.out}
    for i, v in enumerate(step.vertices):
        for ids in v.ins:
            if any(writer.get(int(e), i) != i for e in ids):
                return True
    return False


# ============================================================================ the reference

def interpret(steps: list[Step], ref: np.ndarray, flags: np.ndarray, executions: dict[str, int]) -> None:
    """Run the steps on ``ref`` (float32 value of every element id), counting executions."""
    for step in steps:
        if step.kind == "repeat":
            for _ in range(step.count):
                interpret(step.body, ref, flags, executions)
        elif step.kind == "if":
            interpret(step.body if flags[step.flag] else step.other, ref, flags, executions)
        elif step.kind == "copy":
            ref[step.dst] = ref[step.src]
            executions[step.name] += 1
        elif step.kind in ("binary", "unary", "reduce"):
            # every vertex reads before any writes (a BSP superstep)
            results = []
            with np.errstate(all="ignore"):
                for v in step.vertices:
                    args = [ref[ids] for ids in v.ins]
                    if step.kind == "binary":
                        results.append(BINARY[step.op](*args))
                    elif step.kind == "unary":
                        results.append(UNARY[step.op](*args))
                    else:  # the codelet's summation: one row of a float32 (n, length) array
                        results.append(np.sum(args[0].reshape(1, -1), axis=1, dtype=F32))
            for v, r in zip(step.vertices, results, strict=True):
                ref[v.out] = r
            executions[step.name] += 1


def all_steps(steps: list[Step]):
    for step in steps:
        yield step
        yield from all_steps(step.body)
        yield from all_steps(step.other)


# ============================================================================ the property

# ~500 examples take about 8 s; PROPERTY_EXAMPLES=5000 for a longer hunt.
@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "500")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_programs_match_numpy(data):
    b = Builder(data)
    steps, programs = b.steps(data.draw(st.integers(1, 6), label="steps"), 0, True)
    program = pl.Sequence(programs)
    graph = b.graph

    event("data race expected" if b.racy_names else "runs")
    if b.racy_names:
        computes = [name for kind, name in b.racy_names if kind != "copy"]
        first = computes[0] if computes else None
        with pytest.raises(pl.DataRaceError) as info:
            pl.Engine(graph, program)
        if first is not None:
            assert repr(first) in str(info.value)
        else:
            assert "Copy into" in str(info.value)
        return

    engine = pl.Engine(graph, program)
    ref = np.zeros(graph.num_elements, dtype=F32)
    for info in graph.variables:
        ids = np.arange(info.base, info.base + info.size)
        if info.kind == "constant" and info.dtype == F32:
            ref[ids] = info.value.reshape(-1)
    for var in b.variables:
        value = b.rng.integers(-3, 4, size=var.shape).astype(F32)
        engine.write_tensor(var, value)
        ref[var.flat_ids()] = value.reshape(-1)
    flags = b.rng.integers(0, 2, size=NUM_FLAGS).astype(np.int32)
    engine.write_tensor("flags", flags)

    named = [s for s in all_steps(steps) if s.name]
    executions = {s.name: 0 for s in named}
    for run in range(2):  # a second run starts its loop counters afresh and reuses shared memory
        engine.run()
        interpret(steps, ref, flags, executions)
        for var in b.variables:
            np.testing.assert_array_equal(engine.read_tensor(var), ref[var.flat_ids()].reshape(var.shape),
                                          err_msg=f"variable {var.name} after run {run + 1}\n{program}")
        np.testing.assert_array_equal(engine.read_tensor(b.flags), flags)

    profile = engine.profile()
    counted = {row["name"]: row["executions"] for row in profile["steps"] if row["kind"] in ("compute", "copy")}
    for name, count in executions.items():
        assert counted.get(name, 0) == count, name
    check_memory_report(profile)

    # temporaries: never visible to the host; the host-visible variables never are temporaries
    temporaries = set(profile["memory"]["temporaries"])
    event(f"{len(temporaries)} temporaries")
    assert temporaries <= {t.name for t in b.temps}
    for t in b.temps:
        if t.name in temporaries:
            with pytest.raises(pl.TensorNotLiveError):
                engine.read_tensor(t)


def test_race_predictor_agrees_on_handmade_cases():
    """The generator's race predictor itself, on cases whose answer is known."""
    ids = [np.array(x) for x in ([0, 1], [2, 3], [1, 2])]
    assert not predict_race(Step("binary", vertices=[RefVertex(ids[0], [ids[0]]), RefVertex(ids[1], [ids[1]])]))
    assert predict_race(Step("binary", vertices=[RefVertex(ids[0], [ids[1]]), RefVertex(ids[1], [ids[1]])]))
    assert predict_race(Step("binary", vertices=[RefVertex(ids[0], []), RefVertex(ids[2], [])]))
    assert predict_race(Step("unary", vertices=[RefVertex(np.array([4, 4]), [])]))
    sums = [RefVertex(np.array([5]), [ids[0]]), RefVertex(np.array([6]), [ids[0]])]
    assert not predict_race(Step("reduce", vertices=sums))  # shared reads are fine
    assert predict_race(Step("copy", src=ids[0], dst=np.array([3, 3])))
    assert not predict_race(Step("copy", src=ids[0], dst=ids[0][::-1]))
