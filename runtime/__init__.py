"""The bgm runtime: everything a compiled model imports (torch only, never dsl or compiler).

Generated modules use `rt.<name>` for the names exported here. They are loaded on first
use (PEP 562), so that importing a light submodule such as `runtime.files` does not
import torch: the compiler writes its outputs with it and must stay fast to start.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "runtime.data": ("DataSpec",),
    "runtime.errors": ("BgmRuntimeError", "DataError", "ModelError"),
    "runtime.model": ("CompiledModel", "Latent"),
    "runtime.nets": ("mlp", "mlp_init_scale", "mlp_size"),
    "runtime.decoding": ("draw_token",),
    "runtime.diffusion": ("Diffusion",),
    "runtime.flows": ("realnvp", "realnvp_init_scale", "realnvp_inverse", "realnvp_size",
                      "spline_flow", "spline_flow_init_scale", "spline_flow_inverse",
                      "spline_flow_size"),
    "runtime.seqnets": ("Incremental", "causal", "pick", "seqnet",
                        "seqnet_latent", "Windows"),
    "runtime.ops": ("Parts", "Phi", "Steps", "check_support", "cholesky", "draw", "fill",
                    "index", "one_hot", "rdraw", "reduce_logsumexp", "reduce_max", "reduce_mean",
                    "reduce_min", "reduce_norm", "reduce_prod", "reduce_sd", "reduce_sum",
                    "reduce_variance", "size_expr", "stack_last", "take", "take_batched"),
    "runtime.ragged": ("masked", "ragged_mask"),
    "runtime.ranges": ("check_index", "check_index_values", "check_loop", "check_same",
                       "check_values"),
    "runtime.transforms": ("cholesky_corr", "interval", "lower_bound", "ordered", "simplex",
                           "upper_bound"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value
