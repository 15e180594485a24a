"""Fuzzing in CI: seeded mutation and grammar fuzzers over `bgmc` (tests/fuzz_bgm.py).

Every case must end in exit 0, 1 or 2, never an internal error or a hang, and every
exit-1 message must say where (file:line:col, a data variable or a flag). The fast tests
run a few hundred cases (`check`, and for accepted programs fmt/explain/graph/compile and
a few runs on shrunk data); the slow ones a few thousand, running many accepted mutants
(`sample -n 2`, `fit --method map|mle --iter 5`), a quarter of them on hostile data.

The seeds are fixed: a failure prints each distinct finding with its (shrunk) program,
data and command line, which reproduce it outside the fuzzer. Counts are printed (-s).
"""
from __future__ import annotations

import pytest
from fuzz_bgm import (
    BAD_KINDS,
    Campaign,
    Outcome,
    Tally,
    Workspace,
    grammar_program,
    has_location,
    load_examples,
    mutate,
    run_case,
)

FAST_SEED = 20250101
SLOW_SEED = 20250102


def _verdict(tally: Tally, title: str, minimize_seconds: float) -> None:
    print()
    print(tally.summary(title))
    bad = {kind: tally.bad(kind) for kind in BAD_KINDS}
    if any(bad.values()):
        report = tally.report(limit=12, minimize_seconds=minimize_seconds)
        pytest.fail(f"{title}: {bad} (internal errors and hangs must be 0; every exit-1 "
                    f"message needs a location)\n\n{report}", pytrace=False)


# ---- the runner and the oracle ----------------------------------------------------------


def test_run_case_accepts_an_example_in_process(tmp_path):
    example = next(e for e in load_examples() if e.name == "coin")
    outcome = run_case(example.program, example.data, ["check"], workspace=Workspace(tmp_path))
    assert (outcome.kind, outcome.code) == ("accepted", 0), outcome.output
    assert "ok" in outcome.stdout


def test_run_case_classifies_a_located_user_error(tmp_path):
    outcome = run_case("model M\ntheta ~ Beta(2, 2\n", None, ["check"],
                       workspace=Workspace(tmp_path))
    assert outcome.code == 1 and outcome.kind == "clean", outcome.output
    assert has_location(outcome.stderr)


def test_run_case_catches_argparse_exits(tmp_path):
    outcome = run_case("theta ~ Beta(2, 2)\n", {}, ["fit", "--method", "bogus"],
                       workspace=Workspace(tmp_path))
    assert (outcome.code, outcome.kind) == (2, "usage")


def test_run_case_runs_on_data_and_reports_hangs(tmp_path):
    example = next(e for e in load_examples() if e.name == "eight_schools_noncentered")
    space = Workspace(tmp_path)
    outcome = run_case(example.program, example.data, ["sample", "-n", "2"], workspace=space)
    assert outcome.kind == "accepted", outcome.output
    hung = run_case(example.program, example.data,
                    ["fit", "--method", "map", "--iter", "2000"], timeout=1e-4, workspace=space)
    assert hung.hung and hung.kind == "hang"


@pytest.mark.parametrize("message, located", [
    ("m.bgm:3:5: error: undefined name 'x'", True),
    ("error: m.bgm:7: improper prior (Flat/HalfFlat): it has no prior draws", True),
    ("error: data 'y' (m.bgm:4) is missing from d.json", True),
    ("error: data 'y'[3] = nan is not finite", True),
    ("error: --batch must be at least 1, got 0", True),
    ("error: no initial point with a finite log density in 100 tries (non-finite: "
     "likelihood y); try --init 0.5", False),
    ("error: the model has a 'guide:' block, which only --method svi uses", True),
    ("internal error: ValueError: boom", False),
])
def test_location_oracle(message, located):
    assert has_location(message) is located


def test_outcome_kinds():
    base = {"argv": ["check", "m.bgm"], "stdout": "", "seconds": 0.0}
    assert Outcome(code=3, stderr="internal error: x", **base).kind == "internal"
    assert Outcome(code=1, stderr="error: the total is NaN", **base).kind == "unlocated"
    assert Outcome(code=None, stderr="", hung=True, **base).kind == "hang"


def test_generators_are_deterministic():
    import random
    text = load_examples()[0].program
    assert mutate(random.Random(5), text) == mutate(random.Random(5), text)
    assert grammar_program(random.Random(5)) == grammar_program(random.Random(5))


# ---- the fuzzers -------------------------------------------------------------------------


def test_mutation_fuzzer_fast(tmp_path):
    campaign = Campaign("mutation", FAST_SEED, cases=250, runs=8, statics=40,
                        workspace=Workspace(tmp_path))
    _verdict(campaign.run(), f"mutation fuzzer (seed {FAST_SEED})", minimize_seconds=8)


def test_grammar_fuzzer_fast(tmp_path):
    campaign = Campaign("grammar", FAST_SEED, cases=200, runs=8, statics=40,
                        workspace=Workspace(tmp_path))
    _verdict(campaign.run(), f"grammar fuzzer (seed {FAST_SEED})", minimize_seconds=8)


@pytest.mark.slow
def test_mutation_fuzzer_slow(tmp_path):
    campaign = Campaign("mutation", SLOW_SEED, cases=2000, runs=150, statics=250,
                        workspace=Workspace(tmp_path))
    _verdict(campaign.run(), f"mutation fuzzer (seed {SLOW_SEED})", minimize_seconds=20)


@pytest.mark.slow
def test_grammar_fuzzer_slow(tmp_path):
    campaign = Campaign("grammar", SLOW_SEED, cases=1200, runs=150, statics=200,
                        workspace=Workspace(tmp_path))
    _verdict(campaign.run(), f"grammar fuzzer (seed {SLOW_SEED})", minimize_seconds=20)
