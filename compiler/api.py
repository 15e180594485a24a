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

from compiler.pipeline import Compiled, compile_path, compile_source
from dsl.spans import Source


class Program:
    """A compiled .bgm model: its graphical model, its generated code, and ways to run it."""

    def __init__(self, compiled: Compiled):
        self.compiled = compiled
        self._class: type | None = None

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
            self._class = getattr(module, self.name[:1].upper() + self.name[1:])
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
               device: str = "auto", prior: bool = False) -> dict[str, Any]:
        """Prior draws (given=None) or predictive draws given latent values with a leading
        draw dimension; with prior=True, prior draws at the point parameters and nets in
        `given` (its first draw): a VAE's samples. Returns numpy arrays named as in the
        model."""
        model = self.bind(data, device, simulate=True)
        if prior and given is not None:
            params = {k: v[0] for k, v in given.items() if k in model.param_names}
            draws = model.prior_draws_at(params, n, seed)
        else:
            draws = model.draws(n, seed) if given is None else model.predictive(given, seed)
        return {k: v.detach().cpu().numpy() for k, v in draws.items()}


def compile_file(path: str | Path) -> Program:
    return Program(compile_path(path))


def compile_string(text: str, name: str = "<string>") -> Program:
    return Program(compile_source(Source(name, text.removeprefix("\ufeff"))))
