"""Device and dtype choice: `--device auto|cpu|cuda`, float64 on the CPU by default."""
from __future__ import annotations

import torch

from runtime.errors import ModelError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ModelError(f"unknown device '{name}': use auto, cpu or cuda") from None


def default_dtype(device: torch.device) -> torch.dtype:
    """float64 where it is cheap (CPU) so results match closed forms to 1e-10;
    float32 on accelerators."""
    return torch.float64 if device.type in ("cpu", "meta") else torch.float32
