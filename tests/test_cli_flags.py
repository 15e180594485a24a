"""The flags a CmdStan or PyMC user looks for: `--version`, `--thin`, `--step-size`,
`--refresh`, `--var-names`, `--hdi-prob`; every flag of every command says what it does,
and its default."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from compiler.app.cli import _parser, main
from runtime.output import read_netcdf

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_flag_has_help_and_shows_its_default(command: str) -> None:
    sub = _subcommands()[command]
    for action in sub._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, (command, action.option_strings)
    text = sub.format_help()
    if command == "fit":  # chains, draws: the defaults of NUTS and of the many-chain method
        flat = " ".join(text.split())
        assert "(default: 4; chees: 64)" in flat and "(default: 1000; chees: 100)" in flat


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("bgmc ")


def test_thin_keeps_every_kth_draw_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "fit.nc"
    assert main(["fit", str(EXAMPLES / "coin.bgm"), "--data", str(EXAMPLES / "coin.json"),
                 "--method", "nuts", "--chains", "2", "--warmup", "50", "--draws", "30",
                 "--thin", "4", "--step-size", "0.5", "--no-progress", "-o", str(out)]) == 0
    idata = read_netcdf(out)
    assert idata.posterior.sizes["draw"] == 8  # iterations 0, 4, ..., 28
    assert idata.attrs["thin"] == "4"


@pytest.mark.parametrize("flag, value", [("--thin", "0"), ("--step-size", "0"),
                                         ("--refresh", "-1"), ("--hdi-prob", "1")])
def test_bad_values_are_refused_by_flag(flag: str, value: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit", "m.bgm", "--data", "d.json", flag, value])
    assert info.value.code == 2 and flag in capsys.readouterr().err


def test_save_warmup_keeps_the_warmup_draws_in_their_own_groups(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fit.nc"
    assert main(["fit", str(EXAMPLES / "coin.bgm"), "--data", str(EXAMPLES / "coin.json"),
                 "--method", "nuts", "--chains", "2", "--warmup", "40", "--draws", "20",
                 "--thin", "2", "--save-warmup", "--no-progress", "-o", str(out)]) == 0
    idata = read_netcdf(out)
    assert idata.warmup_posterior.sizes["draw"] == 20 and idata.posterior.sizes["draw"] == 10
    assert "lp" in idata.warmup_sample_stats and idata.attrs["save_warmup"] == "True"
    theta = idata.warmup_posterior["theta"].values
    assert ((theta > 0) & (theta < 1)).all()  # constrained, as the posterior
    capsys.readouterr()
    assert main(["summary", str(out)]) == 0  # the summary reads the posterior alone
    assert capsys.readouterr().out.splitlines()[1].startswith("theta")


@pytest.mark.parametrize("method, flags, named", [
    ("nuts", ["--batch", "64"], "--batch applies to --method svi, adversarial"),
    ("nuts", ["--lr-schedule", "cosine"], "--lr-schedule applies to --method svi"),
    ("chees", ["--max-treedepth", "5"], "--max-treedepth applies to --method nuts"),
    ("map", ["--chains", "8"], "--chains applies to --method nuts, chees, exact"),
    ("advi", ["--lr", "0.1"], "--lr applies to --method mle, map, svi, adversarial"),
    ("svi", ["--metric", "dense"], "--metric applies to --method nuts, chees"),
    ("map", ["--critic", "D"], "--critic applies to --method adversarial"),
])
def test_a_flag_the_method_does_not_read_is_refused(
        method: str, flags: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A flag given to a method that ignores it would pass silently (--batch 64 with NUTS:
    the user believes the run is minibatched): one message naming the flag, the methods
    that read it and the method given."""
    code = main(["fit", str(EXAMPLES / "coin.bgm"), "--data", str(EXAMPLES / "coin.json"),
                 "--method", method, *flags, "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and named in err and f"--method {method} does not use it" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_flag_at_its_default_or_read_by_the_method_is_accepted() -> None:
    from compiler.app.fitting import FitSettings
    assert FitSettings(method="nuts", max_treedepth=10, particles=1).method == "nuts"
    assert FitSettings(method="svi", batch=64, lr_schedule="cosine", draws=100).batch == 64
    assert FitSettings(method="exact", chains=2, draws=50).chains == 2
