"""poplar_like: program IPU-style tile processors without owning one.

Build a graph of tensors mapped to tiles and vertices running codelets, order supersteps with
control programs, and run them on a simulated machine, in one process or across MPI ranks, with
per-tile memory, exchange and cycle reports.  The names follow Graphcore's Poplar in snake_case.
"""

from .codelet import InOut, Input, MultiVertex, Output, State, Vector, VectorList, Vertex
from .compiler import Executable, compile_graph
from .dtypes import BOOL, FLOAT, HALF, INT, UNSIGNED_INT
from .engine import Engine
from .errors import (CodeletError, DataRaceError, DTypeError, EngineError, FieldConnectionError, GraphError,
                     InvalidTileError, MissingPerfEstimateError, OutOfMemoryError, ProgramError, StreamError,
                     TensorError, TensorNotLiveError, TileMappingError, UnknownCodeletError, UnknownFieldError)
from .graph import (ComputeSet, Copy, DataStream, Execute, Graph, If, PrintTensor, Program, Repeat,
                    RepeatWhileTrue, Sequence, Tensor, WriteUndef, concat, map_tensor_linearly)
from .launch import launched_by_mpi, launcher_rank
from .profile import Profile
from .target import PRESETS, Device, IPUModel, Target

__version__ = "0.1.0"

__all__ = [
    # target
    "IPUModel", "Device", "Target", "PRESETS",
    # types
    "FLOAT", "HALF", "INT", "UNSIGNED_INT", "BOOL",
    # graph
    "Graph", "Tensor", "ComputeSet", "DataStream", "concat", "map_tensor_linearly",
    # codelets
    "Vertex", "MultiVertex", "Input", "Output", "InOut", "State", "Vector", "VectorList",
    # programs
    "Program", "Sequence", "Execute", "Copy", "Repeat", "RepeatWhileTrue", "If", "PrintTensor", "WriteUndef",
    # compile and run
    "compile_graph", "Executable", "Engine", "Profile", "launched_by_mpi", "launcher_rank",
    # errors
    "GraphError", "TensorError", "DTypeError", "TileMappingError", "InvalidTileError", "UnknownCodeletError",
    "UnknownFieldError", "FieldConnectionError", "DataRaceError", "MissingPerfEstimateError", "ProgramError",
    "StreamError", "OutOfMemoryError", "EngineError", "CodeletError", "TensorNotLiveError",
]
