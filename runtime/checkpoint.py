"""Training checkpoints in safetensors: tensors and string metadata only, so loading one
never unpickles an object (a checkpoint from elsewhere cannot run code).

A checkpoint holds everything a step changes: the parameters, Adam's moments, the global
random state (minibatch order and reparameterised noise both come from it), the epoch's
permutation and position, and the loss history. Resuming therefore repeats an
uninterrupted run with the same seed exactly (tests/test_svi.py). It is written beside
its target and renamed into place, so a run killed while writing leaves the previous one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from runtime.errors import ModelError
from runtime.files import write_atomic

FORMAT = "bgm-svi-checkpoint-1"


def _fingerprint(svi: Any) -> dict[str, str]:
    s = svi.settings
    return {"format": FORMAT, "model": svi.model.name, "seed": str(s.seed),
            "batch": str(s.batch), "plate": str(svi.plate), "lr": repr(s.lr),
            "particles": str(s.particles)}


def save(svi: Any, path: str | Path) -> None:
    from safetensors.torch import save as to_bytes  # noqa: PLC0415
    tensors: dict[str, torch.Tensor] = {k: v.detach().cpu().contiguous()
                                        for k, v in svi.named_tensors().items()}
    for i, state in svi.optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"adam.{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng"] = torch.get_rng_state()
    st = svi.state
    tensors["losses"] = torch.tensor(st.losses, dtype=torch.float64)
    if st.order is not None:
        tensors["order"] = st.order.cpu().contiguous()
    meta = _fingerprint(svi)
    meta["step"] = str(st.step)
    meta["position"] = str(st.position)
    write_atomic(path, to_bytes(tensors, metadata=meta))


def load(svi: Any, path: str | Path) -> None:
    """Restore `svi` (built with the same model, data and settings) from a checkpoint."""
    from safetensors import SafetensorError, safe_open  # noqa: PLC0415
    if not Path(path).exists():
        raise ModelError(f"--resume: no checkpoint at '{path}'")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"'{path}' is not a checkpoint written by 'bgmc fit' ({exc})") from None
    expected = _fingerprint(svi)
    differ = [k for k, v in expected.items() if meta.get(k) != v]
    if differ:
        k = differ[0]
        raise ModelError(f"--resume: the checkpoint '{path}' was written with {k} = "
                         f"{meta.get(k)}, this run has {expected[k]}; resume with the same "
                         "model and settings")
    with torch.no_grad():
        for name, value in svi.named_tensors().items():
            saved = tensors.get(name)
            if saved is None or saved.shape != value.shape:
                raise ModelError(f"--resume: the checkpoint '{path}' does not fit this model "
                                 f"and data ('{name}' differs)")
            value.copy_(saved.to(value.device, value.dtype))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("adam."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value.to(svi.model.device) \
                if name != "step" else value
    groups = svi.optimizer.state_dict()["param_groups"]
    svi.optimizer.load_state_dict({"state": state, "param_groups": groups})
    torch.set_rng_state(tensors["rng"])
    svi.state.step = int(meta["step"])
    svi.state.position = int(meta["position"])
    svi.state.losses = [float(x) for x in tensors["losses"].tolist()]
    svi.state.order = tensors.get("order")

