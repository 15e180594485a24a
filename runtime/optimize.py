"""Point estimates: MLE and MAP by L-BFGS (Adam for models too big for it), rule 23.

MAP maximises the log joint density on the constrained space (no Jacobian: the posterior
mode, as Stan's optimiser reports it); MLE first drops the priors. Optimisation runs on
the unconstrained coordinates, so bounds are never crossed. The result says whether it
converged, after how many iterations, and the gradient norm where it stopped.

L-BFGS stalls where the objective has a kink at the optimum: a Laplace prior (MAP as L1
regularisation) whose weight is exactly zero there. Its line search then stops short, and
not only in the kinked coordinates. When L-BFGS ends without a vanishing gradient, a
polishing phase follows: Adam with a learning rate decaying to nearly zero (which walks
into the kink), then L-BFGS again for the smooth coordinates; the best point is kept.
If even that point fails the gradient test, `why_not_converged` says why, naming the
unknowns: the density climbing towards the edge of a support (no maximum), a kink (a
Laplace prior at its centre, when the model has one; abs, fmin, ... otherwise), or
neither.

A point where the log density is undefined or not finite (a Cholesky factorisation that
fails, the log of a negative: runtime/model.py) is infeasible, as Stan's optimiser
treats it: L-BFGS sees it as an infinite objective (its line search then stops short of
it and the polishing phase continues), Adam rejects the step and halves its learning
rate. Only a start point that fails is an error, which says where.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

import torch

from runtime.accumulate import Mode
from runtime.errors import ModelError
from runtime.model import describe_failure, numerical_failure


@dataclass
class PointEstimate:
    method: str
    objective: float
    converged: bool
    iterations: int
    grad_norm: float
    theta: torch.Tensor
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    restarts: int = 1
    message: str = ""


def _check_identified(model: Any, method: str) -> None:
    if method == "mle" and model.latents_without_likelihood:
        names = ", ".join(model.latents_without_likelihood)
        where = model.locations.get(model.latents_without_likelihood[0])
        raise ModelError(f"not identified by the likelihood: {names} appear only in priors, "
                         "which MLE drops; use --method map, or give them a likelihood",
                         where)


def bad_terms(model: Any, theta: torch.Tensor, mode: Mode) -> str:
    """Which factors of the log density are not finite at theta, or where in the model
    it cannot be evaluated there (for error messages)."""
    try:
        with torch.no_grad():
            acc = model.accumulate(theta, mode, record=True)
    except Exception as exc:
        if not numerical_failure(exc):
            raise
        return describe_failure(exc, getattr(model, "locations", {}))
    locations = getattr(model, "locations", {})
    bad = [_located(term, locations) for term, value in acc.terms.items()
           if not bool(torch.isfinite(torch.as_tensor(value)).all())]
    # a computed value that is already NaN (cholesky() of a matrix that is not positive
    # definite, the log of a negative) says where the trouble starts
    nan = [f"{name} at {locations[name]}" if name in locations else name
           for name, value in acc.deterministics.items()
           if isinstance(value, torch.Tensor) and value.is_floating_point()
           and bool(torch.isnan(value).any())]
    text = ", ".join(bad) if bad else "the total"
    return f"{text}; NaN in {', '.join(nan)}" if nan else text


def _located(term: str, locations: dict[str, str]) -> str:
    """`likelihood y` -> `likelihood y at coin.bgm:11`: a term with its model line."""
    name = term.split()[-1]
    return f"{term} at {locations[name]}" if name in locations else term


def find_start(model: Any, mode: Mode, generator: torch.Generator, radius: float,
               init: torch.Tensor | None, tries: int = 100) -> torch.Tensor:
    """An initial point with a finite log density and gradient (Stan retries 100 times)."""
    if init is not None:
        if not torch.isfinite(model.log_prob(init, mode)).all():
            raise ModelError(f"the log density is not finite at the given initial values "
                             f"({bad_terms(model, init, mode)})")
        return init
    theta = model.initial_point(generator, radius)
    for _ in range(tries):
        t = theta.clone().requires_grad_(True)
        lp = model.log_prob(t, mode)
        if torch.isfinite(lp) and not lp.requires_grad:  # nothing to optimise
            return theta
        if torch.isfinite(lp):
            (g,) = torch.autograd.grad(lp, t)
            if torch.isfinite(g).all():
                return theta
        theta = model.initial_point(generator, radius)
    centre = torch.zeros_like(theta)
    with torch.no_grad():
        finite_at_centre = bool(torch.isfinite(model.log_prob(centre, mode)).all())
    hint = ("it is finite at the centre (every unconstrained value 0): try a smaller "
            "--init radius, e.g. --init 0.5" if finite_at_centre else
            f"it is not finite at the centre either ({bad_terms(model, centre, mode)}), so a "
            "smaller --init will not help: check that the data can come from the model "
            "(values inside each distribution's support)")
    raise ModelError(f"no initial point with a finite log density in {tries} tries "
                     f"(non-finite: {bad_terms(model, theta, mode)}); {hint}")


Tick = Callable[[float], None]  # called with the objective at each evaluation


def _no_tick(loss: float) -> None:
    return None


def optimize(model: Any, method: str = "map", seed: int = 1, init: torch.Tensor | None = None,
             radius: float = 2.0, restarts: int = 1, optimizer: str = "lbfgs",
             max_iter: int = 2000, lr: float = 0.05,
             progress: Tick | None = None) -> PointEstimate:
    """Maximise the MLE or MAP objective; the best of `restarts` random starts.
    `progress` is called with the objective (the negative log density) at every
    evaluation, so a long fit shows it is moving."""
    tick = progress or _no_tick
    if method not in ("mle", "map"):
        raise ModelError(f"unknown optimisation method '{method}'")
    _check_identified(model, method)
    mode = Mode.for_method(method)
    generator = torch.Generator().manual_seed(seed)
    best: PointEstimate | None = None
    for _ in range(max(1, restarts)):
        start = find_start(model, mode, generator, radius, init)
        if start.shape[-1] == 0:  # no continuous unknowns: the log density is the answer
            best = _finish(model, mode, start, 0)
            break
        if optimizer == "lbfgs":
            result = _lbfgs(model, mode, start, max_iter, lr, tick)
            if not result.converged:
                result = _polish(model, mode, result, max_iter, steps=min(1000, max_iter),
                                 tick=tick)
        else:
            result = _adam(model, mode, start, max_iter, lr, tick)
        result.method = method
        if best is None or result.objective > best.objective:
            best = result
    assert best is not None
    best.method = method  # also when there was nothing to optimise
    best.restarts = max(1, restarts)
    order = {name: i for i, name in enumerate(getattr(model, "locations", {}))}
    best.values = {k: v.detach() for k, v in sorted(  # in the model's order
        model.constrain(best.theta).items(), key=lambda kv: order.get(kv[0], len(order)))}
    if best.converged:
        best.message = at_the_edge(model, best.theta, best.values)
    return best


# A bounded unknown whose unconstrained coordinate is this far out sits within exp(-9) ~
# 1e-4 (relative) of a bound: a mode on the boundary of the support.
_EDGE = 9.0


def at_the_edge(model: Any, theta: torch.Tensor, values: dict[str, torch.Tensor]) -> str:
    """A warning when the optimum puts a bounded unknown on its bound (the MAP of a
    hierarchical scale, tau = 1e-5 in eight schools): converged, yet not a summary of the
    posterior, whose mass lies away from the bound."""
    found = []
    for lat in model.latents:
        if lat.kind != "bounded":
            continue
        where = model.packer.slices[lat.name]
        u = theta.detach()[..., where].reshape(-1)
        edge = (u.abs() > _EDGE).nonzero().flatten()
        if len(edge):
            value = values[lat.name].reshape(-1)[int(edge[0])]
            found.append(_coordinate_names(model, [where.start + int(edge[0])]) +
                         f" = {float(value):.3g}")
    if not found:
        return ""
    return (f"{', '.join(found[:4])} {'is' if len(found) == 1 else 'are'} at the edge of "
            "the support: the mode is on a boundary (as the MAP of a hierarchical scale "
            "often is), where a point does not summarise the posterior; fit with --method "
            "nuts (or advi) for the posterior")


def _objective(model: Any, mode: Mode, theta: torch.Tensor) -> torch.Tensor:
    lp = model.log_prob(theta, mode)
    if not torch.isfinite(lp):
        return torch.full_like(lp, math.inf)
    return -lp


def _lbfgs(model: Any, mode: Mode, start: torch.Tensor, max_iter: int, lr: float,
           tick: Tick = _no_tick) -> PointEstimate:
    theta = start.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-10, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _objective(model, mode, theta)
        tick(float(loss.detach()))
        if torch.isfinite(loss):
            loss.backward()
        else:
            theta.grad = torch.zeros_like(theta)
        return loss
    previous = math.inf
    iterations = 0
    good = theta.detach().clone()  # the last point with a finite objective
    for _ in range(20):
        loss = float(opt.step(closure).detach())
        iterations = opt.state[opt._params[0]].get("n_iter", iterations)
        with torch.no_grad():
            infeasible = not bool(torch.isfinite(_objective(model, mode, theta)))
        if infeasible:  # the line search ended on an infeasible point: step back from it
            with torch.no_grad():
                theta.copy_(good)
            break
        good = theta.detach().clone()
        if iterations >= max_iter:  # --iter bounds the whole run, not each of its steps
            break
        if not math.isfinite(loss) or abs(previous - loss) <= 1e-12 * (1 + abs(loss)):
            break
        previous = loss
    return _finish(model, mode, theta.detach(), iterations)


def _adam(model: Any, mode: Mode, start: torch.Tensor, max_iter: int, lr: float,
          tick: Tick = _no_tick) -> PointEstimate:
    """Adam; a step onto an infeasible point is rejected (back to the last point, with
    half the learning rate)."""
    theta = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    last = theta.detach().clone()
    rejected = 0
    for _ in range(max_iter):
        opt.zero_grad()
        loss = _objective(model, mode, theta)
        tick(float(loss.detach()))
        if not torch.isfinite(loss):
            rejected += 1
            if rejected > 30:
                raise ModelError(f"Adam: every step from the point it reached leads where the "
                                 f"log density is not finite "
                                 f"({bad_terms(model, theta.detach(), mode)})")
            with torch.no_grad():
                theta.copy_(last)
                for group in opt.param_groups:
                    group["lr"] = group["lr"] / 2
            continue
        loss.backward()
        if not bool(torch.isfinite(theta.grad).all()):
            theta.grad = torch.nan_to_num(theta.grad, nan=0.0, posinf=0.0, neginf=0.0)
        rejected = 0
        last = theta.detach().clone()
        opt.step()
    return _finish(model, mode, _last_finite(model, mode, theta.detach(), last), max_iter)


def _last_finite(model: Any, mode: Mode, theta: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """theta if the objective is finite there, else the last point where it was."""
    with torch.no_grad():
        return theta if bool(torch.isfinite(model.log_prob(theta, mode))) else last


def _polish(model: Any, mode: Mode, result: PointEstimate, max_iter: int,
            steps: int = 1000, lr: float = 0.01, tick: Tick = _no_tick) -> PointEstimate:
    """Adam with a cosine-decaying learning rate from where L-BFGS stopped, then L-BFGS
    from Adam's best point; the best of the three points is returned."""
    theta = result.theta.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    best, best_theta = -result.objective, result.theta
    for k in range(steps):
        opt.zero_grad()
        loss = _objective(model, mode, theta)
        tick(float(loss.detach()))
        if not torch.isfinite(loss):
            break
        if float(loss.detach()) < best:
            best, best_theta = float(loss.detach()), theta.detach().clone()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = lr * (1e-6 + 0.5 * (1 + math.cos(math.pi * k / steps)))
        opt.step()
    try:
        again = _lbfgs(model, mode, best_theta, max_iter, lr, tick)
    except ModelError:  # L-BFGS left the finite region: keep what we had
        again = result
    found = max((result, again), key=lambda r: r.objective)
    if best > -found.objective:  # Adam's best point beats both L-BFGS runs
        found = _finish(model, mode, best_theta, result.iterations)
    found.iterations = result.iterations + steps + again.iterations
    if not found.converged:
        found.message = why_not_converged(model, mode, found.theta)
    return found


# An unconstrained coordinate this far from 0 is a constrained value at the very edge of
# its support (exp(-20) ~ 2e-9 above a lower bound) or a real one far out.
_FAR = 20.0


def why_not_converged(model: Any, mode: Mode, theta: torch.Tensor) -> str:
    """Why the gradient does not vanish where the optimiser stopped, naming the unknowns:
    the objective still increases towards the edge of a support (no maximum there: a
    scale collapsing to 0, separable data), or it has a kink at the point (a Laplace
    prior at its centre, abs, fmin, ...), or neither could be told."""
    t = theta.detach().clone().requires_grad_(True)
    lp = model.log_prob(t, mode)
    (g,) = torch.autograd.grad(lp, t)
    g, theta = g.detach(), theta.detach()
    stopped = "the gradient does not vanish where the optimiser stopped"
    outward = [int(i) for i in ((theta.abs() > _FAR) & (g * theta > 0)).nonzero().flatten()]
    if outward:
        names = _coordinate_names(model, outward)
        return (f"{stopped}: the log density keeps increasing as {names} "
                f"{'runs' if len(outward) == 1 else 'run'} off towards the edge of "
                "the support (a bound, or infinity), "
                "so it has no maximum (a scale collapsing to 0 in a hierarchical model, or "
                "separable data, makes the density unbounded); give it a prior that keeps "
                "it away from the edge, or fit with nuts or advi")
    kinks = _kinks(model, mode, theta, g)
    if kinks:
        names = _coordinate_names(model, kinks)
        terms = _kinked_terms(model, mode, theta, kinks)
        where = f" in {', '.join(terms)}" if terms else ""
        if _uses(model, "Laplace") and any(term.startswith("prior ") for term in terms):
            return (f"{stopped}: the objective has a kink at {names}{where}, a Laplace "
                    "prior at its centre (an L1 penalty sets these exactly there; the "
                    "estimate is fine, though the gradient test cannot say so)")
        return (f"{stopped}: the objective has a kink at {names}{where} (a function "
                "without a derivative there, such as abs, fmin, fmax, max, min, floor or "
                "round)")
    largest = _coordinate_names(model, [int(g.abs().argmax())])
    return (f"{stopped}: L-BFGS's line search stopped short and polishing with Adam did "
            f"not reach a flat point (largest gradient at {largest}); the objective may be "
            "badly scaled or still climbing slowly there: try more restarts (--restarts), "
            "more iterations (--iter) or --optimizer adam")


def _coordinate_names(model: Any, coordinates: list[int], most: int = 4) -> str:
    """`tau`, `w[2], w[5]`: the unknowns holding these unconstrained coordinates (an
    element of a vector by its 1-based position among its unconstrained coordinates)."""
    names: list[str] = []
    for i in coordinates:
        for lat in model.latents:
            where = model.packer.slices[lat.name]
            if where.start <= i < where.stop:
                names.append(lat.name if lat.size == 1 and not lat.shape else
                             f"{lat.name}[{i - where.start + 1}]")
                break
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _kinks(model: Any, mode: Mode, theta: torch.Tensor, g: torch.Tensor,
           most: int = 20) -> list[int]:
    """Coordinates (among those of the largest gradient) along which the log density
    falls on both sides though its gradient there is not zero: a kink at a maximum."""
    order = [int(i) for i in torch.argsort(g.abs(), descending=True)[:most]]
    with torch.no_grad():
        here = float(model.log_prob(theta, mode))
        found = []
        for i in order:
            slope = abs(float(g[i]))
            if slope < 1e-6:
                break
            h = 1e-7 * max(1.0, abs(float(theta[i])))
            step = torch.zeros_like(theta)
            step[i] = h
            up = float(model.log_prob(theta + step, mode)) - here
            down = float(model.log_prob(theta - step, mode)) - here
            if max(up, down) < 0.5 * slope * h:  # a smooth slope would climb one side
                found.append(i)
    return sorted(found)


def _kinked_terms(model: Any, mode: Mode, theta: torch.Tensor, kinks: list[int]) -> list[str]:
    """The terms of the log density (`prior w`, `likelihood y`) that bend at the kinks."""
    def terms(at: torch.Tensor) -> dict[str, float]:
        acc = model.accumulate(at, mode, record=True)
        return {k: float(torch.as_tensor(v).sum()) for k, v in acc.terms.items()}
    with torch.no_grad():
        here = terms(theta)
        bent: list[str] = []
        for i in kinks:
            h = 1e-7 * max(1.0, abs(float(theta[i])))
            step = torch.zeros_like(theta)
            step[i] = h
            up, down = terms(theta + step), terms(theta - step)
            for k, value in here.items():
                d_up, d_down = up[k] - value, down[k] - value
                if d_up + d_down < -0.5 * (abs(d_up) + abs(d_down)) and \
                        abs(d_up) + abs(d_down) > 1e-3 * h and k not in bent:
                    bent.append(k)
    return bent


def _uses(model: Any, distribution: str) -> bool:
    """Whether the generated log density draws from `distribution` (dist.Laplace)."""
    def names(code: CodeType) -> set[str]:
        found = set(code.co_names)
        for const in code.co_consts:
            if isinstance(const, CodeType):
                found |= names(const)
        return found
    log_density = getattr(type(model), "log_density", None)
    code = getattr(log_density, "__code__", None)
    return code is not None and distribution in names(code)


def _finish(model: Any, mode: Mode, theta: torch.Tensor, iterations: int) -> PointEstimate:
    t = theta.clone().requires_grad_(True)
    lp = model.log_prob(t, mode)
    if not torch.isfinite(lp):
        raise ModelError(f"the optimiser reached a point where the log density is not finite "
                         f"({bad_terms(model, theta, mode)})")
    if not lp.requires_grad:  # nothing to optimise: no continuous unknowns
        return PointEstimate("", float(lp.detach()), True, int(iterations), 0.0, theta)
    (g,) = torch.autograd.grad(lp, t)
    grad_norm = float(g.norm())
    value = float(lp.detach())
    converged = grad_norm < 1e-4 * max(1.0, abs(value)) ** 0.5 or grad_norm < 1e-6
    return PointEstimate("", value, converged, int(iterations), grad_norm, theta)
