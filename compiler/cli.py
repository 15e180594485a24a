"""`bgmc`'s entry point (`python -m compiler.cli` too). The command line lives in the
application layer, compiler/app/cli.py."""
from __future__ import annotations

import sys

from compiler.app.cli import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
