"""The fit policy: which inference engine a method means for a model, with which
settings, and what the fit reports.

The engines live in the runtime and know nothing of each other (runtime.optimize,
runtime.nuts via runtime.posterior, runtime.advi, runtime.svi, runtime.exact,
runtime.adversarial). Deciding among them needs the model: an implicit model (a GAN) has
no likelihood and only trains adversarially, a diffusion model only by its stochastic
loss, `--method exact` needs the compiler's conjugacy plan. That decision is made once,
here, for the CLI and for `Program.fit` alike, so that a library user gets what `bgmc fit`
gives. A `Fit` carries the result and the lines `bgmc fit` prints about it.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compiler.app.defaults import family_of, training_threads, with_family_defaults
from compiler.app.progress import progress
from runtime.errors import ModelError

if TYPE_CHECKING:
    from compiler.app.program import Program

METHODS = ("mle", "map", "nuts", "chees", "advi", "svi", "exact", "adversarial")
# the methods that run on several processes (torchrun, or bgmc fit --nproc): data-parallel
# training, and the chains of nuts and chees split across them; the others would repeat
# the same work on every process (advi fits one Gaussian: it has no chains)
PARALLEL_METHODS = ("svi", "adversarial", "nuts", "chees")  # nuts, chees: chains split
POINT_METHODS = ("mle", "map")
DEFAULT_ITER = 2000  # --iter when neither it nor --epochs is given
CHOICES: dict[str, tuple[Any, ...]] = {
    "method": METHODS, "metric": ("diag", "dense"), "family": ("meanfield", "fullrank"),
    "optimizer": (None, "lbfgs", "adam"), "gan_loss": ("ns", "wgan-gp"),
    "lr_schedule": (None, "constant", "cosine"),
    "dtype": (None, "float64", "float32"),
    "log_likelihood": ("auto", "always", "never")}
# The defaults of options whose best value depends on the method: the many-chain sampler
# runs 64 short chains (a draw per chain is cheap when all advance in one batched call) and
# targets the harmonic mean of acceptance at 0.651 (runtime/chees.py).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "*": {"chains": 4, "warmup": 1000, "draws": 1000, "adapt_delta": 0.8},
    "chees": {"chains": 64, "warmup": 400, "draws": 100, "adapt_delta": 0.651}}
# Counts that size arrays or loops are bounded so that a typo (2000000000 chains) is
# refused at once instead of running for hours; the CLI's flag types use the same bounds.
LIMITS: dict[str, tuple[int, int | None]] = {
    "seed": (0, 2**32 - 1), "chains": (1, 100_000), "warmup": (0, 10_000_000),
    "draws": (1, 10_000_000), "max_treedepth": (1, 30), "restarts": (1, None),
    "max_iter": (1, None), "particles": (1, None), "checkpoint_every": (0, None),
    "batch": (1, None), "epochs": (1, None), "thin": (1, None), "refresh": (1, None)}


# The methods that read each option that not every method reads. An option given to a
# method that does not read it is refused (it would otherwise pass silently: a user who
# writes --batch 64 --method nuts believes the run is minibatched).
USED_BY = {
    "chains": ("nuts", "chees", "exact"),
    "warmup": ("nuts", "chees"), "adapt_delta": ("nuts", "chees"),
    "metric": ("nuts", "chees"), "thin": ("nuts", "chees"),
    "step_size": ("nuts", "chees"), "save_warmup": ("nuts", "chees"),
    "max_treedepth": ("nuts",),
    "draws": ("nuts", "chees", "advi", "svi", "exact"),
    "family": ("advi",),
    "optimizer": ("mle", "map"), "restarts": ("mle", "map"),
    "max_iter": ("mle", "map", "svi", "adversarial"),
    "lr": ("mle", "map", "svi", "adversarial"),
    "lr_schedule": ("svi",), "plate": ("svi",), "epochs": ("svi",), "particles": ("svi",),
    "checkpoint": ("svi",), "checkpoint_every": ("svi",), "resume": ("svi",),
    "batch": ("svi", "adversarial"), "loss_plot": ("svi", "adversarial"),
    "critic": ("adversarial",), "gan_loss": ("adversarial",),
}
# the command-line flag of an option, where it is not --name-with-dashes
FLAG_OF = {"max_iter": "--iter", "step_size": "--step-size"}


@dataclass(frozen=True)
class FitSettings:
    """Every option of every method, with the defaults of `bgmc fit`. An option the
    method does not read (USED_BY) is refused when it is given a value other than its
    default."""

    method: str = "map"
    seed: int = 1
    device: str = "auto"
    dtype: str | None = None  # default: float64 on the CPU, float32 on a GPU
    # nuts, chees (None: the method's default, METHOD_DEFAULTS)
    chains: int = None  # type: ignore[assignment]
    warmup: int = None  # type: ignore[assignment]
    draws: int = None  # type: ignore[assignment]  # also advi, svi, exact: draws per chain
    adapt_delta: float = None  # type: ignore[assignment]
    max_treedepth: int = 10
    metric: str = "diag"
    thin: int = 1  # keep every thin-th draw (draws counts iterations, as in CmdStan)
    step_size: float = 1.0  # the initial step size, before adaptation
    save_warmup: bool = False  # keep the warmup draws (groups warmup_posterior, ...)
    # the pointwise log-likelihood group (for LOO): "auto" keeps it up to
    # runtime.evaluate.VALUE_LIMIT values (draws x observations), "always", "never"
    log_likelihood: str = "auto"
    # advi
    family: str = "meanfield"
    # mle, map: L-BFGS, or Adam (the default for a model with nets: L-BFGS on a net's
    # many weights runs long without converging)
    optimizer: str | None = None
    restarts: int = 1
    # mle/map iterations; svi and adversarial steps (None: DEFAULT_ITER, or the model
    # family's epochs or steps, compiler/app/defaults.py)
    max_iter: int | None = None
    lr: float | None = None  # Adam's learning rate (default 0.05; svi 1e-3; gan 2e-4)
    lr_schedule: str | None = None  # svi: "constant" (default) or "cosine"
    # starting points: a radius R of uniform(-R, R), a JSON file, or a dict of values
    init: float | str | Mapping[str, Any] = 2.0
    # svi
    batch: int | None = None
    plate: str | None = None
    epochs: int | None = None
    particles: int = 1
    checkpoint: str | None = None
    checkpoint_every: int = 500
    resume: bool = False
    loss_plot: str | None = None
    # adversarial
    critic: str | None = None
    gan_loss: str = "ns"
    # a progress bar on stderr (shown only on a terminal), updated every `refresh` steps
    progress: bool = False
    refresh: int = 20

    def __post_init__(self) -> None:
        unused = self._unused()
        if self.method in METHODS:
            defaults = {**METHOD_DEFAULTS["*"], **METHOD_DEFAULTS.get(self.method, {})}
            for name, value in defaults.items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise ModelError(f"fit option {name}={getattr(self, name)!r}: expected one "
                                 f"of {shown}")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is None and name in ("batch", "epochs", "max_iter"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low or \
                    (high is not None and value > high):
                bound = f"at least {low}" + (f" and at most {high}" if high else "")
                raise ModelError(f"fit option {name}={value!r}: expected an integer {bound}")
        if not 0 < self.adapt_delta < 1:
            raise ModelError(f"fit option adapt_delta={self.adapt_delta!r}: expected a "
                             "number strictly between 0 and 1")
        for name in ("lr", "step_size"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and
                                          math.isfinite(value) and value > 0):
                raise ModelError(f"fit option {name}={value!r}: expected a positive number")
        if unused:
            raise ModelError(unused)

    def _unused(self) -> str | None:
        """The message for the first option given that the method does not read (one at
        its default, or at the value every method is given, is not counted)."""
        if self.method not in METHODS:
            return None
        filled = {**METHOD_DEFAULTS["*"], **METHOD_DEFAULTS.get(self.method, {})}
        for spec in fields(self):
            users = USED_BY.get(spec.name)
            value = getattr(self, spec.name)
            if users is None or self.method in users or value == spec.default or \
                    (spec.name in filled and value == filled[spec.name]):
                continue
            flag = FLAG_OF.get(spec.name, "--" + spec.name.replace("_", "-"))
            return (f"{flag} applies to --method {', '.join(users)}; --method "
                    f"{self.method} does not use it (leave it out)")
        return None

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> FitSettings:
        """Settings from keyword options, refusing a name no method takes."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ModelError(f"unknown fit option '{unknown[0]}'; the options are "
                             f"{', '.join(sorted(known))}")
        return cls(**options)


@dataclass(frozen=True)
class Fit:
    """A fit: point estimates (mle, map) or draws as ArviZ InferenceData (the others),
    with the lines `bgmc fit` prints about it (`report` on stdout, `warnings` on stderr)
    and whether a posterior summary follows them."""

    model: str
    method: str
    estimate: Any = None  # runtime.optimize.PointEstimate, for mle and map
    idata: Any = None  # arviz.InferenceData, for every other method
    report: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    summarised: bool = False
    notes: tuple[str, ...] = ()  # what bgm decided for the user (a size the data left out)

    def _point(self) -> Any:
        if self.estimate is None:
            raise ModelError(f"a {self.method} fit has draws, not point estimates: read "
                             "them from its .idata (an ArviZ InferenceData)")
        return self.estimate

    @property
    def values(self) -> dict[str, Any]:
        """The point estimates, named as in the model (mle and map)."""
        return dict(self._point().values)

    @property
    def objective(self) -> float:
        """The maximised log likelihood (mle) or log joint density (map)."""
        return float(self._point().objective)

    @property
    def converged(self) -> bool:
        return bool(self._point().converged)

    @property
    def iterations(self) -> int:
        return int(self._point().iterations)

    @property
    def grad_norm(self) -> float:
        return float(self._point().grad_norm)

    @property
    def message(self) -> str:
        return str(self._point().message)

    def point_report(self) -> dict[str, Any]:
        """The JSON `bgmc fit -o fit.json` writes for a point fit."""
        r = self._point()
        return {"model": self.model, "method": r.method, "objective": r.objective,
                "converged": r.converged, "iterations": r.iterations,
                "grad_norm": r.grad_norm, "restarts": r.restarts,
                "estimates": {k: v.cpu().tolist() for k, v in r.values.items()}}

    def summary(self, var_names: list[str] | None = None,
                hdi_prob: float = 0.94) -> tuple[str, list[str]]:
        """ArviZ's summary table of the draws (of `var_names`, with a `hdi_prob`
        interval) and the warnings about them."""
        from runtime.diagnostics import summarize  # noqa: PLC0415
        return summarize(self.idata, var_names, hdi_prob)

    def save(self, path: str) -> None:
        """Write the fit whole or not at all: JSON for point estimates; draws as NetCDF
        (.nc, everything) or CSV (.csv, the draws as CmdStan writes them). On several
        processes (torchrun), rank 0 alone writes: the others hold no result."""
        from runtime.files import write_atomic  # noqa: PLC0415
        if not _rank_zero():
            return
        if self.estimate is not None:
            write_atomic(path, json.dumps(self.point_report(), indent=1) + "\n")
        elif path.lower().endswith(".csv"):
            from runtime.output import draws_csv  # noqa: PLC0415
            if "posterior" not in self.idata.groups():
                raise ModelError(f"'{path}': a {self.method} fit of nets alone has no draws "
                                 "for a table; name the file .nc")
            write_atomic(path, draws_csv(self.idata))
        else:
            from runtime.output import write_netcdf  # noqa: PLC0415
            write_netcdf(self.idata, path)


Notify = Callable[[str], None]


def fit(program: Program, data: Any, settings: FitSettings, output: str | None = None,
        notify: Notify | None = None) -> Fit:
    """Fit `program` to `data` as `settings` ask. `output` names the fit's file when it
    will be written, so that SVI's checkpoint and loss plot default beside it; `notify`
    hears what happens during the fit (a resumed checkpoint)."""
    family = family_of(program)
    settings, chosen = with_family_defaults(settings, family)
    model = program.bind(data, settings.device, dtype=settings.dtype)
    world = _world(model, settings.method)
    if not world.writer:  # rank 0 alone tells what happens (resumed checkpoints)
        notify = None
    notes = tuple(f"'{name}' is not in the data: {name} = {how}"
                  for name, how in getattr(model, "inferred_sizes", {}).items())
    with training_threads(family, settings.method, model) as one_thread:
        result = _fit_bound(program, model, settings, output, notify)
    if chosen or one_thread:
        notes += (f"{chosen or 'training ' + family.name}"  # type: ignore[union-attr]
                  f"{' on one CPU thread' if one_thread else ''}",)
    left_out = None
    if result.idata is not None:
        left_out = result.idata.attrs.get("left_out")
        # the model travels with its draws, so 'bgmc compare --data' can run it again
        result.idata.attrs["model_source"] = program.compiled.source.text
        result.idata.attrs["model_file"] = Path(program.compiled.source.path).name
    return dataclasses.replace(result, notes=notes + ((left_out,) if left_out else ()))


def _rank_zero() -> bool:
    """Whether this process writes: rank 0 of its group, or a process on its own."""
    from runtime.distributed import World  # noqa: PLC0415
    return World.current().writer


def _world(model: Any, method: str) -> Any:
    """The processes this fit runs on: the group torchrun describes in the environment,
    joined here (runtime/distributed.py), or this process alone."""
    from runtime.distributed import World  # noqa: PLC0415
    world = World.from_env(model.device)
    if world.distributed and method not in PARALLEL_METHODS:
        raise ModelError(f"--method {method} runs in one process; several processes "
                         f"(--nproc, torchrun) run {', '.join(PARALLEL_METHODS)}")
    return world


def _fit_bound(program: Program, model: Any, settings: FitSettings, output: str | None,
               notify: Notify | None) -> Fit:
    kind = type(model)
    implicit = getattr(kind, "implicit_names", ())
    if settings.method == "adversarial" or implicit:
        if settings.method != "adversarial":
            raise ModelError(f"'{implicit[0]}' is an implicit model (data defined by '=' "
                             "through a net that is not invertible): it has no likelihood, "
                             f"so --method {settings.method} cannot fit it; use --method "
                             "adversarial --critic NET", model.locations.get(implicit[0]))
        return _adversarial(model, settings, output)
    diffusion = getattr(kind, "diffusion_names", ())
    if diffusion and settings.method != "svi":
        raise ModelError(f"'{diffusion[0]}' ~ Diffusion(...) is trained by its noise-prediction "
                         "loss at random steps and noise, a stochastic objective: --method "
                         f"{settings.method} cannot fit it; use --method svi (with --batch and "
                         "--epochs)", model.locations.get(diffusion[0]))
    if settings.method == "svi":
        return _svi(model, settings, output, notify)
    if getattr(kind, "guide", None) is not None and settings.method == "advi":
        raise ModelError("the model has a 'guide:' block, which only --method svi uses; "
                         "advi fits its own Gaussian (remove the block to use it)")
    init, radius = _start(settings.init, model)
    if settings.method == "exact":
        return _exact(program, model, settings)
    if settings.method in ("nuts", "chees", "advi"):
        return _posterior(model, settings, init, radius)
    return _point(program.name, model, settings, init, radius)


def _start(init: float | str | Mapping[str, Any], model: Any) -> tuple[Any, float]:
    """(initial values in unconstrained coordinates or None, the radius of random starts)."""
    from compiler.app.userfiles import initial_values  # noqa: PLC0415
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        return None, float(init)
    if isinstance(init, str):
        try:
            return None, float(init)
        except ValueError:
            pass
        return initial_values(init, model), 2.0
    if isinstance(init, Mapping):
        return initial_values(dict(init), model), 2.0
    raise ModelError(f"fit option init: expected a radius, a JSON file or a dict of initial "
                     f"values, got {type(init).__name__}")


def _point(name: str, model: Any, s: FitSettings, init: Any, radius: float) -> Fit:
    from runtime.optimize import optimize  # noqa: PLC0415
    optimizer = s.optimizer or ("adam" if model.net_names else "lbfgs")
    bar = progress(s.progress, None, unit="evaluations", refresh=s.refresh)
    try:
        result = optimize(model, method=s.method, seed=s.seed, init=init, radius=radius,
                          restarts=s.restarts, optimizer=optimizer,
                          max_iter=s.max_iter or DEFAULT_ITER,
                          lr=s.lr or 0.05, progress=bar.optimizing if bar else None)
    finally:
        if bar is not None:
            bar.close()
    label = "log likelihood" if result.method == "mle" else "log joint density"
    report = [f"{result.method.upper()} of {name}: {label} {result.objective:.6g} "
              f"({result.iterations} iterations, gradient norm {result.grad_norm:.2g})"]
    report += [f"  {k} = {_short(v.cpu().tolist())}" for k, v in result.values.items()]
    warnings = [] if result.converged else \
        [f"not converged (gradient norm {result.grad_norm:.3g})"]
    if result.message:
        warnings.append(result.message)
    return Fit(name, s.method, estimate=result, report=tuple(report), warnings=tuple(warnings))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) < 100 else text[:96] + " ..."


def _exact(program: Program, model: Any, s: FitSettings) -> Fit:
    from compiler.passes.conjugacy import NotConjugate, conjugate_plan  # noqa: PLC0415
    from runtime.exact import describe, run_exact  # noqa: PLC0415
    try:
        plan = conjugate_plan(program.compiled.model)
    except NotConjugate as exc:
        raise ModelError(f"--method exact: the model is not conjugate: {exc}; use --method "
                         "nuts") from None
    idata, params = run_exact(model, runtime_plan(plan), s.draws, s.chains, s.seed,
                              s.log_likelihood)
    report = [c.describe() for c in plan] + list(describe(params))
    return Fit(program.name, "exact", idata=idata, report=tuple(report))


def _posterior(model: Any, s: FitSettings, init: Any, radius: float) -> Fit:
    from runtime import posterior  # noqa: PLC0415
    from runtime.advi import AdviSettings  # noqa: PLC0415
    from runtime.chees import CheesSettings  # noqa: PLC0415
    from runtime.nuts import NutsSettings  # noqa: PLC0415
    if s.method in ("nuts", "chees"):
        common = {"chains": s.chains, "warmup": s.warmup, "draws": s.draws,
                  "adapt_delta": s.adapt_delta, "metric": s.metric, "seed": s.seed,
                  "thin": s.thin, "init_step_size": s.step_size,
                  "save_warmup": s.save_warmup}
        run, settings = (posterior.run_chees, CheesSettings(**common)) \
            if s.method == "chees" else \
            (posterior.run_nuts, NutsSettings(max_treedepth=s.max_treedepth, **common))
        bar = progress(s.progress and _rank_zero(), s.warmup + s.draws, refresh=s.refresh)
        try:
            idata = run(model, settings, radius, init,  # type: ignore[operator]
                        bar.sampling if bar is not None else None,
                        log_likelihood=s.log_likelihood)
        finally:
            if bar is not None:
                bar.close()
    else:
        idata = posterior.run_advi(model, AdviSettings(family=s.family, seed=s.seed,
                                                       draws=s.draws), radius, init,
                                   log_likelihood=s.log_likelihood)
    return Fit(model.name, s.method, idata=idata, summarised=True)


def _beside(explicit: str | None, output: str | None, suffix: str) -> str | None:
    return explicit or (f"{output}{suffix}" if output else None)


def _svi(model: Any, s: FitSettings, output: str | None, notify: Notify | None) -> Fit:
    from runtime import checkpoint  # noqa: PLC0415
    from runtime.posterior import svi_result  # noqa: PLC0415
    from runtime.svi import Svi, SviSettings  # noqa: PLC0415
    from runtime.training import write_loss_plot  # noqa: PLC0415
    settings = SviSettings(steps=s.max_iter or DEFAULT_ITER, epochs=s.epochs, batch=s.batch,
                           plate=s.plate, lr=s.lr or 1e-3, particles=s.particles,
                           seed=s.seed, draws=s.draws,
                           schedule=s.lr_schedule or "constant")
    svi = Svi(model, settings)
    ckpt = _beside(s.checkpoint, output, ".ckpt.safetensors")
    if s.resume:
        if ckpt is None:
            raise ModelError("--resume needs --checkpoint FILE (or -o OUTPUT)")
        checkpoint.load(svi, ckpt)
        if notify is not None:
            notify(f"resumed from {ckpt} at step {svi.state.step}")
    writer = svi.world.writer  # rank 0 alone writes: the bar, checkpoints, the plot
    bar = progress(s.progress and writer, svi.total_steps(), svi.state.step, unit="step",
                   refresh=s.refresh)
    try:
        svi.run(bar.training if bar is not None else None,
                (lambda state: checkpoint.save(state, ckpt)) if ckpt and writer else None,
                s.checkpoint_every)
    finally:
        if bar is not None:
            bar.close()
        plot = _beside(s.loss_plot, output, ".loss.png")
        if plot and writer and svi.state.losses:
            write_loss_plot(svi.state.losses, plot, svi.total)
    if not writer:  # the weights are the same on every rank: rank 0 makes the fit
        return Fit(model.name, "svi")
    idata, elbo = svi_result(svi, s.log_likelihood)
    tokens = sum(w.items for w in svi.windows.values())
    if tokens:  # a language model: the ELBO over its tokens, in bits
        per = f" ({-elbo / tokens / math.log(2):.4f} bits per token over {tokens} tokens)"
    else:
        per = f" ({elbo / svi.total:.6g} per item of {svi.plate})" if svi.plate else ""
    what = "noise-prediction objective" if getattr(model, "diffusion_names", ()) else "ELBO"
    return Fit(model.name, "svi", idata=idata,
               report=(f"{what} {elbo:.6g}{per} after {svi.state.step} steps",),
               summarised=hasattr(idata, "posterior"))  # not when every unknown is a net


def _adversarial(model: Any, s: FitSettings, output: str | None) -> Fit:
    from runtime.adversarial import (  # noqa: PLC0415
        Adversarial,
        AdversarialSettings,
        adversarial_result,
    )
    from runtime.training import write_loss_plot  # noqa: PLC0415
    if not s.critic:
        raise ModelError("--method adversarial needs --critic NET: a net declared in the "
                         "file that scores rows (MLP(in, ..., 1))")
    settings = AdversarialSettings(critic=s.critic, steps=s.max_iter or DEFAULT_ITER,
                                   batch=s.batch or 256,
                                   lr=s.lr or 2e-4, loss=s.gan_loss, seed=s.seed)
    trainer = Adversarial(model, settings)
    writer = trainer.world.writer  # rank 0 alone writes: the bar, the plot
    bar = progress(s.progress and writer, settings.steps, unit="step", refresh=s.refresh)
    try:
        trainer.run(bar.training if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
        plot = _beside(s.loss_plot, output, ".loss.png")
        if plot and writer and trainer.state.generator_losses:
            write_loss_plot(trainer.state.generator_losses, plot,
                            ylabel=f"generator loss ({settings.loss})")
    if not writer:  # the weights are the same on every rank: rank 0 makes the fit
        return Fit(model.name, "adversarial")
    line = (f"adversarial ({settings.loss}): {trainer.state.step} steps; last generator loss "
            f"{trainer.state.generator_losses[-1]:.4g}, critic loss "
            f"{trainer.state.critic_losses[-1]:.4g}")
    return Fit(model.name, "adversarial", idata=adversarial_result(trainer), report=(line,))


def runtime_plan(plan: list[Any]) -> list[Any]:
    """The compiler's conjugacy plan (compiler.passes.conjugacy.Conjugate) as the runtime's
    (runtime.exact.ConjugateUpdate): the same facts in the runtime's own types, so the
    runtime never holds a compiler object."""
    from compiler.passes import conjugacy as c  # noqa: PLC0415
    from runtime import exact as r  # noqa: PLC0415

    def value(v: c.Known) -> r.Value:
        if isinstance(v, c.DataRef):
            return r.DataValue(v.name, v.at_loops)
        if isinstance(v, c.VectorOf):
            return r.VectorValue(tuple(value(i) for i in v.items))
        if isinstance(v, c.OnesOf):
            return r.OnesValue(value(v.size))
        return float(v)

    return [r.ConjugateUpdate(u.latent, u.prior, {k: value(v) for k, v in u.prior_args.items()},
                              tuple(r.LikelihoodTerm(t.observed, t.family,
                                                     {k: value(v) for k, v in t.others.items()},
                                                     t.ranges) for t in u.terms))
            for u in plan]
