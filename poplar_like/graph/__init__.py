"""Graph layer: tensors, views, tile mappings, compute sets, vertex tables and programs."""

from .graph import (CONSTANT, VARIABLE, ComputeSet, DataStream, FieldRef, Graph, VariableInfo, VertexRange,
                    VertexRef, map_tensor_linearly)
from .programs import Copy, Execute, If, PrintTensor, Program, Repeat, RepeatWhileTrue, Sequence, WriteUndef
from .tensor import Tensor, concat

__all__ = ["CONSTANT", "VARIABLE", "ComputeSet", "DataStream", "FieldRef", "Graph", "VariableInfo", "VertexRange",
           "VertexRef", "map_tensor_linearly", "Copy", "Execute", "If", "PrintTensor", "Program", "Repeat",
           "RepeatWhileTrue", "Sequence", "WriteUndef", "Tensor", "concat"]
