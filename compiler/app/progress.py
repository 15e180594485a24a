"""The one progress reporter of bgm: a tqdm bar on stderr, silent when stderr is not a
terminal (a pipe, a file, CI), left on screen when the work ends so its final rate stays.

The inference engines take plain callables and know nothing of terminals; this adapts
the bar to each engine's callback: a sampler reports its phase and divergences per
chain, a trainer its loss and throughput, a loop of replications only its count.
"""
from __future__ import annotations

from typing import Any


class Progress:
    """Use as a context manager, so the bar is closed when the work fails too."""

    def __init__(self, total: int | None, done: int = 0, unit: str = "it", file: Any = None,
                 always: bool = False, refresh: int = 1):
        """`file` defaults to stderr; `always` shows the bar off a terminal too (tests);
        the bar moves every `refresh` steps (and at the end), as CmdStan's refresh."""
        from tqdm import tqdm  # noqa: PLC0415
        self.refresh = max(1, refresh)
        self.bar = tqdm(total=total, initial=done, unit=unit, disable=False if always else None,
                        leave=True, dynamic_ncols=True, file=file)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _due(self, done: int, total: int) -> bool:
        return done % self.refresh == 0 or done == total

    def _advance(self, done: int) -> None:
        self.bar.update(done - self.bar.n)

    def sampling(self, done: int, total: int, warm: bool, divergences: Any) -> None:
        """NUTS's callback: iterations done, the phase, divergences per chain so far."""
        if not self._due(done, total):
            return
        per_chain = " ".join(str(int(d)) for d in divergences)
        self.bar.set_description("warmup" if warm else "sampling", refresh=False)
        self.bar.set_postfix_str(f"divergences per chain: {per_chain}", refresh=False)
        self._advance(done)

    def training(self, done: int, total: int, loss: float, per_second: float) -> None:
        """A trainer's callback (SVI, adversarial): steps done, the last loss, items/s."""
        if not self._due(done, total):
            return
        self.bar.set_postfix(loss=f"{loss:.5g}", items_per_s=f"{per_second:.0f}",
                             refresh=False)
        self._advance(done)

    def optimizing(self, objective: float) -> None:
        """An optimiser's callback (mle, map): one more evaluation of the objective; the
        bar counts evaluations (their number is not known in advance) and shows the log
        density reached."""
        done = self.bar.n + 1
        if done % self.refresh == 0:
            self.bar.set_postfix_str(f"log density {-objective:.6g}", refresh=False)
            self.bar.update(done - self.bar.n)
        else:
            self.bar.n = done  # counted; drawn at the next refresh

    def count(self, done: int, total: int) -> None:
        """A loop of independent pieces of work (SBC's replications)."""
        self._advance(done)

    def close(self) -> None:
        self.bar.close()


def progress(enabled: bool, total: int | None, done: int = 0, unit: str = "it",
             refresh: int = 1) -> Progress | None:
    """A Progress, or None when the user turned it off (--no-progress)."""
    return Progress(total, done, unit, refresh=refresh) if enabled else None
