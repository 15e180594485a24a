"""The Python API, the stable import path for library users and notebooks:

    from compiler.api import compile_file
    program = compile_file("examples/coin.bgm")
    fit = program.fit("examples/coin.json", method="map")
    fit.values["theta"]

It lives in the application layer (compiler/app/program.py), the one part of the
compiler that runs models; this module only names it.
"""
from __future__ import annotations

from compiler.app.fitting import Fit, FitSettings
from compiler.app.program import Program, compile_file, compile_string

__all__ = ["Fit", "FitSettings", "Program", "compile_file", "compile_string"]
