"""The bgm runtime: everything a compiled model imports (torch only, never dsl or compiler).

Generated modules use `rt.<name>` for the names exported here.
"""
from runtime.data import DataSpec
from runtime.errors import BgmRuntimeError, DataError, ModelError
from runtime.model import CompiledModel, Latent
from runtime.nets import mlp, mlp_init_scale, mlp_size
from runtime.ops import (
    Parts,
    Phi,
    Steps,
    check_support,
    draw,
    fill,
    index,
    one_hot,
    reduce_logsumexp,
    reduce_max,
    reduce_mean,
    reduce_min,
    reduce_norm,
    reduce_prod,
    reduce_sd,
    reduce_sum,
    reduce_variance,
    size_expr,
    stack_last,
    take,
    take_batched,
)
from runtime.transforms import cholesky_corr, interval, lower_bound, ordered, simplex, upper_bound

__all__ = [
    "BgmRuntimeError", "CompiledModel", "DataError", "DataSpec", "Latent", "ModelError",
    "Parts", "Phi", "Steps", "check_support", "cholesky_corr", "draw", "fill", "index",
    "interval", "lower_bound", "mlp", "mlp_init_scale", "mlp_size", "one_hot", "ordered",
    "reduce_logsumexp", "reduce_max",
    "reduce_mean", "reduce_min", "reduce_norm", "reduce_prod", "reduce_sd", "reduce_sum",
    "reduce_variance", "simplex", "size_expr", "stack_last", "take", "take_batched",
    "upper_bound",
]
