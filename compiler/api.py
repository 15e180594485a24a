"""The Python API, mirroring the CLI: compile a file or a string, fit, sample.

    from compiler.api import compile_file
    program = compile_file("examples/coin.bgm")
    fit = program.fit("examples/coin.json", method="map")
    fit.values["theta"]

torch is imported only when a model is bound to data, so compiling stays light.
"""
from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from compiler.names import class_name
from compiler.pipeline import Compiled, compile_path, compile_source
from dsl.spans import Source


class Program:
    """A compiled .bgm model: its graphical model, its generated code, and ways to run it."""

    def __init__(self, compiled: Compiled):
        self.compiled = compiled
        self._class: type | None = None

    # ---- rich display in notebooks: the plate diagram and the factorised joint
    def diagram_svg(self) -> str:
        """The plate diagram as SVG text (compiler/diagram.py, compiler/render.py)."""
        from compiler import render  # noqa: PLC0415
        from compiler.diagram import build  # noqa: PLC0415
        return render.svg(build(self.compiled.model))

    def joint_latex(self) -> str:
        """The factorised joint density in LaTeX (compiler/explain.py)."""
        import sympy as sp  # noqa: PLC0415

        from compiler.explain import joint  # noqa: PLC0415
        return sp.latex(joint(self.compiled.model), order="none")

    def explain(self, latex: bool = False) -> str:
        from compiler.explain import explain  # noqa: PLC0415
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

    def fit(self, data: Any, method: str = "map", seed: int = 1, device: str = "auto",
            **options: Any) -> Any:
        """Point estimates (mle or map); returns runtime.optimize.PointEstimate."""
        from runtime.optimize import optimize  # noqa: PLC0415 - torch only when fitting
        model = self.bind(data, device)
        return optimize(model, method=method, seed=seed, **options)

    def sample(self, data: Any, n: int = 100, seed: int = 1, given: dict[str, Any] | None = None,
               device: str = "auto", prior: bool = False, ddim: int | None = None,
               eta: float = 0.0) -> dict[str, Any]:
        """Prior draws (given=None) or predictive draws given latent values with a leading
        draw dimension; with prior=True, prior draws at the point parameters and nets in
        `given` (its first draw): a VAE's samples. A diffusion model draws by DDIM over
        `ddim` steps with noise `eta` when ddim is given, else by DDPM. Returns numpy
        arrays named as in the model."""
        from runtime.diffusion import sampler  # noqa: PLC0415
        from runtime.errors import ModelError  # noqa: PLC0415
        if ddim is not None and ddim < 1:
            raise ModelError(f"--ddim takes the number of steps to draw with, at least 1; "
                             f"got {ddim}")
        model = self.bind(data, device, simulate=True)
        with sampler(ddim, eta):
            if prior and given is not None:
                params = {k: v[0] for k, v in given.items() if k in model.param_names}
                draws = model.prior_draws_at(params, n, seed)
            else:
                draws = model.draws(n, seed) if given is None else model.predictive(given, seed)
        return {k: v.detach().cpu().numpy() for k, v in draws.items()}

    def generate(self, data: Any, given: dict[str, Any], n: int = 1, seed: int = 1,
                 device: str = "auto", length: int | None = None, prompt: str | None = None,
                 temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None) -> dict[str, Any]:
        """Sequences from a fitted autoregressive model (a prefix-conditioned factor), token
        by token: `length` tokens (default: the data's), the first ones fixed by `prompt`,
        drawn with temperature, top-k and top-p. Returns {variable: {"tokens": [n, length],
        "text": n strings (when the data writes it with an alphabet)}}."""
        from runtime.decoding import Decoding  # noqa: PLC0415
        from runtime.errors import ModelError  # noqa: PLC0415
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
        values = fixed + list(raw.get(name, []))
        size = self._size_of(name)
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
        horizon]}, the posterior predictive forecast."""
        from runtime.decoding import Decoding  # noqa: PLC0415
        from runtime.errors import ModelError  # noqa: PLC0415
        if horizon < 1:
            raise ModelError(f"--forecast must be at least 1, got {horizon}")
        name, raw, _ = self._sequence_data(data, "chain_names", "a forecast continues an "
                                           "observed chain (y[t] ~ ... y[t-1] ...)")
        if name not in raw:
            raise ModelError(f"a forecast continues the data's '{name}': it is missing")
        values = [float(x) for x in raw[name]]
        out = self._continue(raw, name, values, len(values) + horizon, device, given, seed,
                             Decoding(prompt={name: values}))
        return {name: out[:, len(values):]}

    def _sequence_data(self, data: Any, attr: str, missing: str) -> tuple[str, dict[str, Any],
                                                                          dict[str, str]]:
        from runtime.data import read_data_file  # noqa: PLC0415
        from runtime.errors import ModelError  # noqa: PLC0415
        from runtime.text import encoded  # noqa: PLC0415
        targets = getattr(self.model_class(), attr, ())
        if not targets:
            raise ModelError(missing)
        raw = dict(data) if isinstance(data, dict) else read_data_file(data)
        raw, alphabets = encoded(raw)
        return targets[0], raw, alphabets

    def _size_of(self, name: str) -> str:
        return next(s for s in self.model_class().data_specs if s.name == name).dims[0]

    def _continue(self, raw: dict[str, Any], name: str, values: list[Any], total: int,
                  device: str, given: dict[str, Any], seed: int, settings: Any) -> Any:
        """Draws of `name` over 1..total step by step, its first values fixed by settings'
        prompt, at the fit's draws `given`: [draws, total]."""
        from runtime.decoding import decoding  # noqa: PLC0415
        raw[self._size_of(name)] = total
        if values:  # elements no statement draws (x[1] of `for t in 2..T`) come from here
            raw[name] = (values + [values[-1]] * total)[:total]
        else:
            raw.pop(name, None)
        model = self.bind(raw, device, simulate=True)
        with decoding(settings):
            draws = model.predictive(given, seed)
        return draws[name].detach().cpu().numpy().reshape(-1, total)


def compile_file(path: str | Path) -> Program:
    return Program(compile_path(path))


def compile_string(text: str, name: str = "<string>") -> Program:
    return Program(compile_source(Source(name, text.removeprefix("\ufeff"))))
