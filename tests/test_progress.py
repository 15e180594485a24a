"""The one progress reporter (compiler/app/progress.py) adapts tqdm to each engine's
callback: what a user sees while NUTS samples, a net trains or SBC replicates."""
from __future__ import annotations

import io

import pytest

from compiler.app.progress import Progress, progress


def _shown(bar: Progress, out: io.StringIO) -> str:
    bar.close()
    return out.getvalue().replace("\r", "\n")


def test_sampling_shows_the_phase_and_divergences_per_chain() -> None:
    out = io.StringIO()
    bar = Progress(40, file=out, always=True)
    bar.sampling(20, 40, True, [0, 0])
    bar.sampling(40, 40, False, [0, 3])
    text = _shown(bar, out)
    last = text.strip().splitlines()[-1]
    assert "sampling" in last and "40/40" in last and "divergences per chain: 0 3" in last


def test_training_shows_the_loss_and_throughput() -> None:
    out = io.StringIO()
    bar = Progress(10, done=5, unit="step", file=out, always=True)
    bar.training(10, 10, 1.23456789, 512.0)
    last = _shown(bar, out).strip().splitlines()[-1]
    assert "10/10" in last and "loss=1.2346" in last and "items_per_s=512" in last


def test_off_a_terminal_nothing_is_written_and_no_progress_means_none() -> None:
    out = io.StringIO()
    bar = Progress(5, file=out)  # a StringIO is not a terminal
    bar.count(5, 5)
    assert _shown(bar, out) == ""
    assert progress(False, 5) is None


def test_optimizing_counts_evaluations_and_shows_the_log_density() -> None:
    out = io.StringIO()
    bar = Progress(None, unit="evaluations", file=out, always=True, refresh=5)
    for k in range(12):
        bar.optimizing(10.0 - k)
    last = _shown(bar, out).strip().splitlines()[-1]
    assert last.startswith("12evaluations") or "12evaluations" in last.replace(" ", "")
    assert "log density -1" in last  # drawn at the 10th evaluation (objective 1)


def test_a_map_fit_reports_through_the_bar_and_a_net_model_uses_adam() -> None:
    from compiler.api import compile_string  # noqa: PLC0415
    from runtime.optimize import optimize  # noqa: PLC0415
    program = compile_string("model M\ndata N: int\ndata x: real[N, 1]\ndata y: real[N, 1]\n"
                             "net f = MLP(1, 8, 1)\nfor i in 1..N:\n"
                             "    y[i] ~ Normal(f(x[i]), 1)\n", "m.bgm")
    data = {"N": 3, "x": [[0.0], [1.0], [2.0]], "y": [[0.0], [1.0], [2.0]]}
    seen: list[float] = []
    result = optimize(program.bind(data), method="mle", max_iter=30, progress=seen.append)
    assert len(seen) >= result.iterations > 0  # one call per evaluation, L-BFGS here
    assert min(seen) == pytest.approx(-result.objective)
    fit = program.fit(data, method="mle", max_iter=40)
    assert fit.iterations == 40  # Adam by default for nets: exactly --iter steps
