"""The layer library (PopLibs' popops / poplin / popnn analogue): ops that plan, map and add
vertices for tensor operations.  See ops/common.py for the conventions every op follows."""

from .common import Chunks, linear_variable, op_name, record, release, split_by_tile, variable_like
from .conv import (ConvParams, ConvPlan, conv2d, conv2d_input_grad, conv2d_weight_grad, create_conv_weights,
                   plan_conv)
from .elementwise import (add, binary, binary_inplace, cast, copy, div, fill, maximum, minimum, mul, relu_grad,
                          scaled_add, sub, unary, unary_inplace)
from .loss import argmax, correct_count, softmax_cross_entropy
from .matmul import create_matmul_lhs, create_matmul_rhs, matmul, matmul_grouped
from .norm import batch_norm_grad, batch_norm_inference, batch_norm_training, update_running_stats
from .optim import sgd_momentum_step
from .planning import MatMulPlan, plan_matmul
from .pool import avg_pool2d, avg_pool2d_grad, global_avg_pool, global_avg_pool_grad, max_pool2d, max_pool2d_grad
from .reduce import reduce

__all__ = [
    "Chunks", "linear_variable", "op_name", "record", "release", "split_by_tile", "variable_like",
    "ConvParams", "ConvPlan", "conv2d", "conv2d_input_grad", "conv2d_weight_grad", "create_conv_weights", "plan_conv",
    "add", "binary", "binary_inplace", "cast", "copy", "div", "fill", "maximum", "minimum", "mul", "relu_grad",
    "scaled_add", "sub", "unary", "unary_inplace",
    "argmax", "correct_count", "softmax_cross_entropy",
    "create_matmul_lhs", "create_matmul_rhs", "matmul", "matmul_grouped", "MatMulPlan", "plan_matmul",
    "batch_norm_grad", "batch_norm_inference", "batch_norm_training", "update_running_stats",
    "sgd_momentum_step",
    "avg_pool2d", "avg_pool2d_grad", "global_avg_pool", "global_avg_pool_grad", "max_pool2d", "max_pool2d_grad",
    "reduce",
]
