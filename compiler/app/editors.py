"""`python -m compiler.app.editors`: regenerate editors/bgm.tmLanguage.json from the
grammar's vocabulary (compiler/teaching/highlight.py), written atomically like every output."""
from __future__ import annotations

import sys

from compiler.teaching.highlight import TEXTMATE, textmate_text
from runtime.files import write_atomic

if __name__ == "__main__":
    write_atomic(TEXTMATE, textmate_text().encode())
    print(f"wrote {TEXTMATE}", file=sys.stderr)
