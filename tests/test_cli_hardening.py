"""What a user can get wrong on the command line gives one clear message and exit 1 (or 2,
bad usage), never an internal error (exit 3) or a signal:

1. numbers: every numeric flag is checked by type and range while parsing (exit 2,
   naming the flag); global flags are accepted after the subcommand too;
2. outputs: checked before the work (a directory, an empty name, a read-only place, an
   input as output), written through one atomic routine with the umask's mode and through
   symlinks, leftovers of killed writes cleaned up, write errors (a full disk, the
   file-size limit) reported as errors naming the file;
3. untrusted files (fits, initial values, checkpoints) are checked before use, and never
   run code.
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import re
import resource
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compiler.app.cli import _parser, main

ROOT = Path(__file__).resolve().parents[1]
COIN = str(ROOT / "examples" / "coin.bgm")
COIN_DATA = str(ROOT / "examples" / "coin.json")
FIT = ["fit", COIN, "--data", COIN_DATA]
NUTS = [*FIT, "--method", "nuts", "--chains", "1", "--warmup", "30", "--draws", "30",
        "--no-progress"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main(argv) in process: (exit status, stdout, stderr); argparse's exit included."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def user_error(code: int, err: str, *fragments: str) -> None:
    """One message (no traceback, not an internal error) with exit 1, holding fragments."""
    assert code == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def point_fit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("point") / "fit.json"
    assert main([*FIT, "--method", "map", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def draws_fit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("draws") / "fit.nc"
    assert main([*NUTS, "-o", str(path)]) == 0
    return path


# ---- 1. command-line values ----------------------------------------------------------

SAMPLE = ["sample", COIN, "--data", COIN_DATA]
SBC = ["sbc", COIN, "--data", COIN_DATA]
BAD_NUMBERS = [
    ([*FIT, "--method", "nuts", "--chains", "0"], "--chains", "a positive integer"),
    ([*FIT, "--method", "nuts", "--draws", "-5"], "--draws", "a positive integer"),
    ([*FIT, "--method", "nuts", "--warmup", "-1"], "--warmup", "at least 0"),
    ([*FIT, "--method", "nuts", "--adapt-delta", "1.5"], "--adapt-delta",
     "strictly between 0 and 1"),
    ([*FIT, "--method", "nuts", "--adapt-delta", "nan"], "--adapt-delta",
     "strictly between 0 and 1"),
    ([*FIT, "--method", "nuts", "--max-treedepth", "0"], "--max-treedepth",
     "a positive integer"),
    ([*FIT, "--restarts", "0"], "--restarts", "a positive integer"),
    ([*FIT, "--iter", "-1"], "--iter", "a positive integer"),
    ([*FIT, "--optimizer", "adam", "--lr", "-1"], "--lr", "a positive number"),
    ([*FIT, "--optimizer", "adam", "--lr", "inf"], "--lr", "a positive number"),
    ([*FIT, "--init", "nan"], "--init", "a radius of at least 0"),
    ([*FIT, "--init", "-1"], "--init", "a radius of at least 0"),
    ([*FIT, "--seed", "100000000000000000000000"], "--seed", "a seed from 0"),
    ([*FIT, "--seed", "-1"], "--seed", "a seed from 0"),
    ([*FIT, "--method", "svi", "--particles", "0"], "--particles", "a positive integer"),
    ([*FIT, "--method", "svi", "--batch", "0"], "--batch", "a positive integer"),
    ([*FIT, "--method", "svi", "--epochs", "0"], "--epochs", "a positive integer"),
    ([*FIT, "--method", "svi", "--checkpoint-every", "-1"], "--checkpoint-every",
     "at least 0"),
    ([*FIT, "--method", "exact", "--chains", "two"], "--chains", "got 'two'"),
    ([*SAMPLE, "-n", "-1"], "-n/--draws", "a positive integer"),
    ([*SAMPLE, "-n", "0"], "-n/--draws", "a positive integer"),
    ([*SAMPLE, "--length", "0"], "--length", "a positive integer"),
    ([*SAMPLE, "--temperature", "-0.5"], "--temperature", "at least 0"),
    ([*SAMPLE, "--top-k", "0"], "--top-k", "a positive integer"),
    ([*SAMPLE, "--top-p", "1.5"], "--top-p", "above 0 and at most 1"),
    ([*SAMPLE, "--ddim", "0"], "--ddim", "a positive integer"),
    ([*SAMPLE, "--eta", "2"], "--eta", "from 0 to 1"),
    ([*SAMPLE, "--forecast", "0"], "--forecast", "a positive integer"),
    (["predict", COIN, "--data", COIN_DATA, "--fit", "f.json", "--query", "y", "-n", "0"],
     "-n/--draws", "a positive integer"),
    (["query", COIN, "--unroll", "0", "--markov-blanket", "theta"], "--unroll",
     "a positive integer"),
    ([*SBC, "-n", "0"], "-n/--replications", "a positive integer"),
    ([*SBC, "--warmup", "-1"], "--warmup", "at least 0"),
    ([*SBC, "--draws", "0"], "--draws", "a positive integer"),
    ([*SBC, "--thin", "0"], "--thin", "a positive integer"),
]


def _short(argv: list[str]) -> str:
    return " ".join(w for w in argv if w not in (COIN, COIN_DATA, "--data"))


@pytest.mark.parametrize("argv, flag, expected", BAD_NUMBERS,
                         ids=[_short(a) for a, _, _ in BAD_NUMBERS])
def test_a_bad_number_is_refused_while_parsing(argv: list[str], flag: str, expected: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2, err
    message = err.strip().splitlines()[-1]  # after argparse's usage lines
    assert message.startswith(f"bgmc {argv[0]}: error: argument {flag}: expected "), err
    assert expected in message, err
    assert "Traceback" not in err and not out


def test_global_flags_before_or_after_the_subcommand(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    parser = _parser()
    assert parser.parse_args(["--debug", "check", COIN]).debug is True
    assert parser.parse_args(["check", COIN, "--debug"]).debug is True
    assert parser.parse_args([*FIT, "--debug", "--method", "map"]).debug is True
    assert parser.parse_args(["check", COIN]).debug is False
    code, out, err = run(["check", COIN, "--debug"], capsys)
    assert code == 0 and "ok" in out, err


# ---- 2. outputs ------------------------------------------------------------------------

def test_an_empty_output_name_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*FIT, "--method", "map", "-o", ""], capsys)
    assert code == 2 and "argument -o/--output: the file name is empty" in err, err
    assert "MAP of" not in out


@pytest.mark.parametrize("method", ["map", "nuts"])
def test_a_directory_as_output_is_refused_before_fitting(
        method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = NUTS if method == "nuts" else [*FIT, "--method", "map"]
    code, out, err = run([*argv, "-o", str(tmp_path)], capsys)
    user_error(code, err, f"-o '{tmp_path}' is a directory")
    assert not out  # nothing was fitted


def test_a_read_only_directory_is_refused_before_fitting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Tests run as root, which may write anywhere: the check's os.access is simulated."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False
                        if os.path.realpath(p) == os.path.realpath(tmp_path)
                        else real_access(p, mode, *a, **k))
    out_path = tmp_path / "fit.nc"
    code, out, err = run([*NUTS, "-o", str(out_path)], capsys)
    user_error(code, err, f"-o '{out_path}': cannot write in the directory")
    assert not out and not out_path.exists()


def test_missing_directories_of_an_output_are_created(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As the README's quick start does (-o out/fit.json): only a place where they cannot
    be created is refused."""
    out = tmp_path / "out" / "sub" / "fit.json"
    code, _, err = run([*FIT, "--method", "map", "-o", str(out)], capsys)
    assert code == 0, err
    assert json.loads(out.read_text())["model"] == "Coin"


def test_an_output_in_a_missing_directory_under_a_file_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run([*FIT, "--method", "map", "-o", str(blocker / "sub" / "f.json")],
                         capsys)
    user_error(code, err, f"'{blocker}' is not a directory")
    assert not out


def test_outputs_that_would_replace_an_input_or_have_the_wrong_format(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "coin.json"
    data.write_text(Path(COIN_DATA).read_text())
    before = data.read_text()
    code, out, err = run(["fit", COIN, "--data", str(data), "-o", str(data)], capsys)
    user_error(code, err, f"-o '{data}' would replace --data")
    assert data.read_text() == before and not out
    code, out, err = run([*NUTS, "-o", str(tmp_path / "fit.json")], capsys)
    user_error(code, err, "--method nuts writes posterior draws: name the file .nc")
    assert not out
    code, out, err = run([*SBC, "-n", "2", "-o", str(tmp_path / "ranks.txt")], capsys)
    user_error(code, err, "-o", "name the file .png, .svg or .pdf")
    assert not out


def test_a_special_file_is_not_replaced(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO here; the same check keeps `-o /dev/null` from replacing the device with a
    regular file (as root, the rename would). Not tested on /dev/null itself: a
    regression would then break the machine's /dev/null."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, out, err = run([*FIT, "--method", "map", "-o", str(fifo)], capsys)
    user_error(code, err, f"-o '{fifo}' exists and is not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and not out


def test_a_symlink_output_is_written_through(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "results" / "fit.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "fit.json"
    link.symlink_to(target)
    code, _, err = run([*FIT, "--method", "map", "-o", str(link)], capsys)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["model"] == "Coin"


@pytest.mark.parametrize("suffix", [".json", ".nc", ".npz", ".png"])
def test_outputs_have_the_umask_mode(suffix: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"out{suffix}"
    argv = {".json": [*FIT, "--method", "map"], ".nc": NUTS,
            ".npz": ["sample", COIN, "--data", COIN_DATA, "-n", "3"],
            ".png": ["graph", COIN]}[suffix]
    old = os.umask(0o027)
    try:
        code, _, err = run([*argv, "-o", str(out)], capsys)
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left


def test_temporaries_are_named_for_bgmc_and_leftovers_are_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from runtime import files
    out = tmp_path / "fit.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f".fit.json.bgmc-{dead.pid}-0123abcd.tmp"  # its writer was killed
    old = tmp_path / ".fit.json.bgmc-1-89abcdef.tmp"  # pid 1 lives, but this is old
    live = tmp_path / ".fit.json.bgmc-1-00000000.tmp"  # maybe being written: kept
    other = tmp_path / ".other.json.bgmc-999999999-0123abcd.tmp"  # another target's
    foreign = tmp_path / ".fit.json.tmp"  # not of bgmc's naming
    for p in (killed, old, live, other, foreign):
        p.write_text("partial")
    stale = time.time() - files.STALE_SECONDS - 60
    os.utime(old, (stale, stale))
    renamed: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append(str(src)),
                                                         real_replace(src, dst))[1])
    code, _, err = run([*FIT, "--method", "map", "-o", str(out)], capsys)
    assert code == 0, err
    assert re.fullmatch(rf"\.fit\.json\.bgmc-{os.getpid()}-[0-9a-f]{{8}}\.tmp",
                        Path(renamed[-1]).name), renamed
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(p.name for p in (out, live, other, foreign)), left


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "No space left on device"),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES)), "Permission denied"),
])
def test_a_failed_write_is_an_error_naming_the_file(
        error: OSError, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk (simulated at the flush to disk) or a refused rename: the message names
    the output, the old file stays, and no temporary is left."""
    out = tmp_path / "fit.json"
    out.write_text("old")

    def fail(*args: object) -> None:
        raise error
    monkeypatch.setattr(os, "fsync" if error.errno == errno.ENOSPC else "replace", fail)
    code, _, err = run([*FIT, "--method", "map", "-o", str(out)], capsys)
    user_error(code, err, f"cannot write '{out}': {reason}")
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["fit.json"]


def _limited(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("method, name", [("map", "fit.json"), ("nuts", "fit.nc")])
def test_the_file_size_limit_is_an_error_not_a_signal(method: str, name: str,
                                                      tmp_path: Path) -> None:
    """ulimit -f: SIGXFSZ is ignored, so the write fails with EFBIG and is reported; the
    NetCDF is made in memory, so the HDF5 library never crashes on a failed write."""
    argv = NUTS[1:] if method == "nuts" else [*FIT[1:], "--method", "map"]
    done = subprocess.run([sys.executable, "-m", "compiler.cli", "fit", *argv, "-o", name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: _limited(100))
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert f"error: cannot write '{name}': File too large" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert list(tmp_path.iterdir()) == []


# ---- 3. untrusted files ----------------------------------------------------------------

def _sample(fit: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run([*SAMPLE, "--fit", str(fit), "-n", "3"], capsys)


def test_a_binary_file_as_a_json_fit(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    fit = tmp_path / "x.json"
    fit.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    code, _, err = _sample(fit, capsys)
    user_error(code, err, f"--fit '{fit}' is not a JSON file: it is not UTF-8 text")


@pytest.mark.parametrize("estimate, fragment", [
    ("abc", "the value of 'theta' holds a string, not only numbers"),
    ({"a": [1]}, "the value of 'theta' holds an object, not only numbers"),
    (None, "the value of 'theta' holds null"),
    (True, "the value of 'theta' holds a boolean"),
    ([[0.3], [0.4, 1]], "the value of 'theta' is not a rectangular array of numbers"),
    ([0.3, 0.4], "'theta' has shape [2], but the model's 'theta' (coin.bgm:9) has shape []"),
    (1.5, "a value of 'theta' (1.5) is outside its support"),
    (float("nan"), "'theta' holds non-finite values"),
])
def test_fit_estimates_that_are_not_the_models(estimate: object, fragment: str,
                                               tmp_path: Path, point_fit: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads(point_fit.read_text())
    report["estimates"]["theta"] = estimate
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps(report))
    code, _, err = _sample(fit, capsys)
    user_error(code, err, f"--fit '{fit}': {fragment}")


@pytest.mark.parametrize("text, fragment", [
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ('{"estimates": {"theta": ' + "1" * 5000 + "}}", "not valid JSON here"),
    ('{"estimates": [1, 2]}', "is not a point-estimate file from 'bgmc fit'"),
])
def test_malformed_json_fits(text: str, fragment: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    fit = tmp_path / "fit.json"
    fit.write_text(text)
    code, _, err = _sample(fit, capsys)
    user_error(code, err, f"--fit '{fit}'", fragment)


def test_bad_initial_values_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init = tmp_path / "init.json"
    init.write_text('{"theta": "half"}')
    code, out, err = run([*FIT, "--init", str(init)], capsys)
    user_error(code, err, f"--init '{init}': the value of 'theta' holds a string")
    init.write_text('{"theta": 2}')
    code, out, err = run([*FIT, "--init", str(init)], capsys)
    user_error(code, err, f"--init '{init}': a value of 'theta' (2) is outside its support")
    assert not out


def test_a_damaged_netcdf_fit(draws_fit: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """Truncated (the header says how long the file is) or overwritten in the middle
    (found when the draws are read: the file is read whole, at once)."""
    data = draws_fit.read_bytes()
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(data[:len(data) // 2])
    damaged = tmp_path / "damaged.nc"
    middle = bytearray(data)
    middle[len(data) // 3:len(data) // 3 + 2000] = bytes(2000)
    damaged.write_bytes(bytes(middle))
    for fit in (truncated, damaged):
        code, _, err = _sample(fit, capsys)
        user_error(code, err, f"'{fit}' is not a NetCDF file written by 'bgmc fit'")
        code, _, err = run(["summary", str(fit)], capsys)
        user_error(code, err, f"'{fit}' is not a NetCDF file written by 'bgmc fit'")
    code, _, err = run(["summary", str(tmp_path)], capsys)
    user_error(code, err, f"cannot read '{tmp_path}': it is a directory")


def test_a_netcdf_file_not_from_bgmc(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    import xarray as xr
    plain = tmp_path / "plain.nc"
    xr.Dataset({"a": ("x", np.arange(3))}).to_netcdf(plain, engine="h5netcdf")
    code, _, err = run(["summary", str(plain)], capsys)
    user_error(code, err, f"'{plain}' has no posterior draws: not a posterior from 'bgmc fit'")
    words = tmp_path / "words.nc"
    xr.Dataset({"theta": (("chain", "draw"), np.array([["a", "b"]]))}).to_netcdf(
        words, engine="h5netcdf", group="posterior")
    flat = tmp_path / "flat.nc"
    xr.Dataset({"theta": (("chain",), np.array([0.3, 0.2]))}).to_netcdf(
        flat, engine="h5netcdf", group="posterior")
    for fit in (words, flat):
        for argv in (["summary", str(fit)], ["compare", str(fit)],
                     [*SAMPLE, "--fit", str(fit)]):
            code, _, err = run(argv, capsys)
            user_error(code, err, f"'{fit}'", "'theta'", "not")


VECTOR = """model Means

data N: int
data y: real[N]

mu: real[N] ~ Normal(0, 10)
for i in 1..N:
    y[i] ~ Normal(mu[i], 1)
"""


def test_a_fit_of_other_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fit made with N = 3 used with data of N = 4: shapes differ (.json and .nc)."""
    model = tmp_path / "means.bgm"
    model.write_text(VECTOR)
    three, four = tmp_path / "three.json", tmp_path / "four.json"
    three.write_text('{"N": 3, "y": [1, 2, 3]}')
    four.write_text('{"N": 4, "y": [1, 2, 3, 4]}')
    for fit, method in ((tmp_path / "fit.json", "map"), (tmp_path / "fit.nc", "nuts")):
        sampling = ["--chains", "1", "--warmup", "20", "--draws", "10"] \
            if method == "nuts" else []
        assert main(["fit", str(model), "--data", str(three), "--method", method, *sampling,
                     "--no-progress", "-o", str(fit)]) == 0
        capsys.readouterr()
        code, _, err = run(["sample", str(model), "--data", str(four), "--fit", str(fit)],
                           capsys)
        user_error(code, err, f"--fit '{fit}': 'mu' has shape [3], but the model's 'mu'")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """A checkpoint of a short SVI run of the coin: (metadata, tensors)."""
    from safetensors import safe_open
    path = tmp_path_factory.mktemp("svi") / "c.safetensors"
    assert main([*FIT, "--method", "svi", "--iter", "10", "--draws", "10", "--no-progress",
                 "--checkpoint", str(path)]) == 0
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118


SVI = [*FIT, "--method", "svi", "--iter", "20", "--draws", "10", "--no-progress"]


def _damage(meta: dict, tensors: dict, how: str) -> tuple[dict, dict]:
    import torch
    meta, tensors = dict(meta), dict(tensors)
    if how == "no rng":
        del tensors["rng"]
    elif how == "huge step":
        meta["step"] = str(10**23)
    elif how == "step not a number":
        meta["step"] = "ten"
    elif how == "other model":
        meta["model"] = "Means"
    elif how == "other shapes":
        tensors["meanfield.loc"] = torch.zeros(3, dtype=torch.float64)
    elif how == "extra tensor":
        tensors["param.w"] = torch.zeros(2)
    elif how == "optimiser of another":
        tensors["adam.0.exp_avg"] = torch.zeros(4, dtype=torch.float64)
    elif how == "losses":
        tensors["losses"] = tensors["losses"][:3]
    return meta, tensors


@pytest.mark.parametrize("how, fragment", [
    ("no rng", "is damaged: it has no valid random state ('rng')"),
    ("huge step", "is at step 100000000000000000000000, beyond the 20 steps of this run"),
    ("step not a number", "is damaged: its 'step' is 'ten', not a count"),
    ("other model", "was written with model = Means, this run has Coin"),
    ("other shapes", "does not fit this model and data ('meanfield.loc' differs)"),
    ("extra tensor", "it holds 'param.w', which this model has not"),
    ("optimiser of another", "the optimiser state 'adam.0.exp_avg' has shape [4]"),
    ("losses", "its loss history ('losses') does not have one value for each of its 10 "
               "steps"),
])
def test_a_bad_checkpoint(how: str, fragment: str, checkpoint: tuple[dict, dict],
                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import save_file
    meta, tensors = _damage(*checkpoint, how)
    path = tmp_path / "c.safetensors"
    save_file(tensors, str(path), metadata=meta)
    code, _, err = run([*SVI, "--checkpoint", str(path), "--resume"], capsys)
    user_error(code, err, f"--resume: the checkpoint '{path}'", fragment)


def test_a_good_checkpoint_resumes(checkpoint: tuple[dict, dict], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import save_file
    path = tmp_path / "c.safetensors"
    save_file(checkpoint[1], str(path), metadata=checkpoint[0])
    code, _, err = run([*SVI, "--checkpoint", str(path), "--resume"], capsys)
    assert code == 0 and f"resumed from {path} at step 10" in err, err


class _Payload:
    """Unpickling this would create the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def test_fit_and_checkpoint_files_never_run_code(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A pickle (what torch.save writes) given as a checkpoint or a fit is refused as not
    being one, without unpickling it."""
    marker = tmp_path / "ran"
    payload = tmp_path / "evil.bin"
    payload.write_bytes(pickle.dumps(_Payload(marker)))
    code, _, err = run([*SVI, "--checkpoint", str(payload), "--resume"], capsys)
    user_error(code, err, f"--resume: the checkpoint '{payload}' is not a checkpoint")
    nc = tmp_path / "evil.nc"
    nc.write_bytes(payload.read_bytes())
    code, _, err = _sample(nc, capsys)
    user_error(code, err, f"'{nc}' is not a NetCDF file written by 'bgmc fit'")
    code, _, err = _sample(payload, capsys)
    user_error(code, err, f"--fit '{payload}'")
    assert not marker.exists()
