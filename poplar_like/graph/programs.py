"""Control programs: the tree that orders supersteps (Poplar's ``poplar::program``).

Programs are plain data: each prints as an indented tree (``str(program)``) and compares equal
by structure.  Shapes and types are checked when a program is built, so a bad ``Copy`` fails at
the line that wrote it.
"""

from __future__ import annotations

from typing import Iterator, Sequence as SequenceT

import numpy as np

from ..dtypes import poplar_name
from ..errors import DTypeError, ProgramError, StreamError
from .graph import ComputeSet, DataStream
from .tensor import Tensor


class Program:
    """Base class of control programs."""

    def children(self) -> list["Program"]:
        return []

    def lines(self, indent: int = 0) -> list[str]:
        pad = "  " * indent
        out = [pad + self.head()]
        for child in self.children():
            out.extend(child.lines(indent + 1))
        return out

    def head(self) -> str:
        return type(self).__name__

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def walk(self) -> Iterator["Program"]:
        yield self
        for child in self.children():
            yield from child.walk()

    def _key(self) -> tuple:
        return (type(self).__name__,)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))


def _tensor_key(t: Tensor | DataStream) -> tuple:
    if isinstance(t, DataStream):
        return ("stream", t.name)
    return ("tensor", id(t.graph), t.shape, t.ids.astype(np.int64).tobytes())


def _as_program(p: object, who: str) -> Program:
    if not isinstance(p, Program):
        raise ProgramError(f"{who}: expected a program (pl.Sequence, pl.Execute, ...), got {p!r}")
    return p


class Sequence(Program):
    """Run programs one after the other."""

    def __init__(self, programs: SequenceT[Program] | None = None, name: str = "") -> None:
        self.programs = [_as_program(p, "Sequence") for p in (programs or [])]
        self.name = name

    def add(self, program: Program) -> "Sequence":
        self.programs.append(_as_program(program, "Sequence.add"))
        return self

    def children(self) -> list[Program]:
        return list(self.programs)

    def head(self) -> str:
        return f"Sequence {self.name}".rstrip()

    def _key(self) -> tuple:
        return tuple(p._key() for p in self.programs)


class Execute(Program):
    """Run a compute set: one BSP superstep (exchange in, sync, compute, exchange out, sync)."""

    def __init__(self, compute_set: ComputeSet) -> None:
        if not isinstance(compute_set, ComputeSet):
            raise ProgramError(f"Execute needs a compute set (graph.add_compute_set), got {compute_set!r}")
        self.compute_set = compute_set

    def head(self) -> str:
        return f"Execute {self.compute_set.name!r} ({self.compute_set.num_vertices} vertices)"

    def _key(self) -> tuple:
        return ("Execute", id(self.compute_set))


class Copy(Program):
    """Copy tensor to tensor (any views, across tiles), host stream to tensor, or tensor to stream."""

    def __init__(self, source: Tensor | DataStream, destination: Tensor | DataStream, name: str = "") -> None:
        self.source = source
        self.destination = destination
        self.name = name
        if isinstance(source, DataStream) and isinstance(destination, DataStream):
            raise ProgramError("Copy: cannot copy a stream to a stream")
        for end, what in ((source, "source"), (destination, "destination")):
            if not isinstance(end, (Tensor, DataStream)):
                raise ProgramError(f"Copy {what}: expected a tensor or a stream, got {end!r}")
        if isinstance(source, DataStream):
            _check_stream(source, destination, "host_to_device")  # type: ignore[arg-type]
        elif isinstance(destination, DataStream):
            _check_stream(destination, source, "device_to_host")
        else:
            if source.graph is not destination.graph:
                raise ProgramError(f"Copy: {source.name!r} and {destination.name!r} belong to different graphs")
            if source.dtype != destination.dtype:
                raise DTypeError(f"Copy: source {source.name!r} is {poplar_name(source.dtype)} but destination "
                                 f"{destination.name!r} is {poplar_name(destination.dtype)}")
            if source.shape != destination.shape:
                raise ProgramError(f"Copy: source {source.name!r} has shape {source.shape} but destination "
                                   f"{destination.name!r} has shape {destination.shape}; shapes must match exactly")

    @property
    def kind(self) -> str:
        if isinstance(self.source, DataStream):
            return "stream_in"
        if isinstance(self.destination, DataStream):
            return "stream_out"
        return "copy"

    def head(self) -> str:
        return f"Copy {_end_name(self.source)} -> {_end_name(self.destination)}"

    def _key(self) -> tuple:
        return ("Copy", _tensor_key(self.source), _tensor_key(self.destination))


def _end_name(end: Tensor | DataStream) -> str:
    return f"stream {end.name!r}" if isinstance(end, DataStream) else f"{end.name!r}{list(end.shape)}"


def _check_stream(stream: DataStream, tensor: Tensor, direction: str) -> None:
    if stream.direction != direction:
        want = "Copy(stream, tensor)" if stream.direction == "host_to_device" else "Copy(tensor, stream)"
        raise StreamError(f"stream {stream.name!r} is {stream.direction.replace('_', '-')}: use {want}")
    if not isinstance(tensor, Tensor):
        raise StreamError(f"stream {stream.name!r}: the other end must be a tensor, got {tensor!r}")
    if tensor.dtype != stream.dtype:
        raise DTypeError(f"stream {stream.name!r} carries {poplar_name(stream.dtype)} but tensor {tensor.name!r} "
                         f"is {poplar_name(tensor.dtype)}")
    if tensor.numel != stream.num_elements:
        raise StreamError(f"stream {stream.name!r} moves {stream.num_elements} elements per copy but tensor "
                          f"{tensor.name!r} has {tensor.numel}")


def _check_predicate(predicate: object, who: str) -> Tensor:
    if not isinstance(predicate, Tensor):
        raise ProgramError(f"{who}: the predicate must be a tensor, got {predicate!r}")
    if predicate.numel != 1:
        raise ProgramError(f"{who}: predicate {predicate.name!r} must have exactly one element, "
                           f"got shape {predicate.shape}")
    return predicate


class Repeat(Program):
    """Run ``body`` ``count`` times."""

    def __init__(self, count: int, body: Program) -> None:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ProgramError(f"Repeat: count must be a non-negative int, got {count!r}")
        self.count = int(count)
        self.body = _as_program(body, "Repeat body")

    def children(self) -> list[Program]:
        return [self.body]

    def head(self) -> str:
        return f"Repeat x{self.count}"

    def _key(self) -> tuple:
        return ("Repeat", self.count, self.body._key())


class RepeatWhileTrue(Program):
    """Run ``condition``; while ``predicate`` is non-zero run ``body`` and ``condition`` again."""

    def __init__(self, condition: Program, predicate: Tensor, body: Program) -> None:
        self.condition = _as_program(condition, "RepeatWhileTrue condition")
        self.predicate = _check_predicate(predicate, "RepeatWhileTrue")
        self.body = _as_program(body, "RepeatWhileTrue body")

    def children(self) -> list[Program]:
        return [self.condition, self.body]

    def head(self) -> str:
        return f"RepeatWhileTrue {self.predicate.name!r}"

    def _key(self) -> tuple:
        return ("RepeatWhileTrue", self.condition._key(), _tensor_key(self.predicate), self.body._key())


class If(Program):
    """Run ``then`` if ``predicate`` is non-zero, else ``else_``."""

    def __init__(self, predicate: Tensor, then: Program, else_: Program | None = None) -> None:
        self.predicate = _check_predicate(predicate, "If")
        self.then = _as_program(then, "If then")
        self.else_ = _as_program(else_, "If else") if else_ is not None else Sequence()

    def children(self) -> list[Program]:
        return [self.then, self.else_]

    def head(self) -> str:
        return f"If {self.predicate.name!r}"

    def _key(self) -> tuple:
        return ("If", _tensor_key(self.predicate), self.then._key(), self.else_._key())


class PrintTensor(Program):
    """Print a tensor's value from the host: ``title: [values]``."""

    def __init__(self, title: str | Tensor, tensor: Tensor | None = None) -> None:
        if tensor is None:
            if not isinstance(title, Tensor):
                raise ProgramError(f"PrintTensor needs a tensor, got {title!r}")
            title, tensor = title.name, title
        if not isinstance(tensor, Tensor):
            raise ProgramError(f"PrintTensor needs a tensor, got {tensor!r}")
        self.title = str(title)
        self.tensor = tensor

    def head(self) -> str:
        return f"PrintTensor {self.title!r}"

    def _key(self) -> tuple:
        return ("PrintTensor", self.title, _tensor_key(self.tensor))


class WriteUndef(Program):
    """Declare a tensor's value dead: its memory may be reused until it is next written."""

    def __init__(self, tensor: Tensor) -> None:
        if not isinstance(tensor, Tensor):
            raise ProgramError(f"WriteUndef needs a tensor, got {tensor!r}")
        self.tensor = tensor

    def head(self) -> str:
        return f"WriteUndef {self.tensor.name!r}"

    def _key(self) -> tuple:
        return ("WriteUndef", _tensor_key(self.tensor))
