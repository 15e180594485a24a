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
