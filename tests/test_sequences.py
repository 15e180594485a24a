"""Chains inside plates (issue 19): many sequences of one hidden Markov model, many series
of one AR model. Each sequence is its own chain, summed out by the forward algorithm
batched over the plate; the results equal hmmlearn's with `lengths` and closed forms."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from test_hmm import _hmmlearn, _parameters

from compiler.api import compile_string
from runtime import hmm
from runtime.accumulate import Mode

MULTI_HMM = """
model MultiHMM
data N: int
data T: int
data K: int
data y: real[N, T]
for k in 1..K:
    A[k] ~ Dirichlet(ones(K))
    mu[k] ~ Normal(0, 10)
sigma ~ HalfNormal(5)
for n in 1..N:
    z[n, 1] ~ Categorical(ones(K) / K)
    for t in 2..T:
        z[n, t] ~ Categorical(A[z[n, t-1]])
    for t in 1..T:
        y[n, t] ~ Normal(mu[z[n, t]], sigma)
"""

MULTI_AR = """
model MultiAR
data N: int
data T: int
data y: real[N, T]
alpha ~ Normal(0, 10)
beta ~ Normal(0, 1)
sigma ~ HalfNormal(1)
for n in 1..N:
    for t in 2..T:
        y[n, t] ~ Normal(alpha + beta * y[n, t-1], sigma)
"""


def _theta(model, values):
    return model.unconstrain({k: torch.as_tensor(v, dtype=torch.float64)
                              for k, v in values.items()})[None]


@pytest.fixture(scope="module")
def sequences() -> tuple:
    p = _parameters()
    g = _hmmlearn(p)
    n, t = 5, 40
    y = np.stack([g.sample(t, random_state=np.random.RandomState(i))[0][:, 0]
                  for i in range(n)])
    model = compile_string(MULTI_HMM).bind({"N": n, "T": t, "K": 3, "y": y.tolist()},
                                           device="cpu")
    theta = _theta(model, p)
    acc = model.accumulate(theta, Mode.for_method("mle"), record=True)
    return g, y, model, theta, acc


def test_many_sequences_log_likelihood_equals_hmmlearn(sequences: tuple) -> None:
    g, y, model, theta, acc = sequences
    got = float(model.log_prob(theta, Mode.for_method("mle"))[0])
    lengths = [y.shape[1]] * y.shape[0]
    assert got == pytest.approx(g.score(y.reshape(-1, 1), lengths=lengths), rel=1e-10)


def test_many_sequences_viterbi_and_marginals_equal_hmmlearn(sequences: tuple) -> None:
    g, y, model, theta, acc = sequences
    phi = acc.chains["z"]
    assert phi.shape == (1, 5, 40, 3, 3)  # [draws, sequences, steps, K, K]
    lengths = [y.shape[1]] * y.shape[0]
    _, path = g.decode(y.reshape(-1, 1), lengths=lengths, algorithm="viterbi")
    assert np.array_equal(hmm.viterbi(phi)[0].numpy().reshape(-1), path)
    np.testing.assert_allclose(hmm.marginals(phi)[0].numpy().reshape(-1, 3),
                               g.predict_proba(y.reshape(-1, 1), lengths=lengths), atol=1e-8)


def test_each_sequence_is_its_own_chain(sequences: tuple) -> None:
    """The joint log-likelihood is the sum of each sequence's alone (no step links the
    last element of one sequence to the first of the next)."""
    g, y, model, theta, acc = sequences
    total = float(model.log_prob(theta, Mode.for_method("mle"))[0])
    alone = sum(g.score(row[:, None]) for row in y)
    assert total == pytest.approx(alone, rel=1e-10)


def test_prior_draws_of_many_sequences_have_one_path_each() -> None:
    model = compile_string(MULTI_HMM).bind({"N": 3, "T": 7, "K": 2}, device="cpu",
                                           simulate=True)
    draws = model.draws(200, seed=3)
    assert tuple(draws["z"].shape) == (200, 3, 7)
    assert tuple(draws["y"].shape) == (200, 3, 7)
    z = draws["z"]
    assert set(torch.unique(z).tolist()) <= {1, 2}
    # sequences are drawn independently: their first states agree about half the time
    same = (z[:, 0, 0] == z[:, 1, 0]).double().mean()
    assert 0.35 < float(same) < 0.65


def test_many_series_ar_density_is_the_sum_of_normal_densities() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4, 12)).cumsum(1)
    model = compile_string(MULTI_AR).bind({"N": 4, "T": 12, "y": y.tolist()}, device="cpu")
    a, b, s = 0.3, 0.8, 1.7
    got = float(model.log_prob(_theta(model, {"alpha": a, "beta": b, "sigma": s}),
                               Mode.for_method("mle"))[0])
    want = stats.norm.logpdf(y[:, 1:], a + b * y[:, :-1], s).sum()
    assert got == pytest.approx(want, rel=1e-12)


def test_many_series_ar_draws_follow_each_series_recursion() -> None:
    model = compile_string(MULTI_AR).bind({"N": 3, "T": 6, "y": np.zeros((3, 6)).tolist()},
                                          device="cpu", simulate=True)
    draws = model.draws(4, seed=1)
    y = draws["y"]
    assert tuple(y.shape) == (4, 3, 6)
    # the first element of every series is the data's (no statement generates it)
    assert torch.equal(y[:, :, 0], torch.zeros(4, 3, dtype=y.dtype))
    assert not torch.equal(y[:, 0, 1:], y[:, 1, 1:])  # each series its own draws


RAGGED_HMM = MULTI_HMM.replace("data y: real[N, T]", "data lengths: int[N]\ndata y: real[N, T]") \
    .replace("for t in 2..T:", "for t in 2..lengths[n]:") \
    .replace("for t in 1..T:", "for t in 1..lengths[n]:")

RAGGED_AR = MULTI_AR.replace("data y: real[N, T]", "data len: int[N]\ndata y: real[N, T]") \
    .replace("for t in 2..T:", "for t in 2..len[n]:")

RAGGED_MIXTURE = """
data N: int
data T: int
data len: int[N]
data y: real[N, T]
mu: real[2] ~ Normal(0, 5)
for n in 1..N:
    for t in 1..len[n]:
        z[n, t] ~ Bernoulli(0.3)
        y[n, t] ~ Normal(mu[z[n, t] + 1], 1)
"""

LENGTHS = [30, 7, 1, 22, 2]


def _padded(rows: list[np.ndarray], width: int, fill: float) -> np.ndarray:
    out = np.full((len(rows), width), fill)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def _value_and_gradient(model, values: dict) -> tuple[float, torch.Tensor]:
    theta = _theta(model, values).requires_grad_(True)
    lp = model.log_prob(theta, Mode.for_method("mle"))
    (grad,) = torch.autograd.grad(lp.sum(), theta)
    return float(lp.detach()[0]), grad


@pytest.fixture(scope="module")
def ragged() -> tuple:
    p = _parameters()
    g = _hmmlearn(p)
    rows = [g.sample(n, random_state=np.random.RandomState(i))[0][:, 0]
            for i, n in enumerate(LENGTHS)]
    program = compile_string(RAGGED_HMM)

    def bind(fill: float):
        data = {"N": len(rows), "T": 32, "K": 3, "lengths": LENGTHS,
                "y": _padded(rows, 32, fill).tolist()}
        return program.bind(data, device="cpu")
    return g, p, rows, bind


def test_ragged_sequences_equal_hmmlearn_with_lengths(ragged: tuple) -> None:
    g, p, rows, bind = ragged
    model = bind(0.0)
    x = np.concatenate(rows)[:, None]
    value, _ = _value_and_gradient(model, p)
    assert value == pytest.approx(g.score(x, lengths=LENGTHS), rel=1e-10)
    acc = model.accumulate(_theta(model, p), Mode.for_method("mle"), record=True)
    phi = acc.chains["z"]
    _, path = g.decode(x, lengths=LENGTHS, algorithm="viterbi")
    best = hmm.viterbi(phi)[0].numpy()
    assert np.array_equal(np.concatenate([best[i, :n] for i, n in enumerate(LENGTHS)]), path)
    marginals = hmm.marginals(phi)[0].numpy()
    np.testing.assert_allclose(
        np.concatenate([marginals[i, :n] for i, n in enumerate(LENGTHS)]),
        g.predict_proba(x, lengths=LENGTHS), atol=1e-8)


def test_padding_values_change_nothing(ragged: tuple) -> None:
    """The density and its gradient ignore the padding exactly, whatever its value."""
    g, p, rows, bind = ragged
    value, grad = _value_and_gradient(bind(0.0), p)
    for fill in (-1e6, 3.5, 1e12):
        other, other_grad = _value_and_gradient(bind(fill), p)
        assert other == value
        assert torch.equal(other_grad, grad)


def test_ragged_chain_equals_brute_force_on_a_tiny_case() -> None:
    """Two sequences of lengths 3 and 1, K = 2: the sum over all 2^4 paths."""
    a = np.array([[0.8, 0.2], [0.3, 0.7]])
    mu, sigma = np.array([-1.0, 1.5]), 0.7
    y = np.array([[0.2, -0.9, 1.1], [0.4, 77.0, -55.0]])
    lengths = [3, 1]
    model = compile_string(RAGGED_HMM).bind({"N": 2, "T": 3, "K": 2, "lengths": lengths,
                                            "y": y.tolist()}, device="cpu")
    got, _ = _value_and_gradient(model, {"A": a, "mu": mu, "sigma": sigma})
    total = 0.0
    for n, length in enumerate(lengths):
        paths = []
        for path in np.ndindex(*(2,) * length):
            lp = np.log(0.5) + sum(stats.norm.logpdf(y[n, t], mu[path[t]], sigma)
                                   for t in range(length))
            lp += sum(np.log(a[path[t - 1], path[t]]) for t in range(1, length))
            paths.append(lp)
        total += np.logaddexp.reduce(paths)
    assert got == pytest.approx(total, rel=1e-12)


def test_ragged_series_ar_density_is_the_sum_over_each_series_length() -> None:
    rng = np.random.default_rng(2)
    lengths = [6, 2, 9, 1]
    y = rng.normal(size=(4, 9)).cumsum(1)
    model = compile_string(RAGGED_AR).bind({"N": 4, "T": 9, "len": lengths, "y": y.tolist()},
                                           device="cpu")
    got, _ = _value_and_gradient(model, {"alpha": 0.1, "beta": 0.9, "sigma": 1.3})
    want = sum(stats.norm.logpdf(y[i, 1:n], 0.1 + 0.9 * y[i, :n - 1], 1.3).sum()
               for i, n in enumerate(lengths))
    assert got == pytest.approx(want, rel=1e-12)


def test_loo_of_ragged_series_counts_only_the_observations_that_exist() -> None:
    """PSIS-LOO of a ragged model, from its stored pointwise log-likelihood and from the
    model, is the LOO of the real observations alone: the padding (0 at every draw) is
    neither counted nor flagged by a Pareto k."""
    import arviz as az
    import xarray as xr

    from runtime.diagnostics import without_certain_observations
    from runtime.evaluate import inference_data
    from runtime.loo import loo_from_model
    rng = np.random.default_rng(3)
    lengths = [6, 2, 9, 1]
    y = rng.normal(size=(4, 9)).cumsum(1)
    model = compile_string(RAGGED_AR).bind({"N": 4, "T": 9, "len": lengths, "y": y.tolist()},
                                           device="cpu")
    draws = {"alpha": rng.normal(0, 0.1, (2, 200)), "beta": rng.normal(0.9, 0.05, (2, 200)),
             "sigma": rng.uniform(0.8, 1.2, (2, 200))}
    theta = model.unconstrain({k: torch.as_tensor(v) for k, v in draws.items()}, batch_ndim=2)
    idata = inference_data(model, theta, {"lp": torch.zeros(2, 200)}, {"seed": 1}, "always")
    ll = np.asarray(idata.log_likelihood["y"])  # [2, 200, 4, 8]: steps 2..9
    real = np.concatenate([ll[:, :, i, :n - 1] for i, n in enumerate(lengths)], axis=-1)
    assert real.shape[-1] == sum(n - 1 for n in lengths) == 14
    alone = az.InferenceData(posterior=idata.posterior, log_likelihood=xr.Dataset(
        {"y": (("chain", "draw", "obs"), real)}))
    stored = az.loo(without_certain_observations(idata))
    from_model = loo_from_model(model, theta, 1.0)
    assert stored.n_data_points == from_model.n_data_points == 14
    assert stored.elpd_loo == pytest.approx(az.loo(alone).elpd_loo, rel=1e-12)
    assert from_model.elpd_loo == pytest.approx(az.loo(alone, reff=1.0).elpd_loo, rel=1e-12)
    assert not stored.warning


def test_ragged_mixture_sums_out_only_the_elements_that_exist() -> None:
    from scipy.special import logsumexp
    rng = np.random.default_rng(1)
    lengths = [3, 1, 4]
    y = rng.normal(size=(3, 5))
    mu = np.array([-1.0, 2.0])
    model = compile_string(RAGGED_MIXTURE).bind({"N": 3, "T": 5, "len": lengths,
                                                 "y": y.tolist()}, device="cpu")
    got, _ = _value_and_gradient(model, {"mu": mu})
    want = sum(logsumexp([np.log(0.7) + stats.norm.logpdf(y[i, t], mu[0], 1),
                          np.log(0.3) + stats.norm.logpdf(y[i, t], mu[1], 1)])
               for i, n in enumerate(lengths) for t in range(n))
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(("lengths", "message"), [
    ([3, -1, 2], r"len\[2\] = -1 ends a loop starting at 2; a loop end must be at least 1"),
    ([3, 0, 2], r"len\[2\] = 0 ends a loop starting at 2"),
    ([3, 10, 2], r"the index 't' of 'y' .* is 10 given the data, but must be at most 9"),
])
def test_lengths_that_cannot_mean_a_loop_end_are_data_errors(lengths: list[int],
                                                             message: str) -> None:
    from runtime.errors import BgmRuntimeError
    program = compile_string(RAGGED_AR)
    with pytest.raises(BgmRuntimeError, match=message):
        program.bind({"N": 3, "T": 9, "len": lengths, "y": np.zeros((3, 9)).tolist()},
                     device="cpu")


def test_a_continuous_latent_inside_a_ragged_loop_is_refused() -> None:
    from dsl.diagnostics import BgmError
    src = RAGGED_MIXTURE.replace("z[n, t] ~ Bernoulli(0.3)", "z[n, t] ~ Normal(0, 1)") \
        .replace("mu[z[n, t] + 1]", "z[n, t]")
    with pytest.raises(BgmError, match="continuous latent 'z' is defined inside a loop "
                                       r"ending at len\[n\]"):
        compile_string(src)


def test_forecast_continues_each_series_after_its_own_data() -> None:
    """With sigma near 0 the forecast is the recursion itself, per series."""
    program = compile_string(MULTI_AR)
    rng = np.random.default_rng(4)
    y = rng.normal(size=(3, 5))
    given = {"alpha": torch.tensor([0.5, -1.0]), "beta": torch.tensor([0.9, 0.2]),
             "sigma": torch.tensor([1e-12, 1e-12])}
    out = program.forecast({"N": 3, "T": 5, "y": y.tolist()}, given, 2, device="cpu")["y"]
    assert out.shape == (2, 3, 2)  # draws, series, horizon
    for s in range(2):
        a, b = float(given["alpha"][s]), float(given["beta"][s])
        first = a + b * y[:, -1]
        np.testing.assert_allclose(out[s, :, 0], first, atol=1e-9)
        np.testing.assert_allclose(out[s, :, 1], a + b * first, atol=1e-9)
    assert program.series_length({"N": 3, "T": 5, "y": y.tolist()}, "y") == 5


DOCS_LM = """model Docs
data V: int
data D: int
data T: int
data len: int[D]
data text: int<lower=1, upper=V>[D, T]
net lm = {net}
for d in 1..D:
    for t in 2..len[d]:
        text[d, t] ~ Categorical(logits=lm(text[d, 1..t-1]))
"""
ONE_DOC_LM = """model One
data V: int
data T: int
data text: int<lower=1, upper=V>[T]
net lm = {net}
for t in 2..T:
    text[t] ~ Categorical(logits=lm(text[1..t-1]))
"""
NETS = {"gru": "GRU(vocab=V, dim=12, layers=1, context=4)",
        "transformer": "Transformer(vocab=V, dim=16, layers=1, heads=2, context=4)"}


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_documents_are_read_apart_so_no_window_crosses_a_boundary(kind: str) -> None:
    """The log density of a corpus is the sum of each document's alone (same weights),
    whatever the padding: the net never reads one document's tokens for another's."""
    rng = np.random.default_rng(5)
    lengths = [9, 3, 6]
    docs = [rng.integers(1, 6, size=n) for n in lengths]
    many = compile_string(DOCS_LM.format(net=NETS[kind]))

    def corpus(fill: int) -> dict:
        text = np.full((3, 10), fill)
        for i, doc in enumerate(docs):
            text[i, :len(doc)] = doc
        return {"V": 5, "D": 3, "T": 10, "len": lengths, "text": text.tolist()}
    model = many.bind(corpus(1), device="cpu", dtype="float32")
    lat = model.latents[0]
    g = torch.Generator().manual_seed(0)
    w = (torch.as_tensor(lat.init_centre) + 3 * (2 * torch.rand(
        lat.size, generator=g, dtype=torch.float64) - 1) * torch.as_tensor(lat.init_scale))
    w = w.float()[None]
    total = float(model.log_prob(model.packer.pack({"lm": w}, 1))[0])
    one = compile_string(ONE_DOC_LM.format(net=NETS[kind]))
    alone = 0.0
    for doc in docs:
        single = one.bind({"V": 5, "T": len(doc), "text": doc.tolist()}, device="cpu",
                          dtype="float32")
        alone += float(single.log_prob(single.packer.pack({"lm": w}, 1))[0])
    assert total == pytest.approx(alone, rel=1e-5)
    padded = many.bind(corpus(4), device="cpu", dtype="float32")
    assert float(padded.log_prob(padded.packer.pack({"lm": w}, 1))[0]) == total


def test_generating_from_a_model_of_many_documents_draws_one_document_per_draw() -> None:
    program = compile_string(DOCS_LM.format(net=NETS["gru"]))
    data = {"V": 5, "D": 2, "T": 6, "len": [6, 4],
            "text": [[1, 2, 3, 4, 5, 1], [2, 3, 4, 5, 5, 5]]}
    model = program.bind(data, device="cpu", dtype="float32")
    lat = model.latents[0]
    given = {"lm": torch.as_tensor(lat.init_centre, dtype=torch.float32)[None]}
    out = program.generate(data, given, n=3, length=8, prompt=None, temperature=0)
    tokens = np.asarray(out["text"]["tokens"])
    assert tokens.shape == (1, 8)  # one draw of the weights: one document of 8 tokens
    assert tokens[0, 0] == 1  # the first token is the data's (no statement draws it)
    assert ((1 <= tokens) & (tokens <= 5)).all()


def test_teaching_tools_read_ragged_loops() -> None:
    """The plate diagram, the unrolled graph and explain take a loop ending at lengths[n]:
    z[n, t] links to z[n, t + 1] within a sequence, never across sequences, and no closed
    form is claimed over a ragged range."""
    from compiler.api import compile_file
    from compiler.teaching.diagram import build
    from compiler.teaching.dsep import unrolled
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    model = compile_file(root / "examples" / "hmm_sequences.bgm").compiled.model
    diagram = build(model)
    assert {"z[1]", "z[2]", "y[1]", "A", "mu", "sigma"} <= set(diagram.nodes)  # time slices
    assert "n = 1..N" in [p.label for p in diagram.plates]
    g = unrolled(model, 3)
    assert g.has_edge("z[1, 1]", "z[1, 2]") and g.has_edge("z[2, 2]", "z[2, 3]")
    assert not g.has_edge("z[1, 3]", "z[2, 1]")
    conjugate = compile_string("""
data N: int
data T: int
data len: int[N]
data y: real[N, T]
mu ~ Normal(0, 10)
for n in 1..N:
    for t in 1..len[n]:
        y[n, t] ~ Normal(mu, 1)
""")
    assert "ragged loop" in conjugate.explain()
