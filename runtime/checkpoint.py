"""Training checkpoints in safetensors: tensors and string metadata only, so loading one
never unpickles an object (a checkpoint from elsewhere cannot run code).

A checkpoint holds everything a step changes: the parameters (and their moving average,
when one is kept), Adam's moments, the global random state (minibatch order and
reparameterised noise both come from it), the epoch's permutation and position, and the
loss history. Resuming therefore repeats an
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
            "particles": str(s.particles), "schedule": s.schedule,
            "ema": repr(svi.ema_decay())}


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
    """Restore `svi` (built with the same model, data and settings) from a checkpoint.

    The file is untrusted: everything in it is checked against `svi` before anything is
    restored (its settings, the names, shapes and dtypes of its tensors, the step and
    position counts), so a damaged checkpoint, or one of another model, is refused with
    a message naming it rather than failing somewhere in training."""
    from safetensors import SafetensorError, safe_open  # noqa: PLC0415
    where = f"--resume: the checkpoint '{path}'"
    if not Path(path).exists():
        raise ModelError(f"--resume: no checkpoint at '{path}'")
    if not Path(path).is_file():
        raise ModelError(f"{where} is not a file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{where} is not a checkpoint written by 'bgmc fit' (not a "
                         f"readable safetensors file: {reason})") from None
    if meta.get("format") != FORMAT:
        raise ModelError(f"{where} is not a checkpoint of 'bgmc fit --method svi' (its format "
                         f"is {meta.get('format')!r}, not {FORMAT!r})")
    expected = _fingerprint(svi)
    differ = [k for k, v in expected.items() if meta.get(k) != v]
    if differ:
        k = differ[0]
        raise ModelError(f"--resume: the checkpoint '{path}' was written with {k} = "
                         f"{meta.get(k)}, this run has {expected[k]}; resume with the same "
                         "model and settings")
    _check(svi, meta, tensors, where)
    with torch.no_grad():
        for name, value in svi.named_tensors().items():
            value.copy_(tensors[name].to(value.device, value.dtype))
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


ADAM_KEYS = ("step", "exp_avg", "exp_avg_sq")


def _check(svi: Any, meta: dict[str, str], tensors: dict[str, torch.Tensor],
           where: str) -> None:
    """Refuse a checkpoint that does not hold exactly what `load` restores for `svi`."""
    total = svi.total_steps()
    step = _count(meta, "step", where)
    if step > total:
        raise ModelError(f"{where} is at step {step}, beyond the {total} steps of this run "
                         "(--iter or --epochs); resume with as many steps at least")
    position = _count(meta, "position", where)
    rows = svi.total if svi.plate is not None else 0
    if position > rows:
        raise ModelError(f"{where} is damaged: its position {position} in the plate's "
                         f"permutation is beyond the plate's {rows} rows")
    own = svi.named_tensors()
    params = svi.parameters()
    for key in tensors:
        known = key in own or key in ("rng", "losses", "order") or key.startswith("adam.")
        if not known:
            raise ModelError(f"{where} does not fit this model and data: it holds '{key}', "
                             "which this model has not (was it written for another model?)")
    for name, value in own.items():
        saved = tensors.get(name)
        if saved is None or saved.shape != value.shape or not saved.is_floating_point():
            raise ModelError(f"{where} does not fit this model and data ('{name}' differs)")
        _finite(saved, name, where)
    rng = tensors.get("rng")
    reference = torch.get_rng_state()
    if rng is None or rng.dtype != reference.dtype or rng.shape != reference.shape:
        raise ModelError(f"{where} is damaged: it has no valid random state ('rng')")
    losses = tensors.get("losses")
    if losses is None or losses.dim() != 1 or not losses.is_floating_point() or \
            losses.numel() != step:
        raise ModelError(f"{where} is damaged: its loss history ('losses') does not have "
                         f"one value for each of its {step} steps")
    order = tensors.get("order")
    if order is not None and (svi.plate is None or order.dtype != torch.int64 or
                              order.shape != (rows,) or
                              not torch.equal(order.sort().values, torch.arange(rows))):
        raise ModelError(f"{where} is damaged: its 'order' is not a permutation of the "
                         f"plate's {rows} rows")
    adam: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("adam."):
            continue
        parts = key.split(".", 2)
        if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(params) or \
                parts[2] not in ADAM_KEYS:
            raise ModelError(f"{where} does not fit this model: it holds the optimiser "
                             f"state '{key}', which this run's optimiser has not")
        adam.setdefault(int(parts[1]), {})[parts[2]] = value
    for i, entry in adam.items():
        missing = [k for k in ADAM_KEYS if k not in entry]
        if missing:
            raise ModelError(f"{where} is damaged: the optimiser state 'adam.{i}' has no "
                             f"'{missing[0]}'")
        shape = params[i].shape
        for k in ADAM_KEYS:
            value = entry[k]
            ok = value.is_floating_point() and (value.numel() == 1 if k == "step"
                                                else value.shape == shape)
            if not ok:
                raise ModelError(f"{where} does not fit this model: the optimiser state "
                                 f"'adam.{i}.{k}' has shape {list(value.shape)}")
            _finite(value, f"adam.{i}.{k}", where)
            if k != "exp_avg" and bool((value < 0).any()):
                raise ModelError(f"{where} is damaged: 'adam.{i}.{k}' is negative")


def _count(meta: dict[str, str], key: str, where: str) -> int:
    """A non-negative count from the metadata (digits only; 10**23 steps is refused by
    the caller's bound, not converted into a tensor size)."""
    raw = meta.get(key)
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 30:
        raise ModelError(f"{where} is damaged: its '{key}' is {raw!r}, not a count")
    return int(raw)


def _finite(value: torch.Tensor, name: str, where: str) -> None:
    if not bool(torch.isfinite(value).all()):
        raise ModelError(f"{where} is damaged: '{name}' holds non-finite values")
