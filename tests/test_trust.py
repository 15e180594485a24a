"""Trust at the edges (issue 14): no user text runs as code, odd but valid programs mean
what they say, and hostile inputs end in located errors, never in internal errors."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from compiler.api import compile_string
from compiler.cli import main
from dsl.diagnostics import BgmError

HOSTILE_FILE = 'x""" if __import__("os").system("touch PWNED") else """.bgm'
COIN = (Path(__file__).parent.parent / "examples" / "coin.bgm").read_text()
COIN_DATA = Path(__file__).parent.parent / "examples" / "coin.json"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out + out.err


# ---- names --------------------------------------------------------------------------


def test_a_hostile_file_name_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / HOSTILE_FILE).write_text(COIN.replace("model Coin\n", ""))
    code, _ = run(["compile", HOSTILE_FILE, "-o", "m.py"], capsys)
    assert code == 0
    text = (tmp_path / "m.py").read_text()
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring is not None and HOSTILE_FILE in docstring
    code, _ = run(["fit", HOSTILE_FILE, "--data", str(COIN_DATA), "--method", "map",
                   "-o", "fit.json"], capsys)
    assert code == 0
    subprocess.run([sys.executable, "-c", "import m"], cwd=tmp_path, check=True)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("name", ["none", "True", "False", "None", "valueError", "torch",
                                  "rt", "self", "inf"])
def test_model_names_python_gives_a_meaning_still_compile(name: str) -> None:
    program = compile_string(COIN.replace("model Coin", f"model {name}"))
    fit = program.fit(json.loads(COIN_DATA.read_text()), method="map")
    assert fit.values["theta"] == pytest.approx((2 - 1 + 6) / (2 + 2 - 2 + 20), abs=1e-6)


def test_file_names_become_ascii_class_names(tmp_path: Path) -> None:
    path = tmp_path / "ｉｆ None.bgm"
    path.write_text(COIN.replace("model Coin\n", ""))
    from compiler.api import compile_file
    program = compile_file(path)
    assert program.model_class().__name__.isascii()


# ---- limits -------------------------------------------------------------------------


@pytest.mark.parametrize(("argument", "message"), [
    ("+".join(["1"] * 5000), "nested too deeply"),
    ("-" * 3000 + "1", "nested too deeply"),
    ("1" * 5000, "this number has 5000 characters"),
    ("1" * 320, "this number is too large"),
    ("1e-400", "too small for a real"),
    ("1e400", "too large for a real"),
])
def test_literal_and_depth_limits_are_located(argument: str, message: str) -> None:
    with pytest.raises(BgmError) as info:
        compile_string(f"mu ~ Normal(0, {argument})")
    text = str(info.value)
    assert message in text and "<string>:1:" in text


# ---- constants ----------------------------------------------------------------------


def _map(program_text: str, data: dict | None = None) -> dict:
    return compile_string(program_text).fit(data or {}, method="map").values


def test_constant_arithmetic_is_folded_exactly_as_an_argument() -> None:
    program = compile_string("mu ~ Normal(0, 1 + 1)\nx ~ Normal(mu, 2 ^ 3 / 4)")
    code = [line for line in program.python.splitlines() if not line.strip().startswith("#")]
    assert not any("1 + 1" in line for line in code)
    assert sum("dist.Normal(mu, 2.0)" in line for line in code) == 2
    lp = program.bind({}).log_prob  # the log density at mu = x = 0: two Normal(0, 2)
    import torch
    assert float(lp(torch.zeros(2, dtype=torch.float64))) == pytest.approx(
        2 * (-0.5 * __import__("math").log(2 * __import__("math").pi * 4)))


def test_literals_and_data_stay_python_numbers() -> None:
    values = _map("data N: int\ndata c: int[N]\nlam ~ Exponential(1)\nfor i in 1..N:\n"
                  "    c[i] ~ Poisson(lam + 0.5 * N)", {"N": 4, "c": [2, 2, 2, 2]})
    assert values["lam"] == pytest.approx(0.0, abs=1e-6)  # the rate 2 is already 0.5 * N


@pytest.mark.parametrize(("program", "message", "column"), [
    ("mu ~ Normal(0, -10)", "the scale of Normal must be positive (> 0); this is -10", 16),
    ("const s = -2\nmu ~ HalfNormal(s)", "the scale of HalfNormal must be positive", 17),
    ("mu ~ Normal(0, 0)", "this is 0", 16),
    ("mu ~ Exponential(0)", "the rate of Exponential must be positive", 18),
    ("mu ~ Beta(1, 2 - 3)", "the concentration0 of Beta must be positive", 14),
    ("mu ~ Uniform(1, 1)", "the upper bound of Uniform must exceed", 17),
    ("z ~ Bernoulli(1.5)", "must be a probability", 15),
    ("z ~ Categorical([0.5, -0.1])", "must be weights", 17),
    ("z ~ Binomial(2.5, 0.5)", "must be a whole number", 14),
    ("mu ~ Normal(0, 9 ^ 9 ^ 9)", "too large for a real", 16),
    ("const A = 9 ^ 9 ^ 9\nmu ~ Normal(0, 1)", "too large for a real", 11),
    ("mu ~ Normal(0, 1e300 * 1e300)", "too large for a real", 16),
    ("mu ~ Normal(0, 1)\nd = 5 / 0", "division by zero", 5),
    ("const A = (-8) ^ 0.5\nmu ~ Normal(0, 1)", "not a real number", 11),
    ("const A = log(0 - 1)\nmu ~ Normal(0, 1)", "has no real value", 11),
    ("const A = 0 ^ -1\nmu ~ Normal(0, 1)", "0 to a negative power", 11),
])
def test_bad_constants_are_found_at_check(program: str, message: str, column: int) -> None:
    with pytest.raises(BgmError) as info:
        compile_string(program)
    text = str(info.value)
    assert message in text
    line = next(i for i, t in enumerate(program.splitlines(), 1) if len(t) >= column and
                t[column - 1] not in " ~")
    assert f"<string>:{line}:{column}:" in text.splitlines()[0]


def test_a_latent_named_inf_captures_nothing() -> None:
    values = _map("inf ~ HalfNormal(1)\nnan ~ Normal(0, 1)\nmu ~ Normal(inf + nan, 0.001)")
    assert float(values["mu"]) == pytest.approx(float(values["inf"] + values["nan"]),
                                                 abs=1e-6)


# ---- indices and ranges -------------------------------------------------------------


@pytest.mark.parametrize(("program", "message"), [
    ("data N: int\nfor j in 0..N:\n    t[j] ~ Normal(0, 1)", "3:7: error: index 0 is out of range"),
    ("data N: int\nfor j in -1..N:\n    t[j] ~ Normal(0, 1)", "3:7: error: index -1 is out of"),
    ("for j in 5..3:\n    t[j] ~ Normal(0, 1)", "1:10: error: the range 5..3 runs backwards"),
    ("mu: real[-1] ~ Normal(0, 1)", "1:10: error: a size cannot be negative"),
    ("mu: real[99999999999999999999] ~ Normal(0, 1)", "1:10: error: this shape has"),
    ("mu[:] ~ Normal(0, 1)", "1:4: error: the left side cannot be indexed by ':'"),
    ("data N: int\ndata x: real[N, 1]\nnet f = MLP(1, 0, 1)\nfor i in 1..N:\n"
     "    x[i] ~ Normal(f(x[i - 1]), 1)", "3:16: error: a layer size of an MLP must be"),
])
def test_ranges_and_sizes_known_at_check(program: str, message: str) -> None:
    with pytest.raises(BgmError) as info:
        compile_string(program)
    assert message in str(info.value)


@pytest.mark.parametrize(("program", "data", "message"), [
    ("data N: int\ndata y: real[N]\nb: real[2] ~ Normal(0, 1)\nfor i in 1..N:\n"
     "    y[i] ~ Normal(b[i], 1)", {"N": 3, "y": [1.0, 2.0, 3.0]},
     "<string>:5:21: the index 'i' of 'b' at the last iteration (i = N) is 3 given the "
     "data, but must be at most 2"),
    ("data N: int\nfor i in 1..N:\n    t[i] ~ Normal(0, 1)", {"N": -1},
     "<string>:2:10: the range 1..N is 1..-1 given the data: it runs backwards"),
    ("data N: int\ndata z: int[N]\ndata y: real[N]\nmu: real[2] ~ Normal(0, 1)\n"
     "for i in 1..N:\n    y[i] ~ Normal(mu[z[i]], 1)", {"N": 3, "z": [1, 0, 2], "y": [0, 0, 0]},
     "<string>:6:22: the index 'z[i]' of 'mu' is 0 for some element given the data, but "
     "must be an index from 1 to 2"),
    ("data N: int\ndata H: int\ndata x: real[N, 1]\nnet f = MLP(1, H, 1)\nfor i in 2..N:\n"
     "    x[i] ~ Normal(f(x[i - 1]), 1)", {"N": 2, "H": 0, "x": [[0.0], [1.0]]},
     "<string>:4:16: a layer size of an MLP is 0 given the data, but must be at least 1"),
])
def test_ranges_the_data_decides_are_checked_when_it_is_loaded(program: str, data: dict,
                                                                message: str) -> None:
    from runtime.errors import DataError
    with pytest.raises(DataError) as info:
        compile_string(program).bind(data)
    assert str(info.value).startswith(message)


def test_an_empty_loop_reads_nothing() -> None:
    program = compile_string("data N: int\ndata y: real[N]\nb: real[2] ~ Normal(0, 1)\n"
                             "for i in 1..N:\n    y[i] ~ Normal(b[i], 1)")
    assert program.bind({"N": 0, "y": []}).dim == 2
    assert program.bind({"N": 2, "y": [0.0, 1.0]}).dim == 2


# ---- run time ------------------------------------------------------------------------


@pytest.mark.parametrize(("program", "data", "message"), [
    ("a ~ Normal(0, 1)\nb ~ Normal(0, -1 - a^2)", {}, "<string>:2: Normal scale is -"),
    ("data N: int\ndata y: int[N]\nfor i in 1..N:\n    y[i] ~ Bernoulli(N)",
     {"N": 2, "y": [0, 1]}, "<string>:4: Bernoulli probs is 2 at a draw, outside its support"),
])
def test_draws_from_arguments_outside_their_support_are_located(program: str, data: dict,
                                                                message: str) -> None:
    from runtime.errors import ModelError
    with pytest.raises(ModelError) as info:
        compile_string(program).sample(data, n=2)
    assert str(info.value).startswith(message)


def test_linspace_between_drawn_bounds_gives_one_row_per_draw() -> None:
    draws = compile_string("a ~ Normal(0, 1)\nd = linspace(a, 1, 3)").sample({}, n=4)
    a = draws["a"]
    assert draws["d"].shape == (4, 3)
    assert draws["d"][:, 1] == pytest.approx((a + 1) / 2)


def test_a_start_that_fails_names_the_term_and_its_line() -> None:
    from runtime.errors import ModelError
    with pytest.raises(ModelError) as info:
        compile_string("q ~ Beta(2, 1e308)").fit({}, method="map")
    assert "prior q at <string>:1" in str(info.value)


def test_iterations_bound_the_polishing_phase() -> None:
    from runtime.optimize import optimize
    model = compile_string("mu ~ Laplace(0, 1)\ny ~ Normal(mu, 1)").bind({})
    fit = optimize(model, method="map", max_iter=5)
    assert fit.iterations <= 20 * 5 + 5 + 20 * 5


def test_sizes_that_must_agree_and_computed_indices_are_checked_at_load() -> None:
    from runtime.errors import DataError
    matmul = compile_string("data N: int\ndata D: int\ndata X: real[N, D]\n"
                            "beta: real[2] ~ Normal(0, 1)\nmu = X @ beta")
    with pytest.raises(DataError, match=r"<string>:5:6: the inner dimensions of 'X @ beta' "
                                        r"are 3 and 2 given the data, but must be equal"):
        matmul.bind({"N": 1, "D": 3, "X": [[1.0, 2.0, 3.0]]})
    assert matmul.bind({"N": 1, "D": 2, "X": [[1.0, 2.0]]}).dim == 2
    index = compile_string("data N: int\ndata k: int[N]\ndata M: real[N, 2]\nfor i in 1..N:\n"
                           "    x[i] ~ Normal(M[1, 3 * k[i] - 2], 1)")
    with pytest.raises(DataError, match=r"<string>:5:24: the index '3 \* k\[i\] - 2' of 'M' "
                                        r"is 4 for some element"):
        index.bind({"N": 2, "k": [1, 2], "M": [[0.0, 1.0], [2.0, 3.0]]})


@pytest.mark.parametrize(("program", "message"), [
    ("b ~ HalfNormal(1)\nt = length(b)", "<string>:2:12: error: 'length' takes a vector"),
    ("data T: int\ndata y: real[T]\ny: real[2] ~ Normal(0, 1)",
     "<string>:3:4: error: 'y' is data: its type comes from its declaration"),
])
def test_more_programs_refused_at_check(program: str, message: str) -> None:
    with pytest.raises(BgmError) as info:
        compile_string(program)
    assert message in str(info.value)


def test_a_model_without_continuous_unknowns_fits_to_its_log_density() -> None:
    program = compile_string("data N: int\ndata c: int[N]\nfor i in 1..N:\n"
                             "    c[i] ~ Poisson(0.5 * N)")
    fit = program.fit({"N": 2, "c": [0, 2]}, method="map")
    assert fit.objective == pytest.approx(-1 - 1 + 2 * __import__("math").log(1) -
                                          __import__("math").log(2))


# ---- what stays valid (review of the checks above) ------------------------------------


def test_a_partly_read_index_array_is_checked_where_it_is_read() -> None:
    program = compile_string("data M: int\ndata z: int[4]\ndata y: real[M]\n"
                             "mu: real[2] ~ Normal(0, 1)\nfor i in 1..M:\n"
                             "    y[i] ~ Normal(mu[z[i]], 1)")
    assert program.bind({"M": 2, "z": [1, 2, 0, 0], "y": [0.0, 1.0]}).dim == 2  # padding
    from runtime.errors import DataError
    with pytest.raises(DataError, match="<string>:6:22: the index 'z\\[i\\]' of 'mu' is 0"):
        program.bind({"M": 3, "z": [1, 2, 0, 0], "y": [0.0, 1.0, 2.0]})


@pytest.mark.parametrize("program", [
    "data N: int\ndata y: int[N]\nfor i in 1..N:\n    y[i] ~ Poisson(0)",
    "const k = 3\ndata N: int\ns = sum(k ^ 2 for k in 1..N)",
    "const i = 3\ndata N: int\ndata y: real[N]\nfor i in 1..N:\n    y[i] ~ Normal(i * 2, 1)",
    "mu ~ Normal(0, 10 ^ 300)",
    "z ~ Categorical([1, 1, 2])",
    "data N: int\ndata y: real[N]\nb: real[3] ~ Normal(0, 1)\nfor i in 1..N:\n"
    "    y[i] ~ Normal(" + " + ".join(f"b[{k % 3 + 1}]" for k in range(150)) + ", 1)",
])
def test_valid_programs_stay_valid(program: str) -> None:
    compile_string(program)


def test_a_loop_variable_hides_a_const_of_its_name() -> None:
    program = compile_string("const i = 3\ndata N: int\ndata y: real[N]\nfor i in 1..N:\n"
                             "    y[i] ~ Normal(i * 2, 1)")
    import torch
    lp = program.bind({"N": 2, "y": [2.0, 4.0]}).log_prob(torch.zeros(0, dtype=torch.float64))
    assert float(lp) == pytest.approx(-__import__("math").log(2 * __import__("math").pi))


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--chains", "2000000000", "argument --chains: expected a positive integer up to 100000"),
    ("--warmup", "2000000000",
     "argument --warmup: expected an integer at least 0 and at most 10000000"),
    ("--draws", "100000000", "argument --draws: expected a positive integer up to 10000000"),
    ("--max-treedepth", "64", "argument --max-treedepth: expected a positive integer up to 30"),
    ("--nproc", "100000", "argument --nproc: expected a number of processes from 1 to 256"),
])
def test_counts_that_would_run_for_ever_are_refused(flag: str, value: str, message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit", str(COIN_DATA.with_suffix(".bgm")), "--data", str(COIN_DATA),
              "--method", "nuts", flag, value])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_an_allocation_the_machine_cannot_make_is_a_user_error(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import runtime.optimize

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 1599999999984 bytes.")
    monkeypatch.setattr(runtime.optimize, "optimize", refuse)
    code, out = run(["fit", str(COIN_DATA.with_suffix(".bgm")), "--data", str(COIN_DATA),
                     "--method", "map"], capsys)
    assert code == 1 and out.startswith("error: out of memory") and "--chains" in out
