"""Every complete program in LANGUAGE.md checks, or says clearly that it needs a later
version.

The design document lives beside the checkout (../shared/LANGUAGE.md). Its programs are
also copied into tests/language_programs/, which are always checked, so CI without the
document still runs them; when the document is there, the copies must match it
(`pytest --update-goldens` rewrites them) and its programs are checked as written.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from compiler.cli import main

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE_MD = ROOT.parent / "shared" / "LANGUAGE.md"
COPIES = ROOT / "tests" / "language_programs"

# Programs that use what a later version brings; `bgmc check` must say so.
LATER = {
}

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
_MODEL = re.compile(r"^model (\w+)", re.MULTILINE)
_INTERNALS = re.compile(r"Traceback|File \"|internal error|bug in bgmc|"
                        r"\b[A-Z]\w*(?:Error|Exception)\b|object at 0x")


def programs_in(markdown: str) -> dict[str, str]:
    """The complete programs of a document (a `model` header or a `data` declaration),
    keyed by a file stem made from the model's name."""
    found: dict[str, str] = {}
    for block in _FENCE.findall(markdown):
        if not re.search(r"^(model|data) ", block, re.MULTILINE):
            continue  # a shell session or a fragment
        match = _MODEL.search(block)
        name = match[1] if match else f"Program{len(found) + 1}"
        found[_snake(name)] = block
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


def model_name(text: str) -> str | None:
    match = _MODEL.search(text)
    return match[1] if match else None


def document() -> str | None:
    return LANGUAGE_MD.read_text(encoding="utf-8") if LANGUAGE_MD.exists() else None


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["check", str(path)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_checks_as_documented(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = check(path, capsys)
    name = model_name(path.read_text(encoding="utf-8"))
    if name not in LATER:
        assert status == 0, err
        assert ": ok (" in out
        return
    assert status == 1, f"{name} needs a later version ({LATER[name]}):\n{out}{err}"
    errors = [line for line in err.splitlines() if re.match(r"\S+:\d+:\d+: error: ", line)]
    assert err.startswith(f"{path}:") and errors, err
    assert all("not supported yet" in line for line in errors), err
    assert re.search(r"^ +\| *\^+$", err, re.MULTILINE), err
    assert not _INTERNALS.search(err), err


COPY_FILES = sorted(COPIES.glob("*.bgm"))
_DOC = document()
_DOC_PROGRAMS = programs_in(_DOC) if _DOC is not None else {}
_NO_DOC = pytest.mark.skip(reason=f"{LANGUAGE_MD} is not beside the checkout")


@pytest.mark.parametrize("path", COPY_FILES, ids=[p.stem for p in COPY_FILES])
def test_copied_program_checks(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_checks_as_documented(path, capsys)


def test_copies_cover_the_expected_programs() -> None:
    names = {model_name(p.read_text(encoding="utf-8")) for p in COPY_FILES}
    assert set(LATER) <= names
    assert {"EightSchools", "AR2"} <= names


@pytest.mark.parametrize("stem", sorted(_DOC_PROGRAMS) or [pytest.param("", marks=_NO_DOC)])
def test_document_program_checks(stem: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"{stem}.bgm"
    path.write_text(_DOC_PROGRAMS[stem], encoding="utf-8")
    assert_checks_as_documented(path, capsys)


@pytest.mark.skipif(_DOC is None, reason=f"{LANGUAGE_MD} is not beside the checkout")
def test_copies_match_the_document(golden: Callable[[Path, str], None]) -> None:
    for stem, text in _DOC_PROGRAMS.items():
        golden(COPIES / f"{stem}.bgm", text)
    stale = sorted(p.name for p in COPY_FILES if p.stem not in _DOC_PROGRAMS)
    assert not stale, f"copies of programs no longer in LANGUAGE.md: {stale}"
