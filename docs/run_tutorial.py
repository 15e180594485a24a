"""Runs the Python blocks of docs/tutorial.md top to bottom in one namespace, from the
repository's root, writing its figures to docs/images/tutorial/ (or to the folder in
BGM_TUTORIAL_FIGURES). A failing block names its line in the tutorial.

    python docs/run_tutorial.py
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(text: str) -> list[tuple[int, str]]:
    """(first line of the code, code) of each ```python block."""
    return [(text[:m.start(1)].count("\n") + 1, m[1]) for m in _BLOCK.finditer(text)]


def run(path: Path = TUTORIAL) -> dict[str, object]:
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    namespace: dict[str, object] = {"__name__": "tutorial"}
    for line, code in blocks(path.read_text(encoding="utf-8")):
        start = time.perf_counter()
        code = compile("\n" * (line - 1) + code, str(path), "exec")  # line numbers as in .md
        exec(code, namespace)  # the tutorial's own code, never a model's text
        print(f"[tutorial.md:{line}] {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return namespace


if __name__ == "__main__":
    run()
