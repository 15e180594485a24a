"""Fuzzers for bgmc: a mutation fuzzer over the examples and a grammar-based generator of
expressions and declarations, with one runner that executes a case in-process.

The oracle (what every case must satisfy, whatever the input):

* `bgmc` exits 0 (accepted), 1 (a user error) or 2 (bad usage): never 3 or anything
  else, never an exception out of `compiler.cli.main`, and no "internal error" text;
* every exit-1 message carries a location: `file.bgm:LINE:COL` (or `file.bgm:LINE`),
  a data variable (`data 'y'`, an element such as `y[3]`), the data file for a fault
  of the whole file, or the flag the error is about (`--batch must be ...`; a hint such
  as "try --init 0.5" is not a location);
* no case uses more than its budget (default 10 s of CPU time, or 6 times that of wall
  time, so a loaded machine does not fake hangs): that is a hang;
* a program `bgmc fmt` prints is accepted by `bgmc check` whenever the original was.

Everything is seeded: a case is a pure function of (seed, index), so a failure printed
by a test is reproduced by its program, data and command line alone.

    from fuzz_bgm import run_case
    outcome = run_case("theta ~ Beta(2, 2)\\n", None, ["check"])
    outcome.kind      # accepted | clean | usage | unlocated | internal | hang

Ad hoc campaigns (prints the distinct findings with reproducers):

    python tests/fuzz_bgm.py mutation --cases 2000 --seed 7 --runs 200
    python tests/fuzz_bgm.py grammar --cases 2000 --seed 7 --runs 200
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import random
import re
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
if str(ROOT) not in sys.path:  # pragma: no cover - running this file as a script
    sys.path.insert(0, str(ROOT))

from compiler.tables.distributions import DISTRIBUTIONS  # noqa: E402
from compiler.tables.functions import FUNCTIONS, GENERATOR_REDUCTIONS  # noqa: E402

# Commands that read a data file.
DATA_COMMANDS = frozenset({"fit", "sample", "predict", "sbc"})

# ---- the oracle -----------------------------------------------------------------------

_INTERNAL = re.compile(r"internal error|bug in bgmc|Traceback \(most recent call last\)")

# What counts as "a location" in an exit-1 message. Each alternative names a place a
# user can go to: a position in the model file, a data variable (by name, or an element
# by index), or a command-line flag.
LOCATION = re.compile(
    r"\.bgm:\d+(?::\d+)?"                   # fuzz.bgm:3:5 (or fuzz.bgm:3 from the runtime)
    r"|\bdata '[^']+'"                      # data 'y' ..., data 'N' = -1 ...
    r"|\b[A-Za-z_]\w*\[\d+(?:, ?\d+)*\]"    # an element: y[3], x[2, 1]
    r"|(?<![\w-])(?<!try )(?<!use )--[a-z][a-z-]+"   # a flag the error is about (--batch
                                            # must be ...), not one a hint suggests (try --init)
    r"|data file '[^']*'"                   # the data file (for a fault of the whole file)
)


def has_location(message: str) -> bool:
    return LOCATION.search(message) is not None


class CaseTimeout(BaseException):
    """Raised by the alarm when a case overruns its deadline (a BaseException, so that
    `except Exception` in bgmc does not swallow it)."""


@dataclass
class Outcome:
    argv: list[str]
    code: int | None            # exit status; None when main() raised or the case hung
    stdout: str
    stderr: str
    seconds: float
    hung: bool = False
    escaped: str | None = None  # an exception that left compiler.cli.main
    debug_traceback: str | None = None   # the traceback of an internal error (--debug)
    warnings: tuple[str, ...] = ()

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def kind(self) -> str:
        if self.hung:
            return "hang"
        if self.escaped is not None or self.code not in (0, 1, 2) \
                or _INTERNAL.search(self.output):
            return "internal"
        if self.code == 1 and not has_location(self.stderr):
            return "unlocated"
        return {0: "accepted", 1: "clean", 2: "usage"}[self.code]

    def signature(self) -> str:
        """What tells one bug from another: for an internal error, the exception type and
        the innermost frame in bgm's own code (or the generated module); otherwise the
        message with the numbers and quoted names blanked out."""
        if self.kind == "internal":
            frame = _innermost_frame(self.debug_traceback or self.escaped or "")
            first = _first_error_line(self.output) or "".join(
                (self.escaped or "").splitlines()[-1:])
            if first.startswith("bgmc: internal error"):   # an InternalError of bgmc's own
                return f"internal InternalError at {frame}"
            etype = re.match(r"(?:internal error: )?([A-Za-z_.]+)", first)
            return f"internal {etype[1] if etype else '?'} at {frame}"
        if self.kind == "hang":
            return f"hang in {self.argv[0]}"
        text = _first_error_line(self.stderr) or self.stderr[:200]
        if self.kind == "unlocated":  # the same message about other variables: one finding
            text = text.split(" (")[0]
        text = re.sub(r"'[^']*'|\"[^\"]*\"", "'_'", text)
        text = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "0", text)
        text = re.sub(r"\S+\.bgm", "F.bgm", text)
        return f"{self.kind}: {text[:160]}"


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        if "error" in line:
            return line.strip()
    return ""


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def _innermost_frame(tb: str) -> str:
    """The innermost traceback frame in dsl/, compiler/, runtime/ or generated code, and
    the nearest outer one in another file (where the bad value came from)."""
    frames = []
    for path, _line, func in _FRAME.findall(tb):
        norm = path.replace("\\", "/")
        if norm.startswith("<bgmc:"):
            frames.append(("generated code", func))
            continue
        for pkg in ("/dsl/", "/compiler/", "/runtime/"):
            if pkg in norm and "/site-packages/" not in norm:
                frames.append((f"{pkg.strip('/')}/{norm.rsplit(pkg, 1)[1]}", func))
    if not frames:
        return "?"
    where = f"{frames[-1][0]}:{frames[-1][1]}"
    outer = next((f for f in reversed(frames) if f[0] != frames[-1][0]), None)
    if outer is not None and outer[0] not in ("compiler/cli.py", "compiler/app/cli.py"):
        where += f" (from {outer[0]}:{outer[1]})"
    return where


# A case's budget is CPU time (ITIMER_PROF: the process's user and system time), so that
# a loaded CI machine does not turn slow cases into "hangs"; a wall-clock limit of
# WALL_FACTOR times as much still catches a case that sleeps or waits forever.
WALL_FACTOR = 6.0


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise CaseTimeout in this thread once the case has used `seconds` of CPU time, or
    WALL_FACTOR * seconds of wall time; an alarm already armed (pytest-timeout's) keeps
    running for the time it had left."""
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return
    assert seconds is not None
    budget = seconds

    def ring(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"no answer within {budget} s of CPU time")

    start = time.monotonic()
    wall = seconds * WALL_FACTOR
    old_prof = signal.signal(signal.SIGPROF, ring)
    old_alarm = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, wall)
    if 0 < old_delay < wall:
        signal.setitimer(signal.ITIMER_REAL, old_delay)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, old_prof)
        signal.signal(signal.SIGALRM, old_alarm)
        if old_delay > 0:
            left = max(old_delay - (time.monotonic() - start), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


def _vm_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _memory_cap(extra_gb: float | None) -> Iterator[None]:
    """Limit the address space to what the process has now plus `extra_gb` while a case
    runs, so a hostile size makes an allocation fail instead of exhausting a shared
    machine (such a failure surfaces as an internal error, which it is)."""
    now = _vm_bytes()
    if extra_gb is None or now is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = now + int(extra_gb * 2**30)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _invoke(argv: list[str], timeout: float | None, memory_gb: float | None) -> Outcome:
    from compiler.cli import main  # noqa: PLC0415
    out, err = io.StringIO(), io.StringIO()
    code: int | None = None
    hung = False
    escaped = None
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                    _memory_cap(memory_gb), _deadline(timeout):
                code = main(argv)
        except CaseTimeout:
            hung = True
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:  # noqa: BLE001 - anything leaving main() is a finding
            escaped = traceback.format_exc()
    seconds = time.monotonic() - start
    seen = tuple(sorted({f"{w.category.__name__}: {w.message}" for w in caught}))
    return Outcome(argv, code, out.getvalue(), err.getvalue(), seconds, hung, escaped,
                   warnings=seen)


class Workspace:
    """A temporary directory holding the case's files (fuzz.bgm, fuzz.json)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else Path(tempfile.mkdtemp(prefix="bgm-fuzz-"))
        self.path.mkdir(parents=True, exist_ok=True)

    def argv(self, program: str, data: Any, argv_tail: Sequence[str]) -> list[str]:
        if not argv_tail:
            raise ValueError("argv_tail starts with the bgmc command, e.g. ['check']")
        model = self.path / "fuzz.bgm"
        model.write_bytes(program.encode("utf-8", "surrogatepass"))
        command, *rest = argv_tail
        argv = [command, str(model)]
        if command in DATA_COMMANDS and data is not None:
            target = self.path / "fuzz.json"
            text = data if isinstance(data, str) else json.dumps(data)
            target.write_text(text, encoding="utf-8")
            argv += ["--data", str(target)]
        return argv + [a.replace("{dir}", str(self.path)) for a in rest]


_DEFAULT_WORKSPACE: Workspace | None = None


def run_case(program_text: str, data_dict: Any, argv_tail: Sequence[str],
             timeout: float | None = 10.0, workspace: Workspace | None = None,
             memory_gb: float | None = 6.0) -> Outcome:
    """Run `bgmc COMMAND fuzz.bgm [--data fuzz.json] REST...` in this process.

    argv_tail is the command and its options, e.g. ["check"], ["sample", "-n", "2"] or
    ["fit", "--method", "map", "--iter", "5"]; `{dir}` in an option becomes the case's
    directory (for -o). data_dict is written as JSON (a str is written verbatim), and
    passed with --data to the commands that read data. An internal error is run again
    with --debug to record its traceback."""
    global _DEFAULT_WORKSPACE
    if workspace is None:
        if _DEFAULT_WORKSPACE is None:
            _DEFAULT_WORKSPACE = Workspace()
        workspace = _DEFAULT_WORKSPACE
    argv = workspace.argv(program_text, data_dict, argv_tail)
    outcome = _invoke(argv, timeout, memory_gb)
    if outcome.kind == "internal" and outcome.escaped is None:
        again = _invoke(["--debug", *argv], timeout, memory_gb)
        outcome.debug_traceback = again.escaped or again.stderr
    elif outcome.escaped is not None:
        outcome.debug_traceback = outcome.escaped
    return outcome


# ---- cases and their bookkeeping -------------------------------------------------------


@dataclass
class Case:
    label: str                   # e.g. "mutation seed 7 #12 of coin"
    program: str
    data: Any                    # a dict (written as JSON), raw text, or None
    argv_tail: list[str]
    how: list[str] = field(default_factory=list)   # the mutations applied


@dataclass
class Finding:
    case: Case
    outcome: Outcome

    def reproducer(self, max_chars: int = 4000) -> str:
        o = self.outcome
        data = self.case.data
        data_text = "(none)"
        if self.case.argv_tail[0] not in DATA_COMMANDS:
            data_text = "(not read by this command)"
        elif data is not None:
            data_text = data if isinstance(data, str) else json.dumps(data)
        argv = ["bgmc", *[Path(a).name if a.endswith((".bgm", ".json")) else a
                          for a in o.argv]]
        lines = [
            f"--- {o.kind} in {self.case.label}: {o.signature()}",
            f"mutations: {'; '.join(self.case.how) or '(none)'}",
            "fuzz.bgm:",
            _clip(self.case.program, max_chars),
            f"fuzz.json: {_clip(data_text, 600)}",
            "command: " + " ".join(_shell_quote(a) for a in argv),
            f"exit status: {o.code}{' (hung)' if o.hung else ''} after {o.seconds:.2f} s",
            "output:",
            _clip(o.output.rstrip() or "(nothing)", 1500),
        ]
        if o.debug_traceback:
            lines += ["traceback (--debug):", _clip(o.debug_traceback.rstrip(), 2500,
                                                    keep_end=True)]
        return "\n".join(lines)


def _clip(text: str, limit: int, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    if keep_end:
        return f"[... {len(text) - limit} characters]\n" + text[-limit:]
    return text[:limit] + f" [... {len(text) - limit} more characters]"


def _shell_quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w./:=@+-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


BAD_KINDS = ("internal", "hang", "unlocated", "fmt-roundtrip")


@dataclass
class Tally:
    """Counts of outcomes and the findings (one per distinct signature kept in full)."""

    counts: Counter[str] = field(default_factory=Counter)
    findings: dict[str, list[Finding]] = field(default_factory=dict)
    seconds: float = 0.0
    by_command: Counter[str] = field(default_factory=Counter)        # cases per command
    seconds_by_command: Counter[str] = field(default_factory=Counter)
    workspace: Workspace | None = None    # where minimize() runs its trials

    def add(self, case: Case, outcome: Outcome) -> Outcome:
        kind = outcome.kind
        self.counts["cases"] += 1
        self.counts[kind] += 1
        self.seconds += outcome.seconds
        command = " ".join(case.argv_tail[:3]) if case.argv_tail[0] == "fit" \
            else case.argv_tail[0]
        self.by_command[command] += 1
        self.seconds_by_command[command] += outcome.seconds
        if kind in BAD_KINDS:
            self.findings.setdefault(outcome.signature(), []).append(Finding(case, outcome))
        return outcome

    def add_finding(self, kind: str, case: Case, outcome: Outcome, signature: str) -> None:
        self.counts[kind] += 1
        self.findings.setdefault(signature, []).append(Finding(case, outcome))

    def bad(self, kind: str) -> int:
        return self.counts[kind]

    def summary(self, title: str) -> str:
        c = self.counts
        return (f"{title}: {c['cases']} cases run in {self.seconds:.1f} s: "
                f"{c['clean']} clean errors, {c['accepted']} accepted, {c['usage']} usage "
                f"errors, {c['internal']} internal errors, {c['hang']} hangs, "
                f"{c['unlocated']} errors without a location, {c['fmt-roundtrip']} fmt "
                f"round-trip failures; {len(self.findings)} distinct findings\n  by command: "
                + ", ".join(f"{cmd} {k} in {self.seconds_by_command[cmd]:.1f} s"
                            for cmd, k in sorted(self.by_command.items())))

    def report(self, limit: int = 12, minimize_seconds: float = 0.0) -> str:
        """The distinct findings, most frequent first, each with its smallest reproducer
        (shrunk further by `minimize` within minimize_seconds in all)."""
        parts = []
        ranked = sorted(self.findings.items(), key=lambda kv: -len(kv[1]))
        shown = ranked[:limit]
        for signature, found in shown:
            smallest = min(found, key=lambda f: len(f.case.program))
            if minimize_seconds > 0 and not signature.startswith("fmt-roundtrip"):
                smallest = minimize(smallest, minimize_seconds / len(shown), self.workspace)
            parts.append(f"[{len(found)}x] {signature}\n{smallest.reproducer()}")
        if len(ranked) > limit:
            parts.append(f"... and {len(ranked) - limit} more distinct findings: "
                         + "; ".join(s for s, _ in ranked[limit:]))
        return "\n\n".join(parts)


# ---- shrinking a finding ---------------------------------------------------------------


def minimize(finding: Finding, budget_seconds: float = 5.0,
             workspace: Workspace | None = None) -> Finding:
    """A smaller program (and data) giving the same signature: whole lines dropped, then
    trailing comments, then tokens of each line, then data names; greedy, within
    `budget_seconds`. Returns the input unchanged when nothing smaller reproduces."""
    case, want = finding.case, finding.outcome.signature()
    deadline = time.monotonic() + budget_seconds
    timeout = min(10.0, max(1.0, finding.outcome.seconds * 2 + 1))
    best = finding

    def attempt(program: str, data: Any) -> bool:
        nonlocal best
        if time.monotonic() > deadline:
            return False
        o = run_case(program, data, case.argv_tail, timeout, workspace)
        if o.signature() != want:
            return False
        best = Finding(Case(case.label + " (minimized)", program, data, case.argv_tail,
                            case.how), o)
        return True

    def program() -> str:
        return best.case.program

    changed = True
    while changed and time.monotonic() < deadline:   # whole lines, last first
        changed = False
        lines = program().split("\n")
        for i in reversed(range(len(lines))):
            if i < len(lines) and lines[i].strip():
                trial = lines[:i] + lines[i + 1:]
                if attempt("\n".join(trial), best.case.data):
                    lines = trial
                    changed = True
    stripped = re.sub(r"[ ]*#[^\n]*", "", program())
    if stripped != program():
        attempt(stripped, best.case.data)
    if isinstance(best.case.data, dict) and best.case.argv_tail[0] in DATA_COMMANDS:
        for key in sorted(best.case.data):
            trial_data = {k: v for k, v in best.case.data.items() if k != key}
            attempt(program(), trial_data)
    toks = tokenize(program())
    j = len(toks) - 1
    while j >= 0 and time.monotonic() < deadline:     # grouping parentheses
        if toks[j][1] == "(" and (j == 0 or toks[j - 1][0] != "name"):
            k = _matching(toks, j)
            if k is not None:
                trial = toks[:j] + toks[j + 1:k] + toks[k + 1:]
                if attempt(untokenize(trial), best.case.data):
                    toks = trial
        j -= 1
    lines = program().split("\n")
    for i in range(len(lines)):                       # tokens, one at a time
        toks = tokenize(lines[i])
        j = len(toks) - 1
        while j >= 0 and time.monotonic() < deadline:
            if toks[j][0] not in ("ws", "nl"):
                trial = toks[:j] + toks[j + 1:]
                text = "\n".join([*lines[:i], untokenize(trial), *lines[i + 1:]])
                if attempt(text, best.case.data):
                    toks = trial
                    lines = program().split("\n")
            j -= 1
    return best


# ---- the examples and their data -------------------------------------------------------

_DATA_OF = {"eight_schools_centered": "eight_schools", "eight_schools_noncentered":
            "eight_schools"}


@dataclass(frozen=True)
class Example:
    name: str
    program: str   # comment-only lines dropped: mutations should land on statements
    data: dict[str, Any]


def load_examples(rows: int = 5) -> list[Example]:
    """Every examples/*.bgm with its data (shrunk to `rows` rows where possible)."""
    out = []
    for path in sorted(EXAMPLES.glob("*.bgm")):
        stem = _DATA_OF.get(path.stem, path.stem)
        data_path = EXAMPLES / f"{stem}.json"
        data = json.loads(data_path.read_text()) if data_path.exists() else {}
        text = "".join(line for line in path.read_text(encoding="utf-8").splitlines(True)
                       if not line.lstrip().startswith("#"))
        out.append(Example(path.stem, text, shrink_data(data, rows)))
    return out


def shrink_data(data: dict[str, Any], rows: int = 5) -> dict[str, Any]:
    """The data with every integer size above `rows` that is the length of some array
    (along its first axis) cut to `rows`, and those arrays cut with it; texts given as
    {"alphabet", "text"} cut to a few characters."""
    data = copy.deepcopy(data)
    for key, value in list(data.items()):
        if isinstance(value, bool) or not isinstance(value, int) or value <= rows:
            continue
        arrays = [k for k, v in data.items() if isinstance(v, list) and len(v) == value]
        if arrays:
            data[key] = rows
            for k in arrays:
                data[k] = data[k][:rows]
    for value in data.values():
        if isinstance(value, dict) and isinstance(value.get("text"), str):
            value["text"] = value["text"][:4 * rows]
    return data


# ---- tokens ----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<comment>#[^\n]*)"
    r"|(?P<number>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)"
    r"|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<string>\"[^\"\n]*\")"
    r"|(?P<op>\.\.|<=|>=|==|!=|[-+*/^@~=<>:,()\[\]])"
    r"|(?P<ws>[ \t]+)"
    r"|(?P<nl>\n)"
    r"|(?P<other>.)", re.S)

Tok = list[str]  # [kind, text]


def tokenize(text: str) -> list[Tok]:
    return [[m.lastgroup or "other", m.group()] for m in _TOKEN.finditer(text)]


def untokenize(toks: list[Tok]) -> str:
    return "".join(t for _, t in toks)


def _line_of(toks: list[Tok], index: int) -> int:
    return 1 + sum(t.count("\n") for _, t in toks[:index])


def _matching(toks: list[Tok], open_index: int) -> int | None:
    """The index of the bracket closing the one at open_index."""
    depth = 0
    for j in range(open_index, len(toks)):
        if toks[j][1] in ("(", "["):
            depth += 1
        elif toks[j][1] in (")", "]"):
            depth -= 1
            if depth == 0:
                return j
    return None


# ---- hostile material ------------------------------------------------------------------

HOSTILE_NUMBERS = [
    "0", "-1", "1e400", "1" + "0" * 400, "1e-400", "9^9^9", "0.0", "-0", "1e308",
    "2147483648", "9223372036854775808", "(0/0)", "(1/0)", "(-1/0)", "0.5", "1.5",
    "1e-320", "999999999", "10^10", "(2^63)", "-(2^1000)", "00", "007", "1e0", "3",
]

HOSTILE_NAMES = [
    "inf", "nan", "NaN", "Infinity", "None", "True", "False", "torch", "rt", "dist",
    "self", "math", "lambda", "__import__", "__class__", "_", "x__y", "print", "exec",
    "eval", "os", "sys", "np", "data__", "u__", "acc__", "draws__", "shape__", "given__",
    "model", "data", "param", "const", "net", "guide", "factor", "for", "in", "if", "def",
    "class", "return", "import", "yield", "sum", "exp", "log", "Normal", "MLP", "real",
    "int", "simplex", "relu", "ｉｆ", "ｆｏｒ", "ｄａｔａ", "ｍｏｄｅｌ", "ﬁ", "ℕ", "é", "𝑥",
    "a" * 300, "log_prob", "forward", "log_density", "sample_prior", "name", "source",
    "plates", "locations", "Model", "CompiledModel", "dtype", "device", "tensor", "e",
    "pi", "E", "I", "O", "l", "S", "Σ", "x_", "_x", "__", "J_", "T_", "y_",
]

INSERT_CHARS = [
    "\x00", "\x07", "\x0b", "\x0c", "\r", "\x1b[31m", "\x7f", "\u200b", "\ufeff", "\u2028",
    "\u2029", "\u00a0", "\u3000", "é", "𝑥", "ﬁ", "Ω", "\t", "\\", "'", '"', "`", "$", "?",
    "!", ";", "{", "}", "|", "&", "%", "\u202e", "\ud7ff", "\U0010ffff", "１", "＋", "（",
]

DIST_NAMES = sorted(DISTRIBUTIONS) + ["Normall", "normal", "MLP", "Foo", "Diffusion"]

RANGE_FORMS = ["0..{b}", "-1..{b}", "{b}..1", "1..{b}+1", "1..0", "2..1", "{a}..{a}",
               "1..10^9", "1..{b}*{b}", "{a}..{b}-1", "1.5..{b}", "{a}..{b}.5", "{b}..{b}",
               "1..1" + "0" * 30, "mu..{b}", "1..-{b}", "({a})..({b})", "{a}..{b}..{b}",
               "1..", "..{b}", "{b}-{b}..{b}", "1..2*{b}", "0..0"]

INDEX_FORMS = ["{i}+1", "0", ":", "{i}, {i}", "-1", "{i}-1", "1..2", "", "{i}][{i}",
               "N+1", "10^9", "1.5", "j", "{i}, :", ":, {i}", "{i}, 1, 1", "{i}+{i}",
               "1" + "0" * 25, "{i}..{i}", "2..1", "{i}*0", "theta", "[1, 2]", "k",
               "{i}-{i}", "z[{i}]", "1..0"]

TYPE_FORMS = ["real", "int", "positive", "unit", "simplex[3]", "ordered[2]",
              "cholesky_corr[2]", "real<lower=0>", "real<lower=1, upper=0>",
              "real<lower=1e400>", "int<lower=0, upper=10^12>", "real[0]", "real[-1]",
              "real[N, N, N, N, N, N, N, N]", "real<upper=-1e-400>", "int<lower=-5>",
              "real<lower=mu>", "simplex[1]", "positive<lower=1>", "real[1e400]",
              "real[10^12]", "int[2, 0]", "unit[3]", "real<lower=0><upper=1>",
              "real<lower=(1 < 2)>", "real[N+1]"]

STATEMENTS = [
    "factor 0", "factor mu", "factor 1e400", "factor -(1/0)", "const Q = 9^9^9",
    "const Q = 1" + "0" * 400, "const Q = Q", "const N = 3", "w2 ~ Normal(0, 1)",
    "w2 ~ Flat()", "data Z: real[N]", "param p: real", "net g = MLP(1, 1)",
    "model Again", "guide:", "for q in 1..3:", "factor sum(k for k in 1..10^9)",
    "u ~ Poisson(3)", "u: int<lower=0, upper=10^7> ~ Poisson(3)",
    "v: real[10^9] ~ Normal(0, 1)", "e ~ Normal(0, e)", "c = c + 1",
    "zz ~ Categorical(ones(10^6) / 10^6)", "factor zeros(10^10)",
    "s2 ~ LKJCholesky(1)", "m ~ MultivariateNormal(zeros(2), eye(2))",
    "factor log_sum_exp(linspace(0, 1, 0))", "r: simplex[0] ~ Dirichlet(ones(0))",
    "factor one_hot(0, 3)[1]", "factor cholesky(zeros(2, 2))[1, 1]",
]

Mutator = Callable[[random.Random, str], "tuple[str, str] | None"]


# ---- mutation operators (each returns (new text, description) or None) -----------------

def _lines(text: str) -> list[str]:
    return text.split("\n")


def _content_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.strip()]


def m_delete_line(rng: random.Random, text: str) -> tuple[str, str] | None:
    lines = _lines(text)
    idx = _content_lines(lines)
    if not idx:
        return None
    i = rng.choice(idx)
    del lines[i]
    return "\n".join(lines), f"delete line {i + 1}"


def m_duplicate_line(rng: random.Random, text: str) -> tuple[str, str] | None:
    lines = _lines(text)
    idx = _content_lines(lines)
    if not idx:
        return None
    i = rng.choice(idx)
    j = rng.randrange(len(lines) + 1)
    lines.insert(j, lines[i])
    return "\n".join(lines), f"copy line {i + 1} to line {j + 1}"


def m_swap_lines(rng: random.Random, text: str) -> tuple[str, str] | None:
    lines = _lines(text)
    idx = _content_lines(lines)
    if len(idx) < 2:
        return None
    i, j = rng.sample(idx, 2)
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines), f"swap lines {i + 1} and {j + 1}"


def _replace_token(rng: random.Random, text: str, kinds: tuple[str, ...],
                   choose: Callable[[str], str], what: str,
                   accept: Callable[[str], bool] = lambda t: True) -> tuple[str, str] | None:
    toks = tokenize(text)
    idx = [i for i, (k, t) in enumerate(toks) if k in kinds and accept(t)]
    if not idx:
        return None
    i = rng.choice(idx)
    old = toks[i][1]
    toks[i][1] = choose(old)
    return untokenize(toks), f"{what} {old!r} -> {toks[i][1][:60]!r} at line {_line_of(toks, i)}"


def m_hostile_number(rng: random.Random, text: str) -> tuple[str, str] | None:
    return _replace_token(rng, text, ("number",), lambda _: rng.choice(HOSTILE_NUMBERS),
                          "number")


def _names(text: str) -> list[str]:
    return sorted({t for k, t in tokenize(text) if k == "name"})


def m_replace_name(rng: random.Random, text: str) -> tuple[str, str] | None:
    """One occurrence of a name, or all of them (a consistent rename), becomes another
    name of the program or a hostile one."""
    names = _names(text)
    if not names:
        return None
    pool = names if rng.random() < 0.5 else HOSTILE_NAMES
    new = rng.choice(pool)
    if rng.random() < 0.4:
        old = rng.choice(names)
        toks = tokenize(text)
        for t in toks:
            if t[0] == "name" and t[1] == old:
                t[1] = new
        return untokenize(toks), f"rename every {old!r} to {new!r}"
    return _replace_token(rng, text, ("name",), lambda _: new, "name")


def m_loop_bounds(rng: random.Random, text: str) -> tuple[str, str] | None:
    matches = list(re.finditer(r"(?m)^([ ]*for \w+ in )(.+?)\.\.(.+?):[ ]*$", text))
    ranges = list(re.finditer(r"(\w+(?:[-+*]\w+)?)\.\.(\w+(?:[-+*]\w+)?)", text))
    if matches and (rng.random() < 0.7 or not ranges):
        m = rng.choice(matches)
        new = rng.choice(RANGE_FORMS).format(a=m[2], b=m[3])
        return (text[:m.start(2)] + new + text[m.end(3):],
                f"loop range {m[2]}..{m[3]} -> {new}")
    if not ranges:
        return None
    m = rng.choice(ranges)
    new = rng.choice(RANGE_FORMS).format(a=m[1], b=m[2])
    return text[:m.start()] + new + text[m.end():], f"range {m[0]} -> {new}"


def m_index(rng: random.Random, text: str) -> tuple[str, str] | None:
    toks = tokenize(text)
    opens = [i for i in range(1, len(toks)) if toks[i][1] == "["
             and toks[i - 1][0] == "name" or (toks[i][1] == "[" and toks[i - 1][1] == "]")]
    if not opens:
        return None
    i = rng.choice(opens)
    j = _matching(toks, i)
    if j is None:
        return None
    inner = untokenize(toks[i + 1:j])
    first = inner.split(",")[0].strip() or "1"
    new = rng.choice(INDEX_FORMS).format(i=first)
    toks[i + 1:j] = [["other", new]]
    return untokenize(toks), f"index [{inner}] -> [{new}]"


def m_swap_distribution(rng: random.Random, text: str) -> tuple[str, str] | None:
    return _replace_token(rng, text, ("name",), lambda _: rng.choice(DIST_NAMES),
                          "distribution", accept=lambda t: t in DISTRIBUTIONS)


def m_arguments(rng: random.Random, text: str) -> tuple[str, str] | None:
    """Add, drop or rename an argument of a call."""
    toks = tokenize(text)
    calls = [i for i in range(1, len(toks)) if toks[i][1] == "(" and toks[i - 1][0] == "name"]
    if not calls:
        return None
    i = rng.choice(calls)
    j = _matching(toks, i)
    if j is None:
        return None
    inner = untokenize(toks[i + 1:j])
    parts = _split_top(inner)
    choice = rng.randrange(7)
    if choice == 0:
        parts.append(rng.choice(["1", "0", "-1", "mu", "x", "[1, 2]"]))
    elif choice == 1 and parts:
        parts.pop()
    elif choice == 2:
        parts = []
    elif choice == 3:
        parts.append(rng.choice(["sigma=1", "foo=2", "logits=0", "p=0.5", "mu=0",
                                 "act=relu", "steps=0", "schedule=\"bogus\"",
                                 "dim=0", "layers=-1", "context=1", "heads=3"]))
    elif choice == 4 and parts:
        parts.insert(0, parts[0])
    elif choice == 5 and parts:
        k = rng.randrange(len(parts))
        parts[k] = f"{rng.choice(['x', 'mu', 'p', 'logits', 'sigma', 'n'])}={parts[k].strip()}"
    else:
        parts = parts[::-1]
    new = ", ".join(p.strip() for p in parts)
    toks[i + 1:j] = [["other", new]]
    return (untokenize(toks), f"call {toks[i - 1][1]}({inner[:40]}) -> "
            f"{toks[i - 1][1]}({new[:40]})")


def _split_top(inner: str) -> list[str]:
    parts, depth, begin = [], 0, 0
    for k, ch in enumerate(inner):
        depth += (ch in "([") - (ch in ")]")
        if ch == "," and depth == 0:
            parts.append(inner[begin:k])
            begin = k + 1
    if inner.strip():
        parts.append(inner[begin:])
    return parts


def m_tilde_equals(rng: random.Random, text: str) -> tuple[str, str] | None:
    toks = tokenize(text)
    idx = [i for i, (k, t) in enumerate(toks) if t in ("~", "=")]
    if not idx:
        return None
    i = rng.choice(idx)
    old = toks[i][1]
    toks[i][1] = rng.choice({"~": ["=", "==", "~~", "<-"], "=": ["~", "==", ":="]}[old])
    return untokenize(toks), f"{old!r} -> {toks[i][1]!r} at line {_line_of(toks, i)}"


def m_deep_parens(rng: random.Random, text: str) -> tuple[str, str] | None:
    depth = rng.choice([30, 100, 300, 1000, 3000, 10000])
    return _replace_token(rng, text, ("number", "name"),
                          lambda t: "(" * depth + t + ")" * depth, f"{depth} parentheses around")


def m_long_sum(rng: random.Random, text: str) -> tuple[str, str] | None:
    n = rng.choice([100, 1000, 5000, 20000])
    op = rng.choice([" + ", " * ", " - ", "+", " ^ ", " @ ", " < "])
    return _replace_token(rng, text, ("number", "name"), lambda t: op.join([t] * n),
                          f"{n}-term {op.strip()!r} chain of")


def m_unary_chain(rng: random.Random, text: str) -> tuple[str, str] | None:
    n = rng.choice([2, 3, 50, 500, 5000, 30000])
    sep = rng.choice(["-", "- ", "-(", "+"])
    close = ")" * n if sep == "-(" else ""
    return _replace_token(rng, text, ("number", "name"), lambda t: sep * n + t + close,
                          f"{n} unary {sep.strip()!r} before")


def m_indentation(rng: random.Random, text: str) -> tuple[str, str] | None:
    lines = _lines(text)
    idx = _content_lines(lines)
    if not idx:
        return None
    i = rng.choice(idx)
    body = lines[i].lstrip(" \t")
    old = lines[i][:len(lines[i]) - len(body)]
    new = rng.choice(["", " ", "  ", "   ", "\t", " \t", "\t ", old + "    ", old[1:],
                      old + " ", " " * 40, "\u00a0", "\u3000", "\f", "\v"])
    lines[i] = new + body
    return "\n".join(lines), f"indentation of line {i + 1}: {old!r} -> {new!r}"


def m_insert_char(rng: random.Random, text: str) -> tuple[str, str] | None:
    pos = rng.randrange(len(text) + 1)
    ch = rng.choice(INSERT_CHARS)
    if ch.startswith("\ud7ff"):
        ch = "\ud7ff"
    line = text.count("\n", 0, pos) + 1
    return text[:pos] + ch + text[pos:], f"insert {ch!r} at line {line}"


def m_type(rng: random.Random, text: str) -> tuple[str, str] | None:
    pattern = re.compile(r"(?<=: )(real|int|positive|unit|simplex|ordered|cholesky_corr)"
                         r"(<[^>\n]*>)?(\[[^\]\n]*\])?")
    found = list(pattern.finditer(text))
    if not found:
        return None
    m = rng.choice(found)
    new = rng.choice(TYPE_FORMS)
    if rng.random() < 0.3 and m[3]:
        new = new.split("[")[0] + m[3]
    return text[:m.start()] + new + text[m.end():], f"type {m[0]} -> {new}"


def m_keyword(rng: random.Random, text: str) -> tuple[str, str] | None:
    words = ["data", "param", "const", "net", "for", "factor", "model", "guide", "in"]
    return _replace_token(rng, text, ("name",), lambda _: rng.choice(words), "keyword",
                          accept=lambda t: t in words)


def m_operator(rng: random.Random, text: str) -> tuple[str, str] | None:
    ops = ["+", "-", "*", "/", "^", "@", "<", ">", "<=", ">=", "==", "!=", "..", ",", ":"]
    return _replace_token(rng, text, ("op",), lambda _: rng.choice(ops), "operator",
                          accept=lambda t: t in ops)


def m_token(rng: random.Random, text: str) -> tuple[str, str] | None:
    toks = tokenize(text)
    idx = [i for i, (k, _) in enumerate(toks) if k not in ("ws", "comment")]
    if not idx:
        return None
    i = rng.choice(idx)
    old = toks[i][1]
    line = _line_of(toks, i)
    if rng.random() < 0.6:
        del toks[i]
        return untokenize(toks), f"delete token {old!r} at line {line}"
    toks.insert(i, [toks[i][0], old])
    return untokenize(toks), f"double token {old!r} at line {line}"


def m_insert_statement(rng: random.Random, text: str) -> tuple[str, str] | None:
    lines = _lines(text)
    i = rng.randrange(len(lines) + 1)
    if rng.random() < 0.5:
        stmt = rng.choice(STATEMENTS)
    else:  # a generated expression over the program's own names
        names = [n for n in _names(text) if n not in _KEYWORDS_AND_TYPES]
        gen = ExprGen(rng, Scope(reals=names or ["mu"], ints=["1", "2"]), wild=0.3)
        stmt = rng.choice(["factor {e}", "q = {e}", "q ~ Normal({e}, 1)", "const Q = {e}"]
                          ).format(e=gen.wild_expr(3))
    indent = ""
    if i < len(lines):
        indent = lines[i][:len(lines[i]) - len(lines[i].lstrip(" "))]
    lines.insert(i, indent + stmt)
    return "\n".join(lines), f"insert {stmt[:60]!r} at line {i + 1}"


def m_whole(rng: random.Random, text: str) -> tuple[str, str] | None:
    """Whole-file changes: line endings, BOM, no final newline, blank, huge."""
    choice = rng.randrange(9)
    if choice == 0:
        return text.replace("\n", "\r\n"), "CRLF line endings"
    if choice == 1:
        return "\ufeff" + text, "byte-order mark"
    if choice == 2:
        return text.rstrip("\n"), "no final newline"
    if choice == 3:
        return rng.choice(["", "\n", "# only a comment\n", "   \n", "\ufeff", "model M\n"]), \
            "empty program"
    if choice == 4:
        return text.replace("\n", "\r"), "CR line endings"
    if choice == 5:
        return text * rng.choice([2, 20]), "program repeated"
    if choice == 6:
        return text + "\n" * 5000, "5000 trailing newlines"
    if choice == 7:
        return text.replace("    ", "\t"), "tabs for indentation"
    return text.replace(" ", ""), "every space removed"


MUTATORS: list[tuple[Mutator, float]] = [
    (m_delete_line, 2), (m_duplicate_line, 2), (m_swap_lines, 2), (m_hostile_number, 3),
    (m_replace_name, 3), (m_loop_bounds, 2), (m_index, 3), (m_swap_distribution, 2),
    (m_arguments, 2), (m_tilde_equals, 2), (m_deep_parens, 1), (m_long_sum, 1),
    (m_unary_chain, 1), (m_indentation, 1), (m_insert_char, 1), (m_type, 2),
    (m_keyword, 1), (m_operator, 2), (m_token, 2), (m_insert_statement, 2), (m_whole, 0.5),
]


def mutate(rng: random.Random, text: str, count: int | None = None) -> tuple[str, list[str]]:
    """Apply 1-3 random mutation operators (or `count`)."""
    how: list[str] = []
    funcs = [f for f, _ in MUTATORS]
    weights = [w for _, w in MUTATORS]
    for _ in range(count or rng.choice([1, 1, 1, 2, 2, 3])):
        for _attempt in range(5):
            result = rng.choices(funcs, weights)[0](rng, text)
            if result is not None:
                text, what = result
                how.append(what)
                break
    return text, how


# ---- data mutations (for the runs) -----------------------------------------------------

HOSTILE_VALUES: list[Any] = [0, -1, 1.5, 1e308, -1e308, float("nan"), float("inf"),
                             10**30, "3", None, True, [], [1, 2], {"a": 1}, 2**63, -(2**63),
                             1e-320, 2, 100]


def mutate_data(rng: random.Random, data: dict[str, Any]) -> tuple[Any, str]:
    """One hostile change to the data: a value, a size, a shape, a missing or extra name,
    or a broken file."""
    data = copy.deepcopy(data)
    keys = sorted(data)
    choice = rng.randrange(8)
    if choice == 0 or not keys:
        text = rng.choice(["", "{", "[]", "null", '{"N": 1e999}', '{"N": 3, "N": 4}',
                           "{\"N\": NaN}", "\x00", "{'N': 3}", "[1, 2, 3]"])
        return text, f"data file text {text!r}"
    key = rng.choice(keys)
    value = data[key]
    if choice == 1:
        del data[key]
        return data, f"data: drop {key!r}"
    if choice == 2:
        data[rng.choice(["extra", "__proto__", "", "N ", "é"])] = 1
        return data, "data: an extra name"
    if choice == 3 and isinstance(value, list) and value:
        flat = value
        path = []
        while isinstance(flat, list) and flat and isinstance(flat[0], list):
            k = rng.randrange(len(flat))
            path.append(k)
            flat = flat[k]
        if isinstance(flat, list) and flat:
            k = rng.randrange(len(flat))
            new = rng.choice(HOSTILE_VALUES)
            flat[k] = new
            return data, f"data: {key}{[*path, k]} = {new!r}"
    if choice == 4 and isinstance(value, list):
        new_len = rng.choice([0, 1, max(len(value) - 1, 0), len(value) + 1])
        data[key] = (value * 2)[:new_len] if value else [1] * new_len
        return data, f"data: {key} has {new_len} rows"
    if choice == 5 and isinstance(value, list):
        data[key] = rng.choice([value[:1] + [[1]], [value], 1, "abc"])
        return data, f"data: {key} has a ragged or wrong shape"
    new = rng.choice(HOSTILE_VALUES)
    data[key] = new
    return data, f"data: {key} = {new!r}"


# ---- the grammar fuzzer ----------------------------------------------------------------

_KEYWORDS_AND_TYPES = {"model", "data", "param", "const", "net", "for", "in", "factor",
                       "guide", "real", "int", "positive", "unit", "simplex", "ordered",
                       "cholesky_corr", "lower", "upper"} | set(DISTRIBUTIONS) | set(FUNCTIONS)


@dataclass
class Scope:
    """The names an expression may read, by what they hold: scalars, and vectors and
    matrices by their sizes (a size is a number or a data name, as written)."""

    reals: list[str]
    ints: list[str]
    vectors: dict[str, list[str]] = field(default_factory=dict)   # length -> names
    matrices: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def with_scalar(self, name: str) -> Scope:
        return Scope([*self.reals, name], [*self.ints, name], self.vectors, self.matrices)


_SMALL_NUMBERS = ["0", "1", "2", "3", "0.5", "1.0", "2.5", "10", "1e-3", "0.001", "100"]
_ARITH = ["+", "-", "*", "/", "^"]
_COMPARE = ["<", ">", "<=", ">=", "==", "!="]
_CONST_FUNCTIONS = ["exp", "log", "sqrt", "abs", "square", "log1p", "expm1"]
_ELEMENTWISE = [f.name for f in FUNCTIONS.values() if f.kind == "elementwise"
                and f.min_args == 1]
_REDUCE = [f.name for f in FUNCTIONS.values() if f.kind == "reduce"]
_ALONG = [f.name for f in FUNCTIONS.values() if f.kind == "vector"]


class ExprGen:
    """Random expressions over a Scope: numbers, names, arithmetic, comparisons, calls of
    the built-in functions, indexing and slices, generators, vector literals.

    Mostly well-typed by construction (`scalar`, `vector(n)`), so that a fair share of
    the programs is accepted and reaches code generation and the runtime; `wild` is the
    share of subexpressions built with no regard to shapes, and `hostile` the share of
    numbers taken from HOSTILE_NUMBERS. `const_only` keeps to what a `const` may use."""

    def __init__(self, rng: random.Random, scope: Scope, hostile: float = 0.05,
                 wild: float = 0.04, const_only: bool = False):
        self.rng = rng
        self.scope = scope
        self.hostile = hostile
        self.wild = wild
        self.const_only = const_only
        self.gen_vars = 0

    # -- leaves
    def number(self) -> str:
        if self.rng.random() < self.hostile:
            return self.rng.choice(HOSTILE_NUMBERS)
        return self.rng.choice(_SMALL_NUMBERS)

    def int_expr(self, depth: int = 1) -> str:
        r = self.rng.random()
        if r < 0.5 and self.scope.ints:
            return self.rng.choice(self.scope.ints)
        if r < 0.85 or depth <= 0:
            return self.rng.choice(["1", "2", "3"])
        return f"{self.int_expr(depth - 1)} {self.rng.choice(['+', '-', '*'])} " \
               f"{self.int_expr(depth - 1)}"

    def index_in(self, n: str) -> str:
        """An index that is in range for a dimension of size n (mostly)."""
        rng = self.rng
        if rng.random() < 0.08:
            return self.int_expr(2)
        if n == "N" and "i" in self.scope.ints and rng.random() < 0.6:
            return "i"
        options = ["1", n] if not n.isdigit() else [str(k) for k in range(1, int(n) + 1)]
        return rng.choice(options)

    def scalar_leaf(self) -> str:
        rng, s = self.rng, self.scope
        r = rng.random()
        if r < 0.3 or self.const_only:
            if self.const_only and s.reals and r > 0.5:
                return rng.choice(s.reals)
            return self.number()
        if r < 0.65 and s.reals:
            return rng.choice(s.reals)
        if r < 0.75 and s.ints:
            return rng.choice(s.ints)
        if r < 0.9 and s.vectors:
            n = rng.choice(sorted(s.vectors))
            return f"{rng.choice(s.vectors[n])}[{self.index_in(n)}]"
        if s.matrices:
            (n, m) = rng.choice(sorted(s.matrices))
            return f"{rng.choice(s.matrices[(n, m)])}[{self.index_in(n)}, {self.index_in(m)}]"
        return self.number()

    # -- typed expressions
    def scalar(self, depth: int = 3) -> str:
        rng = self.rng
        if depth <= 0 or rng.random() < 0.25:
            return self.scalar_leaf()
        d = depth - 1
        if self.const_only:
            r = rng.random()
            if r < 0.5:
                return f"{self.scalar(d)} {rng.choice(_ARITH)} {self.scalar(d)}"
            if r < 0.6:
                return f"-{self.scalar(d)}"
            if r < 0.85:
                return f"{rng.choice(_CONST_FUNCTIONS)}({self.scalar(d)})"
            return f"({self.scalar(d)})"
        if rng.random() < self.wild:
            return self.wild_expr(d)
        r = rng.random()
        if r < 0.28:
            return f"{self.scalar(d)} {rng.choice(_ARITH)} {self.scalar(d)}"
        if r < 0.33:
            return f"-{self.scalar(d)}"
        if r < 0.38:
            return f"({self.scalar(d)} {rng.choice(_COMPARE)} {self.scalar(d)})"
        if r < 0.52:
            return f"{rng.choice(_ELEMENTWISE)}({self.scalar(d)})"
        if r < 0.56:
            return f"{rng.choice(['pow', 'fmin', 'fmax'])}({self.scalar(d)}, {self.scalar(d)})"
        n = self._size()
        if r < 0.68 and n:
            return f"{rng.choice(_REDUCE)}({self.vector(d, n)})"
        if r < 0.72 and n:
            return f"dot({self.vector(d, n)}, {self.vector(d, n)})"
        if r < 0.82:
            return self.generator(d)
        if r < 0.9 and n:
            return f"length({self.vector(d, n)})"
        return f"({self.scalar(d)})"

    def _size(self) -> str | None:
        return self.rng.choice(sorted(self.scope.vectors)) if self.scope.vectors else None

    def vector(self, depth: int, n: str) -> str:
        rng = self.rng
        names = self.scope.vectors.get(n, [])
        if depth <= 0 or rng.random() < 0.3:
            leaves = [*names, f"zeros({n})", f"ones({n})",
                      f"linspace({self.scalar_leaf()}, {self.scalar_leaf()}, {n})"]
            if n.isdigit() and int(n) <= 3:
                leaves.append("[" + ", ".join(self.scalar_leaf() for _ in range(int(n))) + "]")
            for (rows, cols), mats in self.scope.matrices.items():
                if rows == n:
                    leaves.append(f"{rng.choice(mats)}[:, {self.index_in(cols)}]")
                if cols == n:
                    leaves.append(f"{rng.choice(mats)}[{self.index_in(rows)}]")
            return rng.choice(leaves)
        d = depth - 1
        if rng.random() < self.wild:
            return self.wild_expr(d)
        r = rng.random()
        if r < 0.25:
            return f"{rng.choice(_ELEMENTWISE)}({self.vector(d, n)})"
        if r < 0.45:
            op = rng.choice(["+", "-", "*", "/"])
            if rng.random() < 0.5:
                return f"{self.vector(d, n)} {op} {self.scalar(d)}"
            return f"{self.scalar(d)} {op} {self.vector(d, n)}"
        if r < 0.6:
            return f"{self.vector(d, n)} {rng.choice(['+', '-', '*'])} {self.vector(d, n)}"
        if r < 0.7:
            return f"{rng.choice(_ALONG)}({self.vector(d, n)})"
        if r < 0.75:
            return f"-{self.vector(d, n)}"
        if r < 0.85:
            for (rows, cols), mats in self.scope.matrices.items():
                if rows == n:
                    return f"{rng.choice(mats)} @ {self.vector(d, cols)}"
                if cols == n:
                    return f"transpose({rng.choice(mats)}) @ {self.vector(d, rows)}"
        if r < 0.9 and not n.isdigit():
            return f"{self.vector(d, n)}[1..{n}]"
        return f"({self.vector(d, n)})"

    def generator(self, depth: int) -> str:
        rng = self.rng
        var = f"g{self.gen_vars}"
        self.gen_vars += 1
        n = self._size() or "2"
        inner = ExprGen(rng, self.scope.with_scalar(var), self.hostile, self.wild)
        inner.gen_vars = self.gen_vars
        body = inner.scalar(depth)
        names = self.scope.vectors.get(n, [])
        if names and rng.random() < 0.6:
            body = f"{rng.choice(names)}[{var}] * ({body})"
        red = rng.choice(GENERATOR_REDUCTIONS)
        lo, hi = ("1", n) if rng.random() < 0.8 else (rng.choice(["0", "2"]), rng.choice(
            ["1", n, f"{n}-1", f"{n}+1"]))
        self.gen_vars = inner.gen_vars
        return f"{red}({body} for {var} in {lo}..{hi})"

    def expr(self, depth: int = 3) -> str:
        """A scalar most of the time, else a vector."""
        n = self._size()
        if n and self.rng.random() < 0.15:
            return self.vector(depth, n)
        return self.scalar(depth)

    # -- shapes ignored: the error paths
    def wild_expr(self, depth: int) -> str:
        rng = self.rng
        if depth <= 0 or rng.random() < 0.3:
            pool = [*self.scope.reals, *self.scope.ints,
                    *[v for vs in self.scope.vectors.values() for v in vs],
                    *[m for ms in self.scope.matrices.values() for m in ms]]
            return rng.choice(pool) if pool and rng.random() < 0.6 else self.number()
        d = depth - 1
        r = rng.random()
        if r < 0.3:
            return f"{self.wild_expr(d)} {rng.choice([*_ARITH, '@'])} {self.wild_expr(d)}"
        if r < 0.6:
            spec = FUNCTIONS[rng.choice(sorted(FUNCTIONS))]
            hi = spec.max_args if spec.max_args is not None else spec.min_args + 2
            k = rng.randint(max(0, spec.min_args - 1), hi + 1)
            return f"{spec.name}({', '.join(self.wild_expr(d) for _ in range(k))})"
        if r < 0.75:
            return f"[{self.wild_expr(d)}, {self.wild_expr(d)}]"
        if r < 0.9:
            base = self.wild_expr(0)
            index = rng.choice(["{e}", "{e}, {e}", ":", "1..{e}", "{e}][{e}", ":, {e}"])
            return f"{base}[{index.format(e=self.wild_expr(d))}]"
        return f"-({self.wild_expr(d)})"


def _positive(gen: ExprGen, depth: int, vector: str | None = None) -> str:
    rng = gen.rng
    e = gen.vector(depth, vector) if vector else gen.scalar(depth)
    if rng.random() < 0.1:
        return e
    return rng.choice(["exp({e})", "softplus({e})", "abs({e}) + 1", "square({e}) + 0.5",
                       "1 + exp({e})", "sqrt(abs({e}) + 1)"]).format(e=e)


def _argument(gen: ExprGen, support: str, rank: int, depth: int) -> str:
    rng = gen.rng
    if rng.random() < gen.wild:
        return gen.wild_expr(depth)
    n = rng.choice(["2", "K"]) if "K" in gen.scope.vectors else "2"
    if support == "positive":
        return _positive(gen, depth, n if rank == 1 else None)
    if support == "unit":
        return rng.choice(["sigmoid({e})", "inv_logit({e})", "0.5", "Phi({e})",
                           "0.5 + 0.25 * tanh({e})"]).format(e=gen.scalar(depth))
    if support == "simplex":
        return rng.choice(["softmax({v})", "ones({n}) / {n}", "softmax(v)"]).format(
            v=gen.vector(depth, n), n=n)
    if support == "int_nonneg":
        return rng.choice(["N", "3", "K", "k[i]" if "i" in gen.scope.ints else "N"])
    if support == "int":
        return gen.int_expr()
    if support in ("pos_def", "cholesky"):
        return rng.choice(["eye(2)", "diag(exp(v))", "diag(ones(2))", "2 * eye(2)"])
    if rank == 1:
        return gen.vector(depth, "2")
    return gen.scalar(depth)


# Diffusion draws data through a net, LKJCholesky takes its size from a declared type:
# both are placed by the callers that set them up.
_DRAWN = sorted(set(DISTRIBUTIONS) - {"Diffusion", "LKJCholesky"})


def distribution_call(gen: ExprGen, depth: int = 2, name: str | None = None) -> str:
    """A call of a random distribution (or `name`) with arguments of the right kinds."""
    rng = gen.rng
    spec = DISTRIBUTIONS[name or rng.choice(_DRAWN)]
    form_index = rng.randrange(len(spec.forms))
    form = spec.forms[form_index]
    first = spec.forms[0]
    args = []
    named = False
    for k, p in enumerate(form):
        value = _argument(gen, p.support, p.rank, depth)
        differs = k >= len(first) or first[k] != p
        named = named or differs or rng.random() < 0.15
        args.append(f"{rng.choice([p.name, *p.aliases])}={value}" if named else value)
    if rng.random() < 0.03:
        args.append(gen.scalar(1))
    return f"{spec.name}({', '.join(args)})"


def random_declaration(rng: random.Random, name: str, hostile: float = 0.05
                       ) -> tuple[str, Any]:
    """`data NAME: TYPE` and a value for it (which may well break its bounds)."""
    base = rng.choice(["real", "real", "int", "int", "positive", "unit", "simplex",
                       "ordered", "cholesky_corr"])
    bounds = ""
    if base in ("real", "int") and rng.random() < 0.6:
        which = rng.choice([["lower"], ["upper"], ["lower", "upper"]])
        values = ["0", "1", "-1", "C", "N", "K", "N + 1", "-C", "2 * K", "0.5", "-2.5"]
        if rng.random() < hostile * 4:
            values = HOSTILE_NUMBERS
        bounds = "<" + ", ".join(f"{w}={rng.choice(values)}" for w in which) + ">"
    dims_choice = rng.choice([[], ["N"], ["2"], ["N", "2"], ["3"], ["K"], ["0"], ["N", "K"]])
    if base in ("simplex", "ordered", "cholesky_corr") and not dims_choice:
        dims_choice = ["3"]
    dims = f"[{', '.join(dims_choice)}]" if dims_choice else ""
    sizes = {"N": 3, "K": 2}
    shape = [sizes.get(d, int(d) if d.isdigit() else 1) for d in dims_choice]

    def value(shape: list[int]) -> Any:
        if base == "cholesky_corr" and len(shape) == 1:
            k = shape[0]
            return [[1.0 if a == b else 0.0 for b in range(k)] for a in range(k)]
        if len(shape) > 1:
            return [value(shape[1:]) for _ in range(shape[0])]
        if base == "simplex":
            if not shape:
                return 1.0
            return [1 / shape[0]] * shape[0] if shape[0] else []
        if base == "ordered":
            return sorted(rng.uniform(-2, 2) for _ in range(shape[0])) if shape else 0.0
        one: Callable[[], Any] = {
            "int": lambda: rng.randint(0, 3), "real": lambda: round(rng.uniform(-3, 3), 3),
            "positive": lambda: round(rng.uniform(0.1, 3), 3),
            "unit": lambda: round(rng.uniform(0, 1), 3)}.get(base, lambda: 0.0)
        return [one() for _ in range(shape[0])] if shape else one()

    return f"data {name}: {base}{bounds}{dims}", value(shape)


def grammar_program(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A small model whose expressions, arguments and declarations are generated: the
    skeleton (data N, K, x, k, M; latents a, b, v; a plate over 1..N) is fixed, the rest
    is drawn."""
    data: dict[str, Any] = {"N": 3, "K": 2, "x": [0.5, -1.25, 2.0], "k": [1, 2, 1],
                            "M": [[0.1, 0.2], [-0.3, 0.4], [1.5, -2.0]]}
    outside = Scope(reals=["a", "b", "C"], ints=["N", "K"],
                    vectors={"2": ["v"], "N": ["x", "k"], "K": ["u"]},
                    matrices={("N", "2"): ["M"]})
    consts = Scope(reals=["C"], ints=[])
    header = "model Fuzz"
    if rng.random() < 0.05:
        header = f"model {rng.choice(HOSTILE_NAMES)}"
    lines = [header, "data N: int", "data K: int", "data x: real[N]",
             "data k: int<lower=1, upper=K>[N]", "data M: real[N, 2]",
             f"const C = {ExprGen(rng, Scope([], []), 0.05, const_only=True).scalar(2)}"]
    if rng.random() < 0.4:
        decl, value = random_declaration(rng, "z")
        lines.append(decl)
        data["z"] = value
        if "[" not in decl:
            outside.reals.append("z")
    lines += ["a ~ Normal(0, 1)", "b: real<lower=0> ~ HalfNormal(1)",
              "v: real[2] ~ Normal(0, 1)", "u: real[K] ~ Normal(0, 1)"]
    g_out = ExprGen(rng, outside)
    for n in range(rng.randrange(1, 4)):
        kind = rng.randrange(8)
        if kind == 0:
            lines.append(f"w{n} ~ {distribution_call(g_out)}")
        elif kind == 7:
            lines.append(f"w{n}: cholesky_corr[{rng.choice(['2', 'K', '3'])}] ~ "
                         f"LKJCholesky({_positive(g_out, 2)})")
        elif kind == 1:
            size = rng.choice([None, "2", "N"])
            if size:
                lines.append(f"d{n} = {g_out.vector(3, size)}")
                outside.vectors.setdefault(size, []).append(f"d{n}")
            else:
                lines.append(f"d{n} = {g_out.scalar(3)}")
                outside.reals.append(f"d{n}")
        elif kind == 2:
            lines.append(f"factor {g_out.scalar(3)}")
        elif kind == 3:
            typ = rng.choice(["real", "real<lower=0>", "real<lower=a>", "real[2]",
                              "real<lower=-1, upper=1>", "positive", "unit", "simplex[3]",
                              "int<lower=0, upper=3>", "ordered[2]", "real[N]",
                              "real<lower=0, upper=b + 1>", "int<lower=1, upper=K>"])
            lines.append(f"w{n}: {typ} ~ {distribution_call(g_out)}")
        elif kind == 4:
            lines.append(f"param p{n}: {rng.choice(['real', 'real<lower=0>'])}")
            lines.append(f"factor -square(p{n} - {g_out.scalar(2)})")
            outside.reals.append(f"p{n}")
        elif kind == 5:
            value = ExprGen(rng, consts, 0.05, const_only=True).scalar(2)
            lines.append(f"const E{n} = {value}")
            consts.reals.append(f"E{n}")
            outside.reals.append(f"E{n}")
        else:
            lines.append(f"const S{n} = {rng.choice(['2', '3', '1 + 1', '2 * 2', 'K'])}")
            lines.append(f"s{n}: real[S{n}] ~ Normal(0, 1)")
            lines.append(f"factor sum(s{n})")
    # Inside the plate: x is defined element by element there, so it is read only at i.
    plate_vectors = {size: [v for v in names if v != "x"]
                     for size, names in outside.vectors.items()}
    plate_vectors["2"] = [*plate_vectors.get("2", []), "M[i]"]
    inside = Scope(reals=[*outside.reals, "x[i]"], ints=["N", "K", "i", "k[i]"],
                   vectors=plate_vectors, matrices=outside.matrices)
    g_in = ExprGen(rng, inside)
    plain = list(outside.reals)
    for_t = ExprGen(rng, Scope(plain, inside.ints, plate_vectors, outside.matrices))
    for_x = ExprGen(rng, Scope([*plain, "t[i]"], inside.ints, plate_vectors, outside.matrices))
    uses_t = ExprGen(rng, Scope([*inside.reals, "t[i]"], inside.ints, plate_vectors,
                                outside.matrices))
    blocks = [f"    t[i] = {for_t.scalar(3)}",
              f"    x[i] ~ Normal({for_x.scalar(3)}, {_positive(for_x, 2)})"]
    if rng.random() < 0.4:
        blocks.append(f"    e[i] ~ {distribution_call(g_in)}")
    if rng.random() < 0.3:
        blocks.append(f"    factor {uses_t.scalar(2)}")
    if rng.random() < 0.25:
        blocks.append(f"    for j in 1..K:\n        q[i, j] ~ Normal({g_in.scalar(2)} + u[j], 1)")
    rng.shuffle(blocks)
    lines.append("for i in 1..N:")
    lines += blocks
    return "\n".join(lines) + "\n", data


# ---- campaigns -------------------------------------------------------------------------

# Cheap commands for a program `check` accepted; the runs on data come after.
STATIC_COMMANDS = [["fmt"], ["explain"], ["graph"], ["compile"]]
RUN_COMMANDS = [
    ["sample", "-n", "2"],
    ["sample", "-n", "2"],
    ["fit", "--method", "map", "--iter", "5", "--no-progress"],
    ["fit", "--method", "map", "--optimizer", "adam", "--iter", "5", "--no-progress"],
    ["fit", "--method", "mle", "--iter", "5", "--no-progress"],
]
# After a hang of one command (fit, sample) on mutants of one example, the campaign stops
# running that command there: the hang is recorded, and more of them would only spend the
# time budget (--iter does not bound the optimiser today, so a net model's fit can hang).
HANGS_BEFORE_SKIPPING = 1


@dataclass
class Campaign:
    """A seeded run of one fuzzer: `cases` programs checked, and for accepted ones the
    cheap static commands (`statics` of them) and up to `runs` runs on data."""

    kind: str            # "mutation" or "grammar"
    seed: int
    cases: int
    runs: int = 0
    statics: int = 0
    data_mutations: float = 0.25   # share of the runs given a hostile change to the data
    timeout: float = 10.0
    tally: Tally = field(default_factory=Tally)
    workspace: Workspace = field(default_factory=Workspace)

    def generate(self, index: int) -> tuple[Case, Example | None]:
        rng = random.Random(f"{self.kind}:{self.seed}:{index}")
        if self.kind == "mutation":
            example = rng.choice(_examples())
            program, how = mutate(rng, example.program)
            label = f"mutation seed {self.seed} #{index} of {example.name}"
            return Case(label, program, example.data, ["check"], how), example
        program, data = grammar_program(rng)
        label = f"grammar seed {self.seed} #{index}"
        return Case(label, program, data, ["check"], ["generated"]), None

    def run(self, progress: Callable[[str], None] | None = None) -> Tally:
        self.tally.workspace = self.workspace
        statics_left, runs_left = self.statics, self.runs
        hangs: Counter[tuple[str, str]] = Counter()
        for index in range(self.cases):
            case, example = self.generate(index)
            outcome = self._one(case)
            if outcome.kind != "accepted":
                continue
            rng = random.Random(f"run:{self.kind}:{self.seed}:{index}")
            if statics_left > 0:
                statics_left -= 1
                for command in STATIC_COMMANDS:
                    o = self._one(Case(case.label, case.program, None, command, case.how))
                    if command == ["fmt"] and o.kind == "accepted":
                        self._roundtrip(case, o)
            if runs_left > 0:
                command = rng.choice(RUN_COMMANDS)
                key = (example.name if example else f"#{index}", command[0])
                if hangs[key] >= HANGS_BEFORE_SKIPPING:
                    self.tally.counts["skipped runs"] += 1
                    continue
                runs_left -= 1
                data, how = case.data, list(case.how)
                if rng.random() < self.data_mutations:
                    data, what = mutate_data(rng, data)
                    how.append(what)
                o = self._one(Case(case.label, case.program, data, command, how))
                hangs[key] += o.hung
            if progress and index % 200 == 0:
                progress(self.tally.summary(f"{self.kind} {index}/{self.cases}"))
        return self.tally

    def _one(self, case: Case) -> Outcome:
        outcome = run_case(case.program, case.data, case.argv_tail, self.timeout,
                           self.workspace)
        return self.tally.add(case, outcome)

    def _roundtrip(self, case: Case, fmt: Outcome) -> None:
        """The canonical form must check as the original did."""
        printed = fmt.stdout
        again = run_case(printed, None, ["check"], self.timeout, self.workspace)
        if again.kind != "accepted":
            twin = Case(case.label + " (bgmc fmt output)", case.program, None, ["fmt"],
                        [*case.how, f"bgmc fmt printed:\n{printed}"])
            self.tally.add_finding("fmt-roundtrip", twin, again,
                                   f"fmt-roundtrip: {again.signature()}")


_EXAMPLE_CACHE: list[Example] = []


def _examples() -> list[Example]:
    if not _EXAMPLE_CACHE:
        _EXAMPLE_CACHE.extend(load_examples())
    return _EXAMPLE_CACHE


def _main(argv: list[str] | None = None) -> int:  # pragma: no cover - a developer tool
    p = argparse.ArgumentParser(description="run a seeded bgmc fuzzing campaign")
    p.add_argument("kind", choices=["mutation", "grammar"])
    p.add_argument("--cases", type=int, default=500)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", type=int, default=0)
    p.add_argument("--statics", type=int, default=100)
    p.add_argument("--limit", type=int, default=40, help="distinct findings to print")
    p.add_argument("--minimize", type=float, default=0.0, metavar="SECONDS",
                   help="time to spend shrinking the reproducers, in all")
    args = p.parse_args(argv)
    campaign = Campaign(args.kind, args.seed, args.cases, args.runs, args.statics)
    campaign.run(progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(campaign.tally.report(args.limit, args.minimize))
    print(campaign.tally.summary(f"{args.kind} fuzzer, seed {args.seed}"))
    return 0 if not any(campaign.tally.bad(k) for k in BAD_KINDS) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())


__all__ = ["Campaign", "Case", "Outcome", "Tally", "grammar_program", "has_location",
           "load_examples", "mutate", "mutate_data", "run_case", "shrink_data"]
