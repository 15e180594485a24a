"""Every mistake a user can make gives one clear diagnostic (issue 2).

Each tests/broken/NAME.bgm holds one mistake and says in its header where the error must
point, independently of the wording:

    # expect: LINE:COL
    # expect-message: a substring of the message   (optional)

`bgmc check` must exit 1 and print `FILE:LINE:COL: error: ...`, the numbered source line,
a caret line and maybe a hint, and nothing of Python's insides. The whole of stderr is
also compared with tests/broken/NAME.expected (refresh: `pytest --update-goldens`).

Most files run in-process through `compiler.cli.main` (fast); a few, one per pass, also
run as a real subprocess, and both paths must print the same thing.
"""
from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from compiler.cli import main

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ROOT / "tests" / "broken"
CASES = sorted(BROKEN.glob("*.bgm"))

# One model per stage that can report: parser, resolve, shapes, checks, loops, supports.
SUBPROCESS_CASES = ["unclosed_paren", "undefined_name", "draw_rank_mismatch",
                    "target_not_indexed_by_loop", "cycle_two_variables",
                    "type_wider_than_beta"]

_HEADER = re.compile(r"# expect: (\d+):(\d+)\n(?:# expect-message: (.+)\n)?")
_ERROR_LINE = re.compile(r"^\S+:\d+:\d+: error: ", re.MULTILINE)
_CARET_LINE = re.compile(r"^ +\| *\^+$", re.MULTILINE)
_INTERNALS = re.compile(r"Traceback|File \"|internal error|bug in bgmc|"
                        r"\b[A-Z]\w*(?:Error|Exception)\b|object at 0x|\.py\b")


@dataclass(frozen=True)
class Expectation:
    line: int
    column: int
    message: str | None


def expectation(path: Path) -> Expectation:
    text = path.read_text(encoding="utf-8")
    match = _HEADER.match(text)
    assert match, f"{path.name} must start with '# expect: LINE:COL'"
    return Expectation(int(match[1]), int(match[2]), match[3])


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def check_in_process(path: Path, capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.chdir(ROOT)
    status = main(["check", relative(path)])
    captured = capsys.readouterr()
    assert captured.out == "", "a failed check prints nothing on stdout"
    return status, captured.err


def check_subprocess(path: Path) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "compiler.cli", "check", relative(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout == "", "a failed check prints nothing on stdout"
    return done.returncode, done.stderr


def assert_one_clear_diagnostic(path: Path, status: int, stderr: str) -> None:
    want = expectation(path)
    where = f"{relative(path)}:{want.line}:{want.column}: error: "
    assert status == 1, stderr
    assert stderr.startswith(where), f"expected the error at {where!r}, got:\n{stderr}"
    first, *rest = stderr.splitlines()
    if want.message is not None:
        assert want.message in first, f"{want.message!r} not in {first!r}"
    assert rest and rest[0].startswith(f" {want.line} | "), "the numbered source line"
    assert _CARET_LINE.search(stderr), f"no caret line in:\n{stderr}"
    assert len(_ERROR_LINE.findall(stderr)) == 1, f"one mistake, one error:\n{stderr}"
    assert not _INTERNALS.search(stderr), f"Python internals leak out:\n{stderr}"


def test_there_is_a_broken_model_for_each_kind_of_mistake() -> None:
    assert len(CASES) >= 40
    for path in CASES:
        expectation(path)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_broken_model_gives_one_clear_diagnostic(
        path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        golden: Callable[[Path, str], None]) -> None:
    status, stderr = check_in_process(path, capsys, monkeypatch)
    assert_one_clear_diagnostic(path, status, stderr)
    golden(path.with_suffix(".expected"), stderr)


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_the_command_line_prints_the_same_diagnostic(
        name: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = BROKEN / f"{name}.bgm"
    status, stderr = check_subprocess(path)
    assert_one_clear_diagnostic(path, status, stderr)
    assert (status, stderr) == check_in_process(path, capsys, monkeypatch)


def test_every_golden_file_has_its_model() -> None:
    orphans = [p.name for p in BROKEN.glob("*.expected") if not p.with_suffix(".bgm").exists()]
    assert not orphans, f"golden files without a model: {orphans}"
