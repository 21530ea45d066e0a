"""Tensors: views onto graph variables that never copy data.

Every variable owns a range of *element ids* in its graph.  A :class:`Tensor` is a numpy array of
element ids with the view's shape.  Slicing, indexing, transposing and broadcasting a tensor make
numpy views of that id array (free), so a view's semantics are exactly numpy's indexing of the
same array; a reshape of a non-contiguous view or a concat builds a new id array.  Only ids are
ever copied, never data.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..dtypes import poplar_name
from ..errors import DTypeError, TensorError

if TYPE_CHECKING:  # pragma: no cover
    from .graph import Graph


class Tensor:
    """A view onto elements of one or more variables of a graph (Poplar's ``Tensor``)."""

    __slots__ = ("graph", "dtype", "ids", "_label")

    def __init__(self, graph: "Graph", dtype: np.dtype, ids: np.ndarray, label: str) -> None:
        self.graph = graph
        self.dtype = dtype
        self.ids = ids
        self._label = label

    # ----------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.ids.shape)

    @property
    def rank(self) -> int:
        return self.ids.ndim

    def dim(self, i: int) -> int:
        return self.shape[i]

    @property
    def numel(self) -> int:
        return int(self.ids.size)

    def num_elements(self) -> int:
        return self.numel

    @property
    def name(self) -> str:
        """What error messages call this tensor: the variable name, or the view expression."""
        return self._label

    def __len__(self) -> int:
        if not self.shape:
            raise TensorError(f"tensor {self.name!r} is a scalar and has no length")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {poplar_name(self.dtype)}, shape={self.shape})"

    # ----------------------------------------------------------------- views
    def _view(self, ids: np.ndarray, label: str) -> "Tensor":
        return Tensor(self.graph, self.dtype, ids, label)

    def named(self, label: str) -> "Tensor":
        """This view under another name in messages: a view of a variable stored in another
        order (``create_conv_weights``) keeps the name its users know it by."""
        if not isinstance(label, str) or not label:
            raise TensorError(f"tensor {self.name!r}: named() needs a non-empty string, got {label!r}")
        return self._view(self.ids, label)

    def __getitem__(self, key: object) -> "Tensor":
        try:
            ids = self.ids[key]
        except (IndexError, TypeError, ValueError) as exc:
            raise TensorError(f"tensor {self.name!r} of shape {self.shape}: bad index {key!r}: {exc}") from exc
        return self._view(np.asarray(ids), f"{self.name}[{_key_text(key)}]")

    def index(self, *indices: int) -> "Tensor":
        """``t.index(i, j)`` is ``t[i, j]`` (Poplar's ``Tensor::index``)."""
        return self[tuple(indices)]

    def slice(self, begin: int | Sequence[int], end: int | Sequence[int], dim: int = 0) -> "Tensor":
        """Elements ``[begin, end)`` along ``dim``; or, with sequences, one range per dimension."""
        if isinstance(begin, Iterable) or isinstance(end, Iterable):
            who = f"tensor {self.name!r}: slice"
            if not (isinstance(begin, Iterable) and isinstance(end, Iterable)):
                raise TensorError(f"{who}: give begin and end both as ints or both as sequences, got "
                                  f"{begin!r} and {end!r}")
            begins = [_int(b, who) for b in begin]  # type: ignore[union-attr]
            ends = [_int(e, who) for e in end]  # type: ignore[union-attr]
            if len(begins) != len(ends) or len(begins) > self.rank:
                raise TensorError(f"tensor {self.name!r}: slice bounds {begins}..{ends} do not fit shape {self.shape}")
            key = tuple(slice(b, e) for b, e in zip(begins, ends, strict=True))
            for d, (b, e) in enumerate(zip(begins, ends, strict=True)):
                self._check_range(b, e, d)
            return self[key]
        d = self._axis(dim)
        begin, end = _int(begin, f"tensor {self.name!r}: slice"), _int(end, f"tensor {self.name!r}: slice")
        self._check_range(begin, end, d)
        key = (slice(None),) * d + (slice(begin, end),)
        return self[key]

    def _check_range(self, begin: int, end: int, dim: int) -> None:
        if not 0 <= begin <= end <= self.shape[dim]:
            raise TensorError(f"tensor {self.name!r}: slice [{begin}, {end}) of dimension {dim} is outside "
                              f"0..{self.shape[dim]} (shape {self.shape})")

    def _axis(self, dim: int) -> int:
        if not -self.rank <= dim < self.rank:
            raise TensorError(f"tensor {self.name!r} of rank {self.rank} has no dimension {dim}")
        return dim % self.rank

    def reshape(self, *shape: int | Sequence[int]) -> "Tensor":
        new_shape = _shape_arg(shape, f"tensor {self.name!r}: reshape")
        if new_shape.count(-1) == 1:  # one dimension may be inferred, as in numpy
            known = int(np.prod([s for s in new_shape if s != -1], dtype=np.int64))
            if known > 0 and self.numel % known == 0:
                new_shape = tuple(self.numel // known if s == -1 else s for s in new_shape)
        if any(s < 0 for s in new_shape) or int(np.prod(new_shape, dtype=np.int64)) != self.numel:
            raise TensorError(f"tensor {self.name!r}: cannot reshape {self.shape} ({self.numel} elements) "
                              f"into {new_shape}")
        return self._view(self.ids.reshape(new_shape), f"{self.name}.reshape{new_shape}")

    def flatten(self) -> "Tensor":
        return self._view(self.ids.reshape(-1), f"{self.name}.flatten()")

    def transpose(self) -> "Tensor":
        """Swap the two dimensions of a 2-D tensor (Poplar's ``transpose``); use dim_shuffle otherwise."""
        if self.rank != 2:
            raise TensorError(f"tensor {self.name!r}: transpose needs a 2-D tensor, got shape {self.shape}; "
                              "use dim_shuffle for other ranks")
        return self._view(self.ids.T, f"{self.name}.transpose()")

    @property
    def T(self) -> "Tensor":  # noqa: N802
        return self.transpose()

    def dim_shuffle(self, permutation: Sequence[int]) -> "Tensor":
        perm = [int(p) for p in permutation]
        if sorted(perm) != list(range(self.rank)):
            raise TensorError(f"tensor {self.name!r}: dim_shuffle needs a permutation of 0..{self.rank - 1}, "
                              f"got {perm}")
        return self._view(self.ids.transpose(perm), f"{self.name}.dim_shuffle({perm})")

    def broadcast(self, n: int, dim: int) -> "Tensor":
        """Repeat the tensor ``n`` times along ``dim`` (Poplar's ``broadcast``): a size-1 dimension
        becomes size ``n``, a size-k dimension size ``k * n`` (the whole tensor repeated)."""
        d = self._axis(dim)
        n = _int(n, f"tensor {self.name!r}: broadcast count")
        if n < 1:
            raise TensorError(f"tensor {self.name!r}: broadcast count must be >= 1, got {n}")
        if self.shape[d] == 1:
            shape = self.shape[:d] + (n,) + self.shape[d + 1:]
            ids = np.broadcast_to(self.ids, shape)
        else:
            reps = [1] * self.rank
            reps[d] = n
            ids = np.tile(self.ids, reps)
        return self._view(ids, f"{self.name}.broadcast({n}, {d})")

    def expand(self, dims: Sequence[int]) -> "Tensor":
        """Insert size-1 dimensions at the given positions."""
        ids = self.ids
        for d in sorted(int(x) for x in dims):
            if not 0 <= d <= ids.ndim:
                raise TensorError(f"tensor {self.name!r}: cannot insert a dimension at {d} (rank {ids.ndim})")
            ids = np.expand_dims(ids, d)
        return self._view(ids, f"{self.name}.expand({list(dims)})")

    def squeeze(self, dims: Sequence[int] | None = None) -> "Tensor":
        """Remove size-1 dimensions (all of them, or those named)."""
        if dims is None:
            axes = tuple(i for i, s in enumerate(self.shape) if s == 1)
        else:
            axes = tuple(self._axis(d) for d in dims)
            if len(set(axes)) != len(axes):
                raise TensorError(f"tensor {self.name!r}: squeeze names a dimension twice: {list(dims)}")
            bad = [a for a in axes if self.shape[a] != 1]
            if bad:
                raise TensorError(f"tensor {self.name!r}: dimensions {bad} of shape {self.shape} are not size 1")
        return self._view(np.squeeze(self.ids, axis=axes), f"{self.name}.squeeze()")

    def sub_sample(self, stride: int, dim: int) -> "Tensor":
        """Every ``stride``-th element along ``dim``."""
        d = self._axis(dim)
        stride = _int(stride, f"tensor {self.name!r}: sub_sample stride")
        if stride < 1:
            raise TensorError(f"tensor {self.name!r}: sub_sample stride must be >= 1, got {stride}")
        key = (slice(None),) * d + (slice(None, None, stride),)
        return self._view(self.ids[key], f"{self.name}.sub_sample({stride}, {d})")

    def reverse(self, dim: int) -> "Tensor":
        d = self._axis(dim)
        return self._view(np.flip(self.ids, d), f"{self.name}.reverse({d})")

    # ----------------------------------------------------------------- element facts
    def flat_ids(self) -> np.ndarray:
        """Element ids in the view's row-major order (a copy only if the view is not contiguous)."""
        return self.ids.reshape(-1)

    def is_scalar_like(self) -> bool:
        return self.numel == 1

    def variables(self) -> list[int]:
        """Indices of the graph variables this view touches."""
        return self.graph.variables_of(self.flat_ids())


def concat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along ``dim`` (Poplar's ``concat``); shapes must agree elsewhere, types exactly."""
    tensors = list(tensors)
    if not tensors:
        raise TensorError("concat needs at least one tensor")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TensorError(f"concat: {t!r} is not a tensor")
    first = tensors[0]
    for t in tensors[1:]:
        if t.graph is not first.graph:
            raise TensorError(f"concat: tensors {first.name!r} and {t.name!r} belong to different graphs")
        if t.dtype != first.dtype:
            raise DTypeError(f"concat: tensor {t.name!r} is {poplar_name(t.dtype)} but {first.name!r} is "
                             f"{poplar_name(first.dtype)}")
        if t.rank != first.rank:
            raise TensorError(f"concat: tensor {t.name!r} has rank {t.rank}, {first.name!r} has rank {first.rank}")
    d = first._axis(dim)
    for t in tensors[1:]:
        if t.shape[:d] + t.shape[d + 1:] != first.shape[:d] + first.shape[d + 1:]:
            raise TensorError(f"concat along {d}: shape {t.shape} of {t.name!r} does not match {first.shape} "
                              f"of {first.name!r} outside dimension {d}")
    ids = np.concatenate([t.ids for t in tensors], axis=d)
    label = "concat(" + ", ".join(t.name for t in tensors[:3]) + (", ..." if len(tensors) > 3 else "") + ")"
    return Tensor(first.graph, first.dtype, ids, label)


def _shape_arg(shape: tuple, who: str) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(_int(s, who) for s in shape)


def _int(value: object, who: str) -> int:
    """``value`` as an int; floats and other non-integers are an error, never truncated."""
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TensorError(f"{who}: expected an int, got {value!r}") from None


def _key_text(key: object) -> str:
    parts = key if isinstance(key, tuple) else (key,)
    out = []
    for p in parts:
        if isinstance(p, slice):
            text = ("" if p.start is None else str(p.start)) + ":" + ("" if p.stop is None else str(p.stop))
            if p.step is not None:
                text += f":{p.step}"
            out.append(text)
        elif p is Ellipsis:
            out.append("...")
        elif isinstance(p, (np.ndarray, list)):
            out.append("[...]")
        else:
            out.append(str(p))
    return ", ".join(out)
