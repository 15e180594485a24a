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

    def generate(self, data: Any, given: dict[str, Any], n: int = 1, seed: int = 1,
                 device: str = "auto", length: int | None = None, prompt: str | None = None,
                 temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None) -> dict[str, Any]:
        """Sequences from a fitted autoregressive model (a prefix-conditioned factor), token
        by token: `length` tokens (default: the data's), the first ones fixed by `prompt`,
        drawn with temperature, top-k and top-p. Returns {variable: {"tokens": [n, length],
        "text": n strings (when the data writes it with an alphabet)}}."""
        from runtime.data import read_data_file  # noqa: PLC0415
        from runtime.decoding import Decoding, decoding  # noqa: PLC0415
        from runtime.errors import ModelError  # noqa: PLC0415
        from runtime.text import decode, encode, encoded  # noqa: PLC0415
        cls = self.model_class()
        targets = getattr(cls, "causal_names", ())
        if not targets:
            raise ModelError("generation needs a prefix-conditioned factor "
                             "(x[t] ~ Categorical(logits=net(x[1..t-1])))")
        name = targets[0]
        raw = dict(data) if isinstance(data, dict) else read_data_file(data)
        raw, alphabets = encoded(raw)
        spec = next(s for s in cls.data_specs if s.name == name)
        size = spec.dims[0]
        tokens = list(raw.get(name, []))
        fixed: list[int] = []
        if prompt is not None:
            if name not in alphabets:
                raise ModelError(f"--prompt needs the data's '{name}' written as text: "
                                 '{"alphabet": "...", "text": "..."}')
            fixed = encode(name, alphabets[name], prompt, "prompt")
            tokens = fixed + tokens
        total = int(length if length is not None else raw.get(size, len(tokens)))
        if total < 1:
            raise ModelError(f"--length must be at least 1, got {total}")
        if not tokens:
            raise ModelError(f"generation needs a first token of '{name}': give --prompt or "
                             "the data's text")
        raw[size] = total
        raw[name] = (tokens + [tokens[-1]] * total)[:total]
        settings = Decoding(temperature, top_k, top_p, {name: fixed} if fixed else {})
        model = self.bind(raw, device, simulate=True)
        with decoding(settings):
            draws = model.predictive(given, seed)
        out = draws[name].detach().cpu().numpy().reshape(-1, total)[:n]
        result: dict[str, Any] = {"tokens": out}
        if name in alphabets:
            result["text"] = [decode(alphabets[name], row) for row in out]
        return {name: result}


def compile_file(path: str | Path) -> Program:
    return Program(compile_path(path))


def compile_string(text: str, name: str = "<string>") -> Program:
    return Program(compile_source(Source(name, text.removeprefix("\ufeff"))))
