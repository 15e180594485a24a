"""The tutorial (docs/tutorial.md) runs top to bottom; its blocks assert the numbers its
text states, and it draws its figures."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _runner():  # docs/ is not a package: load the runner by path
    spec = importlib.util.spec_from_file_location("run_tutorial", ROOT / "docs" / "run_tutorial.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_every_block_is_python_and_every_figure_it_shows_is_drawn_by_it() -> None:
    runner = _runner()
    text = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
    blocks = runner.blocks(text)
    assert len(blocks) >= 10
    for line, code in blocks:
        compile(code, f"tutorial.md:{line}", "exec")
    shown = set(__import__("re").findall(r"\(images/tutorial/([\w.]+)\)", text))
    code = "\n".join(c for _, c in blocks)
    assert shown and all(name in code for name in shown)


@pytest.mark.slow
def test_the_tutorial_runs_and_draws_its_figures(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGM_TUTORIAL_FIGURES", str(tmp_path))
    monkeypatch.chdir(ROOT)
    namespace = _runner().run()
    assert namespace["accuracy"] == {30: (0.55, 0.65), 100: (0.77, 0.83), 300: (0.83, 0.85)}
    for name in ("coin.png", "logistic_weights.png", "mixture.png", "hmm.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
