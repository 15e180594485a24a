"""The one progress reporter (compiler/app/progress.py) adapts tqdm to each engine's
callback: what a user sees while NUTS samples, a net trains or SBC replicates."""
from __future__ import annotations

import io

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
