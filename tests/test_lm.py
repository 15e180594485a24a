"""Autoregressive factors with causal nets (GRU, Transformer): teacher forcing equals step
by step generation, windows, minibatches of windows, decoding settings, text data, the
CLI, and the char-LM against the hand-written reference (slow)."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from compiler.api import compile_string
from runtime.data import DataError
from runtime.decoding import Decoding, truncated_logits
from runtime.ops import Steps
from runtime.seqnets import Incremental, _call, causal, seqnet
from runtime.svi import Svi, SviSettings

ROOT = Path(__file__).resolve().parents[1]

LM = """model LM
data V: int
data T: int
data text: int<lower=1, upper=V>[T]
net lm = {net}
for t in {start}..T:
    text[t] ~ Categorical(logits=lm(text[1..t-1]))
"""
NETS = {"gru": "GRU(vocab=V, dim=12, layers=2, context=5)",
        "transformer": "Transformer(vocab=V, dim=16, layers=2, heads=4, context=5)"}


def _weights(spec: Any, seed: int = 0) -> torch.Tensor:
    centre, scale = spec.init()
    g = torch.Generator().manual_seed(seed)
    return (centre + (2 * torch.rand(spec.size, generator=g, dtype=torch.float64) - 1)
            * scale * 3).float()


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_teacher_forcing_equals_each_prefix_read_from_its_window(kind: str) -> None:
    spec = seqnet(kind, 7, 16, 2, 4, 5)
    w = _weights(spec)
    seq = torch.randint(1, 8, (13,), generator=torch.Generator().manual_seed(1))
    full = causal(w, spec, seq, 0, 14)  # prefixes of length 0..13
    for m in range(14):
        k = 0 if m == 0 else (m - 1) // 5
        window = seq[k * 5:m]  # the prefix as its window reads it
        direct, _ = _call(spec, w, torch.cat([torch.zeros(1, dtype=torch.long), window])[None])
        assert torch.allclose(full[m], direct[0, -1], atol=1e-5), m
    picked = causal(w, spec, seq, 0, 14, torch.tensor([3, 11, 12]))
    assert torch.equal(picked, full[[3, 11, 12]])


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_incremental_logits_equal_teacher_forcing_with_one_call_per_token(kind: str) -> None:
    spec = seqnet(kind, 7, 16, 2, 4, 5)
    w = _weights(spec, 1)
    seq = torch.randint(1, 8, (13,), generator=torch.Generator().manual_seed(2))
    full = causal(w, spec, seq, 0, 14)
    inc = Incremental(w, spec, (1,))
    before = Incremental.calls
    steps = Steps("x", 13, given=seq)
    out = torch.stack([inc.logits(steps, 1, t - 1)[0] for t in range(1, 15)])
    assert Incremental.calls - before == 14
    assert torch.allclose(out, full, atol=1e-5)


def _program(kind: str, start: int = 2) -> Any:
    return compile_string(LM.format(net=NETS[kind], start=start), "lm.bgm")


def _fit_weights(program: Any, data: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    model = program.bind(data, device="cpu", dtype="float32")
    lat = model.latents[0]
    spec_w = _weights_of(lat, seed)
    return {"lm": spec_w[None].numpy()}


def _weights_of(lat: Any, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = 2 * torch.rand(lat.size, generator=g, dtype=torch.float64) - 1
    return (torch.as_tensor(lat.init_centre) + 3 * u * torch.as_tensor(lat.init_scale)).float()


DATA = {"V": 6, "text": {"alphabet": "abcdef", "text": "abcabcabdefabcaabcdd"}}


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_log_density_is_the_sum_of_next_token_log_probabilities(kind: str) -> None:
    program = _program(kind)
    model = program.bind(DATA, device="cpu", dtype="float32")
    w = _weights_of(model.latents[0], 3)
    tokens = torch.tensor(["abcdef".index(c) + 1 for c in DATA["text"]["text"]])
    spec = seqnet(kind, 6, 12 if kind == "gru" else 16, 2, 1 if kind == "gru" else 4, 5)
    expected = 0.0
    for t in range(2, 21):  # text[t] given text[1..t-1] as its window reads it
        m = t - 1
        k = (m - 1) // 5
        window = tokens[k * 5:m]
        logits, _ = _call(spec, w, torch.cat([torch.zeros(1, dtype=torch.long), window])[None])
        expected += float(torch.log_softmax(logits[0, -1].double(), -1)[tokens[t - 1] - 1])
    lp = float(model.log_prob(model.packer.pack({"lm": w[None]}, 1))[0])
    assert lp == pytest.approx(expected, rel=1e-5)


def test_minibatches_of_windows_are_unbiased_exactly() -> None:
    """Every window drawn once with batch 1: the scaled minibatch log-likelihoods average
    to the full one (the windows partition the characters)."""
    program = _program("transformer")
    model = program.bind(DATA, device="cpu", dtype="float64")
    svi = Svi(model, SviSettings(steps=1, batch=1, seed=1))
    assert svi.total == 4  # prefixes 1..19 in windows of 5
    with torch.no_grad():
        full = float(svi.elbo(1)[0])
        parts = [float(svi.elbo(1, torch.tensor([k]))[0]) for k in range(4)]
    assert sum(parts) / 4 == pytest.approx(full, rel=1e-10)
    assert len({round(p, 6) for p in parts}) == 4


def test_svi_on_windows_learns_a_repeating_text() -> None:
    program = _program("gru")
    data = {"V": 3, "text": {"alphabet": "abc", "text": "abc" * 40}}
    model = program.bind(data, device="cpu", dtype="float32")
    svi = Svi(model, SviSettings(steps=150, batch=8, lr=0.02, seed=1))
    before = -svi.full_elbo() / 119 / math.log(2)
    svi.run()
    after = -svi.full_elbo() / 119 / math.log(2)
    assert before > 1.0 and after < 0.2, (before, after)


def test_truncated_logits_keep_the_top_k_and_the_nucleus() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    keep = torch.isfinite(truncated_logits(logits, Decoding(top_k=2)))
    assert keep.tolist() == [True, True, False, False]
    keep = torch.isfinite(truncated_logits(logits, Decoding(top_p=0.75)))
    assert keep.tolist() == [True, True, False, False]  # 0.5 + 0.3 reaches 0.75
    keep = torch.isfinite(truncated_logits(logits, Decoding(top_p=0.85)))
    assert keep.tolist() == [True, True, True, False]
    keep = torch.isfinite(truncated_logits(logits, Decoding(top_p=0.1)))
    assert keep.tolist() == [True, False, False, False]  # at least one
    scaled = truncated_logits(logits, Decoding(temperature=0.5))
    assert torch.allclose(scaled, logits * 2)


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_generation_is_seeded_greedy_at_zero_temperature_and_one_call_per_token(
        kind: str) -> None:
    program = _program(kind, start=1)
    given = _fit_weights(program, DATA, seed=5)
    before = Incremental.calls
    a = program.generate(DATA, given, seed=1, length=30)["text"]
    assert Incremental.calls - before == 30  # T tokens, T incremental net calls
    b = program.generate(DATA, given, seed=1, length=30)["text"]
    c = program.generate(DATA, given, seed=2, length=30)["text"]
    assert a["text"] == b["text"] and a["text"] != c["text"]
    assert len(a["text"][0]) == 30 and set(a["text"][0]) <= set("abcdef")
    greedy = program.generate(DATA, given, seed=3, length=30, prompt="ab",
                              temperature=0.0)["text"]
    tokens = torch.as_tensor(greedy["tokens"][0])
    assert greedy["text"][0].startswith("ab")
    spec = seqnet(kind, 6, 12 if kind == "gru" else 16, 2, 1 if kind == "gru" else 4, 5)
    logits = causal(torch.as_tensor(given["lm"][0]), spec, tokens, 0, 30)
    assert torch.equal(tokens[2:], logits.argmax(-1)[2:] + 1)  # each the most probable
    assert program.generate(DATA, given, seed=4, length=30, prompt="ab", top_k=1)["text"] \
        ["text"] == greedy["text"]


def test_a_prompt_character_outside_the_alphabet_is_reported() -> None:
    program = _program("gru")
    given = _fit_weights(program, DATA)
    with pytest.raises(DataError, match=r"prompt character 3 \('z'\) is not in its alphabet"):
        program.generate(DATA, given, length=10, prompt="abz")
    bad = {"V": 6, "text": {"alphabet": "abcdef", "text": "abq"}}
    with pytest.raises(DataError, match=r"text character 3 \('q'\) is not in its alphabet"):
        program.bind(bad, device="cpu")


def _bgmc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compiler.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_cli_fits_and_generates_reproducibly(tmp_path: Path) -> None:
    (tmp_path / "lm.bgm").write_text(LM.format(net=NETS["gru"], start=2))
    (tmp_path / "d.json").write_text(json.dumps(
        {"V": 4, "text": {"alphabet": "abc ", "text": "abc ab abc abc a " * 8}}))
    fit = _bgmc("fit", "lm.bgm", "--data", "d.json", "--method", "svi", "--batch", "4",
                "--iter", "60", "--lr", "0.02", "--no-progress", "-o", "fit.nc", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    assert "bits per token over 135 tokens" in fit.stdout
    runs = [_bgmc("sample", "lm.bgm", "--data", "d.json", "--fit", "fit.nc", "-n", "2",
                  "--length", "40", "--prompt", "ab", "--seed", str(seed), cwd=tmp_path)
            for seed in (1, 1, 2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout != runs[2].stdout
    texts = [line for line in runs[0].stdout.splitlines() if not line.startswith("---")]
    assert len(texts) == 2 and all(t.startswith("ab") and len(t) == 40 for t in texts)
    bad = _bgmc("sample", "lm.bgm", "--data", "d.json", "--fit", "fit.nc", "--prompt", "xy",
                cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "prompt character 1 ('x') is not in its alphabet" in bad.stderr


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("charlm_bench", ROOT / "bench/charlm_bench.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.slow
def test_charlm_heldout_bits_match_the_hand_written_model() -> None:
    """examples/charlm.bgm and bench/charlm_reference.py, same architecture, Adam, batch
    and steps (reduced from the example's 1500 to 500): the held-out bits per character
    averaged over 3 seeds agree within 0.05."""
    bench = _bench()
    ref = bench.reference()
    tokens, vocab = ref.load_tokens(bench.TRAIN)
    test, _ = ref.load_tokens(bench.TEST)
    ours, theirs = [], []
    for seed in (1, 2, 3):
        program, svi, _ = bench.train_bgm(500, seed)
        ours.append(bench.heldout_bits(program, svi))
        theirs.append(ref.bits_per_char(ref.train(tokens, vocab, 500, seed=seed), test))
    assert abs(np.mean(ours) - np.mean(theirs)) < 0.05, (ours, theirs)
    assert np.mean(ours) < 3.2  # it learned (uniform over 92 characters: 6.5 bits)


AR2 = ROOT / "examples" / "ar2.bgm"


def test_ar2_forecast_continues_the_data_with_the_closed_form_moments() -> None:
    """At fixed alpha, beta, sigma: y[T+1] ~ Normal(alpha + b1 y[T] + b2 y[T-1], sigma) and
    Var y[T+2] = sigma^2 (1 + b1^2), from 20 000 step-by-step draws."""
    from compiler.api import compile_file  # noqa: PLC0415
    program = compile_file(AR2)
    data = json.loads((ROOT / "examples" / "ar2.json").read_text())
    alpha, b1, b2, sigma, n = 0.5, 0.6, -0.3, 0.4, 20_000
    given = {"alpha": np.full(n, alpha), "beta": np.tile([b1, b2], (n, 1)),
             "sigma": np.full(n, sigma)}
    y = program.forecast(data, given, horizon=3, seed=1, device="cpu")["y"]
    assert y.shape == (n, 3)
    mean1 = alpha + b1 * data["y"][-1] + b2 * data["y"][-2]
    se = sigma / math.sqrt(n)
    assert abs(y[:, 0].mean() - mean1) < 4 * se
    assert y[:, 0].std() == pytest.approx(sigma, rel=0.03)
    assert y[:, 1].mean() == pytest.approx(alpha + b1 * mean1 + b2 * data["y"][-1], abs=0.02)
    assert y[:, 1].std() == pytest.approx(sigma * math.sqrt(1 + b1 ** 2), rel=0.03)
    again = program.forecast(data, given, horizon=3, seed=1, device="cpu")["y"]
    assert np.array_equal(y, again)


def test_forecast_cli_prints_each_step_and_refuses_without_a_fit(tmp_path: Path) -> None:
    fit = tmp_path / "point.json"
    fit.write_text(json.dumps({"estimates": {"alpha": 0.5, "beta": [0.6, -0.3],
                                             "sigma": 0.4}}))
    data = str(ROOT / "examples" / "ar2.json")
    run = _bgmc("sample", str(AR2), "--data", data, "--fit", str(fit), "--forecast", "4",
                "-n", "50", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines() if line.strip().startswith("y[")]
    assert [r[0] for r in rows] == ["y[101]", "y[102]", "y[103]", "y[104]"]
    bad = _bgmc("sample", str(AR2), "--data", data, "--forecast", "4", cwd=tmp_path)
    assert bad.returncode == 1 and "give --fit" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_teacher_forcing_makes_no_tensor_off_the_model_device(kind: str) -> None:
    """The log density on the meta device: a tensor created without the weights' device
    would fail to combine with them."""
    model = _program(kind).bind(DATA, device="meta", dtype="float32")
    lp = model.log_prob(torch.zeros(1, model.dim, device="meta"))
    assert lp.device.type == "meta" and lp.shape == (1,)
