"""IWAE_k in chunks: ``latentkit.iwae(..., chunk=)`` and ``evaluate(draws_per_call=)``.

``chunk`` bounds the (example × sample) rows per network call whatever k and the batch,
and a streaming logsumexp folds the chunks in. What is checked:

* exact: the streaming logsumexp equals ``torch.logsumexp`` of the concatenated log-weights
  of the very draws it folded in (float64, 1e-12 relative), on adversarial chunks too
  (values ±1e4, −inf, +inf, NaN); ``chunk=None`` and ``chunk ≥ batch·k`` are today's IWAE,
  bit for bit; with the exact posterior every chunked IWAE is log p(x).
* statistical: chunked and unchunked IWAE_k agree in expectation (two-sided z-test at
  z = 4.5 on 400 replicates, false-alarm rate 6.8e-6 per comparison; ≤ 8 comparisons per
  Hypothesis example, so ≤ 320 under the ``dev`` profile, 0.2 % chance of any false alarm,
  ≤ 200 under ``ci``, which is derandomized, ≤ 4,000 under ``thorough``, 2.7 %), with a
  power check that a wrong merge (the mean of per-chunk IWAE_c) fails it.

The draws themselves differ between chunked and unchunked calls: torch's CPU normal fill
works in blocks of 16 numbers, so k·b draws at once and in chunks consume the random stream
differently unless every chunk is a multiple of 16 (and a deeper chain interleaves its
layers' draws). Hence the exact checks compare against the chunks' own log-weights.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from einops import rearrange, repeat
from hypothesis import given
from hypothesis import strategies as st
from latentkit_vae.strategies import linear_vae_cases

import latentkit as lk
import latentkit.bounds as bounds
from latentkit.bounds import RunningLogSumExp, log_weight_chunks, log_weights
from latentkit.errors import InputError
from latentkit.evaluation import Estimate, evaluate, report_table
from latentkit.testing import strategies as lks

Z = 4.5  # two-sided z-test threshold: false-alarm rate 6.8e-6 per comparison
REPLICATES = 400
REL = 1e-12  # float64 round-off of a logsumexp over ≤ a few hundred terms


linear_vae = linear_vae_cases


def rel_close(a: torch.Tensor, b: torch.Tensor, rel: float = REL) -> bool:
    return bool(((a - b).abs() <= rel * (1 + b.abs())).all())


def reassemble(model, x, k, chunk) -> torch.Tensor:
    """The ``[k, batch]`` log-weights :func:`log_weight_chunks` draws, checking the bound on
    rows per call and that every example gets exactly k draws, in order."""
    groups: dict[tuple[int, int], list[torch.Tensor]] = {}
    for examples, log_w in log_weight_chunks(model, x, k, chunk):
        assert log_w.shape[0] * log_w.shape[1] <= chunk
        assert log_w.shape[1] == examples.stop - examples.start
        groups.setdefault((examples.start, examples.stop), []).append(log_w)
    spans = list(groups)
    assert spans[0][0] == 0 and spans[-1][1] == x.shape[0]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    full = torch.cat([torch.cat(chunks) for chunks in groups.values()], dim=1)
    assert full.shape == (k, x.shape[0])
    return full


# ---- exact: the streaming logsumexp on the same draws -------------------------------------


@given(data=st.data(), k=st.integers(1, 40), chunk=st.integers(1, 60), seed=lks.seeds())
def test_chunked_iwae_is_logsumexp_of_its_own_draws(data, k, chunk, seed, device):
    model, x = data.draw(linear_vae(device))
    with lks.seeded(seed, device):
        chunked = lk.iwae(model, x, k, chunk=chunk)
    with lks.seeded(seed, device):
        log_w = reassemble(model, x, k, chunk)
    assert chunked.shape == (x.shape[0],) and chunked.dtype == torch.float64
    assert rel_close(chunked, torch.logsumexp(log_w, dim=0) - math.log(k))


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("hvae", {"data_shape": (4,)}),
        ("hvae", {"data_shape": (4,), "posterior": "bottom-up"}),
        ("ddpm", {"data_shape": (4,), "num_timesteps": 5}),
        ("gmm", {"data_dim": 4}),
        ("beta-vae", {"data_shape": (4,)}),
    ],
)
@pytest.mark.parametrize(("k", "chunk"), [(12, 7), (12, 3), (5, 1), (30, 100)])
def test_every_family_chunks_exactly(name, config, k, chunk):
    """Deeper chains (top-down and bottom-up), a DDPM and a discrete latent: the streaming
    result is the logsumexp of the chunks' own draws."""
    torch.manual_seed(0)
    model = lk.load_model(name, **config).double()
    x = lk.sample(model, 5).double()
    with lks.seeded(1):
        chunked = lk.iwae(model, x, k, chunk=chunk)
    with lks.seeded(1):
        log_w = reassemble(model, x, k, chunk)
    assert rel_close(chunked, torch.logsumexp(log_w, dim=0) - math.log(k))


@given(data=st.data(), k=st.integers(1, 16), seed=lks.seeds())
def test_no_chunk_or_one_big_chunk_is_todays_iwae(data, k, seed, device):
    """``chunk=None`` and any ``chunk ≥ batch·k`` draw once: the same draws, the same value."""
    model, x = data.draw(linear_vae(device))
    with lks.seeded(seed, device):
        today = torch.logsumexp(log_weights(model, x, k), dim=0) - math.log(k)
    for chunk in (None, x.shape[0] * k, x.shape[0] * k + 5):
        with lks.seeded(seed, device):
            assert torch.equal(lk.iwae(model, x, k, chunk=chunk), today)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_running_logsumexp_on_adversarial_chunks(dtype):
    """Rising maxima, ±1e4 (float32: ±1e3, where exp overflows), −inf, +inf and NaN: the
    streaming result is torch.logsumexp of the concatenation, conventions included."""
    g = torch.Generator().manual_seed(0)
    big = 1e4 if dtype == torch.float64 else 1e3
    cols = 9
    chunks = [
        torch.randn(3, cols, generator=g, dtype=dtype) * big - 2 * big,
        torch.randn(1, cols, generator=g, dtype=dtype) * big,
        torch.randn(5, cols, generator=g, dtype=dtype) * big + 2 * big,  # a larger max
        torch.randn(2, cols, generator=g, dtype=dtype) - 5 * big,  # all far below
    ]
    inf = math.inf
    chunks[0][:, 0] = -inf  # column 0: −inf first, finite later
    for c in chunks:
        c[:, 1] = -inf  # column 1: all −inf
    chunks[2][1, 2] = inf  # column 2: +inf after finite values
    chunks[0][0, 3] = inf  # column 3: +inf first
    chunks[3][0, 4] = math.nan  # column 4: NaN
    chunks[1][0, 5] = -inf  # column 5: −inf as the only entry of a one-row chunk
    acc = RunningLogSumExp(cols, dtype=dtype, device="cpu")
    for c in chunks:
        acc.add(c)
    got, want = acc.result(), torch.logsumexp(torch.cat(chunks), dim=0)
    assert got.dtype == dtype
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.equal(torch.isinf(got), torch.isinf(want)) and torch.equal(
        got[torch.isinf(got)], want[torch.isinf(want)]
    )
    finite = torch.isfinite(want)
    rel = REL if dtype == torch.float64 else 1e-6
    assert rel_close(got[finite], want[finite], rel)


def test_running_logsumexp_of_one_value_per_chunk():
    """k chunks of one row each (chunk = 1 with one example): still the full logsumexp."""
    order = torch.randperm(5001, generator=torch.Generator().manual_seed(1))
    values = torch.linspace(-700.0, 700.0, 5001, dtype=torch.float64)[order]
    acc = RunningLogSumExp(1, dtype=torch.float64, device="cpu")
    for v in values:
        acc.add(v.reshape(1, 1))
    assert rel_close(acc.result(), torch.logsumexp(values, 0).reshape(1))


@given(data=st.data(), k=st.integers(1, 24), chunk=st.integers(1, 40))
def test_exact_posterior_makes_every_chunked_iwae_log_p(data, k, chunk, device):
    """With q = p(z|x) every log weight is log p(x), so IWAE_k = log p(x) for any chunking."""
    model, x = data.draw(linear_vae(device))
    exact = model.with_posterior(lk.exact_posterior(model))
    log_p = lk.exact_log_prob(model, x)
    # |a − b| ≤ 1e-8·(1 + |b|): float64 round-off through the oracle's O(D³) linear algebra.
    assert rel_close(lk.iwae(exact, x, k, chunk=chunk), log_p, 1e-8)


def test_exact_posterior_linear_vae_of_the_brief(device):
    """The brief's model, (4,) data and 2 latents: every chunking gives log p(x)."""
    torch.manual_seed(0)
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear").double()
    model = model.to(device)
    lks.randomize_parameters(model, 5)
    exact = model.with_posterior(lk.exact_posterior(model))
    x = lk.sample(model, 6)
    log_p = lk.exact_log_prob(model, x)
    for chunk in (1, 5, 6, 7, 64, 299, 300, 10_000, None):
        assert rel_close(lk.iwae(exact, x, 50, chunk=chunk), log_p, 1e-8), chunk


# ---- statistical: same distribution -------------------------------------------------------


def _z(chunked: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
    """Per-example z statistics of the difference of replicate means (independent draws)."""
    a = rearrange(chunked, "(r b) -> r b", r=REPLICATES)
    b = rearrange(plain, "(r b) -> r b", r=REPLICATES)
    se = torch.sqrt(a.var(0) / REPLICATES + b.var(0) / REPLICATES)
    return (a.mean(0) - b.mean(0)) / se.clamp_min(1e-12)


@given(data=st.data(), k=st.integers(2, 16), per_call=st.integers(1, 15), extra=st.integers(0, 7))
def test_chunked_and_unchunked_agree_in_expectation(data, k, per_call, extra, device):
    """Chunks of ``per_call`` samples of every replicate (``extra`` rows left over), so a
    case makes ≤ k network calls."""
    model, x = data.draw(linear_vae(device))
    xr = repeat(x, "b ... -> (r b) ...", r=REPLICATES)
    chunk = xr.shape[0] * min(per_call, k - 1) + extra
    z = _z(lk.iwae(model, xr, k, chunk=chunk), lk.iwae(model, xr, k))
    assert bool((z.abs() <= Z).all()), z


def test_the_z_test_catches_a_wrong_merge():
    """Power check: averaging per-chunk IWAE_c (not one logsumexp over all k) is biased low,
    and the z-test above sees it on a model whose q is poor."""
    torch.manual_seed(3)
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear").double()
    lks.randomize_parameters(model, 11, scale=1.0)
    x = lk.sample(model, 4)
    xr = repeat(x, "b ... -> (r b) ...", r=REPLICATES)
    k, c = 64, 4
    wrong = torch.stack([lk.iwae(model, xr, c) for _ in range(k // c)]).mean(0)
    z = _z(wrong, lk.iwae(model, xr, k))
    assert bool((z < -Z).any()), z


# ---- argument checks -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_bad_chunk_is_a_clear_error(bad):
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear")
    with pytest.raises(InputError, match="chunk must be an int ≥ 1"):
        lk.iwae(model, torch.zeros(2, 4), 3, chunk=bad)


def test_bad_draws_per_call_is_a_clear_error():
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear")
    with pytest.raises(InputError, match="draws_per_call must be an int ≥ 1"):
        evaluate(model, torch.zeros(2, 4), iwae_k=3, draws_per_call=0)


# ---- evaluate ------------------------------------------------------------------------------


@pytest.fixture
def rows_per_call(monkeypatch):
    """Records batch·k of every log_weights call (each one network call)."""
    calls: list[int] = []

    def spy(model, x, k):
        calls.append(x.shape[0] * k)
        return log_weights(model, x, k)

    monkeypatch.setattr(bounds, "log_weights", spy)
    return calls


@pytest.mark.parametrize(("k", "draws_per_call"), [(50, 16), (50, 7), (10, 25), (3, 1000)])
def test_evaluate_bounds_rows_per_call(rows_per_call, k, draws_per_call):
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear").double()
    x = torch.randn(13, 4, dtype=torch.float64)
    done: list[int] = []
    report = evaluate(
        model, x, batch_size=5, iwae_k=k, draws_per_call=draws_per_call, on_batch=done.append
    )
    assert max(rows_per_call) <= draws_per_call
    assert sum(rows_per_call) == 13 * k
    assert done == [5, 10, 13]
    assert 0 < report.iwae_seconds <= report.seconds
    assert report.to_json()["iwae_seconds"] == round(report.iwae_seconds, 3)
    assert "IWAE" in report_table(report).caption


def test_evaluate_keeps_todays_draws_when_k_fits():
    """k ≤ draws_per_call: the old loop (groups of draws_per_call // k examples, one call
    each, after each batch's ELBO), same seed, gives the very same IWAE values."""
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear").double()
    x = torch.randn(23, 4, dtype=torch.float64)
    k, per_call_rows, batch = 10, 40, 9
    report = evaluate(model, x, batch_size=batch, iwae_k=k, draws_per_call=per_call_rows, seed=4)
    old = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(4)
        for i in range(0, 23, batch):
            xb = x[i : i + batch]
            lk.elbo(model, xb, validate=False)
            for j in range(0, xb.shape[0], per_call_rows // k):
                old.append(lk.iwae(model, xb[j : j + per_call_rows // k], k).float().cpu())
    assert report.iwae == Estimate.of(torch.cat(old))


def test_evaluate_with_k_beyond_draws_per_call_is_exact_under_the_exact_posterior():
    torch.manual_seed(0)
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear").double()
    lks.randomize_parameters(model, 2)
    exact = model.with_posterior(lk.exact_posterior(model))
    x = lk.sample(model, 11)
    report = evaluate(exact, x, batch_size=4, iwae_k=300, draws_per_call=64)
    log_p = (
        lk.exact_log_prob(model, x).detach().float().double()
    )  # evaluate keeps float32 per example
    assert math.isclose(report.iwae.mean, float(log_p.mean()), rel_tol=1e-6, abs_tol=1e-6)
    assert report.iwae_k == 300
