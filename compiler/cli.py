"""`bgmc`: check, format, compile, fit and sample .bgm models.

Exit status: 0 on success, 1 on a user error (one diagnostic, no traceback), 2 on bad
usage. `check`, `fmt` and `compile` never import torch; fitting and sampling import
the runtime lazily. Every file a command writes is written whole or not at all.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from dsl.diagnostics import BgmError, InternalError

EXIT_OK, EXIT_USER, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
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
        print(f"bgmc: {exc}; rerun with --debug for a traceback", file=sys.stderr)
        return 3
    except Exception as exc:  # runtime errors are imported lazily; match by base class name
        if _is_user_error(exc):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USER
        if getattr(args, "debug", False):
            raise
        print(f"internal error: {type(exc).__name__}: {exc}\n(this is a bug in bgmc; rerun "
              "with --debug for a traceback and please report it)", file=sys.stderr)
        return 3


def _is_user_error(exc: Exception) -> bool:
    return any(c.__name__ == "BgmRuntimeError" and c.__module__ == "runtime.errors"
               for c in type(exc).__mro__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bgmc", description="The bgm model compiler.")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="command")

    c = sub.add_parser("check", help="parse and check a model")
    c.add_argument("model")
    c.set_defaults(run=cmd_check)

    f = sub.add_parser("fmt", help="print a model in canonical form")
    f.add_argument("model")
    f.add_argument("-i", "--in-place", action="store_true", help="rewrite the file")
    f.add_argument("--check", action="store_true",
                   help="exit 1 if the file is not in canonical form")
    f.set_defaults(run=cmd_fmt)

    k = sub.add_parser("compile", help="write the generated PyTorch module")
    k.add_argument("model")
    k.add_argument("-o", "--output", help="output .py file (default: standard output)")
    k.set_defaults(run=cmd_compile)

    fit = sub.add_parser("fit", help="fit a model to data")
    fit.add_argument("model")
    _data_args(fit)
    fit.add_argument("--method", choices=["mle", "map", "nuts", "advi", "svi", "exact",
                                          "adversarial"],
                     default="map")
    fit.add_argument("--chains", type=int, default=4)
    fit.add_argument("--warmup", type=int, default=1000)
    fit.add_argument("--draws", type=int, default=1000)
    fit.add_argument("--adapt-delta", type=float, default=0.8)
    fit.add_argument("--max-treedepth", type=int, default=10)
    fit.add_argument("--metric", choices=["diag", "dense"], default="diag")
    fit.add_argument("--family", choices=["meanfield", "fullrank"], default="meanfield",
                     help="ADVI's Gaussian family")
    fit.add_argument("--no-progress", action="store_true")
    fit.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    fit.add_argument("--restarts", type=int, default=1, help="best of N random starts")
    fit.add_argument("--init", default="2",
                     help="radius R of uniform(-R, R) initial values, or a JSON file")
    fit.add_argument("--iter", type=int, default=2000, help="maximum iterations")
    fit.add_argument("--lr", type=float, default=None,
                     help="Adam's learning rate (default 0.05; svi 0.001)")
    fit.add_argument("--batch", type=int, help="svi: minibatch size over a plate")
    fit.add_argument("--plate", help="svi: the size of the plate to subsample, e.g. N "
                                     "(found by itself when there is one)")
    fit.add_argument("--epochs", type=int, help="svi: passes over the plate (else --iter "
                                                "steps)")
    fit.add_argument("--particles", type=int, default=1, help="svi: draws per ELBO estimate")
    fit.add_argument("--checkpoint", help="svi: checkpoint file, safetensors (default: "
                                          "OUTPUT.ckpt.safetensors)")
    fit.add_argument("--checkpoint-every", type=int, default=500, metavar="STEPS")
    fit.add_argument("--resume", action="store_true", help="svi: continue from --checkpoint")
    fit.add_argument("--loss-plot", help="svi: the loss curve, PNG (default: OUTPUT.loss.png)")
    fit.add_argument("--critic", help="adversarial: the critic net (declared in the file)")
    fit.add_argument("--gan-loss", choices=["ns", "wgan-gp"], default="ns",
                     help="adversarial: non-saturating GAN loss, or WGAN with a gradient "
                          "penalty")
    fit.add_argument("--dtype", choices=["float64", "float32"],
                     help="default: float64 on the CPU, float32 on a GPU")
    fit.add_argument("-o", "--output",
                     help="write the result: JSON for mle/map, NetCDF (.nc) for nuts/advi")
    fit.set_defaults(run=cmd_fit)

    s = sub.add_parser("sample", help="draw from the prior, or the predictive given a fit")
    s.add_argument("model")
    _data_args(s)
    s.add_argument("-n", "--draws", type=int, default=10)
    s.add_argument("--fit", help="a fit from 'bgmc fit': point estimates (.json) or "
                                 "posterior draws (.nc) for the posterior predictive")
    s.add_argument("-o", "--output", help="write the draws (.json or .npz)")
    s.add_argument("--prior", action="store_true",
                   help="with --fit: latents from their prior at the fit's params and nets "
                        "(a VAE's samples) instead of the posterior predictive")
    gen = s.add_argument_group("generation (a prefix-conditioned factor, with --fit)")
    gen.add_argument("--length", type=int, help="tokens to generate, prompt included "
                                                "(default: the data's length)")
    gen.add_argument("--prompt", help="the first tokens, as text in the data's alphabet")
    gen.add_argument("--temperature", type=float, default=1.0,
                     help="divide the logits by this (0: the greedy continuation)")
    gen.add_argument("--top-k", type=int, help="draw among the k most probable tokens")
    gen.add_argument("--top-p", type=float,
                     help="draw among the most probable tokens holding this much mass")
    dif = s.add_argument_group("diffusion models (x ~ Diffusion(...), with --fit)")
    dif.add_argument("--ddim", type=int, metavar="K",
                     help="draw by DDIM over K of the chain's steps (default: ancestral "
                          "sampling over all of them, DDPM)")
    dif.add_argument("--eta", type=float, default=0.0,
                     help="DDIM's noise: 0 is deterministic given x_T, 1 is DDPM's variance")
    s.add_argument("--forecast", type=int, metavar="H",
                   help="with --fit: the next H values of an observed chain (AR(k)) after "
                        "the data, drawn step by step at each posterior draw")
    s.set_defaults(run=cmd_sample)

    ex = sub.add_parser("explain", help="the factorised joint density, the role of each "
                                        "variable, the inference plan, conjugate posteriors")
    ex.add_argument("model")
    ex.add_argument("--latex", action="store_true", help="formulas in LaTeX")
    ex.set_defaults(run=cmd_explain)

    gr = sub.add_parser("graph", help="the plate diagram: SVG, PNG or Graphviz DOT")
    gr.add_argument("model")
    gr.add_argument("-o", "--output", help="model.svg, model.png or model.dot (default: DOT "
                                           "on standard output)")
    gr.set_defaults(run=cmd_graph)

    q = sub.add_parser("query", help="conditional independence: d-separation on the "
                                     "model's graph, or a Markov blanket")
    q.add_argument("model")
    q.add_argument("question", nargs="?", help='"A _||_ B | C": names (all elements) or '
                                               'elements such as y[2], comma-separated')
    q.add_argument("--markov-blanket", metavar="X", help="the variables X's elements "
                                                         "depend on directly")
    q.add_argument("--unroll", type=int, default=3,
                   help="elements per plate in the unrolled graph (default 3; at least the "
                        "largest index asked)")
    q.set_defaults(run=cmd_query)

    pr = sub.add_parser("predict", help="the posterior of a variable given new data "
                                        "(Bayes' rule; exact when it is discrete)")
    pr.add_argument("model")
    _data_args(pr)
    pr.add_argument("--fit", required=True, help="a fit from 'bgmc fit' (.json or .nc)")
    pr.add_argument("--query", required=True, help="the observed variable to predict")
    pr.add_argument("-n", "--draws", type=int, default=1000,
                    help="posterior draws to average over (a .nc fit)")
    pr.add_argument("-o", "--output", help="write the prediction (.json)")
    pr.set_defaults(run=cmd_predict)

    sm = sub.add_parser("summary", help="posterior summary and diagnostics of a fit")
    sm.add_argument("fit")
    sm.set_defaults(run=cmd_summary)

    sb = sub.add_parser("sbc", help="simulation-based calibration of a model")
    sb.add_argument("model")
    _data_args(sb)
    sb.add_argument("-n", "--replications", type=int, default=100)
    sb.add_argument("--warmup", type=int, default=300)
    sb.add_argument("--draws", type=int, default=400)
    sb.add_argument("--thin", type=int, default=4)
    sb.add_argument("-o", "--output", help="rank histograms (.png)")
    sb.set_defaults(run=cmd_sbc)

    cp = sub.add_parser("compare", help="rank fits by PSIS-LOO (or WAIC)")
    cp.add_argument("fits", nargs="+")
    cp.add_argument("--ic", choices=["loo", "waic"], default="loo")
    cp.set_defaults(run=cmd_compare)
    return p


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="data file (.json, .csv or .npz)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


# ---- commands -------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from compiler.pipeline import compile_path  # noqa: PLC0415
    compiled = compile_path(args.model)
    m = compiled.model
    counts = {role: len(m.of_role(role)) for role in ("latent", "observed", "deterministic",
                                                       "param")}
    params = f", {counts['param']} param" if counts["param"] else ""
    print(f"{args.model}: ok ({counts['latent']} latent{params}, {counts['observed']} "
          f"observed, {counts['deterministic']} deterministic)")
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from compiler.explain import explain  # noqa: PLC0415
    from compiler.pipeline import compile_path  # noqa: PLC0415
    sys.stdout.write(explain(compile_path(args.model).model, latex=args.latex))
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from compiler import render  # noqa: PLC0415
    from compiler.diagram import build  # noqa: PLC0415
    from compiler.pipeline import compile_path  # noqa: PLC0415
    from runtime.files import write_atomic  # noqa: PLC0415
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
    from compiler.dsep import QueryError, markov_blanket, normalize, query  # noqa: PLC0415
    from compiler.pipeline import compile_path  # noqa: PLC0415
    model = compile_path(args.model).model
    if (args.question is None) == (args.markov_blanket is None):
        print('error: ask one question: "A _||_ B | C" or --markov-blanket X',
              file=sys.stderr)
        return EXIT_USAGE
    if args.unroll < 1:
        print("error: --unroll takes a positive number of elements per plate",
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
    if args.output:
        write_atomic(args.output, compiled.python)
    else:
        sys.stdout.write(compiled.python)
    return EXIT_OK


def _program(path: str) -> Any:
    from compiler.api import compile_file  # noqa: PLC0415
    return compile_file(path)


def cmd_fit(args: argparse.Namespace) -> int:
    from runtime.errors import ModelError  # noqa: PLC0415
    from runtime.optimize import optimize  # noqa: PLC0415
    program = _program(args.model)
    model = program.bind(args.data, args.device, dtype=args.dtype)
    implicit = getattr(type(model), "implicit_names", ())
    if args.method == "adversarial" or implicit:
        if args.method != "adversarial":
            raise ModelError(f"'{implicit[0]}' is an implicit model (data defined by '=' "
                             "through a net that is not invertible): it has no likelihood, "
                             f"so --method {args.method} cannot fit it; use --method "
                             "adversarial --critic NET", model.locations.get(implicit[0]))
        return _fit_adversarial(args, model)
    diffusion = getattr(type(model), "diffusion_names", ())
    if diffusion and args.method != "svi":
        raise ModelError(f"'{diffusion[0]}' ~ Diffusion(...) is trained by its noise-prediction "
                         "loss at random steps and noise, a stochastic objective: --method "
                         f"{args.method} cannot fit it; use --method svi (with --batch and "
                         "--epochs)", model.locations.get(diffusion[0]))
    if args.method == "svi":
        return _fit_svi(args, model)
    if getattr(type(model), "guide", None) is not None and args.method == "advi":
        raise ModelError("the model has a 'guide:' block, which only --method svi uses; "
                         "advi fits its own Gaussian (remove the block to use it)")
    init, radius = None, 2.0
    try:
        radius = float(args.init)
    except ValueError:
        values = _read_json(args.init, ModelError)
        init = model.unconstrain(values)
    if args.method == "exact":
        return _fit_exact(args, program, model)
    if args.method in ("nuts", "advi"):
        return _fit_posterior(args, model, init, radius)
    result = optimize(model, method=args.method, seed=args.seed, init=init, radius=radius,
                      restarts=args.restarts, optimizer=args.optimizer, max_iter=args.iter,
                      lr=args.lr or 0.05)
    report = point_report(program.name, result)
    _print_estimates(report)
    if not result.converged:
        print(f"warning: not converged (gradient norm {result.grad_norm:.3g})",
              file=sys.stderr)
    if result.message:
        print(f"warning: {result.message}", file=sys.stderr)
    if args.output:
        write_atomic(args.output, json.dumps(report, indent=1) + "\n")
    return EXIT_OK


def _fit_exact(args: argparse.Namespace, program: Any, model: Any) -> int:
    from compiler.conjugacy import NotConjugate, conjugate_plan  # noqa: PLC0415
    from runtime.errors import ModelError  # noqa: PLC0415
    from runtime.exact import describe, run_exact  # noqa: PLC0415
    from runtime.output import write_netcdf  # noqa: PLC0415
    try:
        plan = conjugate_plan(program.compiled.model)
    except NotConjugate as exc:
        raise ModelError(f"--method exact: the model is not conjugate: {exc}; use --method "
                         "nuts") from None
    idata, params = run_exact(model, plan, args.draws, args.chains, args.seed)
    for c in plan:
        print(c.describe())
    for line in describe(params):
        print(line)
    if args.output:
        write_netcdf(idata, args.output)
    return EXIT_OK


def _fit_posterior(args: argparse.Namespace, model: Any, init: Any, radius: float) -> int:
    from runtime import posterior  # noqa: PLC0415
    from runtime.advi import AdviSettings  # noqa: PLC0415
    from runtime.nuts import NutsSettings  # noqa: PLC0415
    from runtime.output import write_netcdf  # noqa: PLC0415
    if args.method == "nuts":
        settings = NutsSettings(chains=args.chains, warmup=args.warmup, draws=args.draws,
                                adapt_delta=args.adapt_delta, max_treedepth=args.max_treedepth,
                                metric=args.metric, seed=args.seed)
        progress = None if args.no_progress else _progress_bar(args.warmup + args.draws)
        idata = posterior.run_nuts(model, settings, radius, init, progress)
        if progress is not None:
            progress.close()
    else:
        idata = posterior.run_advi(model, AdviSettings(family=args.family, seed=args.seed,
                                                       draws=args.draws), radius, init)
    if args.output:
        write_netcdf(idata, args.output)
    _print_summary(idata)
    return EXIT_OK


def _fit_svi(args: argparse.Namespace, model: Any) -> int:
    from runtime import checkpoint  # noqa: PLC0415
    from runtime.errors import ModelError  # noqa: PLC0415
    from runtime.output import write_netcdf  # noqa: PLC0415
    from runtime.posterior import svi_result  # noqa: PLC0415
    from runtime.svi import Svi, SviSettings  # noqa: PLC0415
    from runtime.training import TrainingBar, write_loss_plot  # noqa: PLC0415
    settings = SviSettings(steps=args.iter, epochs=args.epochs, batch=args.batch,
                           plate=args.plate, lr=args.lr or 1e-3, particles=args.particles,
                           seed=args.seed, draws=args.draws)
    svi = Svi(model, settings)
    ckpt = args.checkpoint or (f"{args.output}.ckpt.safetensors" if args.output else None)
    if args.resume:
        if ckpt is None:
            raise ModelError("--resume needs --checkpoint FILE (or -o OUTPUT)")
        checkpoint.load(svi, ckpt)
        print(f"resumed from {ckpt} at step {svi.state.step}", file=sys.stderr)
    bar = None if args.no_progress else TrainingBar(svi.total_steps(), svi.state.step)
    try:
        svi.run(bar, (lambda s: checkpoint.save(s, ckpt)) if ckpt else None,
                args.checkpoint_every)
    finally:
        if bar is not None:
            bar.close()
        plot = args.loss_plot or (f"{args.output}.loss.png" if args.output else None)
        if plot and svi.state.losses:
            write_loss_plot(svi.state.losses, plot, svi.total)
    idata, elbo = svi_result(svi)
    tokens = sum(w.items for w in svi.windows.values())
    if tokens:  # a language model: the ELBO over its tokens, in bits
        per = f" ({-elbo / tokens / math.log(2):.4f} bits per token over {tokens} tokens)"
    else:
        per = f" ({elbo / svi.total:.6g} per item of {svi.plate})" if svi.plate else ""
    what = "noise-prediction objective" if getattr(model, "diffusion_names", ()) else "ELBO"
    print(f"{what} {elbo:.6g}{per} after {svi.state.step} steps")
    if args.output:
        write_netcdf(idata, args.output)
    if hasattr(idata, "posterior"):  # not when every unknown is a net or a param
        _print_summary(idata)
    return EXIT_OK


def _fit_adversarial(args: argparse.Namespace, model: Any) -> int:
    from runtime.adversarial import Adversarial, AdversarialSettings  # noqa: PLC0415
    from runtime.errors import ModelError  # noqa: PLC0415
    from runtime.output import inference_data, write_netcdf  # noqa: PLC0415
    from runtime.training import TrainingBar, write_loss_plot  # noqa: PLC0415
    if not args.critic:
        raise ModelError("--method adversarial needs --critic NET: a net declared in the "
                         "file that scores rows (MLP(in, ..., 1))")
    settings = AdversarialSettings(critic=args.critic, steps=args.iter, batch=args.batch or 256,
                                   lr=args.lr or 2e-4, loss=args.gan_loss, seed=args.seed)
    trainer = Adversarial(model, settings)
    bar = None if args.no_progress else TrainingBar(settings.steps)
    try:
        trainer.run(bar)
    finally:
        if bar is not None:
            bar.close()
        plot = args.loss_plot or (f"{args.output}.loss.png" if args.output else None)
        if plot and trainer.state.generator_losses:
            write_loss_plot(trainer.state.generator_losses, plot,
                            ylabel=f"generator loss ({settings.loss})")
    import torch  # noqa: PLC0415
    attrs = {"model": model.name, "method": f"adversarial-{settings.loss}", "seed": args.seed,
             "steps": trainer.state.step, "critic": settings.critic, "batch": trainer.batch,
             "lr": settings.lr}
    theta = trainer.theta()
    idata = inference_data(model, theta, {"lp": torch.full(theta.shape[:2], float("nan"))},
                           attrs, pointwise_ll=False)
    print(f"adversarial ({settings.loss}): {trainer.state.step} steps; last generator loss "
          f"{trainer.state.generator_losses[-1]:.4g}, critic loss "
          f"{trainer.state.critic_losses[-1]:.4g}")
    if args.output:
        write_netcdf(idata, args.output)
    return EXIT_OK


class _progress_bar:  # noqa: N801 - used like a function
    """A terminal progress line with the divergence count (on stderr, only on a tty)."""

    def __init__(self, total: int):
        self.total = total
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int, warm: bool, divergences: Any) -> None:
        if not self.enabled or (done % 20 and done != total):
            return
        width = 30
        filled = int(width * done / total)
        phase = "warmup" if warm else "sampling"
        per_chain = " ".join(str(int(d)) for d in divergences)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                         f"{phase}  divergences per chain: {per_chain}  ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def cmd_sbc(args: argparse.Namespace) -> int:
    from runtime import sbc  # noqa: PLC0415
    from runtime.data import read_data_file  # noqa: PLC0415
    program = _program(args.model)
    raw = read_data_file(args.data)
    bar = _progress_bar(args.replications)
    result = sbc.run(program, raw, sbc.nuts_fitter(args.warmup, args.draws, args.thin),
                     args.replications, args.seed, device=args.device,
                     progress=lambda i, n: bar(i, n, False, []))
    bar.close()
    print(result.report())
    if args.output:
        target = Path(args.output)
        tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")
        sbc.plot(result, str(tmp))
        os.replace(tmp, target)
    return EXIT_OK if result.calibrated else EXIT_USER


def cmd_summary(args: argparse.Namespace) -> int:
    from runtime.output import read_netcdf  # noqa: PLC0415
    _print_summary(read_netcdf(args.fit))
    return EXIT_OK


def _print_summary(idata: Any) -> None:
    from runtime.diagnostics import summarize  # noqa: PLC0415
    table, warnings = summarize(idata)
    print(table)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def cmd_compare(args: argparse.Namespace) -> int:
    from runtime.diagnostics import compare  # noqa: PLC0415
    from runtime.output import read_netcdf  # noqa: PLC0415
    fits = {Path(f).stem: read_netcdf(f) for f in args.fits}
    print(compare(fits, args.ic))
    return EXIT_OK


def point_report(name: str, result: Any) -> dict[str, Any]:
    return {
        "model": name,
        "method": result.method,
        "objective": result.objective,
        "converged": result.converged,
        "iterations": result.iterations,
        "grad_norm": result.grad_norm,
        "restarts": result.restarts,
        "estimates": {k: v.cpu().tolist() for k, v in result.values.items()},
    }


def _print_estimates(report: dict[str, Any]) -> None:
    label = "log likelihood" if report["method"] == "mle" else "log joint density"
    print(f"{report['method'].upper()} of {report['model']}: {label} {report['objective']:.6g}"
          f" ({report['iterations']} iterations, gradient norm {report['grad_norm']:.2g})")
    for name, value in report["estimates"].items():
        print(f"  {name} = {_short(value)}")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) < 100 else text[:96] + " ..."


def _given(fit: str, program: Any, draws: int, seed: int) -> dict[str, Any]:
    """The fit's values of the continuous latents and params, with a leading draw dim:
    `draws` posterior draws of a .nc fit, or the point estimates of a .json one."""
    from runtime.errors import ModelError  # noqa: PLC0415
    if fit.endswith(".nc"):
        from runtime.diagnostics import posterior_latents  # noqa: PLC0415
        from runtime.output import read_netcdf  # noqa: PLC0415
        model = program.compiled.model
        bases = {f.base for f in getattr(model, "flows", {}).values()}  # drawn afresh
        latents = [v.name for v in model.of_role("latent", "param", "net")
                   if not (v.role == "latent" and v.discrete) and v.name not in bases]
        return posterior_latents(read_netcdf(fit), latents, draws, seed)  # type: ignore[no-any-return]
    report = _read_json(fit, ModelError)
    estimates = report.get("estimates") if isinstance(report, dict) else None
    if not isinstance(estimates, dict):
        raise ModelError(f"'{fit}' is not a point-estimate file from 'bgmc fit'")
    import numpy as np  # noqa: PLC0415
    return {k: np.repeat(np.asarray(v, dtype=float)[None], draws, axis=0)
            for k, v in estimates.items()}


def cmd_predict(args: argparse.Namespace) -> int:
    from compiler.api import Program  # noqa: PLC0415
    from compiler.query import with_latent  # noqa: PLC0415
    program = _program(args.model)
    unobserved = Program(with_latent(program.compiled, args.query))
    variable = unobserved.compiled.model.variables[args.query]
    point = not args.fit.endswith(".nc")
    given = _given(args.fit, program, 1 if point and variable.discrete else args.draws,
                   args.seed)
    if variable.discrete:
        from runtime.predict import predict_discrete  # noqa: PLC0415
        result = predict_discrete(unobserved.bind(args.data, device=args.device),
                                  args.query, given)
        print(f"P({args.query} | data) by Bayes' rule, exact given each of "
              f"{result['draws']} fitted value(s), over {args.query} in "
              f"{result['values'][0]}..{result['values'][-1]}:")
        _print_prediction(args.query, result)
    else:
        import numpy as np  # noqa: PLC0415
        draws = program.sample(args.data, n=args.draws, seed=args.seed, given=given,
                               device=args.device)[args.query]
        result = {"query": args.query, "mean": draws.mean(0).tolist(),
                  "sd": draws.std(0, ddof=1).tolist() if len(draws) > 1 else None,
                  "q05": np.quantile(draws, 0.05, axis=0).tolist(),
                  "q95": np.quantile(draws, 0.95, axis=0).tolist(), "draws": len(draws)}
        print(f"{args.query}: posterior predictive from {len(draws)} draws: mean "
              f"{_short(result['mean'])}")
    if args.output:
        write_atomic(args.output, json.dumps(result) + "\n")
    return EXIT_OK


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
    given = _given(args.fit, program, args.draws, args.seed) if args.fit else None
    if args.forecast is not None:
        if given is None:
            from runtime.errors import ModelError  # noqa: PLC0415
            raise ModelError("--forecast continues the data at a fit's draws: give --fit")
        return _forecast(args, program, given)
    if given is not None and getattr(program.model_class(), "causal_names", ()):
        return _generate(args, program, given)
    if args.prompt is not None or args.length is not None:
        from runtime.errors import ModelError  # noqa: PLC0415
        raise ModelError("--prompt and --length generate from a fitted prefix-conditioned "
                         "factor: give --fit FIT.nc of such a model")
    if args.ddim is not None and not getattr(program.model_class(), "diffusion_names", ()):
        from runtime.errors import ModelError  # noqa: PLC0415
        raise ModelError("--ddim draws from a diffusion model (x ~ Diffusion(...)); this "
                         "model has none")
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


def _forecast(args: argparse.Namespace, program: Any, given: dict[str, Any]) -> int:
    import numpy as np  # noqa: PLC0415
    out = program.forecast(args.data, given, args.forecast, seed=args.seed, device=args.device)
    for name, draws in out.items():
        start = program.bind(args.data, device="cpu", simulate=True).data[
            program._size_of(name)]
        print(f"{name}: forecast from {draws.shape[0]} posterior draws")
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


def _read_json(path: str, error: type) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise error(f"cannot read '{path}': {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise error(f"'{path}' is not valid JSON (line {exc.lineno}, column {exc.colno})") \
            from None


def write_atomic(path: str | Path, content: str | bytes) -> None:
    """runtime.files.write_atomic (a light module: importing it does not import torch)."""
    from runtime.files import write_atomic as write  # noqa: PLC0415
    write(path, content)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
