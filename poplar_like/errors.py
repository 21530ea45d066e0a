"""Exception types of poplar_like.

Every mistake in building a graph raises a subclass of :class:`GraphError` whose message names the
culprit (tensor, vertex, field, tile, program) and says what was expected.  Failures while a
program runs raise :class:`EngineError` subclasses.  The names follow Poplar's exception classes
(``graph_connection_error``, ``graph_cycle_error``, ``graph_memory_allocation_error``...).
"""

from __future__ import annotations


class GraphError(Exception):
    """Base of every error in building or compiling a graph."""


class TensorError(GraphError, IndexError):
    """A tensor view is used with the wrong shape, index or type (Poplar's ``index_error``)."""


class DTypeError(GraphError, TypeError):
    """An element type is unknown or two element types do not match (Poplar's ``type_error``)."""


class TileMappingError(GraphError):
    """A tensor or vertex has no tile, or a tile number is out of range (``invalid_tile_mapping``)."""


class InvalidTileError(TileMappingError):
    """A tile number does not exist on the target."""


class UnknownCodeletError(GraphError):
    """A vertex names a codelet that is not a :class:`poplar_like.Vertex` subclass or cannot be imported."""


class UnknownFieldError(GraphError, KeyError):
    """A vertex field name that the codelet does not declare (``unknown_field``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FieldConnectionError(GraphError):
    """A field is unconnected, or connected to a tensor of the wrong shape or type
    (``graph_connection_error``)."""


class DataRaceError(GraphError):
    """Two vertices of one compute set write the same element, or one writes what another reads
    (Poplar's ``graph_cycle_error``)."""


class MissingPerfEstimateError(GraphError):
    """A vertex has neither a codelet cycle estimate nor a ``set_perf_estimate`` value."""


class ProgramError(GraphError):
    """A control program is malformed (``control_program_error``)."""


class StreamError(GraphError):
    """A host stream is misused: wrong size, type, direction or an unconnected buffer."""


class OutOfMemoryError(GraphError):
    """The graph does not fit in tile memory (Poplar's ``graph_memory_allocation_error``)."""

    def __init__(self, message: str, tiles: list[int] | None = None) -> None:
        super().__init__(message)
        self.tiles = list(tiles or [])


class EngineError(RuntimeError):
    """Base of errors raised while an executable runs."""


class CodeletError(EngineError):
    """A codelet's compute raised; the message names codelet, compute set and tile."""


class TensorNotLiveError(EngineError):
    """The host read or wrote a temporary: a variable that every program writes before reading and
    declares dead (``WriteUndef``) before it ends, so its memory is shared with other variables."""
