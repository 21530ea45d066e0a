"""The layer library (PopLibs' popops / poplin / popnn analogue): ops that plan, map and add
vertices for tensor operations.  See ops/common.py for the conventions every op follows."""

from .common import Chunks, linear_variable, op_name, record, release, split_by_tile, variable_like
from .conv import (ConvParams, ConvPlan, conv2d, conv2d_input_grad, conv2d_weight_grad, create_conv_weights,
                   plan_conv)
from .matmul import create_matmul_lhs, create_matmul_rhs, matmul, matmul_grouped
from .planning import MatMulPlan, plan_matmul

__all__ = ["Chunks", "linear_variable", "op_name", "record", "release", "split_by_tile", "variable_like",
           "ConvParams", "ConvPlan", "conv2d", "conv2d_input_grad", "conv2d_weight_grad", "create_conv_weights",
           "plan_conv", "create_matmul_lhs", "create_matmul_rhs", "matmul", "matmul_grouped", "MatMulPlan",
           "plan_matmul"]
