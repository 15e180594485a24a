"""`bgmc`: check, format, compile, fit and sample .bgm models; argparse and printing
over the application layer (compiler/app/program.py and fitting.py hold what each
command does, so the Python API does the same).

Exit status: 0 on success, 1 on a user error (one diagnostic, no traceback), 2 on bad
usage (argparse: every numeric flag is checked by type and range while parsing), 3 on an
internal error (a bug). `check`, `fmt` and `compile` never import torch; fitting and
sampling import the runtime lazily. Every output is checked before the work (its place
is writable, it is not a directory or an input) and written whole or not at all, by
runtime.files.write_atomic. Files read from the user (fits, initial values, checkpoints)
are checked before use (compiler/app/userfiles.py) and never run code.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from compiler.app import launch
from compiler.app.fitting import LIMITS, METHODS, POINT_METHODS
from dsl.diagnostics import BgmError, InternalError
from runtime.errors import BgmRuntimeError, ModelError
from runtime.files import write_atomic

EXIT_OK, EXIT_USER, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _ignore_file_size_signal()
    with _quiet_unless_rank_zero():
        try:
            return _run(args, sys.argv[1:] if argv is None else argv)
        finally:
            launch.leave_group()


@contextlib.contextmanager
def _quiet_unless_rank_zero() -> Iterator[None]:
    """Under torchrun, the processes other than rank 0 print nothing (rank 0 reports the
    run, and the same error if every process meets it)."""
    if launch.rank() == 0:
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
            contextlib.redirect_stderr(null):
        yield


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        _check_outputs(args)
        if getattr(args, "nproc", None) and not launch.under_launcher():
            # the same command on --nproc processes (compiler/app/launch.py)
            return launch.launch(argv, args.nproc, args.batch)
        return int(args.run(args) or EXIT_OK)
    except BgmError as exc:
        print(exc.render(color=sys.stderr.isatty()), file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("bgmc: interrupted; no output was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bgmc summary fit.nc | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except InternalError as exc:  # its message already says it is a bug in bgmc
        if getattr(args, "debug", False):
            raise
        print(f"bgmc: {exc}; rerun with --debug for a traceback", file=launch.bug_stream())
        return 3
    except BgmRuntimeError as exc:  # its message is complete and meant for the user
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER
    except Exception as exc:
        if _out_of_memory(exc):
            print(f"error: out of memory ({str(exc).splitlines()[0][:200]}): ask for less "
                  "(--chains, --draws, -n, --batch, or smaller data)", file=sys.stderr)
            return EXIT_USER
        if launch.lost_peer(exc):  # the launcher names the process that went away
            print("error: another process of this run stopped; this one stops too",
                  file=sys.stderr)
            return EXIT_USER
        if getattr(args, "debug", False):
            raise
        print(f"internal error: {type(exc).__name__}: {exc}\n(this is a bug in bgmc; rerun "
              "with --debug for a traceback and please report it)", file=launch.bug_stream())
        return 3


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation the machine cannot make (a request for 10^9 chains): the user's
    request is too large, not a bug. torch reports it as a RuntimeError of its allocator."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or
                                              "not enough memory" in text)


def _ignore_file_size_signal() -> None:
    """A file-size limit (ulimit -f) then makes a write fail with EFBIG, which
    runtime.files reports as an error naming the file, instead of SIGXFSZ killing us."""
    xfsz = getattr(signal, "SIGXFSZ", None)
    if xfsz is not None:
        try:
            signal.signal(xfsz, signal.SIG_IGN)
        except ValueError:  # not the main thread (main called from a thread): leave it
            pass


# ---- argument types: every number is checked here, before any work -------------------


def _int_in(low: int, high: int | None, what: str) -> Callable[[str], int]:
    """An argparse type for an integer from low to high (high None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    parse.__name__ = what
    return parse


def _float_in(low: float, high: float, what: str, low_open: bool = False,
              high_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        inside = math.isfinite(value) and (value > low if low_open else value >= low) and \
            (value < high if high_open else value <= high)
        if not inside:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    parse.__name__ = what
    return parse


positive_int = _int_in(1, None, "a positive integer")
# Counts that size arrays or loops: bounded (fitting.LIMITS) so that a typo (--chains
# 2000000000) is refused at once instead of running for hours picking starting points.
chain_count = _int_in(*LIMITS["chains"], "a positive integer up to 100000")
draw_count = _int_in(*LIMITS["draws"], "a positive integer up to 10000000")
tree_depth = _int_in(*LIMITS["max_treedepth"], "a positive integer up to 30")
# processes started on this machine by --nproc: a typo (--nproc 100000) would fork that
# many interpreters before any of them could refuse
process_count = _int_in(1, 256, "a number of processes from 1 to 256")
warmup_count = _int_in(*LIMITS["warmup"], "an integer at least 0 and at most 10000000")
nonneg_int = _int_in(0, None, "an integer of at least 0")
seed_int = _int_in(*LIMITS["seed"], "a seed from 0 to 4294967295")
positive_float = _float_in(0.0, math.inf, "a positive number", low_open=True, high_open=True)
nonneg_float = _float_in(0.0, math.inf, "a number of at least 0", high_open=True)
probability = _float_in(0.0, 1.0, "a number strictly between 0 and 1", low_open=True,
                        high_open=True)
positive_fraction = _float_in(0.0, 1.0, "a number above 0 and at most 1", low_open=True)
unit_fraction = _float_in(0.0, 1.0, "a number from 0 to 1")


def init_value(text: str) -> str:
    """--init: a radius R >= 0, or the name of a JSON file (read when fitting)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a radius of at least 0 or a JSON file of "
                                         "initial values, got ''")
    try:
        radius = float(text)
    except ValueError:
        return text
    if not math.isfinite(radius) or radius < 0:
        raise argparse.ArgumentTypeError(f"expected a radius of at least 0 or a JSON file "
                                         f"of initial values, got {text}")
    return text


def output_file(text: str) -> str:
    """An output's name; whether it can be written is checked before the work
    (_check_outputs), when the command and its other outputs are known."""
    if not text:
        raise argparse.ArgumentTypeError("the file name is empty")
    return text


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help shows its default, unless the help already says it or there is
    none to show (a switch, an optional file)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or \
                not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415
    try:
        return version("bgm")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bgmc", description="The bgm model compiler.",
                                formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"bgmc {_version()}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    # the global flags, accepted after the subcommand too (`bgmc fit m.bgm --debug`);
    # SUPPRESS keeps a flag given before the subcommand from being reset by the default
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="command")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], formatter_class=HelpFormatter,
                              **kwargs)

    c = command("check", help="parse and check a model")
    c.add_argument("model")
    c.set_defaults(run=cmd_check)

    f = command("fmt", help="print a model in canonical form")
    f.add_argument("model")
    f.add_argument("-i", "--in-place", action="store_true", help="rewrite the file")
    f.add_argument("--check", action="store_true",
                   help="exit 1 if the file is not in canonical form")
    f.set_defaults(run=cmd_fmt)

    k = command("compile", help="write the generated PyTorch module")
    k.add_argument("model")
    k.add_argument("-o", "--output", type=output_file,
                   help="output .py file (default: standard output)")
    k.set_defaults(run=cmd_compile)

    fit = command("fit", help="fit a model to data")
    fit.add_argument("model")
    _data_args(fit)
    fit.add_argument("--method", choices=list(METHODS), default="map",
                     help="mle/map: point estimates; nuts: posterior draws; chees: posterior "
                          "draws from many short chains in lockstep (fast refits); advi, "
                          "svi: variational; exact: closed-form conjugate posterior; "
                          "adversarial: a GAN")
    nuts = fit.add_argument_group("nuts, chees")
    nuts.add_argument("--chains", type=chain_count, default=None,
                      help="chains, run together (default: 4; chees: 64)")
    nuts.add_argument("--warmup", type=warmup_count, default=None,
                      help="adaptation iterations per chain, not kept (default: 1000; "
                           "chees: 400)")
    nuts.add_argument("--draws", type=draw_count, default=None,
                      help="iterations per chain after warmup (default: 1000; chees: 100); "
                           "draws for advi, svi, exact")
    nuts.add_argument("--thin", type=positive_int, default=1,
                      help="keep every k-th draw of the --draws iterations")
    nuts.add_argument("--adapt-delta", type=probability, default=None,
                      help="target acceptance rate, in (0, 1); raise it against divergences "
                           "(default: 0.8; chees: 0.651, of the harmonic mean over chains)")
    nuts.add_argument("--max-treedepth", type=tree_depth, default=10,
                      help="at most 2^depth leapfrog steps per iteration")
    nuts.add_argument("--metric", choices=["diag", "dense"], default="diag",
                      help="the mass matrix adapted in warmup")
    nuts.add_argument("--step-size", type=positive_float, default=1.0,
                      help="the initial step size, before adaptation")
    nuts.add_argument("--save-warmup", action="store_true",
                      help="keep the warmup draws too, in the groups warmup_posterior and "
                           "warmup_sample_stats of the .nc file")
    fit.add_argument("--family", choices=["meanfield", "fullrank"], default="meanfield",
                     help="ADVI's Gaussian family")
    fit.add_argument("--log-likelihood", choices=["auto", "always", "never"], default="auto",
                     help="keep the pointwise log-likelihood (for LOO) in the fit: auto "
                          "while draws x observations is at most 1e8 values (above it "
                          "'bgmc compare --data' computes LOO from the model)")
    fit.add_argument("--no-progress", action="store_true", help="no progress bar")
    fit.add_argument("--nproc", type=process_count, default=None, metavar="P",
                     help="run on P processes of this machine (svi, adversarial: each "
                          "takes a shard of every minibatch; nuts, chees: each runs some "
                          "of the chains), started by torchrun's launcher; see "
                          "docs/distributed.md")
    fit.add_argument("--refresh", type=positive_int, default=20, metavar="N",
                     help="update the progress bar every N iterations")
    point = fit.add_argument_group("mle, map")
    point.add_argument("--optimizer", choices=["lbfgs", "adam"], default=None,
                       help="the optimiser of mle and map (default: adam for a model with "
                            "nets, else lbfgs)")
    point.add_argument("--restarts", type=positive_int, default=1,
                       help="best of N random starts")
    fit.add_argument("--init", type=init_value, default="2",
                     help="radius R of uniform(-R, R) initial values, or a JSON file")
    fit.add_argument("--iter", type=positive_int, default=None,
                     help="maximum iterations (mle, map); steps (svi, adversarial) "
                          "(default: 2000, or a flow's, diffusion model's or GAN's own "
                          "training defaults); nuts takes --warmup and --draws instead")
    fit.add_argument("--lr", type=positive_float, default=None,
                     help="Adam's learning rate (default 0.05; svi 0.001; adversarial "
                          "0.0002, the generator's: the critic's is twice it)")
    svi = fit.add_argument_group("svi")
    svi.add_argument("--batch", type=positive_int, help="minibatch size over a plate")
    svi.add_argument("--plate", help="the size of the plate to subsample, e.g. N (found by "
                                     "itself when there is one)")
    svi.add_argument("--epochs", type=positive_int, help="passes over the plate (else "
                                                         "--iter steps)")
    svi.add_argument("--lr-schedule", choices=["constant", "cosine"], default=None,
                     help="the learning rate over the run: constant (default), or a "
                          "cosine decay to 2%% of --lr (default for flows and diffusion "
                          "models)")
    svi.add_argument("--particles", type=positive_int, default=1,
                     help="draws per ELBO estimate")
    svi.add_argument("--checkpoint", type=output_file,
                     help="checkpoint file, safetensors (default: OUTPUT.ckpt.safetensors)")
    svi.add_argument("--checkpoint-every", type=nonneg_int, default=500, metavar="STEPS",
                     help="steps between checkpoints (0: only the last)")
    svi.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    svi.add_argument("--loss-plot", type=output_file,
                     help="the loss curve, PNG (default: OUTPUT.loss.png)")
    gan = fit.add_argument_group("adversarial")
    gan.add_argument("--critic", help="the critic net (declared in the file)")
    gan.add_argument("--gan-loss", choices=["ns", "wgan-gp"], default="ns",
                     help="non-saturating GAN loss, or WGAN with a gradient penalty")
    fit.add_argument("--dtype", choices=["float64", "float32"],
                     help="default: float64 on the CPU, float32 on a GPU")
    fit.add_argument("-o", "--output", type=output_file,
                     help="write the result: .json for mle/map; .nc (NetCDF) or .csv "
                          "(draws) for the others")
    _summary_args(fit)
    fit.set_defaults(run=cmd_fit)

    s = command("sample", help="draw from the prior, or the predictive given a fit")
    s.add_argument("model")
    _data_args(s)
    s.add_argument("-n", "--draws", type=draw_count, default=10, help="draws to make")
    s.add_argument("--fit", help="a fit from 'bgmc fit': point estimates (.json) or "
                                 "posterior draws (.nc) for the posterior predictive")
    s.add_argument("-o", "--output", type=output_file, help="write the draws (.json or .npz)")
    s.add_argument("--prior", action="store_true",
                   help="with --fit: latents from their prior at the fit's params and nets "
                        "(a VAE's samples) instead of the posterior predictive")
    gen = s.add_argument_group("generation (a prefix-conditioned factor, with --fit)")
    gen.add_argument("--length", type=positive_int,
                     help="tokens to generate, prompt included (default: the data's length)")
    gen.add_argument("--prompt", help="the first tokens, as text in the data's alphabet")
    gen.add_argument("--temperature", type=nonneg_float, default=1.0,
                     help="divide the logits by this (0: the greedy continuation)")
    gen.add_argument("--top-k", type=positive_int,
                     help="draw among the k most probable tokens")
    gen.add_argument("--top-p", type=positive_fraction,
                     help="draw among the most probable tokens holding this much mass")
    dif = s.add_argument_group("diffusion models (x ~ Diffusion(...), with --fit)")
    dif.add_argument("--ddim", type=positive_int, metavar="K",
                     help="draw by DDIM over K of the chain's steps (default: ancestral "
                          "sampling over all of them, DDPM)")
    dif.add_argument("--eta", type=unit_fraction, default=0.0,
                     help="DDIM's noise: 0 is deterministic given x_T, 1 is DDPM's variance")
    s.add_argument("--forecast", type=positive_int, metavar="H",
                   help="with --fit: the next H values of an observed chain (AR(k)) after "
                        "the data, drawn step by step at each posterior draw")
    s.set_defaults(run=cmd_sample)

    ex = command("explain", help="the factorised joint density, the role of each "
                                 "variable, the inference plan, conjugate posteriors")
    ex.add_argument("model")
    ex.add_argument("--latex", action="store_true", help="formulas in LaTeX")
    ex.set_defaults(run=cmd_explain)

    gr = command("graph", help="the plate diagram: SVG, PNG or Graphviz DOT")
    gr.add_argument("model")
    gr.add_argument("-o", "--output", type=output_file,
                    help="model.svg, model.png or model.dot (default: DOT on standard "
                         "output)")
    gr.set_defaults(run=cmd_graph)

    q = command("query", help="conditional independence: d-separation on the "
                              "model's graph, or a Markov blanket")
    q.add_argument("model")
    q.add_argument("question", nargs="?", help='"A _||_ B | C": names (all elements) or '
                                               'elements such as y[2], comma-separated')
    q.add_argument("--markov-blanket", metavar="X", help="the variables X's elements "
                                                         "depend on directly")
    q.add_argument("--unroll", type=positive_int, default=3,
                   help="elements per plate in the unrolled graph (default 3; at least the "
                        "largest index asked)")
    q.set_defaults(run=cmd_query)

    pr = command("predict", help="the posterior of a variable given new data "
                                 "(Bayes' rule; exact when it is discrete)")
    pr.add_argument("model")
    _data_args(pr)
    pr.add_argument("--fit", required=True, help="a fit from 'bgmc fit' (.json or .nc)")
    pr.add_argument("--query", required=True, help="the observed variable to predict")
    pr.add_argument("-n", "--draws", type=draw_count, default=1000,
                    help="posterior draws to average over (a .nc fit)")
    pr.add_argument("-o", "--output", type=output_file, help="write the prediction (.json)")
    pr.set_defaults(run=cmd_predict)

    sm = command("summary", help="posterior summary and diagnostics of a fit")
    sm.add_argument("fit")
    _summary_args(sm)
    sm.set_defaults(run=cmd_summary)

    sb = command("sbc", help="simulation-based calibration of a model")
    sb.add_argument("model")
    _data_args(sb)
    sb.add_argument("-n", "--replications", type=positive_int, default=100,
                    help="simulated data sets, each fitted")
    sb.add_argument("--method", choices=["chees", "nuts"], default="chees",
                    help="the sampler calibrated: chees fits every replication at once (4 "
                         "chains each, in lockstep); nuts one chain per replication")
    sb.add_argument("--warmup", type=warmup_count, default=300,
                    help="warmup iterations per fit")
    sb.add_argument("--draws", type=draw_count, default=None,
                    help="iterations per chain after warmup (default: 400 for nuts; 100 "
                         "per chain for chees)")
    sb.add_argument("--thin", type=positive_int, default=4,
                    help="keep every k-th draw, so the ranks are of nearly independent draws")
    sb.add_argument("-o", "--output", type=output_file,
                    help="rank histograms (.png, .svg or .pdf)")
    sb.set_defaults(run=cmd_sbc)

    cp = command("compare", help="rank fits by PSIS-LOO (or WAIC)")
    cp.add_argument("fits", nargs="+")
    cp.add_argument("--ic", choices=["loo", "waic"], default="loo",
                    help="the information criterion: PSIS-LOO or WAIC")
    cp.add_argument("--data", help="the data the fits were made on: LOO of a fit without its "
                                   "pointwise log-likelihood (left out for its size) is then "
                                   "computed from its model, a block of observations at a time")
    cp.set_defaults(run=cmd_compare)
    return p


def _summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--var-names", type=var_names, metavar="NAMES",
                   help="the variables to summarise, comma-separated (default: all)")
    p.add_argument("--hdi-prob", type=probability, default=0.94, metavar="P",
                   help="the probability mass of the highest-density interval (default "
                        "0.94, as ArviZ)")


def var_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected variable names separated by commas, got "
                                         f"'{text}'")
    return names


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="data file (.json, .csv or .npz)")
    p.add_argument("--seed", type=seed_int, default=1,
                   help="random seed: the same seed gives the same results on a CPU")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


# ---- outputs: checked before the work ---------------------------------------------------

PLOT_FORMATS = (".png", ".svg", ".pdf")


def _outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, path) of every file the command will write."""
    out: list[tuple[str, str]] = []
    output = getattr(args, "output", None)
    if output is not None:
        out.append(("-o", output))
    if args.command == "fmt" and args.in_place:
        out.append(("-i", args.model))
    if args.command == "fit" and args.method in ("svi", "adversarial"):
        plot = args.loss_plot or (f"{output}.loss.png" if output else None)
        if plot:
            out.append(("--loss-plot", plot))
        ckpt = args.checkpoint or (f"{output}.ckpt.safetensors" if output else None)
        if args.method == "svi" and ckpt:
            out.append(("--checkpoint", ckpt))
    return out


def _inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, path) of the files the command reads that an output must not replace."""
    named = [("the model", getattr(args, "model", None)), ("--data", getattr(args, "data",
                                                                              None))]
    if isinstance(getattr(args, "fit", None), str):
        named.append(("--fit", args.fit))
    init = getattr(args, "init", None)
    if init is not None:
        try:
            float(init)
        except ValueError:
            named.append(("--init", init))
    return [(flag, path) for flag, path in named if path]


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output that could not be written or would replace an
    input (one message naming the flag; runtime.files.check_output for the file system)."""
    from runtime.files import OutputError, check_output  # noqa: PLC0415
    outputs = _outputs(args)
    for flag, path in outputs:
        check_output(path, flag)
        if flag == "-i" or (flag == "--checkpoint" and args.resume):
            continue  # an input written over on purpose
        for kind, source in _inputs(args):
            if os.path.exists(source) and os.path.realpath(source) == os.path.realpath(path):
                raise OutputError(f"{flag} '{path}' would replace {kind} '{source}'; choose "
                                  "another file name")
    output = getattr(args, "output", None)
    if not output:
        return
    suffix = Path(output).suffix.lower()
    if args.command == "fit":
        point = args.method in POINT_METHODS
        if point and suffix != ".json":
            raise OutputError(f"-o '{output}': --method {args.method} writes point "
                              "estimates as JSON; name the file .json")
        if args.method == "adversarial" and suffix == ".csv":
            raise OutputError(f"-o '{output}': --method adversarial trains nets, which have "
                              "no draws for a table; name the file .nc")
        if not point and suffix not in (".nc", ".csv"):
            raise OutputError(f"-o '{output}': --method {args.method} writes posterior "
                              "draws: name the file .nc (NetCDF, ArviZ) or .csv (a table of "
                              "draws)")
    if args.command == "sample" and suffix not in (".json", ".npz"):
        raise OutputError(f"-o '{output}': draws are written as .json or .npz")
    if args.command == "predict" and suffix != ".json":
        raise OutputError(f"-o '{output}': the prediction is written as .json")
    if args.command == "sbc" and suffix not in PLOT_FORMATS:
        raise OutputError(f"-o '{output}': the rank histograms are a plot; name the file "
                          f"{', '.join(PLOT_FORMATS[:-1])} or {PLOT_FORMATS[-1]}")


# ---- commands -------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from compiler.pipeline import compile_path  # noqa: PLC0415
    compiled = compile_path(args.model)
    m = compiled.model
    _print_model_warnings(m)
    counts = {role: len(m.of_role(role)) for role in ("latent", "observed", "deterministic",
                                                       "param")}
    params = f", {counts['param']} param" if counts["param"] else ""
    print(f"{args.model}: ok ({counts['latent']} latent{params}, {counts['observed']} "
          f"observed, {counts['deterministic']} deterministic)")
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from compiler.pipeline import compile_path  # noqa: PLC0415
    from compiler.teaching.explain import explain  # noqa: PLC0415
    sys.stdout.write(explain(compile_path(args.model).model, latex=args.latex))
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from compiler.pipeline import compile_path  # noqa: PLC0415
    from compiler.teaching import render  # noqa: PLC0415
    from compiler.teaching.diagram import build  # noqa: PLC0415
    kinds = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot"}
    suffix = Path(args.output).suffix.lower() if args.output else ".dot"
    if suffix not in kinds:
        print(f"error: cannot tell the format of '{args.output}': name it .svg, .png or .dot",
              file=sys.stderr)
        return EXIT_USAGE
    diagram = build(compile_path(args.model).model)
    kind = kinds[suffix]
    if args.output is None:
        sys.stdout.write(render.dot(diagram))
        return EXIT_OK
    content = render.png(diagram) if kind == "png" else getattr(render, kind)(diagram).encode()
    write_atomic(args.output, content)
    print(f"wrote {args.output} ({len(diagram.nodes)} nodes, {len(diagram.plates)} plates)")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from compiler.pipeline import compile_path  # noqa: PLC0415
    from compiler.teaching.dsep import QueryError, markov_blanket, normalize, query  # noqa: PLC0415
    model = compile_path(args.model).model
    if (args.question is None) == (args.markov_blanket is None):
        print('error: ask one question: "A _||_ B | C" or --markov-blanket X',
              file=sys.stderr)
        return EXIT_USAGE
    text = normalize(args.question) if args.question is not None else args.markov_blanket
    try:
        if args.question is not None:
            print(query(model, text, args.unroll).text())
        else:
            blanket = markov_blanket(model, text.strip(), args.unroll)
            print(f"Markov blanket of {text.strip()}: {', '.join(blanket) or '(empty)'}")
    except QueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.column is not None:
            print(f"  {text}\n  {' ' * exc.column}^", file=sys.stderr)
        return EXIT_USER
    return EXIT_OK


def cmd_fmt(args: argparse.Namespace) -> int:
    from dsl.parser import parse_file  # noqa: PLC0415
    from dsl.printer import format_program  # noqa: PLC0415
    program, source = parse_file(args.model)
    text = format_program(program)
    if args.check:
        if text != source.text:
            print(f"{args.model}: not in canonical form (run 'bgmc fmt -i')", file=sys.stderr)
            return EXIT_USER
        return EXIT_OK
    if args.in_place:
        write_atomic(args.model, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    from compiler.pipeline import compile_path  # noqa: PLC0415
    compiled = compile_path(args.model)
    _print_model_warnings(compiled.model)
    if args.output:
        write_atomic(args.output, compiled.python)
    else:
        sys.stdout.write(compiled.python)
    return EXIT_OK


def _program(path: str) -> Any:
    from compiler.app.program import compile_file  # noqa: PLC0415
    return compile_file(path)


def _print_model_warnings(model: Any) -> None:
    """What the checker found suspicious but not wrong (compiler/passes/identifiability.py),
    with file:line:col and a caret, on stderr before any work."""
    from dsl.diagnostics import render  # noqa: PLC0415
    for d in model.warnings:
        print(render(d, model.source, color=sys.stderr.isatty()), file=sys.stderr)


def cmd_fit(args: argparse.Namespace) -> int:
    if args.iter is not None and args.method in ("nuts", "chees", "advi", "exact"):
        # CmdStan's iter is warmup + sampling: a Stan user's --iter must not pass silently
        raise ModelError(f"--iter counts optimiser iterations (mle, map) and steps (svi, "
                         f"adversarial); --method {args.method} takes --draws"
                         f"{' and --warmup' if args.method in ('nuts', 'chees') else ''} "
                         "instead")
    program = _program(args.model)
    _print_model_warnings(program.compiled.model)
    fit = program.fit(args.data, method=args.method, seed=args.seed, device=args.device,
                      output=args.output, notify=lambda line: print(line, file=sys.stderr),
                      dtype=args.dtype, chains=args.chains, warmup=args.warmup,
                      draws=args.draws, adapt_delta=args.adapt_delta,
                      max_treedepth=args.max_treedepth, metric=args.metric,
                      family=args.family, optimizer=args.optimizer, restarts=args.restarts,
                      init=args.init, max_iter=args.iter, lr=args.lr,
                      lr_schedule=args.lr_schedule,
                      batch=args.batch,
                      plate=args.plate, epochs=args.epochs, particles=args.particles,
                      checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                      resume=args.resume, loss_plot=args.loss_plot, critic=args.critic,
                      gan_loss=args.gan_loss, progress=not args.no_progress,
                      thin=args.thin, step_size=args.step_size, refresh=args.refresh,
                      save_warmup=args.save_warmup, log_likelihood=args.log_likelihood)
    for note in fit.notes:
        print(f"note: {note}", file=sys.stderr)
    for line in fit.report:
        print(line)
    for warning in fit.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output:  # under torchrun, rank 0 alone writes (Fit.save)
        fit.save(args.output)
    if fit.summarised and launch.rank() == 0:
        _print_summary(*fit.summary(args.var_names, args.hdi_prob))
    return EXIT_OK


def cmd_sbc(args: argparse.Namespace) -> int:
    result = _program(args.model).sbc(args.data, args.replications, args.warmup, args.draws,
                                      args.thin, args.seed, device=args.device, progress=True,
                                      method=args.method)
    print(result.report())
    if args.output:
        import io  # noqa: PLC0415

        import matplotlib  # noqa: PLC0415

        from runtime import sbc  # noqa: PLC0415
        buffer = io.BytesIO()
        with matplotlib.rc_context({"savefig.format": Path(args.output).suffix[1:].lower()}):
            sbc.plot(result, buffer)  # type: ignore[arg-type]  (savefig takes a file too)
        write_atomic(args.output, buffer.getbuffer())
    return EXIT_OK if result.calibrated else EXIT_USER


def cmd_summary(args: argparse.Namespace) -> int:
    from compiler.app.userfiles import read_fit  # noqa: PLC0415
    from runtime.diagnostics import summarize  # noqa: PLC0415
    _print_summary(*summarize(read_fit(args.fit, need="posterior"), args.var_names,
                              args.hdi_prob))
    return EXIT_OK


def _print_summary(table: str, warnings: list[str]) -> None:
    print(table)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def cmd_compare(args: argparse.Namespace) -> int:
    from compiler.app.program import loo_of_fit  # noqa: PLC0415
    from compiler.app.userfiles import read_fit  # noqa: PLC0415
    from runtime.diagnostics import compare  # noqa: PLC0415
    labels = _fit_labels(args.fits)
    fits = {label: read_fit(f) for label, f in zip(labels, args.fits, strict=True)}
    for name, path in zip(labels, args.fits, strict=True):
        if "log_likelihood" not in fits[name].groups() and args.data is not None:
            fits[name] = loo_of_fit(fits[name], args.data, path, args.ic)
    print(compare(fits, args.ic, data_given=args.data is not None))
    return EXIT_OK


def _fit_labels(paths: list[str]) -> list[str]:
    """A row name per fit file: its stem, or the path as given where stems repeat, with
    ' (2)', ' (3)' ... where a path itself repeats (each file is a row of the table)."""
    stems = [Path(p).stem for p in paths]
    names = [s if stems.count(s) == 1 else p for s, p in zip(stems, paths, strict=True)]
    return [n if names[:i].count(n) == 0 else f"{n} ({names[:i].count(n) + 1})"
            for i, n in enumerate(names)]


def cmd_predict(args: argparse.Namespace) -> int:
    result = _program(args.model).predict(args.data, args.fit, args.query, args.draws,
                                          args.seed, args.device)
    kind = result.pop("kind")
    if kind == "discrete":
        print(f"P({args.query} | data) by Bayes' rule, exact given each of "
              f"{result['draws']} fitted value(s), over {args.query} in "
              f"{result['values'][0]}..{result['values'][-1]}:")
        _print_prediction(args.query, result)
    else:
        print(f"{args.query}: {_drawn_from(args.fit, result['draws'])}")
        _print_intervals(args.query, result)
    if args.output:
        write_atomic(args.output, json.dumps(result) + "\n")
    return EXIT_OK


def _drawn_from(fit: str, draws: int) -> str:
    """What the draws average over: posterior draws of a .nc fit, or one point estimate."""
    if fit.endswith(".nc"):
        return (f"posterior predictive, {draws} draws, each at a posterior draw of {fit} "
                "(drawn with replacement when the fit has fewer)")
    return f"predictive at the point estimate of {fit} ({draws} draws; the parameters' " \
        "uncertainty is not included: a posterior fit (.nc of nuts, advi or svi) includes it)"


def _print_intervals(name: str, result: dict[str, Any]) -> None:
    """Mean, sd and the 5%-95% interval per element (the first 20; -o writes all)."""
    import numpy as np  # noqa: PLC0415
    mean = np.atleast_1d(np.asarray(result["mean"], dtype=float))
    sd = np.atleast_1d(np.asarray(result["sd"] if result["sd"] is not None else
                                  np.full(mean.shape, np.nan), dtype=float))
    q05 = np.atleast_1d(np.asarray(result["q05"], dtype=float))
    q95 = np.atleast_1d(np.asarray(result["q95"], dtype=float))
    scalar = np.ndim(result["mean"]) == 0
    print(f"{'':>12} {'mean':>10} {'sd':>10} {'5%':>10} {'95%':>10}")
    for i, index in enumerate(np.ndindex(mean.shape)):
        if i == 20:
            print(f"  ... {mean.size - 20} more (-o writes them all)")
            break
        label = name if scalar else f"{name}[{', '.join(str(j + 1) for j in index)}]"
        print(f"{label:>12} {mean[index]:10.4g} {sd[index]:10.4g} {q05[index]:10.4g} "
              f"{q95[index]:10.4g}")


def _print_prediction(name: str, result: dict[str, Any]) -> None:
    import numpy as np  # noqa: PLC0415
    probs = np.asarray(result["probabilities"])
    predicted = np.asarray(result["prediction"])
    if probs.ndim == 1:
        print(f"  {name} = {int(predicted)} (probability {probs.max():.4f})")
        return
    flat, labels = probs.reshape(-1, probs.shape[-1]), predicted.reshape(-1)
    for i, (p, label) in enumerate(zip(flat, labels, strict=True)):
        if i == 20:
            print(f"  ... {len(labels) - 20} more (-o writes them all)")
            break
        index = ", ".join(str(j + 1) for j in np.unravel_index(i, predicted.shape))
        print(f"  {name}[{index}] = {int(label)} (probability {p.max():.4f})")


def cmd_sample(args: argparse.Namespace) -> int:
    program = _program(args.model)
    given = program.fitted_values(args.data, args.fit, args.draws, args.seed) \
        if args.fit else None
    if args.forecast is not None:
        if given is None:
            raise ModelError("--forecast continues the data at a fit's draws: give --fit")
        return _forecast(args, program, given)
    if given is not None and program.generates_sequences():
        return _generate(args, program, given)
    if args.prompt is not None or args.length is not None:
        raise ModelError("--prompt and --length generate from a fitted prefix-conditioned "
                         "factor: give --fit FIT.nc of such a model")
    draws = program.sample(args.data, n=args.draws, seed=args.seed, given=given,
                           device=args.device, prior=args.prior, ddim=args.ddim, eta=args.eta)
    if args.output:
        _write_draws(args.output, draws)
    for name, value in draws.items():
        print(f"{name}: shape {list(value.shape)}, mean {float(value.mean()):.4g}")
    return EXIT_OK


def _generate(args: argparse.Namespace, program: Any, given: dict[str, Any]) -> int:
    out = program.generate(args.data, given, n=args.draws, seed=args.seed, device=args.device,
                           length=args.length, prompt=args.prompt,
                           temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    for name, result in out.items():
        texts = result.get("text")
        for i, row in enumerate(result["tokens"]):
            shown = texts[i] if texts is not None else " ".join(str(int(k)) for k in row)
            print(f"--- {name}, draw {i + 1} (seed {args.seed}) ---")
            print(shown)
    if args.output:
        _write_draws(args.output, {name: r["tokens"] for name, r in out.items()})
    return EXIT_OK


def _print_series_forecast(name: str, draws: Any, start: int) -> None:
    import numpy as np  # noqa: PLC0415
    print(f"{'':>14} {'mean':>10} {'sd':>10} {'5%':>10} {'95%':>10}")
    for index in np.ndindex(*draws.shape[1:]):
        d = draws[(slice(None),) + index]
        sd = d.std(ddof=1) if len(d) > 1 else float("nan")
        at = ", ".join(str(i + 1) for i in index[:-1])
        label = f"{name}[{at}, {start + index[-1] + 1}]"
        print(f"{label:>14} {d.mean():10.4g} {sd:10.4g} {np.quantile(d, 0.05):10.4g} "
              f"{np.quantile(d, 0.95):10.4g}")


def _forecast(args: argparse.Namespace, program: Any, given: dict[str, Any]) -> int:
    import numpy as np  # noqa: PLC0415
    out = program.forecast(args.data, given, args.forecast, seed=args.seed, device=args.device)
    for name, draws in out.items():
        start = program.series_length(args.data, name)
        print(f"{name}: forecast, {_drawn_from(args.fit, draws.shape[0])}")
        if draws.ndim > 2:  # many series: one row per series and step
            _print_series_forecast(name, draws, start)
            continue
        print(f"{'':>10} {'mean':>10} {'sd':>10} {'5%':>10} {'95%':>10}")
        q05, q95 = np.quantile(draws, 0.05, axis=0), np.quantile(draws, 0.95, axis=0)
        sd = draws.std(0, ddof=1) if len(draws) > 1 else np.full(draws.shape[1], np.nan)
        for h in range(draws.shape[1]):
            label = f"{name}[{start + h + 1}]"
            print(f"{label:>10} {draws[:, h].mean():10.4g} {sd[h]:10.4g} {q05[h]:10.4g} "
                  f"{q95[h]:10.4g}")
    if args.output:
        _write_draws(args.output, out)
    return EXIT_OK


def _write_draws(path: str, draws: dict[str, Any]) -> None:
    if path.endswith(".npz"):
        import io  # noqa: PLC0415

        import numpy as np  # noqa: PLC0415
        buffer = io.BytesIO()
        np.savez(buffer, **draws)
        write_atomic(path, buffer.getvalue())
    else:
        write_atomic(path, json.dumps({k: v.tolist() for k, v in draws.items()}) + "\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
