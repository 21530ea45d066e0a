"""Lowering: control program trees to a flat instruction list.

The engine runs a small bytecode, so control flow is plain data that can be saved, printed and
executed identically on every MPI rank.  Instructions are ``[op, a, b]`` int triples:

======================  =====================================================================
``EXECUTE  step``       superstep of a compute set (plan ``step``)
``COPY     step``       tensor-to-tensor copy (plan ``step``)
``STREAM_IN  step``     host stream to tensor
``STREAM_OUT step``     tensor to host stream
``PRINT    step``       print a tensor on the host
``UNDEF    step``       WriteUndef: no run-time effect, only liveness
``SET      counter n``  counter := n
``LOOP     counter pc`` counter -= 1; jump to pc if counter > 0
``JUMP     pc``         jump
``BRANCH   pred pc``    jump to pc if predicate ``pred`` is zero
``END``                 end of a program
======================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ProgramError
from ..graph import (ComputeSet, Copy, Execute, Graph, If, PrintTensor, Program, Repeat, RepeatWhileTrue,
                     Sequence, Tensor, WriteUndef)

EXECUTE, COPY, STREAM_IN, STREAM_OUT, PRINT, UNDEF, SET, LOOP, JUMP, BRANCH, END = range(11)
OP_NAMES = ["EXECUTE", "COPY", "STREAM_IN", "STREAM_OUT", "PRINT", "UNDEF", "SET", "LOOP", "JUMP", "BRANCH", "END"]
STEP_OPS = (EXECUTE, COPY, STREAM_IN, STREAM_OUT, PRINT, UNDEF)


@dataclass
class Lowered:
    """The bytecode of all programs plus the graph objects its operands refer to."""

    code: list[list[int]] = field(default_factory=list)
    entries: list[int] = field(default_factory=list)  # first instruction of each program
    compute_sets: list[ComputeSet] = field(default_factory=list)  # EXECUTE operand -> compute set
    copies: list[Copy] = field(default_factory=list)  # COPY/STREAM_IN/STREAM_OUT operand
    prints: list[PrintTensor] = field(default_factory=list)
    undefs: list[WriteUndef] = field(default_factory=list)
    predicates: list[Tensor] = field(default_factory=list)
    num_counters: int = 0

    def successors(self, pc: int) -> list[int]:
        op, a, b = self.code[pc]
        if op == END:
            return []
        if op == JUMP:
            return [a]
        if op in (LOOP, BRANCH):
            return [pc + 1, b]
        return [pc + 1]

    def text(self) -> str:
        lines = []
        for pc, (op, a, b) in enumerate(self.code):
            mark = f"program {self.entries.index(pc)}:" if pc in self.entries else ""
            lines.append(f"{mark:>12} {pc:5d} {OP_NAMES[op]:<10} {a:>6} {b:>6}")
        return "\n".join(lines)


def lower(graph: Graph, programs: list[Program]) -> Lowered:
    """Flatten program trees; each program ends with END.  Compute sets are deduplicated."""
    out = Lowered()
    cs_index: dict[int, int] = {}

    def emit(op: int, a: int = 0, b: int = 0) -> int:
        out.code.append([op, a, b])
        return len(out.code) - 1

    def check_graph(tensor: Tensor, who: str) -> None:
        if tensor.graph is not graph:
            raise ProgramError(f"{who}: tensor {tensor.name!r} belongs to another graph")

    def visit(p: Program) -> None:
        if isinstance(p, Sequence):
            for child in p.programs:
                visit(child)
        elif isinstance(p, Execute):
            if p.compute_set.graph is not graph:
                raise ProgramError(f"Execute: compute set {p.compute_set.name!r} belongs to another graph")
            key = id(p.compute_set)
            if key not in cs_index:
                cs_index[key] = len(out.compute_sets)
                out.compute_sets.append(p.compute_set)
            emit(EXECUTE, cs_index[key])
        elif isinstance(p, Copy):
            for end in (p.source, p.destination):
                if isinstance(end, Tensor):
                    check_graph(end, "Copy")
                elif graph.streams.get(end.name) is not end:
                    raise ProgramError(f"Copy: stream {end.name!r} was not created by this graph")
            out.copies.append(p)
            op = {"copy": COPY, "stream_in": STREAM_IN, "stream_out": STREAM_OUT}[p.kind]
            emit(op, len(out.copies) - 1)
        elif isinstance(p, PrintTensor):
            check_graph(p.tensor, "PrintTensor")
            out.prints.append(p)
            emit(PRINT, len(out.prints) - 1)
        elif isinstance(p, WriteUndef):
            check_graph(p.tensor, "WriteUndef")
            out.undefs.append(p)
            emit(UNDEF, len(out.undefs) - 1)
        elif isinstance(p, Repeat):
            if p.count == 0:  # never runs, but is compiled (and checked) like any other code
                skip = emit(JUMP, -1)
                visit(p.body)
                out.code[skip][1] = len(out.code)
                return
            counter = out.num_counters
            out.num_counters += 1
            emit(SET, counter, p.count)
            top = len(out.code)
            visit(p.body)
            emit(LOOP, counter, top)
        elif isinstance(p, RepeatWhileTrue):
            check_graph(p.predicate, "RepeatWhileTrue")
            out.predicates.append(p.predicate)
            pred = len(out.predicates) - 1
            top = len(out.code)
            visit(p.condition)
            branch = emit(BRANCH, pred, -1)
            visit(p.body)
            emit(JUMP, top)
            out.code[branch][2] = len(out.code)
        elif isinstance(p, If):
            check_graph(p.predicate, "If")
            out.predicates.append(p.predicate)
            branch = emit(BRANCH, len(out.predicates) - 1, -1)
            visit(p.then)
            jump = emit(JUMP, -1)
            out.code[branch][2] = len(out.code)
            visit(p.else_)
            out.code[jump][1] = len(out.code)
        else:
            raise ProgramError(f"unknown program type {type(p).__name__}")

    for i, program in enumerate(programs):
        if not isinstance(program, Program):
            raise ProgramError(f"program {i}: expected a pl.Program, got {program!r}")
        out.entries.append(len(out.code))
        visit(program)
        emit(END)
    return out
