"""Stochastic variational inference: the ELBO over the model's and the guide's parameters
together, by Adam, on minibatches of a plate.

The variational family is the model's `guide:` block when it has one (a generated class
whose `sample_guide` makes reparameterised draws and adds log q), and a mean-field
Gaussian on the unconstrained coordinates of every continuous latent it does not cover
(Pyro's AutoNormal, initial scale 0.1). Point parameters and nets (the model's and the
guide's) are optimised directly (rule 23: variational EM).

The step size follows a schedule of the step alone (runtime/schedule.py), and a
diffusion model's weights are averaged as it trains (runtime/ema.py); the average is
what the fit keeps and samples with.

Minibatches subsample one plate `for i in 1..N`: the rows of every data array whose first
declared dim is N, and N itself. The compiler lists which terms vary over each plate
(`plates`); the accumulators scale those terms by N / batch, so the minibatch ELBO is an
unbiased estimate of the full one (tests/test_svi.py checks its gradient).

On several processes (torchrun; runtime/distributed.py) each rank takes its shard of
every global minibatch and weights its ELBO by its share of the batch; the gradients,
summed over the ranks, are the one-process gradient of the global batch
(tests/test_distributed.py checks it to 1e-10).
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from runtime.accumulate import Accumulator, Mode
from runtime.distributed import World
from runtime.ema import DEFAULT_DECAY, Ema
from runtime.errors import ModelError
from runtime.schedule import SCHEDULES, learning_rate, set_rate

# log q's initial scale for the mean-field part, as Pyro's AutoNormal: a wide start makes
# the first gradients noisy enough to throw nets far off
INIT_SCALE = 0.1


@dataclass
class SviSettings:
    steps: int = 2000
    epochs: int | None = None  # when given: steps = epochs * ceil(N / batch)
    batch: int | None = None  # minibatch size over `plate` (None: the full data)
    plate: str | None = None  # the size subsampled; found by itself when there is one
    lr: float = 1e-3
    particles: int = 1
    seed: int = 1
    draws: int = 1000
    schedule: str = "constant"  # of the learning rate (runtime/schedule.py)
    # the decay of an average of the weights kept for sampling (runtime/ema.py); None:
    # DEFAULT_DECAY for a diffusion model, none for others; 0: none
    ema: float | None = None


@dataclass
class SviState:
    """Everything a step changes; a checkpoint holds all of it, so a resumed run repeats
    an uninterrupted one exactly."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    order: torch.Tensor | None = None  # this epoch's permutation of the plate
    position: int = 0  # rows of `order` used so far


class Svi:
    """An ELBO estimator and its optimiser for a bound model (and its guide)."""

    def __init__(self, model: Any, settings: SviSettings):
        self.model = model
        self.settings = settings
        guide_class = getattr(type(model), "guide", None)
        self.guide = guide_class(model.values, device=model.device, dtype=model.dtype) \
            if guide_class is not None else None
        torch.manual_seed(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        self.params: dict[str, torch.nn.Parameter] = {}
        for bound in (model, self.guide):
            if bound is None:
                continue
            start = bound.packer.unpack(bound.initial_point(generator))
            for name in bound.param_names:
                if name not in self.params:
                    self.params[name] = torch.nn.Parameter(start[name].detach().clone())
        covered = set(self.guide.latent_names) if self.guide is not None else set()
        self.covered = covered
        self.meanfield = [lat for lat in model.latents
                          if lat.name not in model.param_names and lat.name not in covered]
        size = sum(lat.size for lat in self.meanfield)
        start = model.packer.unpack(model.initial_point(generator))
        loc = torch.cat([start[lat.name].reshape(-1) for lat in self.meanfield]) \
            if self.meanfield else torch.zeros(0, dtype=model.dtype, device=model.device)
        self.loc = torch.nn.Parameter(loc)
        self.log_scale = torch.nn.Parameter(torch.full((size,), math.log(INIT_SCALE),
                                                       dtype=model.dtype, device=model.device))
        # causal factors (term -> its windows): a minibatch draws windows of the sequence
        self.windows = dict(model.windows(model.data)) if hasattr(model, "windows") else {}
        self.plate = self._plate()
        self.total = self.windows[self.plate].count if self.plate in self.windows else \
            model.data[self.plate] if self.plate is not None else None
        self.batch = min(settings.batch, self.total) if self.plate is not None else None
        self.world = World.current()  # data-parallel over its ranks (runtime/distributed.py)
        self.world.check_batch(self.batch)
        self.rows = self._rows(model)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=settings.lr)
        if settings.schedule not in SCHEDULES:
            raise ModelError(f"unknown learning-rate schedule '{settings.schedule}' "
                             f"(one of {', '.join(SCHEDULES)})")
        decay = self.ema_decay()
        self.ema = Ema(self.params, decay) if decay else None
        self.state = SviState()

    def ema_decay(self) -> float:
        """The decay of the weights' average: the setting, or by default DEFAULT_DECAY
        for a diffusion model (whose samples are drawn with it) and none for others."""
        decay = self.settings.ema
        if decay is None:
            decay = DEFAULT_DECAY if getattr(self.model, "diffusion_names", ()) else 0.0
        if decay and not 0 < decay < 1:
            raise ModelError(f"the EMA decay must be in (0, 1), got {decay}")
        return float(decay)

    def averaged(self) -> Any:
        """A block inside which the params hold their moving averages (when kept)."""
        return self.ema.swapped(self.params) if self.ema is not None else \
            contextlib.nullcontext()

    # ---- what is optimised
    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.params.values()) + [self.loc, self.log_scale]

    def named_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"param.{k}": v for k, v in self.params.items()}
        out["meanfield.loc"] = self.loc
        out["meanfield.log_scale"] = self.log_scale
        if self.ema is not None:
            out.update({f"ema.{k}": v for k, v in self.ema.shadow.items()})
        return out

    # ---- minibatches
    def _plate(self) -> str | None:
        batch, plate = self.settings.batch, self.settings.plate
        if batch is None:
            if plate is not None:
                raise ModelError("--plate names the plate to subsample; give --batch too")
            return None
        if batch < 1:
            raise ModelError(f"--batch must be at least 1, got {batch}")
        plates = dict(getattr(self.model, "plates", {}))
        if plate in self.windows or plate is None and len(self.windows) == 1 and not plates:
            return plate or next(iter(self.windows))  # windows of a causal factor
        if plate is None:
            observed = set(self.model.observed_names)
            candidates = [k for k, terms in plates.items() if observed & set(terms) and
                          self._subsamplable(k)]
            if len(candidates) != 1:
                found = ", ".join(candidates) or "none"
                raise ModelError(f"--batch: cannot tell which plate to subsample (plates "
                                 f"over observed data: {found}); name it with --plate")
            plate = candidates[0]
        if plate not in plates:
            raise ModelError(f"--plate {plate}: not the size of a plate that can be "
                             "subsampled (a loop 'for i in 1.." + plate + "' with no chain "
                             "and no 'factor' over it)")
        reason = self._subsamplable(plate, explain=True)
        if reason:
            raise ModelError(f"--plate {plate}: {reason}")
        local = [lat.name for lat in self.meanfield if lat.name in plates[plate]]
        if local:
            raise ModelError(f"--batch: the latent '{local[0]}' is local to the plate "
                             f"{plate}, which a minibatch subsamples; cover it in a 'guide:' "
                             "block (amortised by a net) or fit without --batch",
                             self.model.locations.get(local[0]))
        return plate

    def _subsamplable(self, plate: str, explain: bool = False) -> Any:
        for spec in self.model.data_specs:
            if plate in spec.dims[1:]:
                return f"the data '{spec.name}' has {plate} as a dimension other than its " \
                    "first; only rows can be subsampled" if explain else False
        return "" if explain else True

    @staticmethod
    def _rows_of(bound: Any, plate: str) -> list[str]:
        return [spec.name for spec in bound.data_specs
                if spec.dims and spec.dims[0] == plate and spec.name in bound.data]

    def _rows(self, model: Any) -> list[str]:
        return self._rows_of(model, self.plate) if self.plate is not None and \
            self.plate not in self.windows else []

    def _indices(self) -> torch.Tensor | None:
        """The next minibatch: consecutive rows of a fresh permutation each epoch (every
        row is used once per epoch; each minibatch is a uniform random subset)."""
        if self.plate is None:
            return None
        st = self.state
        if st.order is None or st.position + self.batch > self.total:
            st.order = torch.randperm(self.total)
            st.position = 0
        idx = st.order[st.position:st.position + self.batch]
        st.position += self.batch
        return idx

    def _data(self, bound: Any, idx: torch.Tensor | None) -> Any:
        if idx is None or self.plate in self.windows:  # windows: the accumulator selects
            return bound.data
        on = idx.to(bound.device)
        updates = {name: bound.data[name].index_select(0, on)
                   for name in self._rows_of(bound, self.plate)}
        updates[self.plate] = int(idx.numel())
        data = bound.data.replaced(updates)
        if hasattr(bound, "transformed_data"):
            bound.transformed_data(data)
        return data

    def _scales(self, bound: Any, idx: torch.Tensor | None) -> dict[str, float]:
        if idx is None:
            return {}
        scale = self.total / float(idx.numel())
        if self.plate in self.windows:
            return {self.plate: scale}
        return {name: scale for name in dict(getattr(bound, "plates", {})).get(self.plate, ())}

    # ---- the ELBO
    def elbo(self, particles: int, idx: torch.Tensor | None = None,
             record: bool = False) -> tuple[torch.Tensor, Any, Any]:
        """A reparameterised estimate of the ELBO (of the full data, scaled from the
        minibatch idx), averaged over `particles`; with the accumulators."""
        model = self.model
        shape = (particles,)
        # a net's weights stay one vector (nets broadcast over particles themselves, and an
        # expand would add a reduction of every weight to the backward pass)
        nets = set(getattr(model, "net_names", ())) | \
            set(getattr(self.guide, "net_names", ()) if self.guide is not None else ())
        params = {k: v if k in nets else v.expand(shape + tuple(v.shape))
                  for k, v in self.params.items()}
        q_acc = Accumulator(Mode(jacobian=False, priors=True), 1, record,
                            scales=self._scales(self.guide, idx) if self.guide else None)
        drawn: dict[str, torch.Tensor] = {}
        if self.guide is not None:
            drawn = self.guide.sample_guide(self._data(self.guide, idx),
                                            self._guide_params(params, shape), shape, q_acc)
        u = dict(params)
        log_q_mf: Any = 0.0
        if self.meanfield:
            eps = torch.randn(shape + self.loc.shape, dtype=self.loc.dtype,
                              device=self.loc.device)
            scale = torch.exp(self.log_scale)
            theta = self.loc + eps * scale
            log_q_mf = (-0.5 * eps ** 2 - self.log_scale - 0.5 * math.log(2 * math.pi)).sum(-1)
            start = 0
            for lat in self.meanfield:
                u[lat.name] = theta[..., start:start + lat.size].reshape(
                    shape + lat.unconstrained_shape)
                start += lat.size
        for name, value in drawn.items():
            u[name] = value
        p_acc = Accumulator(Mode(jacobian=True, priors=True), 1, record, given=drawn,
                            scales=self._scales(model, idx))
        if self.plate in self.windows:
            p_acc.windows = idx
        model.log_density(self._data(model, idx), u, p_acc)
        total = p_acc.total - q_acc.total - log_q_mf
        if not isinstance(total, torch.Tensor):
            total = torch.as_tensor(total, dtype=model.dtype, device=model.device)
        return total.mean(), p_acc, q_acc

    def _guide_params(self, params: dict[str, torch.Tensor],
                      batch: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """The guide's params and nets on their supports (its sampler reads constrained
        values, as a fit gives them); a net or a real param is its own value."""
        guide = self.guide
        kinds = {lat.name: lat.kind for lat in guide.latents}
        if all(kinds[n] in ("real", "net") for n in guide.param_names):
            return {n: params[n] for n in guide.param_names}
        parts = {lat.name: params[lat.name] if lat.name in params else
                 torch.zeros(batch + lat.unconstrained_shape, dtype=guide.dtype,
                             device=guide.device) for lat in guide.latents}
        values = guide.constrain(guide.packer.pack(parts, len(batch)))
        return {n: values[n] for n in guide.param_names}

    def step(self) -> float:
        self.optimizer.zero_grad()
        idx = self._indices()
        if self.world.distributed:
            elbo = self._shared_step(idx)
        else:
            elbo, _, _ = self.elbo(self.settings.particles, idx)
            (-elbo).backward()  # a non-finite ELBO is caught below, before any update
        value, elbo_finite, finite = self._read(elbo)
        if not elbo_finite:
            raise ModelError(self._diagnose(idx))
        bad = [] if finite else [k for k, v in self.params.items() if v.grad is not None and
                                 not torch.isfinite(v.grad).all()]
        if bad:
            raise ModelError(f"the ELBO's gradient with respect to '{bad[0]}' became "
                             f"non-finite at step {self.state.step + 1}; try a smaller --lr",
                             self.model.locations.get(bad[0]))
        s = self.settings
        set_rate(self.optimizer, learning_rate(s.lr, self.state.step, self.total_steps(),
                                               s.schedule))
        self.optimizer.step()
        self.state.step += 1
        if self.ema is not None:
            self.ema.update(self.params, self.state.step)
        self.state.losses.append(value)
        return value

    def _read(self, elbo: torch.Tensor) -> tuple[float, bool, bool]:
        """-ELBO, whether it is finite, and whether every gradient is, in one copy to
        the host: on a GPU each read of a value waits for the device, so a step reads
        once (the loss is needed for the progress bar and the loss history)."""
        grads = [v.grad for v in self.params.values() if v.grad is not None]
        total = torch.stack([g.sum() for g in grads]).sum().to(elbo.dtype) if grads else \
            elbo.new_zeros(())
        value, elbo_finite, finite = torch.stack([
            -elbo.detach(), torch.isfinite(elbo).to(elbo.dtype),
            torch.isfinite(total).to(elbo.dtype)]).tolist()
        return value, bool(elbo_finite), bool(finite)

    def _shared_step(self, idx: torch.Tensor | None) -> torch.Tensor:
        """This rank's part of a step: the ELBO of its shard of the global minibatch idx,
        weighted by its share so that the ranks' gradients sum (one all-reduce) to the
        gradient of the global batch's ELBO, which is returned (the same on every rank)."""
        local = self.world.shard(idx)
        with self.world.noise(self.settings.seed, self.state.step, self.model.device):
            elbo = self.elbo(self.settings.particles, local)[0] * self.world.share(idx)
        (-elbo).backward()
        total = self.world.summed(self.parameters(), elbo)
        if not torch.isfinite(total):  # every rank stops, rank 0 names the term
            with self.world.noise(self.settings.seed, self.state.step, self.model.device):
                raise ModelError(self._diagnose(local))
        return total

    def _diagnose(self, idx: torch.Tensor | None) -> str:
        """Name the first non-finite term of the ELBO (a factor of the model or of q)."""
        with torch.no_grad():
            _, p_acc, q_acc = self.elbo(1, idx, record=True)
        at = f"at step {self.state.step + 1}"
        for acc, what in ((p_acc, "model"), (q_acc, "guide")):
            for key, value in acc.terms.items():
                if not torch.isfinite(torch.as_tensor(value)).all():
                    name = key.split(" ", 1)[1] if " " in key else key
                    where = self.model.locations.get(name, "")
                    return (f"the ELBO became non-finite {at}: the {what}'s term '{key}'"
                            f"{' (' + where + ')' if where else ''} is not finite; stopped. "
                            "Try a smaller --lr, or check the factor's parameters")
        return f"the ELBO became non-finite {at}; stopped. Try a smaller --lr"

    # ---- training
    def total_steps(self) -> int:
        s = self.settings
        if s.epochs is None:
            return s.steps
        per_epoch = 1 if self.plate is None else max(1, self.total // self.batch)
        return s.epochs * per_epoch

    def run(self, progress: Callable[[int, int, float, float], None] | None = None,
            checkpoint: Callable[[Svi], None] | None = None, every: int = 0) -> None:
        total = self.total_steps()
        began = time.perf_counter()
        first = self.state.step
        while self.state.step < total:
            loss = self.step()
            done = self.state.step
            if progress is not None:
                rate = (done - first) / max(time.perf_counter() - began, 1e-9)
                progress(done, total, loss, rate * (self.batch or 1))
            if checkpoint is not None and every and done % every == 0 and done < total:
                checkpoint(self)
        if checkpoint is not None:
            checkpoint(self)

    # ---- results
    def full_elbo(self, particles: int = 10) -> float:
        if not self.meanfield and self.guide is None:  # a point: nothing to average over
            particles = 1
        with torch.no_grad():
            return float(self.elbo(particles)[0])

    def draws(self, n: int, chunk: int = 50) -> torch.Tensor:
        """n draws of the model's unconstrained vector from the fitted q over the full
        data, [1, n, dim]: the guide's latents, the mean-field ones, the point values."""
        return self.draws_with_log_q(n, chunk)[0]

    def draws_with_log_q(self, n: int, chunk: int = 50
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`draws`, with log q of each [1, n] up to a constant when q is the mean-field
        Gaussian alone (a guide block's density is over constrained values: None)."""
        model = self.model
        out = []
        log_q = []
        with torch.no_grad():
            for start in range(0, n, chunk):
                k = min(chunk, n - start)
                q_acc = Accumulator(Mode(False, True), 1)
                drawn = self.guide.sample_guide(
                    self.guide.data, self._guide_params(dict(self.params), ()), (k,), q_acc) \
                    if self.guide is not None else {}
                eps = torch.randn((k,) + self.loc.shape, dtype=self.loc.dtype,
                                  device=self.loc.device)
                theta = (self.loc + eps * torch.exp(self.log_scale))
                log_q.append(-0.5 * (eps * eps).sum(-1))
                parts: dict[str, torch.Tensor] = {}
                at = 0
                for lat in self.meanfield:
                    parts[lat.name] = theta[..., at:at + lat.size]
                    at += lat.size
                for name, p in self.params.items():
                    if name in model.packer.slices:
                        parts[name] = p.detach().expand((k,) + tuple(p.shape))
                out.append(self._pack(parts, drawn, k))
        density = torch.cat(log_q)[None] if self.guide is None and self.meanfield else None
        return torch.cat(out)[None], density

    def _pack(self, parts: dict[str, torch.Tensor], drawn: dict[str, torch.Tensor],
              k: int) -> torch.Tensor:
        model = self.model
        kinds = {lat.name: lat.kind for lat in model.latents}
        if all(kinds[name] == "real" for name in drawn):
            for name, value in drawn.items():
                parts[name] = value
            return model.packer.pack(parts, 1)
        # a constrained latent drawn by the guide: back to unconstrained coordinates
        for name in drawn:
            parts[name] = torch.zeros((k, model.packer.slices[name].stop -
                                       model.packer.slices[name].start),
                                      dtype=model.dtype, device=model.device)
        values = model.constrain(model.packer.pack(parts, 1))
        values.update(drawn)
        return model.unconstrain(values, batch_ndim=1)
