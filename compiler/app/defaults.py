"""Training defaults per model family: what `bgmc fit` runs for a flow, a diffusion model
or a GAN when the command line leaves the training settings out.

The method-wide defaults (2000 full-data steps of Adam at a constant 0.001 in float64, as
suits a small Bayesian model) leave a deep generative model half trained: a flow drawn
from them is a blob, and the last iterate of a noisy run is not its best. Users judge a
family by its first run, so each family has defaults measured to learn 2-D shapes of
2000 points (bench/generative_bench.py, tests/test_generative_quality.py) in about a
minute on two CPU cores: minibatches, enough epochs, a cosine decay of the rate, and
float32 (twice as fast as float64 on a CPU, and ample for a net's weights). Only what
the user did not give is filled in, and `bgmc fit` prints what was (a `note:` line).

On the CPU these nets train on one thread: their operations are too small to split (on
two cores one thread is as fast as two on an idle machine), and a second thread that
waits for a core another process holds makes every operation wait (measured: 60 times
slower while another fit runs beside it).
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compiler.app.fitting import FitSettings
    from compiler.app.program import Program


@dataclass(frozen=True)
class Family:
    """One family's training defaults (epochs for svi, steps for adversarial)."""

    name: str
    method: str
    batch: int
    lr: float
    epochs: int | None = None
    steps: int | None = None
    lr_schedule: str | None = None  # svi's (runtime/schedule.py); adversarial has none
    dtype: str = "float32"


FAMILIES = {
    "flow": Family("a flow", "svi", batch=256, lr=3e-3, epochs=300, lr_schedule="cosine"),
    "diffusion": Family("a diffusion model", "svi", batch=256, lr=2e-3, epochs=2000,
                        lr_schedule="cosine"),
    "gan": Family("a GAN", "adversarial", batch=256, lr=2e-4, steps=5000),
}


def family_of(program: Program) -> Family | None:
    """The family of a program's model: an implicit model (GAN), a diffusion model, a flow
    (data through an invertible net), or none of these (None)."""
    kind = program.model_class()
    if getattr(kind, "implicit_names", ()):
        return FAMILIES["gan"]
    if getattr(kind, "diffusion_names", ()):
        return FAMILIES["diffusion"]
    if any(not f.implicit for f in program.compiled.model.flows.values()):
        return FAMILIES["flow"]
    return None


def with_family_defaults(settings: FitSettings, family: Family | None
                         ) -> tuple[FitSettings, str | None]:
    """`settings` with the family's defaults in the training options the user left unset
    (None), and a line saying which were filled in (None when none were)."""
    if family is None or settings.method != family.method:
        return settings, None
    chosen: dict[str, Any] = {}
    if settings.max_iter is None and settings.epochs is None:
        chosen["epochs" if family.epochs else "max_iter"] = family.epochs or family.steps
    for name in ("batch", "lr", "lr_schedule", "dtype"):
        if getattr(settings, name) is None and getattr(family, name) is not None:
            chosen[name] = getattr(family, name)
    if not chosen:
        return settings, None
    return dataclasses.replace(settings, **chosen), _describe(family, chosen)


FLAGS = {"epochs": "--epochs", "max_iter": "--iter", "batch": "--batch", "lr": "--lr",
         "lr_schedule": "--lr-schedule", "dtype": "--dtype"}


def _describe(family: Family, chosen: dict[str, Any]) -> str:
    flags = " ".join(f"{FLAGS[k]} {v:g}" if isinstance(v, float) else f"{FLAGS[k]} {v}"
                     for k, v in chosen.items())
    return f"training {family.name} with its defaults: {flags}"


@contextlib.contextmanager
def training_threads(family: Family | None, method: str, model: Any) -> Iterator[bool]:
    """One torch thread while a family's model trains on the CPU (module docstring), the
    previous count after; yields whether the count was changed."""
    import torch  # noqa: PLC0415 - the model is bound: torch is loaded already
    threads = torch.get_num_threads()
    limit = family is not None and method == family.method and \
        getattr(model, "device", None) is not None and model.device.type == "cpu" and \
        threads > 1
    if limit:
        torch.set_num_threads(1)
    try:
        yield limit
    finally:
        if limit:
            torch.set_num_threads(threads)
