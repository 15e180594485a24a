"""The geometry check Stan users rely on: eight schools, centred vs non-centred.

At the default target acceptance (0.8) the centred parameterisation's funnel makes NUTS
diverge, and bgm must say so (sample_stats.diverging); the non-centred one must be
essentially free of divergences (at most 1% of transitions). The settings are the
issue's: 4 chains x (1000 warmup + 1000 draws).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler.api import compile_file
from runtime import posterior
from runtime.nuts import NutsSettings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def divergent_fraction(model: str, seed: int) -> float:
    bound = compile_file(EXAMPLES / model).bind(str(EXAMPLES / "eight_schools.json"), device="cpu")
    settings = NutsSettings(chains=4, warmup=1000, draws=1000, adapt_delta=0.8, seed=seed)
    idata = posterior.run_nuts(bound, settings)
    diverging = np.asarray(idata.sample_stats["diverging"])
    assert diverging.shape == (4, 1000)
    return float(diverging.mean())


@pytest.mark.slow
def test_centred_eight_schools_reports_divergences() -> None:
    assert divergent_fraction("eight_schools_centered.bgm", seed=1) > 0.001


@pytest.mark.slow
def test_non_centred_eight_schools_is_at_most_one_percent_divergent() -> None:
    assert divergent_fraction("eight_schools_noncentered.bgm", seed=1) <= 0.01
