"""Notebook use: `%load_ext compiler.app.notebook` adds the `%%bgm` cell magic.

    %%bgm coin
    theta ~ Beta(2, 2)
    ...

compiles the cell (its model name, or `coin` from the magic's line) and binds the
Program to that name in the notebook; the cell's output is the Program itself, which
Jupyter shows by its plate diagram (`_repr_svg_`) and its factorised joint
(`_repr_latex_`). A mistake in the model prints bgmc's message, with the caret under the
cell's line, and no traceback. IPython is imported by Jupyter, never here.
"""
from __future__ import annotations

import re
import sys
from typing import Any

from compiler.api import Program, compile_string
from dsl.diagnostics import BgmError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def bgm_cell(line: str, cell: str, namespace: dict[str, Any]) -> Program | None:
    """What `%%bgm [name]` does: compile `cell`, store the Program as `name` (default: the
    model's name in snake case), and return it for display."""
    name = line.strip()
    if name and not _NAME.match(name):
        print(f"error: %%bgm takes a Python name to store the model in, not '{name}'",
              file=sys.stderr)
        return None
    try:
        program = compile_string(cell, f"{name or 'cell'}.bgm")
    except BgmError as exc:
        print(exc.render(), file=sys.stderr)
        return None
    target = name or re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", program.name).lower()
    namespace[target] = program
    return program


def load_ipython_extension(ipython: Any) -> None:
    def bgm(line: str, cell: str) -> Program | None:
        return bgm_cell(line, cell, ipython.user_ns)
    ipython.register_magic_function(bgm, magic_kind="cell", magic_name="bgm")
