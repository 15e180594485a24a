"""`%load_ext compiler.notebook`: the `%%bgm` cell magic, under the name notebooks already
use. It lives in the application layer (compiler/app/notebook.py)."""
from __future__ import annotations

from compiler.app.notebook import bgm_cell, load_ipython_extension

__all__ = ["bgm_cell", "load_ipython_extension"]
