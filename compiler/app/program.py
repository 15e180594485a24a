"""`Program`: a compiled .bgm model and everything a user does with it, from Python.

    from compiler.api import compile_file
    program = compile_file("examples/coin.bgm")
    fit = program.fit("examples/coin.json", method="nuts", chains=4)
    print(fit.summary()[0])

Every method `bgmc` runs is a method here, with the same settings and results (the CLI is
a thin layer over this class). Compiling never imports torch; it is imported when a model
is bound to data.
"""
from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from compiler.app import fitting
from compiler.pipeline import Compiled, compile_path, compile_source
from compiler.tables.names import class_name
from dsl.spans import Source
from runtime.errors import ModelError


class Program:
    """A compiled .bgm model: its graphical model, its generated code, and ways to run it."""

    def __init__(self, compiled: Compiled):
        self.compiled = compiled
        self._class: type | None = None

    # ---- rich display in notebooks: the plate diagram and the factorised joint
    def diagram_svg(self) -> str:
        """The plate diagram as SVG text (compiler/teaching: diagram.py, render.py)."""
        from compiler.teaching import render  # noqa: PLC0415
        from compiler.teaching.diagram import build  # noqa: PLC0415
        return render.svg(build(self.compiled.model))

    def joint_latex(self) -> str:
        """The factorised joint density in LaTeX (compiler/teaching/explain.py)."""
        from compiler.teaching.explain import joint, latex  # noqa: PLC0415
        return latex(joint(self.compiled.model))

    def explain(self, latex: bool = False) -> str:
        from compiler.teaching.explain import explain  # noqa: PLC0415
        return explain(self.compiled.model, latex=latex)

    def _repr_svg_(self) -> str:
        return self.diagram_svg()

    def _repr_latex_(self) -> str:
        return f"$${self.joint_latex()}$$"

    def __repr__(self) -> str:
        return f"<bgm program {self.name} from {self.compiled.source.path}>"

    @property
    def python(self) -> str:
        """The generated PyTorch module's source."""
        return self.compiled.python

    @property
    def graph(self) -> Any:
        """The graphical model as a networkx DiGraph (nodes carry role, span, loops)."""
        return self.compiled.model.graph

    @property
    def name(self) -> str:
        return self.compiled.model.name

    def model_class(self) -> type:
        """The generated class, loaded from the generated source (imports runtime)."""
        if self._class is None:
            module = types.ModuleType(f"bgm_generated_{self.name}")
            code = compile(self.python, f"<bgmc:{self.compiled.source.path}>", "exec")
            exec(code, module.__dict__)  # the generated module, not model text
            self._class = getattr(module, class_name(self.name))
        return self._class

    def bind(self, data: Any, device: str = "auto", simulate: bool = False,
             dtype: str | None = None) -> Any:
        """The model bound to its data (a path to JSON/CSV/NPZ or a dict); dtype
        "float32" or "float64" (default: float64 on the CPU)."""
        torch_dtype = None
        if dtype is not None:
            import torch  # noqa: PLC0415 - torch only when binding
            torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        return self.model_class()(data, device=device, simulate=simulate, dtype=torch_dtype)

    # ---- fitting: every method of `bgmc fit`
    def fit(self, data: Any, method: str = "map", seed: int = 1, device: str = "auto",
            output: str | None = None, notify: fitting.Notify | None = None,
            **options: Any) -> fitting.Fit:
        """Fit the model to `data` with any method of `bgmc fit` (mle, map, nuts, chees, advi,
        svi, exact, adversarial) and its options, named as fitting.FitSettings names them
        (chains, warmup, draws, adapt_delta, max_treedepth, metric, family, optimizer,
        restarts, max_iter, lr, init, batch, plate, epochs, particles, checkpoint,
        checkpoint_every, resume, loss_plot, critic, gan_loss, dtype, progress). Returns
        a fitting.Fit: point estimates (`.values`) or draws (`.idata`). `output` is where
        the fit will be saved (SVI writes its checkpoint and loss plot beside it)."""
        settings = fitting.FitSettings.of({"method": method, "seed": seed, "device": device,
                                           **options})
        return fitting.fit(self, data, settings, output, notify)

    def fitted_values(self, data: Any, fit: str, draws: int, seed: int = 1) -> dict[str, Any]:
        """The values of a fit file from `bgmc fit` (.json point estimates or .nc draws)
        for the model's continuous latents, params and nets, checked against the model
        bound to `data`, each with a leading dimension of `draws` draws."""
        from compiler.app.userfiles import fitted_values  # noqa: PLC0415
        bound = self.bind(data, device="cpu", simulate=True)
        return fitted_values(bound, fit, self.continuous_unknowns(), draws, seed)

    def continuous_unknowns(self) -> list[str]:
        """The latents, params and nets a fit file holds values of (not the summed-out
        discrete latents, nor a flow's base, which is drawn afresh)."""
        model = self.compiled.model
        bases = {f.base for f in model.flows.values()}
        return [v.name for v in model.of_role("latent", "param", "net")
                if not (v.role == "latent" and v.discrete) and v.name not in bases]

    # ---- drawing
    def sample(self, data: Any, n: int = 100, seed: int = 1, given: dict[str, Any] | None = None,
               device: str = "auto", prior: bool = False, ddim: int | None = None,
               eta: float = 0.0) -> dict[str, Any]:
        """Prior draws (given=None) or predictive draws given latent values with a leading
        draw dimension; with prior=True, prior draws at the point parameters and nets in
        `given` (its first draw): a VAE's samples. A diffusion model draws by DDIM over
        `ddim` steps with noise `eta` when ddim is given, else by DDPM. Returns numpy
        arrays named as in the model."""
        from runtime.diffusion import sampler  # noqa: PLC0415
        if ddim is not None and ddim < 1:
            raise ModelError(f"--ddim takes the number of steps to draw with, at least 1; "
                             f"got {ddim}")
        if ddim is not None and not getattr(self.model_class(), "diffusion_names", ()):
            raise ModelError("--ddim draws from a diffusion model (x ~ Diffusion(...)); this "
                             "model has none")
        model = self.bind(data, device, simulate=True)
        with sampler(ddim, eta):
            if prior and given is not None:
                params = {k: v[0] for k, v in given.items() if k in model.param_names}
                draws = model.prior_draws_at(params, n, seed)
            else:
                draws = model.draws(n, seed) if given is None else model.predictive(given, seed)
        return {k: v.detach().cpu().numpy() for k, v in draws.items()}

    def generates_sequences(self) -> bool:
        """Whether the model has a prefix-conditioned factor to generate from."""
        return bool(getattr(self.model_class(), "causal_names", ()))

    def generate(self, data: Any, given: dict[str, Any], n: int = 1, seed: int = 1,
                 device: str = "auto", length: int | None = None, prompt: str | None = None,
                 temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None) -> dict[str, Any]:
        """Sequences from a fitted autoregressive model (a prefix-conditioned factor), token
        by token: `length` tokens (default: the data's), the first ones fixed by `prompt`,
        drawn with temperature, top-k and top-p. Returns {variable: {"tokens": [n, length],
        "text": n strings (when the data writes it with an alphabet)}}."""
        from runtime.decoding import Decoding  # noqa: PLC0415
        from runtime.text import decode, encode  # noqa: PLC0415
        name, raw, alphabets = self._sequence_data(data, "causal_names", "generation needs a "
                                                   "prefix-conditioned factor (x[t] ~ "
                                                   "Categorical(logits=net(x[1..t-1])))")
        fixed: list[int] = []
        if prompt is not None:
            if name not in alphabets:
                raise ModelError(f"--prompt needs the data's '{name}' written as text: "
                                 '{"alphabet": "...", "text": "..."}')
            fixed = encode(name, alphabets[name], prompt, "prompt")
        data_tokens = raw.get(name, [])
        for _ in range(self._step_axis(name)):  # many documents: continue the first one's
            data_tokens = data_tokens[0] if len(data_tokens) else []
        values = fixed + list(data_tokens)
        size = self._size_name(name)
        total = int(length if length is not None else raw.get(size, len(values)))
        if total < 1:
            raise ModelError(f"--length must be at least 1, got {total}")
        out = self._continue(raw, name, values, total, device, given, seed,
                             Decoding(temperature, top_k, top_p, {name: fixed} if fixed else {}))
        result: dict[str, Any] = {"tokens": out[:n]}
        if name in alphabets:
            result["text"] = [decode(alphabets[name], row) for row in out[:n]]
        return {name: result}

    def forecast(self, data: Any, given: dict[str, Any], horizon: int, seed: int = 1,
                 device: str = "auto") -> dict[str, Any]:
        """The next `horizon` values of an observed chain (an AR(k) series) after the data,
        drawn step by step at each of the fit's draws in `given`: {variable: [draws,
        horizon]}, the posterior predictive forecast. Many series (`y[n, t]` inside `for
        n`) are continued together: [draws, N, horizon], each after its own data."""
        from runtime.decoding import Decoding  # noqa: PLC0415
        if horizon < 1:
            raise ModelError(f"--forecast must be at least 1, got {horizon}")
        name, raw, _ = self._sequence_data(data, "chain_names", "a forecast continues an "
                                           "observed chain (y[t] ~ ... y[t-1] ...)")
        if name not in raw:
            raise ModelError(f"a forecast continues the data's '{name}': it is missing")
        axis = self._step_axis(name)
        if axis == 0:
            values = [float(x) for x in raw[name]]
            out = self._continue(raw, name, values, len(values) + horizon, device, given,
                                 seed, Decoding(prompt={name: values}))
            return {name: out[:, len(values):]}
        return {name: self._forecast_series(raw, name, axis, horizon, device, given, seed)}

    def _forecast_series(self, raw: dict[str, Any], name: str, axis: int, horizon: int,
                         device: str, given: dict[str, Any], seed: int) -> Any:
        """Many series continued together along their step dim `axis`: the data's steps
        are fixed (the prompt), the next `horizon` drawn: [draws, series..., horizon]."""
        import numpy as np  # noqa: PLC0415

        from runtime.decoding import Decoding, decoding  # noqa: PLC0415
        if getattr(self.model_class(), "ragged_sizes", {}):
            raise ModelError("a forecast of series of different lengths (a loop ending at "
                             "x[n]) is not supported yet: forecast series of one length")
        values = np.asarray(raw[name], dtype=float)
        if values.ndim <= axis:
            raise ModelError(f"the data's '{name}' has {values.ndim} dims; a forecast "
                             f"continues its dim {axis + 1}")
        steps = values.shape[axis]
        last = np.take(values, [steps - 1], axis=axis)
        raw[name] = np.concatenate([values, np.repeat(last, horizon, axis=axis)], axis)
        raw[self._size_name(name, axis)] = steps + horizon
        model = self.bind(raw, device, simulate=True)
        with decoding(Decoding(prompt={name: [0.0] * steps})):
            draws = model.predictive(given, seed)
        out = draws[name].detach().cpu().numpy()
        out = out.reshape(-1, *out.shape[out.ndim - values.ndim:])
        return np.moveaxis(np.take(out, np.arange(steps, steps + horizon), axis=axis + 1),
                           axis + 1, -1)

    def series_length(self, data: Any, name: str) -> int:
        """The length of the observed chain `name` in `data` (its size's value): a
        forecast's first index is one past it."""
        bound = self.bind(data, device="cpu", simulate=True)
        return int(bound.data[self._size_name(name, self._step_axis(name))])

    def _sequence_data(self, data: Any, attr: str, missing: str) -> tuple[str, dict[str, Any],
                                                                          dict[str, str]]:
        from runtime.data_files import read_data_file  # noqa: PLC0415
        from runtime.text import encoded  # noqa: PLC0415
        targets = getattr(self.model_class(), attr, ())
        if not targets:
            raise ModelError(missing)
        raw = dict(data) if isinstance(data, dict) else read_data_file(data)
        raw, alphabets = encoded(raw)
        return targets[0], raw, alphabets

    def _size_name(self, name: str, axis: int = 0) -> str:
        dim = next(s for s in self.model_class().data_specs if s.name == name).dims[axis]
        if not isinstance(dim, str):
            raise ModelError(f"a forecast lengthens the data's '{name}', whose length is "
                             "not one int data name")
        return dim

    def _continue(self, raw: dict[str, Any], name: str, values: list[Any], total: int,
                  device: str, given: dict[str, Any], seed: int, settings: Any) -> Any:
        """Draws of `name` over 1..total step by step, its first values fixed by settings'
        prompt, at the fit's draws `given`: [draws, total]. A model of many documents
        (`x[d, t]`) draws one document per draw."""
        from runtime.decoding import decoding  # noqa: PLC0415
        axis = self._step_axis(name)
        raw[self._size_name(name, axis)] = total
        row = (values + [values[-1]] * total)[:total] if values else None
        if axis:  # one document: every plate before the steps has one element
            for k in range(axis):
                raw[self._size_name(name, k)] = 1
            for vector, _ in getattr(self.model_class(), "ragged_sizes", {}).values():
                raw[vector] = _nested([total], axis - 1)
        if row is not None:  # elements no statement draws (x[1] of `for t in 2..T`)
            raw[name] = _nested(row, axis)
        else:
            raw.pop(name, None)
        model = self.bind(raw, device, simulate=True)
        with decoding(settings):
            draws = model.predictive(given, seed)
        return draws[name].detach().cpu().numpy().reshape(-1, total)

    def _step_axis(self, name: str) -> int:
        """The position of a sequence's step index (after the plates of many documents)."""
        return int(getattr(self.model_class(), "chain_axes", {}).get(name, 0))

    # ---- prediction by Bayes' rule
    def predict(self, data: Any, fit: str, query: str, draws: int = 1000, seed: int = 1,
                device: str = "auto") -> dict[str, Any]:
        """The posterior of the observed variable `query` given the rest of `data`, at the
        values of a fit file: exact by enumeration when it is discrete ("probabilities"
        and "prediction" per element), else posterior predictive draws summarised by
        mean, sd, 5% and 95% quantiles. "kind" says which."""
        from compiler.query import with_latent  # noqa: PLC0415
        unobserved = Program(with_latent(self.compiled, query))
        variable = unobserved.compiled.model.variables[query]
        point = not fit.endswith(".nc")
        given = self.fitted_values(data, fit, 1 if point and variable.discrete else draws,
                                   seed)
        if variable.discrete:
            from runtime.predict import predict_discrete  # noqa: PLC0415
            result = predict_discrete(unobserved.bind(data, device=device), query, given)
            return {"kind": "discrete", **result}
        import numpy as np  # noqa: PLC0415
        values = self.sample(data, n=draws, seed=seed, given=given, device=device)[query]
        return {"kind": "continuous", "query": query, "mean": values.mean(0).tolist(),
                "sd": values.std(0, ddof=1).tolist() if len(values) > 1 else None,
                "q05": np.quantile(values, 0.05, axis=0).tolist(),
                "q95": np.quantile(values, 0.95, axis=0).tolist(), "draws": len(values)}

    # ---- simulation-based calibration
    def sbc(self, data: Any, replications: int = 100, warmup: int = 300,
            draws: int | None = None, thin: int = 4, seed: int = 1, device: str = "cpu",
            progress: bool = False, method: str = "chees") -> Any:
        """Simulation-based calibration (runtime/sbc.py): `replications` data sets
        simulated from the prior, each fitted by `method` (chees: 4 chains per replication,
        every replication in one lockstep run, `draws` per chain, default 100; nuts: one
        chain per replication, default 400 draws); returns runtime.sbc.SbcResult."""
        from compiler.app.progress import progress as progress_bar  # noqa: PLC0415
        from runtime import sbc  # noqa: PLC0415
        from runtime.data_files import read_data_file  # noqa: PLC0415
        raw = dict(data) if isinstance(data, dict) else read_data_file(data)
        bar = progress_bar(progress, replications)
        try:
            fitter = sbc.CheesFitter(warmup, draws or 100, thin) if method == "chees" else \
                sbc.nuts_fitter(warmup, draws or 400, thin)
            return sbc.run(self.model_class(), raw, fitter,
                           replications, seed, device=device,
                           progress=bar.count if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()


def compile_file(path: str | Path) -> Program:
    return Program(compile_path(path))


def compile_string(text: str, name: str = "<string>") -> Program:
    return Program(compile_source(Source(name, text.removeprefix("\ufeff"))))


def loo_of_fit(idata: Any, data: Any, path: str, ic: str = "loo") -> Any:
    """PSIS-LOO (ArviZ's ELPDData) of a posterior fit whose pointwise log-likelihood was
    left out for its size: its model (the source the fit keeps) is run at its draws on
    `data`, a block of observations at a time (runtime/loo.py)."""
    import numpy as np  # noqa: PLC0415

    from runtime.errors import ModelError  # noqa: PLC0415
    from runtime.loo import loo_from_model  # noqa: PLC0415
    from runtime.output import arviz  # noqa: PLC0415
    from runtime.posterior import check_values  # noqa: PLC0415
    source = idata.attrs.get("model_source")
    if not isinstance(source, str) or "posterior" not in idata.groups():
        raise ModelError(f"'{path}' has no log_likelihood group and does not keep its model's "
                         "source (a fit by an older bgmc): refit it")
    if ic != "loo":
        raise ModelError(f"'{path}' has no log_likelihood group; --ic {ic} needs it: compare "
                         "by --ic loo, which is computed from the model")
    program = compile_string(source, str(idata.attrs.get("model_file", path)))
    bound = program.bind(data, device="cpu")
    post = idata.posterior
    names = [x for x in program.continuous_unknowns() if x in post]
    values = check_values(bound, {x: np.asarray(post[x]) for x in names}, f"'{path}'",
                          batch_ndim=2)
    theta = bound.unconstrain(values, batch_ndim=2)
    chains, draws = theta.shape[:2]
    reff = 1.0
    if chains > 1:
        ess = arviz().ess(post, method="mean")
        reff = float(np.hstack([ess[v].values.flatten() for v in ess.data_vars]).mean()
                     / (chains * draws))
    return loo_from_model(bound, theta, reff)


def _nested(row: list[Any], depth: int) -> list[Any]:
    """`row` inside `depth` lists of one element: one document of a [1, ..., T] array."""
    for _ in range(depth):
        row = [row]
    return row
