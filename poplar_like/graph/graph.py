"""The graph: variables, constants, tile mappings, compute sets, vertices and host streams.

Building a graph never runs anything.  Element facts are kept in flat numpy arrays indexed by
element id (which tile holds each element), vertices in columnar blocks, so nothing here costs a
Python call per element or per vertex beyond what the user asks for one at a time.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..arrays import reuse_freed_memory, unique_sorted
from ..codelet import Vertex, check_codelet
from ..dtypes import as_dtype, poplar_name
from ..errors import (FieldConnectionError, GraphError, InvalidTileError, StreamError, TensorError,
                      TileMappingError)
from ..launch import launcher_rank, yield_to_host
from ..target import Device, Target
from .tensor import Tensor
from .vertices import VertexBlock, field_ids, state_values

VARIABLE, CONSTANT = "variable", "constant"


@dataclass
class VariableInfo:
    """One variable or constant: its element id range and, for constants, its value."""

    index: int
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    base: int
    kind: str = VARIABLE
    value: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class DataStream:
    """A host FIFO of ``num_elements`` per transfer (Poplar's ``DataStream``)."""

    name: str
    dtype: np.dtype
    num_elements: int
    direction: str  # "host_to_device" or "device_to_host"

    def __repr__(self) -> str:
        return f"DataStream({self.name!r}, {poplar_name(self.dtype)}, {self.num_elements}, {self.direction})"


class ComputeSet:
    """A set of vertices that run in one BSP superstep (Poplar's ``ComputeSet``)."""

    def __init__(self, graph: "Graph", index: int, name: str) -> None:
        self.graph = graph
        self.index = index
        self.name = name
        self.blocks: list[VertexBlock] = []
        self.num_vertices = 0

    def _new_block(self, codelet: type[Vertex], n: int) -> VertexBlock:
        block = VertexBlock(self, codelet, n, self.num_vertices)
        self.blocks.append(block)
        self.num_vertices += n
        return block

    def __repr__(self) -> str:
        return f"ComputeSet({self.name!r}, {self.num_vertices} vertices)"


class FieldRef:
    """``vertex["field"]``: what ``connect`` and ``set_initial_value`` take."""

    def __init__(self, owner: "VertexRef | VertexRange", name: str) -> None:
        owner.block.field(name)  # raises UnknownFieldError naming the codelet's fields
        self.owner = owner
        self.name = name


class VertexRef:
    """Handle of one vertex added with ``add_vertex``."""

    def __init__(self, block: VertexBlock, row: int = 0) -> None:
        self.block = block
        self.row = row

    def __getitem__(self, name: str) -> FieldRef:
        return FieldRef(self, name)

    @property
    def codelet(self) -> type[Vertex]:
        return self.block.codelet

    def __repr__(self) -> str:
        return f"<{self.block.vertex_name(self.row)}>"


class VertexRange:
    """Handle of the ``n`` vertices one ``add_vertices`` call added."""

    def __init__(self, block: VertexBlock) -> None:
        self.block = block

    def __getitem__(self, name: str) -> FieldRef:
        return FieldRef(self, name)

    def __len__(self) -> int:
        return self.block.n

    @property
    def codelet(self) -> type[Vertex]:
        return self.block.codelet

    def __repr__(self) -> str:
        return (f"<{self.block.n} {self.block.codelet.__name__} vertices in compute set "
                f"{self.block.compute_set.name!r}>")


class Graph:
    """A compute graph for one target (Poplar's ``Graph``).

    ``keep_edges``: whether bulk connections (``add_vertices``) keep their element ids.  Under
    ``mpirun`` only rank 0 compiles, so by default (``None``) the other ranks keep only the
    shapes: every check still runs and every count is right, but the graph holds no copy of the
    edges, which for ResNet-50 saves about 2 GB a rank.  Pass True to compile such a graph on a
    rank other than 0 (for example with ``backend="local"``).
    """

    def __init__(self, target: Target | Device, *, keep_edges: bool | None = None) -> None:
        if keep_edges is None:
            keep_edges = launcher_rank() == 0
        yield_to_host()
        reuse_freed_memory()
        self.keep_edges = bool(keep_edges)
        if isinstance(target, Device):
            target = target.target
        if not isinstance(target, Target):
            raise GraphError(f"Graph needs a Target or Device (from pl.IPUModel(...).create_device()), got {target!r}")
        self.target = target
        self.variables: list[VariableInfo] = []
        self.compute_sets: list[ComputeSet] = []
        self.streams: dict[str, DataStream] = {}
        #: what the op library (poplar_like.ops) built: one plain dict per op call, in order (name,
        #: kind, plan, compute sets, temporaries...); carried into the executable and the profile
        self.op_records: list[dict] = []
        #: what the op library shares between op calls of this graph (one zero constant a tile,
        #: per-tile copies of a scalar...), by key.  Kept here, not in a module-level table keyed
        #: by graph: those values are tensors, which hold their graph, so such a table kept every
        #: graph alive for the life of the process (gigabytes for a network)
        self.op_cache: dict[str, Any] = {}
        self._num_elements = 0
        # tile of every element; int16 while tile numbers fit (a 16-IPU ipu2 has 23,552 tiles)
        self._tile_dtype = np.int16 if target.num_tiles < 2 ** 15 else np.int32
        self._elem_tile = np.full(1024, -1, dtype=self._tile_dtype)
        self._bases: np.ndarray | None = None

    def require_edges(self, what: str) -> None:
        """Refuse ``what`` (compiling, dumping) on a graph that kept no edge ids."""
        if not self.keep_edges:
            raise GraphError(f"{what}: this graph was built on MPI rank {launcher_rank()} with keep_edges=False "
                             "(under mpirun only rank 0 compiles, so the other ranks keep no edges); build it "
                             "with pl.Graph(..., keep_edges=True) to do this here")

    # ================================================================ variables
    def add_variable(self, dtype: object, shape: Sequence[int] | int, name: str = "") -> Tensor:
        """A new variable of ``shape``; it needs a tile mapping before compilation."""
        return self._add(as_dtype(dtype, f"variable {name!r}"), shape, name, VARIABLE, None)

    def add_constant(self, dtype: object, shape: Sequence[int] | int, value: object, name: str = "") -> Tensor:
        """A constant, set at compile time.  ``value`` is a scalar (fills the tensor) or an array of
        exactly ``shape``; no other broadcasting."""
        dt = as_dtype(dtype, f"constant {name!r}")
        shp = _shape_tuple(shape, f"constant {name!r}")
        array = np.asarray(value)
        if array.ndim == 0:
            array = np.full(shp, array)
        if array.shape != shp:
            raise TensorError(f"constant {name or '<unnamed>'!r}: value has shape {array.shape} but the constant's "
                              f"shape is {shp}; pass a scalar or an array of exactly that shape")
        return self._add(dt, shp, name, CONSTANT, np.ascontiguousarray(array.astype(dt)))

    def clone(self, tensor: Tensor, name: str = "") -> Tensor:
        """A new variable of the tensor's shape and type, mapped to the same tiles element by element."""
        self._own(tensor)
        out = self.add_variable(tensor.dtype, tensor.shape, name or f"{tensor.name}.clone")
        tiles = self._elem_tile[tensor.flat_ids()]
        if np.all(tiles >= 0):
            self._elem_tile[out.flat_ids()] = tiles
        return out

    def _add(self, dtype: np.dtype, shape: Sequence[int] | int, name: str, kind: str,
             value: np.ndarray | None) -> Tensor:
        shp = _shape_tuple(shape, f"{kind} {name!r}")
        index = len(self.variables)
        name = name or f"{kind}{index}"
        size = int(np.prod(shp, dtype=np.int64))
        info = VariableInfo(index, name, dtype, shp, self._num_elements, kind, value)
        self.variables.append(info)
        self._grow(self._num_elements + size)
        self._num_elements += size
        self._bases = None
        # int32 ids while the graph is small enough: half the memory of every id array
        id_dtype = np.int32 if info.base + size < 2 ** 31 else np.int64
        ids = np.arange(info.base, info.base + size, dtype=id_dtype).reshape(shp)
        return Tensor(self, dtype, ids, name)

    def _grow(self, needed: int) -> None:
        """Room for elements up to ``needed``, marked unmapped (-1).  Capacity doubles and the spare
        part is left untouched (np.empty), so it costs neither copies nor resident memory."""
        if needed > self._elem_tile.size:
            grown = np.empty(max(needed, self._elem_tile.size * 2), dtype=self._tile_dtype)
            grown[:self._num_elements] = self._elem_tile[:self._num_elements]
            self._elem_tile = grown
        self._elem_tile[self._num_elements:needed] = -1

    @property
    def num_elements(self) -> int:
        return self._num_elements

    @property
    def element_tiles(self) -> np.ndarray:
        """Tile of every element id (-1 where unmapped)."""
        return self._elem_tile[:self._num_elements]

    def variable_bases(self) -> np.ndarray:
        if self._bases is None or self._bases.size != len(self.variables):
            self._bases = np.array([v.base for v in self.variables], dtype=np.int64)
        return self._bases

    def variable_of(self, ids: np.ndarray) -> np.ndarray:
        """Variable index of each element id."""
        return np.searchsorted(self.variable_bases(), ids, side="right") - 1

    def single_variable(self, ids: np.ndarray) -> int | None:
        """The variable holding all of ``ids`` if it is one variable (a cheap min/max test), else None."""
        if ids.size == 0:
            return None
        low, high = self.variable_of(np.array([ids.min(), ids.max()]))
        return int(low) if low == high else None

    def variables_of(self, ids: np.ndarray) -> list[int]:
        return unique_sorted(self.variable_of(np.asarray(ids).reshape(-1))).tolist()

    def describe_element(self, element_id: int) -> str:
        """``'v1[2, 3]'``: how messages name one element."""
        var = self.variables[int(self.variable_of(np.array([element_id]))[0])]
        index = np.unravel_index(int(element_id) - var.base, var.shape) if var.shape else ()
        return f"{var.name}[{', '.join(str(int(i)) for i in index)}]"

    def tensor(self, name: str) -> Tensor:
        """The whole variable called ``name`` (ambiguous names are an error)."""
        found = [v for v in self.variables if v.name == name]
        if not found:
            raise TensorError(f"no variable called {name!r} in this graph")
        if len(found) > 1:
            raise TensorError(f"{len(found)} variables are called {name!r}; use the Tensor object instead")
        v = found[0]
        return Tensor(self, v.dtype, np.arange(v.base, v.base + v.size, dtype=np.int64).reshape(v.shape), v.name)

    def _own(self, tensor: object, what: str = "tensor") -> Tensor:
        if not isinstance(tensor, Tensor):
            raise TensorError(f"expected a {what} (pl.Tensor), got {type(tensor).__name__}")
        if tensor.graph is not self:
            raise TensorError(f"{what} {tensor.name!r} belongs to another graph")
        return tensor

    # ================================================================ tile mapping
    def check_tile(self, tile: object, who: str) -> int:
        if isinstance(tile, (bool, np.bool_)) or not isinstance(tile, (int, np.integer)):
            raise InvalidTileError(f"{who}: tile must be an int, got {tile!r}")
        if not 0 <= int(tile) < self.target.num_tiles:
            raise InvalidTileError(f"{who}: tile {int(tile)} is out of range; the target has "
                                   f"{self.target.num_tiles} tiles (0..{self.target.num_tiles - 1})")
        return int(tile)

    def set_tile_mapping(self, item: "Tensor | VertexRef | VertexRange", mapping: object) -> None:
        """Map a tensor view or a vertex to tiles.

        ``mapping`` is one tile number; for a tensor also an int array of the tensor's shape (a
        tile per element), or a Poplar tile mapping: a list indexed by tile of ``(begin, end)``
        intervals of the flattened tensor.  For a ``VertexRange`` an array of ``n`` tiles.
        """
        if isinstance(item, (VertexRef, VertexRange)):
            self._map_vertices(item, mapping)
            return
        tensor = self._own(item)
        ids = tensor.flat_ids()
        if isinstance(mapping, (int, np.integer)) and not isinstance(mapping, bool):
            self._elem_tile[ids] = self.check_tile(mapping, f"tensor {tensor.name!r}")
            return
        if isinstance(mapping, np.ndarray):
            tiles = np.asarray(mapping)
            if tiles.shape != tensor.shape:
                raise TileMappingError(f"tensor {tensor.name!r}: per-element tile array has shape {tiles.shape}, "
                                       f"expected the tensor's shape {tensor.shape}")
            self._check_tiles(tiles, f"tensor {tensor.name!r}")
            self._elem_tile[ids] = tiles.reshape(-1)
            return
        if isinstance(mapping, (list, tuple)):
            self._elem_tile[ids] = self._tiles_from_intervals(tensor, mapping)
            return
        raise TileMappingError(f"tensor {tensor.name!r}: cannot map to {mapping!r}; expected a tile number, a "
                               "per-element tile array or a list of intervals per tile")

    def _check_tiles(self, tiles: np.ndarray, who: str) -> None:
        if not np.issubdtype(tiles.dtype, np.integer):
            raise InvalidTileError(f"{who}: tile numbers must be integers, got {tiles.dtype}")
        bad = (tiles < 0) | (tiles >= self.target.num_tiles)
        if bad.any():
            first = int(tiles.reshape(-1)[np.argmax(bad.reshape(-1))])
            raise InvalidTileError(f"{who}: tile {first} is out of range; the target has {self.target.num_tiles} "
                                   f"tiles (0..{self.target.num_tiles - 1})")

    def _tiles_from_intervals(self, tensor: Tensor, mapping: Sequence) -> np.ndarray:
        if len(mapping) > self.target.num_tiles:
            raise InvalidTileError(f"tensor {tensor.name!r}: the mapping lists {len(mapping)} tiles but the target "
                                   f"has {self.target.num_tiles}")
        tiles = np.full(tensor.numel, -1, dtype=self._tile_dtype)
        for tile, intervals in enumerate(mapping):
            for interval in intervals:
                begin, end = (int(x) for x in interval)
                if not 0 <= begin <= end <= tensor.numel:
                    raise TileMappingError(f"tensor {tensor.name!r}: interval [{begin}, {end}) for tile {tile} is "
                                           f"outside its {tensor.numel} elements")
                tiles[begin:end] = tile
        return tiles

    def get_tile_mapping(self, tensor: Tensor, require_complete: bool = True) -> list[list[tuple[int, int]]]:
        """Per tile, the ``(begin, end)`` intervals of the flattened tensor it holds."""
        tensor = self._own(tensor)
        tiles = self._elem_tile[tensor.flat_ids()]
        if require_complete and (tiles < 0).any():
            first = int(np.argmax(tiles < 0))
            raise TileMappingError(f"tensor {tensor.name!r}: element {first} of the flattened view "
                                   f"({self.describe_element(int(tensor.flat_ids()[first]))}) has no tile mapping")
        result: list[list[tuple[int, int]]] = [[] for _ in range(self.target.num_tiles)]
        if tiles.size == 0:
            return result
        starts = np.flatnonzero(np.r_[True, tiles[1:] != tiles[:-1]])
        ends = np.r_[starts[1:], tiles.size]
        for s, e, t in zip(starts.tolist(), ends.tolist(), tiles[starts].tolist(), strict=True):
            if t >= 0:
                result[t].append((s, e))
        return result

    def tile_of_elements(self, tensor: Tensor) -> np.ndarray:
        """Tile of each element of a view, shaped like it (-1 where unmapped)."""
        return self._elem_tile[self._own(tensor).ids]

    # ================================================================ compute sets and vertices
    def add_compute_set(self, name: str = "") -> ComputeSet:
        cs = ComputeSet(self, len(self.compute_sets), name or f"cs{len(self.compute_sets)}")
        self.compute_sets.append(cs)
        return cs

    def _own_cs(self, cs: object) -> ComputeSet:
        if not isinstance(cs, ComputeSet) or cs.graph is not self:
            raise GraphError(f"expected a compute set of this graph (graph.add_compute_set), got {cs!r}")
        return cs

    def add_vertex(self, cs: ComputeSet, codelet: type[Vertex], connections: dict | None = None,
                   tile: int | None = None) -> VertexRef:
        """Add one vertex; ``connections`` maps field names to tensors (or state values)."""
        cs = self._own_cs(cs)
        codelet = check_codelet(codelet)
        vertex = VertexRef(cs._new_block(codelet, 1), 0)
        try:
            for name, value in (connections or {}).items():
                if codelet.fields.get(name) is not None and not codelet.fields[name].is_edge:
                    self.set_initial_value(vertex[name], value)
                else:
                    self.connect(vertex[name], value)
            if tile is not None:
                self.set_tile_mapping(vertex, tile)
        except Exception:  # a failed add leaves no half-connected vertex behind
            cs.blocks.pop()
            cs.num_vertices -= 1
            raise
        return vertex

    def add_vertices(self, cs: ComputeSet, codelet: type[Vertex], fields: dict[str, Tensor],
                     tiles: np.ndarray | int, state: dict[str, object] | None = None,
                     perf_estimates: np.ndarray | None = None) -> VertexRange:
        """Add ``n`` instances of a codelet in one call (no Python loop per vertex).

        Each edge field gets a tensor whose first dimension is the instance: instance ``i`` is
        connected to ``fields[name][i]``.  ``tiles`` is one tile or ``n`` tiles; ``state`` gives
        scalar or ``(n,)`` values of state fields.
        """
        cs = self._own_cs(cs)
        codelet = check_codelet(codelet)
        sizes = {t.shape[0] for t in fields.values() if isinstance(t, Tensor) and t.shape}
        tiles_arr = np.asarray(tiles)
        if tiles_arr.ndim == 1:
            sizes.add(tiles_arr.shape[0])
        if len(sizes) != 1:
            raise FieldConnectionError(f"add_vertices({codelet.__name__}) in compute set {cs.name!r}: the field "
                                       f"tensors and tiles disagree on the number of instances: {sorted(sizes)}")
        n = sizes.pop()
        block = cs._new_block(codelet, n)
        rng = VertexRange(block)
        try:
            for name, tensor in fields.items():
                self.connect(rng[name], tensor)
            for name, value in (state or {}).items():
                self.set_initial_value(rng[name], value)
            self._map_vertices(rng, tiles)
            if perf_estimates is not None:
                self.set_perf_estimate(rng, perf_estimates)
        except Exception:
            cs.blocks.pop()
            cs.num_vertices -= n
            raise
        return rng

    def connect(self, field: FieldRef, tensor: object) -> None:
        """Connect a vertex field to a tensor view (an edge); shape and type are checked now."""
        if not isinstance(field, FieldRef):
            raise FieldConnectionError(f"connect needs vertex['field'], got {field!r}")
        block = field.owner.block
        row = field.owner.row if isinstance(field.owner, VertexRef) else None
        ids = field_ids(block, field.name, tensor, row)
        if row is None:
            # without keep_edges, a read-only stand-in of the right shape that takes no memory
            block.edges[field.name] = ids if self.keep_edges else np.broadcast_to(ids.dtype.type(0), ids.shape)
            return
        current = block.edges[field.name]
        if current is None:
            block.edges[field.name] = ids
        elif current.shape[1:] != ids.shape[1:]:
            raise FieldConnectionError(f"field {field.name!r} of {block.vertex_name(row)} is already connected "
                                       f"with shape {current.shape[1:]}")
        else:
            if current.base is not None or not current.flags.writeable:
                # the ids are a view of the tensor first connected: never write through it
                current = block.edges[field.name] = current.copy()
            current[row] = ids[0]

    def set_initial_value(self, field: FieldRef, value: object) -> None:
        """Set a vertex state field (one vertex: a scalar; a range: a scalar or ``n`` values)."""
        if not isinstance(field, FieldRef):
            raise FieldConnectionError(f"set_initial_value needs vertex['field'], got {field!r}")
        block = field.owner.block
        row = field.owner.row if isinstance(field.owner, VertexRef) else None
        block.state[field.name] = state_values(block, field.name, value, row)

    def set_perf_estimate(self, vertex: "VertexRef | VertexRange", cycles: object) -> None:
        """Give a vertex (or each vertex of a range) a cycle estimate that overrides its codelet's."""
        block = vertex.block
        values = np.asarray(cycles)
        n = 1 if isinstance(vertex, VertexRef) else block.n
        if values.ndim == 0:
            values = np.full(n, values)
        if values.shape != (n,) or not np.issubdtype(values.dtype, np.number) or (values < 0).any():
            raise GraphError(f"set_perf_estimate for {vertex!r}: expected a non-negative number or {n} of them")
        if block.perf is None:
            block.perf = np.full(block.n, -1, dtype=np.int64)
        if isinstance(vertex, VertexRef):
            block.perf[vertex.row] = int(np.ceil(values[0]))
        else:
            block.perf[:] = np.ceil(values).astype(np.int64)

    def _map_vertices(self, vertex: "VertexRef | VertexRange", mapping: object) -> None:
        block = vertex.block
        if isinstance(vertex, VertexRef):
            block.tiles[vertex.row] = self.check_tile(mapping, repr(vertex))
            return
        tiles = np.asarray(mapping)
        if tiles.ndim == 0:
            tiles = np.full(block.n, self.check_tile(mapping if not isinstance(mapping, np.ndarray) else int(tiles),
                                                     repr(vertex)))
        if tiles.shape != (block.n,):
            raise TileMappingError(f"{vertex!r}: tiles has shape {tiles.shape}, expected ({block.n},)")
        self._check_tiles(tiles, repr(vertex))
        block.tiles[:] = tiles

    # ================================================================ host streams
    def add_host_to_device_fifo(self, name: str, dtype: object, num_elements: int) -> DataStream:
        return self._add_stream(name, dtype, num_elements, "host_to_device")

    def add_device_to_host_fifo(self, name: str, dtype: object, num_elements: int) -> DataStream:
        return self._add_stream(name, dtype, num_elements, "device_to_host")

    def _add_stream(self, name: str, dtype: object, num_elements: int, direction: str) -> DataStream:
        if not name:
            raise StreamError("a stream needs a name (engine.connect_stream finds it by name)")
        if name in self.streams:
            raise StreamError(f"a stream called {name!r} already exists")
        if int(num_elements) < 1:
            raise StreamError(f"stream {name!r}: num_elements must be >= 1, got {num_elements}")
        stream = DataStream(name, as_dtype(dtype, f"stream {name!r}"), int(num_elements), direction)
        self.streams[name] = stream
        return stream

    # ================================================================ counts
    def num_vertices(self) -> int:
        return sum(cs.num_vertices for cs in self.compute_sets)

    def num_edges(self) -> int:
        return sum(b.num_edges() for cs in self.compute_sets for b in cs.blocks)

    def __repr__(self) -> str:
        return (f"Graph({self.target.name}, {len(self.variables)} variables, {self.num_vertices()} vertices, "
                f"{len(self.compute_sets)} compute sets)")


def _shape_tuple(shape: Sequence[int] | int, who: str) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shp = tuple(operator.index(s) for s in shape)
    except TypeError as exc:
        raise TensorError(f"{who}: shape {shape!r} is not a sequence of ints") from exc
    if any(s < 0 for s in shp):
        raise TensorError(f"{who}: shape {shp} has a negative dimension")
    return shp


def map_tensor_linearly(graph: Graph, tensor: Tensor, min_elements_per_tile: int | None = None,
                        grain_size: int | None = None, offset: int = 0) -> int:
    """Spread a tensor evenly over all tiles in contiguous chunks (PopLibs' ``mapTensorLinearly``).

    The grain is the target's vector width for the type; each used tile gets at least 128 bytes
    so exchange stays cheap.  Chunks go to tiles ``offset``, ``offset + 1``... (wrapping round) in
    the flattened order of the view; a nonzero offset keeps many small tensors from all starting
    on tile 0 (PopLibs' ``mapTensorLinearlyWithOffset``).  Returns the number of tiles used.
    """
    tensor = graph._own(tensor)
    target = graph.target
    grain = grain_size or target.vector_width(tensor.dtype)
    min_elems = min_elements_per_tile
    if min_elems is None:
        min_elems = -(-128 // tensor.dtype.itemsize)
    if grain < 1 or min_elems < 0:
        raise GraphError(f"map_tensor_linearly({tensor.name!r}): grain_size must be >= 1, "
                         "min_elements_per_tile >= 0")
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
        raise GraphError(f"map_tensor_linearly({tensor.name!r}): offset must be an int (a tile), "
                         f"got {offset!r}")
    n = tensor.numel
    if n == 0:
        return 0
    num_grains = -(-n // grain)
    grains_per_tile = max(-(-num_grains // target.num_tiles), -(-min_elems // grain))
    per_tile = grains_per_tile * grain
    tiles = np.arange(n, dtype=np.int64) // per_tile
    if offset % target.num_tiles:
        tiles = (tiles + offset) % target.num_tiles
    graph._elem_tile[tensor.flat_ids()] = tiles.astype(np.int32)
    return -(-n // per_tile)


