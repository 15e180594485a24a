"""Peak resident memory of a fit as the data grows: NUTS and ADVI on a coin (Bernoulli)
with 10^4, 10^5 and 10^6 rows.

    python bench/memory_bench.py [--quick] [--rows 10000,100000,1000000] [--methods advi]

Each fit runs as its own `bgmc fit` process (the way a user runs it), and its peak
resident set size is read from the kernel's accounting of that child (os.wait4), so the
numbers include the interpreter, torch, ArviZ and the written file. Defaults follow the
issue's target: NUTS 4 chains x (1000 warmup + 1000 draws) and ADVI with 1000 draws, each
under 2 GB at 10^6 rows; --quick runs 4 x (100 + 100) NUTS for a fast look. The pointwise
log-likelihood of 4 x 1000 draws x 10^6 rows (4e9 values) is left out and said (the
limit is runtime.evaluate.VALUE_LIMIT), which is what keeps memory flat.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 2048


def write_coin(folder: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    path = folder / f"coin_{rows}.npz"
    np.savez(path, N=np.int64(rows), y=rng.binomial(1, 0.3, rows).astype(np.int64))
    return path


def peak_of(command: list[str]) -> tuple[float, float, int, str]:
    """(peak resident MB, seconds, exit status, last line of stderr) of one process."""
    began = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - began
        err.seek(0)
        lines = [line for line in err.read().decode(errors="replace").splitlines()
                 if line.strip()]
    return usage.ru_maxrss / 1024, seconds, child.returncode, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="NUTS 4 x (100 + 100)")
    parser.add_argument("--rows", default="10000,100000,1000000")
    parser.add_argument("--methods", default="nuts,advi")
    args = parser.parse_args()
    iterations = ("100", "100") if args.quick else ("1000", "1000")
    bgmc = [sys.executable, "-m", "compiler.cli"]
    model = str(ROOT / "examples" / "coin.bgm")
    print(f"{'rows':>9} {'method':>6} {'peak MB':>8} {'seconds':>8}  under {TARGET_MB} MB")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rows in (int(r) for r in args.rows.split(",")):
            data = str(write_coin(folder, rows))
            runs = {
                "nuts": ["--method", "nuts", "--chains", "4", "--warmup", iterations[0],
                         "--draws", iterations[1]],
                "advi": ["--method", "advi", "--draws", "1000"],
            }
            for method, flags in runs.items():
                if method not in args.methods.split(","):
                    continue
                out = str(folder / f"{method}_{rows}.nc")
                mb, seconds, status, last = peak_of(
                    bgmc + ["fit", model, "--data", data, "--no-progress", "-o", out] + flags)
                verdict = "yes" if mb < TARGET_MB else "NO"
                failed = f"  (exit {status}: {last})" if status else ""
                print(f"{rows:>9} {method:>6} {mb:>8.0f} {seconds:>8.1f}  {verdict}{failed}",
                      flush=True)


if __name__ == "__main__":
    main()
