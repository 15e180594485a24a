"""The compiler's passes in order: parse → resolve → shapes → nets → flows → checks →
loops → folding → supports → elimination → codegen.

Each pass raises one BgmError with all the mistakes of its kind, and the pipeline stops
between passes (a shape error after a naming error would only be noise).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compiler.codegen.module import generate
from compiler.ir import GraphicalModel
from compiler.passes.checks import check_targets
from compiler.passes.elimination import plan_elimination
from compiler.passes.flows import find_flows
from compiler.passes.folding import fold_constants
from compiler.passes.guide import check_guide, split_guide
from compiler.passes.identifiability import find_sum_ridges
from compiler.passes.loops import classify_loops
from compiler.passes.nets import check_nets
from compiler.passes.ragged import check_ragged
from compiler.passes.resolve import resolve
from compiler.passes.shapes import infer_shapes
from compiler.passes.supports import infer_supports
from dsl import nodes as n
from dsl.parser import parse_file, parse_source
from dsl.spans import Source


@dataclass
class Compiled:
    program: n.Program
    model: GraphicalModel
    python: str

    @property
    def source(self) -> Source:
        return self.model.source


def analyse(program: n.Program, source: Source, drawn_only: bool = False) -> GraphicalModel:
    """Every check short of generating code; a `guide:` block is analysed as a program of
    its own and hung on the model as `model.guide`. `drawn_only`: the model is only
    drawn from, never scored (a query's predictive, compiler/query.py), so latents a
    density could not score (inside ragged loops) are allowed."""
    model_program, guide_program = split_guide(program)
    model = _passes(model_program, source, drawn_only)
    model.guide = None
    if guide_program is not None:
        guide = _passes(guide_program, source)
        check_guide(model, guide)
        model.guide = guide
    return model


def _passes(program: n.Program, source: Source, drawn_only: bool = False) -> GraphicalModel:
    model = resolve(program, source)
    infer_shapes(model)
    check_nets(model)
    find_flows(model)
    check_targets(model)
    classify_loops(model)
    fold_constants(model)  # before supports, which reads constant bounds as numbers
    infer_supports(model)
    plan_elimination(model)
    if not drawn_only:
        check_ragged(model)
    find_sum_ridges(model)
    model.validate()
    return model


def compile_source(source: Source) -> Compiled:
    program = parse_source(source)
    model = analyse(program, source)
    return Compiled(program, model, generate(model))


def compile_path(path: str | Path) -> Compiled:
    program, source = parse_file(path)
    model = analyse(program, source)
    return Compiled(program, model, generate(model))
