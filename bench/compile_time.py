"""Compile time per example, measured in-process after imports (target < 100 ms each),
and the start-up of `bgmc check` in a fresh process (it must not import torch).

    python bench/compile_time.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 100.0


def examples() -> list[Path]:
    found = [*sorted(ROOT.glob("examples/*.bgm")),
             *sorted(ROOT.glob("examples/posteriordb/*/model.bgm"))]
    return [p for p in found if _compiles(p)]


def _compiles(path: Path) -> bool:
    from compiler.pipeline import compile_path  # noqa: PLC0415
    from dsl.diagnostics import BgmError  # noqa: PLC0415
    try:
        compile_path(path)
        return True
    except BgmError:
        return False


def compile_times(repeats: int = 20) -> list[tuple[str, float]]:
    from compiler.pipeline import compile_path  # noqa: PLC0415
    rows = []
    for path in examples():
        compile_path(path)  # warm: the grammar is built once per process
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            compile_path(path)
            times.append((time.perf_counter() - start) * 1e3)
        rows.append((str(path.relative_to(ROOT)), statistics.median(times)))
    return rows


def check_startup(path: Path) -> tuple[float, bool]:
    code = ("import sys, time; t = time.perf_counter(); from compiler.cli import main; "
            f"main(['check', {str(path)!r}]); "
            "print(time.perf_counter() - t, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[-2]) * 1e3, out[-1] == "True"


def main() -> None:
    print(f"{'example':60s} {'compile ms':>10s}  (target < {TARGET_MS:.0f} ms)")
    worst = 0.0
    for name, ms in compile_times():
        worst = max(worst, ms)
        print(f"{name:60s} {ms:10.1f}{'  SLOW' if ms > TARGET_MS else ''}")
    ms, torch_loaded = check_startup(ROOT / "examples" / "eight_schools_noncentered.bgm")
    print(f"\nbgmc check start-up, import to exit: {ms:.0f} ms; torch imported: {torch_loaded}")
    print(f"worst compile time {worst:.1f} ms = {worst / TARGET_MS:.2f} x the target; a Stan "
          "model takes about 60 000 ms to compile, a ratio of "
          f"{60000 / max(worst, 1e-9):.0f} x")


if __name__ == "__main__":
    main()
