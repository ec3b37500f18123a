"""K-level data: ``DiscretizedNormal(loc, scale, levels=K)`` and the diffusions' ``levels``.

Level k of K is x_k = 2k/(K − 1) − 1, its bin [x_k − h, x_k + h] with h = 1/(K − 1), the two
outer bins open to ±∞. The bin masses are checked against quadrature of the Normal density
(mpmath, 20 digits) to a round-off bound derived for float64 (``round_off``); the ``ddpm``
and ``vdm`` plugins with ``levels = 2`` take binary data {0, 1} and read them as 2x − 1.
"""

from __future__ import annotations

import math

import mpmath as mp
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from latentkit_vdm.gaussian_oracle import OptimalGaussianEps, ode_gaussian
from latentkit_vdm.ode import likelihood_figures

import latentkit as lk
from latentkit.distributions import DiscretizedNormal, LevelGrid
from latentkit.testing import strategies as lks
from latentkit.training import TrainConfig, Trainer

F64 = torch.float64
EPS = torch.finfo(F64).eps
KS = [2, 3, 4, 16, 17, 100, 255, 256]
#: (loc, scale) pairs: inside and outside [−1, 1], narrow (far tails at the other end: log P
#: down to −10⁶) and wide (nearly all mass in the two open bins)
CASES = [(0.3, 0.5), (-1.0, 0.05), (2.5, 0.01), (-3.0, 1e-3), (0.0, 1.0), (0.7, 100.0)]
Z = 5.0  # two-sided z-test threshold: false alarm 5.7e-7 per comparison


def grid(K: int) -> torch.Tensor:
    """x_k = 2k/(K − 1) − 1, k = 0..K − 1, in float64."""
    return torch.arange(K, dtype=F64) * 2 / (K - 1) - 1


def dn(loc: float, scale: float, K: int, **kw) -> DiscretizedNormal:
    return DiscretizedNormal(torch.tensor(loc, dtype=F64), torch.tensor(scale, dtype=F64), K, **kw)


# ---- the bins against quadrature ----------------------------------------------------------


def edges(K: int, k: int, loc: float, scale: float) -> tuple[mp.mpf, mp.mpf]:
    """The standardized edges (lo, hi) of level k's bin, from the definition, in mpmath."""
    h = mp.mpf(1) / (K - 1)
    x = mp.mpf(2 * k) / (K - 1) - 1
    lo = mp.ninf if k == 0 else (x - h - mp.mpf(loc)) / mp.mpf(scale)
    hi = mp.inf if k == K - 1 else (x + h - mp.mpf(loc)) / mp.mpf(scale)
    return lo, hi


def log_mass_by_quadrature(lo: mp.mpf, hi: mp.mpf) -> mp.mpf:
    """log ∫_lo^hi φ(z) dz by tanh-sinh quadrature at 20 digits (mpmath.quad).

    A bin on one side of the mode is mirrored to the right and written φ(lo)∫_0^{hi−lo}
    e^{−lo·u − u²/2} du (the same integral, its exponent factored), so the integrand is
    O(1) and decays on the scale 1/lo even 10⁴ σ out, split where it falls by e, e⁴, e¹⁶,
    e⁶⁴. The quadrature's own error estimate is held below 1e-17 of the value (measured
    against mpmath's erfc over 300 random bins: 3e-24 at most)."""
    mp.mp.dps = 20
    if hi <= 0:
        lo, hi = -hi, -lo
    if lo >= 0:
        width, c = hi - lo, max(lo, mp.mpf(1))
        pts = [mp.mpf(0)] + [j / c for j in (1, 4, 16, 64) if j / c < width] + [width]
        value, err = mp.quad(lambda u: mp.exp(-lo * u - u * u / 2), pts, error=True)
        log_value = -lo * lo / 2 - mp.log(mp.sqrt(2 * mp.pi)) + mp.log(value)
    else:
        value, err = mp.quad(lambda z: mp.exp(-z * z / 2), [lo, mp.mpf(0), hi], error=True)
        log_value = mp.log(value / mp.sqrt(2 * mp.pi))
    assert err <= 1e-17 * value
    return log_value


def round_off(K: int, loc: float, scale: float) -> torch.Tensor:
    """A bound on |float64 log P(x_k) − exact| for each level, ``[K]``.

    Each standardized edge z = (x ± h − loc)/scale is off by at most 4ε(2 + |loc|)/scale (a
    few roundings of numbers ≤ 2 + |loc|), which moves log Φ(z) by (1 + |z|) times that
    (|d log Φ/dz| = φ/Φ ≤ 1 + |z|); ``log_ndtr`` itself adds 8ε(1 + |log Φ|). With
    r = Φ(lo)/Φ(hi) (the bin mirrored into the tail where both are small, as the code does),
    log P = log Φ(hi) + log(1 − r) turns the two edges' errors e_lo + e_hi into e·r/(1 − r)
    in the second term; the final sum adds 4ε(1 + |log P|). Against quadrature over 2,000
    random (K, k, loc, scale), the error never exceeded 0.14 of this bound.
    """
    x = grid(K)
    h = 1.0 / (K - 1)
    hi = torch.where(x > 1 - h, math.inf, (x + h - loc) / scale)
    lo = torch.where(x < -1 + h, -math.inf, (x - h - loc) / scale)
    mirror = lo > 0
    hi, lo = torch.where(mirror, -lo, hi), torch.where(mirror, -hi, lo)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    e_z = 4 * EPS * (2 + abs(loc)) / scale

    def edge_error(z, log_phi):
        return torch.where(z.isinf(), 0.0, 8 * EPS * (1 + log_phi.abs()) + (1 + z.abs()) * e_z)

    e_hi, e_lo = edge_error(hi, log_hi), edge_error(lo, log_lo)
    r = torch.exp(log_lo - log_hi)
    log_p = log_hi + torch.log1p(-r)
    return e_hi + (e_hi + e_lo) * r / (1 - r) + 4 * EPS * (1 + log_p.abs())


def assert_sums_to_one(d: DiscretizedNormal, K: int, loc: float, scale: float) -> None:
    """Σ_k P(x_k) = 1 up to Σ_k P_k·round_off_k (each mass's error) + 2Kε (the sum's)."""
    log_p = d.log_prob(grid(K))
    assert log_p.shape == (K,) and bool(torch.isfinite(log_p).all())
    p = log_p.exp()
    bound = float((p * round_off(K, loc, scale)).sum()) + 2 * K * EPS
    assert abs(float(p.sum()) - 1) <= bound, (K, loc, scale, float(p.sum()) - 1, bound)


def assert_bin_is_quadrature(d: DiscretizedNormal, K: int, k: int, loc: float, scale: float):
    exact = float(log_mass_by_quadrature(*edges(K, k, loc, scale)))
    ours = float(d.log_prob(grid(K)[k]))
    bound = float(round_off(K, loc, scale)[k])
    assert abs(ours - exact) <= bound, (K, k, loc, scale, ours, exact, bound)


@pytest.mark.parametrize("K", KS)
def test_the_K_bin_probabilities_sum_to_one(K):
    """The K bins (outer ones open) partition the real line: Σ_k P(x_k) = 1 in float64,
    to the round-off of the masses and of the sum."""
    for loc, scale in CASES:
        assert_sums_to_one(dn(loc, scale, K), K, loc, scale)


@pytest.mark.parametrize("K", KS)
def test_each_bin_is_the_normal_mass_over_it(K):
    """log P(x_k) = log ∫ N(y; loc, scale²) dy over [x_k − 1/(K−1), x_k + 1/(K−1)] (open at
    the two ends), by quadrature: every bin for K ≤ 4, else both ends, their neighbours,
    the middle and a quarter in (tails up to log P ≈ −10⁶; the Hypothesis test below draws
    any bin)."""
    bins = range(K) if K <= 4 else sorted({0, 1, 2, K // 4, K // 2, K - 3, K - 2, K - 1})
    for loc, scale in CASES:
        d = dn(loc, scale, K)
        for k in bins:
            assert_bin_is_quadrature(d, K, k, loc, scale)


@given(
    K=st.integers(2, 256),
    loc=st.floats(-4.0, 4.0),
    log_scale=st.floats(math.log(1e-3), math.log(100.0)),
    u=st.floats(0.0, 1.0),
)
def test_any_K_sums_to_one_and_its_bins_are_the_normal_mass(K, loc, log_scale, u):
    """For K drawn from 2..256 and loc, scale drawn (loc off the grid and scales from 1e-3
    to 100: far tails and nearly empty middles), the K masses sum to one and the bin
    k = ⌊u·K⌋ (an end when u is 0 or 1) is the quadrature of the density."""
    scale = math.exp(log_scale)
    d = dn(loc, scale, K)
    assert_sums_to_one(d, K, loc, scale)
    assert_bin_is_quadrature(d, K, min(int(u * K), K - 1), loc, scale)


def test_the_open_ends_and_the_binary_view_at_k2():
    """K = 2 in closed form: P(−1) = Φ(−loc/σ), P(1) = Φ(loc/σ) (one edge, at 0); the binary
    view gives v ∈ {0, 1} the mass of 2v − 1, its mean is (loc + 1)/2, its support {0, 1}."""
    loc = torch.tensor([-2.0, -0.3, 0.0, 0.4, 1.7], dtype=F64)
    scale = torch.tensor([0.5, 0.1, 2.0, 1e-3, 3.0], dtype=F64)
    d = DiscretizedNormal(loc, scale, 2)
    for x in (-1.0, 1.0):
        want = torch.special.log_ndtr(x * loc / scale)
        torch.testing.assert_close(d.log_prob(torch.full_like(loc, x)), want, rtol=1e-14, atol=0)
    b = DiscretizedNormal(loc, scale, 2, binary=True)
    for v in (0.0, 1.0):
        torch.testing.assert_close(
            b.log_prob(torch.full_like(loc, v)),
            torch.special.log_ndtr((2 * v - 1) * loc / scale),
            rtol=1e-14,
            atol=0,
        )
    torch.testing.assert_close(b.mean, (loc + 1) / 2)
    assert b.support is torch.distributions.constraints.boolean
    e = b.expand((3, 5))
    assert (e.levels, e.binary, e.batch_shape) == (2, True, (3, 5))
    assert DiscretizedNormal(loc, scale, 17).expand((2, 5)).levels == 17


def test_gradients_stay_finite_at_the_open_ends_for_every_K():
    """The ±∞ edges sit behind torch.where: gradcheck agrees at both ends and next to them,
    and no NaN reaches the gradient even far in a tail, at every K."""
    loc = torch.tensor([-1.5, -0.99, 0.0, 0.99, 1.5], dtype=F64, requires_grad=True)
    scale = torch.tensor([0.3, 0.01, 1.0, 0.01, 0.3], dtype=F64, requires_grad=True)
    for K in KS:
        for x in grid(K)[[0, 1, -2, -1]].tolist():
            value = torch.full((5,), x, dtype=F64)
            assert torch.autograd.gradcheck(
                lambda m, s, v=value, K=K: DiscretizedNormal(m, s, K).log_prob(v), (loc, scale)
            )
        far = DiscretizedNormal(torch.full((2,), -3.0), torch.full((2,), 1e-3), K)
        far.loc.requires_grad_()
        (g,) = torch.autograd.grad(far.log_prob(torch.tensor([1.0, -1.0])).sum(), far.loc)
        assert bool(torch.isfinite(g).all())


# ---- draws --------------------------------------------------------------------------------


@pytest.mark.parametrize("K", KS)
def test_samples_land_on_the_K_grid_with_the_bin_frequencies(K):
    """Draws are grid points x_k, and each level's frequency over 20,000 draws matches its
    mass P(x_k) (z-test per level at 5σ; levels with expected count < 5 only checked to be
    rare: together at most 20, which Poisson(5) exceeds with probability < 1e-6). Catches
    draws rounded to another grid or to the wrong neighbour."""
    n = 20_000
    torch.manual_seed(K)
    loc, scale = 0.23, 0.6
    d = dn(loc, scale, K).expand((n,))
    x = d.sample()
    k = (x + 1) * (K - 1) / 2
    assert bool(((k - k.round()).abs() < 1e-9).all()) and x.min() >= -1 and x.max() <= 1
    counts = torch.bincount(k.round().long(), minlength=K).to(F64)
    p = dn(loc, scale, K).log_prob(grid(K)).exp()
    expected = n * p
    sd = (n * p * (1 - p)).sqrt()
    big = expected >= 5
    z = (counts[big] - expected[big]) / sd[big]
    assert float(z.abs().max()) < Z, z
    assert float(expected[~big].sum()) < 5 and float(counts[~big].sum()) <= 20


def test_binary_samples_are_bits_with_the_bin_frequencies():
    torch.manual_seed(0)
    loc, scale, n = -0.2, 0.5, 20_000
    v = dn(loc, scale, 2, binary=True).expand((n,)).sample()
    assert set(v.unique().tolist()) <= {0.0, 1.0}
    p1 = float(torch.special.ndtr(torch.tensor(loc / scale)))  # P(x = 1) = Φ(loc/σ)
    z = (float(v.sum()) - n * p1) / math.sqrt(n * p1 * (1 - p1))
    assert abs(z) < Z


# ---- the support and its errors -----------------------------------------------------------


@pytest.mark.parametrize("K", KS)
def test_the_grid_support_takes_its_levels_and_refuses_the_rest(K):
    """LevelGrid(K).check holds at every level, however computed (2k/(K−1) − 1 or
    (2k − (K−1))/(K−1), in float32 or float64, or in float32 and cast to float64), and
    fails a quarter level off, outside [−1, 1], and at NaN."""
    c = LevelGrid(K)
    k = torch.arange(K, dtype=F64)
    for dtype in (torch.float32, F64):
        for values in (k * 2 / (K - 1) - 1, (2 * k - (K - 1)) / (K - 1)):
            assert bool(c.check(values.to(dtype)).all())
            assert bool(c.check(values.float().to(dtype)).all())
        made_in_float32 = torch.arange(K, dtype=torch.float32) * 2 / (K - 1) - 1
        assert bool(c.check(made_in_float32.to(dtype)).all())
        off = (k[:-1] * 2 + 0.5) / (K - 1) - 1  # a quarter level above each level but the top
        assert not bool(c.check(off.to(dtype)).any())
        outside = torch.tensor([-1 - 2 / (K - 1), 1 + 2 / (K - 1), 3.0, math.nan], dtype=dtype)
        assert not bool(c.check(outside).any())
    # float16 holds a fine grid only to a few hundredths of a level: the tolerance stops at a
    # quarter level, so the levels pass and the midpoints between them do not
    assert bool(c.check((k * 2 / (K - 1) - 1).half()).all())
    assert not bool(c.check(((k[:-1] * 2 + 1) / (K - 1) - 1).half()).any())


def test_8bit_data_pass_and_binary_data_fail_the_256_level_support():
    from latentkit.data import to_symmetric

    c = LevelGrid(256)
    assert bool(c.check(to_symmetric(torch.arange(256, dtype=torch.uint8))).all())
    assert c.check(torch.tensor([0.0, 1.0])).tolist() == [False, True]  # 0 is k = 127.5


@pytest.mark.parametrize("levels", [1, 0, 2.0, True, "2"])
def test_levels_must_be_an_int_of_at_least_two(levels):
    with pytest.raises(lk.ConfigError, match="levels"):
        DiscretizedNormal(torch.zeros(2), torch.ones(2), levels)


def test_the_binary_view_needs_two_levels():
    with pytest.raises(lk.ConfigError, match="levels=2"):
        DiscretizedNormal(torch.zeros(2), torch.ones(2), 3, binary=True)


@pytest.mark.parametrize("name", ["ddpm", "vdm"])
@pytest.mark.parametrize(
    "values, words",
    [
        ({"levels": 1}, "'levels' must be an int K in 2..256"),
        ({"levels": 257}, "'levels' must be an int K in 2..256"),
        ({"levels": 2.5}, "levels"),
        ({"levels": True}, "levels"),
        ({"levels": 2, "decoder": "gaussian"}, "'levels' is only read with decoder='discreti"),
    ],
)
def test_the_levels_field_is_validated(name, values, words):
    with pytest.raises(lk.ConfigError, match=words):
        lk.load_model(name, data_shape=(3,), num_timesteps=2, hidden=(4,), **values)


# ---- the diffusions at K = 2 --------------------------------------------------------------


def small(name: str, levels: int, **kw) -> lk.LatentModel:
    cfg = dict(data_shape=(1, 8, 8), num_timesteps=6, network="mlp", hidden=(32,), levels=levels)
    torch.manual_seed(0)
    return lk.load_model(name, **{**cfg, **kw})


@pytest.fixture(scope="module")
def digits():
    """Binarized digits as the VAE recipes see them: dynamic binarization of the grey
    levels for training, the last 100 training images held out with one fixed draw, and the
    binarized test split."""
    from latentkit.data import binarize, split_validation

    unit = lk.load_dataset("digits", variant="unit")
    binary = lk.load_dataset("digits", variant="binarized")
    train, held_out = split_validation(unit.train, 100)
    return train, binarize(held_out, seed=1), binary.test[:64]


def spy_on_likelihood(model) -> list[torch.Tensor]:
    """Record each z_1 that p(x | z_1) is asked at."""
    seen: list[torch.Tensor] = []
    inner = model.generative.likelihood

    def likelihood(z1):
        seen.append(z1)
        return inner(z1)

    model.generative.likelihood = likelihood
    return seen


def decoder_loc_scale(model, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Normal that p(x | z_1) discretizes: μ_θ(x_1, 1) and σ_1 (ddpm), or z_0/ᾱ_0 and
    β̄_0/ᾱ_0 (vdm)."""
    if model.name == "ddpm":
        p = model.generative
        eps, log_var = p.eps_and_log_var(1, z1)
        return p.mean(1, z1, eps), torch.exp(0.5 * log_var).expand_as(z1)
    alpha, sigma = model.core.scales(z1.new_zeros(()))
    return z1 / alpha, (sigma / alpha).expand_as(z1)


@pytest.mark.parametrize("name", ["ddpm", "vdm"])
def test_a_two_level_diffusion_trains_on_binarized_digits_and_scores_them_in_nats(name, digits):
    """``levels=2`` takes the binary data the VAE recipes see (dynamic binarization, a fixed
    validation draw): a few steps of training, then lk.elbo on the binarized test split is
    finite nats whose reconstruction term is, at the z_1 the bound drew, the K = 2
    discretized log-probability Σ log Φ((2x − 1)·μ/σ) (P(x = 1) = Φ(μ/σ), one edge at 0)."""
    train, held_out, test = digits
    model = small(name, 2)
    cfg = TrainConfig(steps=6, batch_size=32, log_every=6, checkpoint_every=0, progress=False)
    Trainer(model, train, cfg, validation_data=held_out, dynamic_binarization=True).fit()
    model.eval()
    seen = spy_on_likelihood(model)
    with torch.no_grad():
        result = lk.elbo(model, test)
    assert len(seen) == 1
    assert bool(torch.isfinite(result.total).all()) and bool((result.total < 0).all())
    loc, scale = decoder_loc_scale(model, seen[0])
    want = torch.special.log_ndtr((2 * test - 1) * loc / scale).flatten(1).sum(-1)
    torch.testing.assert_close(result.reconstruction, want, rtol=1e-5, atol=1e-3)
    samples = lk.sample(model, 16)
    assert samples.shape == (16, 1, 8, 8) and set(samples.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", ["ddpm", "vdm"])
def test_the_two_level_model_on_x_is_the_256_level_model_on_2x_minus_1_but_its_decoder(name):
    """Same weights, same draws: every term of the bound that reads x through the diffusion
    (prior matching, each layer's KL; the continuous bound's prior and diffusion terms; the
    default training loss) equals the 256-level model's at 2x − 1, so the data enter the
    forward chain as 2x − 1 everywhere. The reconstruction differs and is larger at K = 2,
    whose bins hold the 256-level bins of ±1."""
    two = small(name, 2, data_shape=(6,)).double()
    full = small(name, 256, data_shape=(6,)).double()
    lks.randomize_parameters(two, 5, 0.3)
    full.load_state_dict(two.state_dict())
    x = torch.randint(0, 2, (5, 6), generator=torch.Generator().manual_seed(2)).to(F64)
    grid_x = 2 * x - 1

    def both(fn):
        torch.manual_seed(11)
        a = fn(two, x)
        torch.manual_seed(11)
        return a, fn(full, grid_x)

    a, b = both(lambda m, v: lk.elbo(m, v))
    torch.testing.assert_close(a.prior_matching, b.prior_matching, rtol=1e-12, atol=0)
    torch.testing.assert_close(a.layer_kl, b.layer_kl, rtol=1e-12, atol=0)
    assert bool((a.reconstruction > b.reconstruction).all())
    a, b = both(lambda m, v: lk.elbo(m, v, estimator="bottom-up"))
    torch.testing.assert_close(a.layer_kl, b.layer_kl, rtol=1e-12, atol=1e-12)
    if name == "vdm":
        a, b = both(lambda m, v: m.continuous_elbo(v))
        torch.testing.assert_close(a.prior_matching, b.prior_matching, rtol=1e-12, atol=0)
        torch.testing.assert_close(a.diffusion, b.diffusion, rtol=1e-12, atol=0)
        assert bool((a.reconstruction > b.reconstruction).all())
    loss = "score-matching" if name == "vdm" else "simple"  # the losses without a decoder
    a, b = both(lambda m, v: lk.make_objective(loss, m)(m, v))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["ddpm", "vdm"])
def test_mismatched_data_are_refused_naming_levels(name, digits, tmp_path):
    """A 256-level model on binarized digits, and a 2-level one on 8-bit digits: the trainer,
    lk.elbo and lk.evaluate refuse the data with a SupportError naming ``levels`` and the
    value the data need."""
    _, _, binary = digits
    eight = lk.load_dataset("digits", variant="8bit").test[:64]
    cfg = TrainConfig(steps=1, batch_size=8, checkpoint_every=0, progress=False)
    for levels, data, need in ((256, binary, "levels=2"), (2, eight, "levels=256")):
        model = small(name, levels)
        words = rf"levels={levels}.*{need}"
        with pytest.raises(lk.SupportError, match=words):
            Trainer(model, data, cfg)
        with pytest.raises(lk.SupportError, match=words):
            lk.elbo(model, data)
        with pytest.raises(lk.SupportError, match=words):
            lk.evaluate(model, data, iwae_k=0)


def test_the_vdm_ode_figure_dequantizes_over_the_two_level_bins():
    """With the optimal network for grid-space data N(m, s²) the ODE density at t = 0 is the
    Gaussian N(c, k²) of ``ode_gaussian``, so the dequantized ODE figure at binary x = 0
    (grid point −1, bin width 2/(K − 1) = 2) has the closed-form mean
    −log 2 − E_{y~U[−2, 0]} log N(y; c, k²) = −log 2 + ½ log 2πk² + ((−1 − c)² + 1/3)/(2k²)
    (z-test over 400 draws of u). Dequantizing over 8-bit bins instead misses by about
    log 255 nats, and at x = 0 unmapped by (1 + 2c)/(2k²) ≈ 1.3."""
    torch.manual_seed(0)
    model = lk.load_model(
        "vdm", data_shape=(1,), num_timesteps=2, network="linear", levels=2
    ).double()
    mean, var = torch.tensor([0.8], dtype=F64), torch.tensor([1.0], dtype=F64)
    model.core.net = OptimalGaussianEps(model.core.log_snr, mean, var)
    data = torch.zeros(400, 1, dtype=F64)
    fig = likelihood_figures(
        model, data, ode_examples=400, batch_size=400, num_t=2, t_draws=1, rtol=1e-8, atol=1e-8
    )["ode_direct"]
    c, k_sq = (v.item() for v in ode_gaussian(model.core, mean, var))
    want = -math.log(2) + 0.5 * math.log(2 * math.pi * k_sq) + ((-1 - c) ** 2 + 1 / 3) / (2 * k_sq)
    nll = fig["nll_nats"]
    assert nll["stderr"] < 0.1  # so that a miss of 1 nat is 10 standard errors
    assert abs(nll["mean"] - want) < Z * nll["stderr"], (nll, want)


def test_latentkit_train_loads_binarized_data_for_a_two_level_diffusion(tmp_path, capsys):
    """With ``levels=2`` set and no variant given, ``latentkit train`` loads the binarized
    variant (the model's likelihood decides, under the config given); asked for 8-bit data,
    it refuses them in one line naming ``levels``."""
    from latentkit.cli import main

    run = tmp_path / "binary"
    argv = ["train", "--model", "ddpm", "--data", "digits", "--limit", "64", "--batch-size",
            "16", "--steps", "2", "--no-progress", "--set", "num_timesteps=4", "--set",
            "network=mlp", "--set", "hidden=[16]", "--set", "levels=2"]  # fmt: skip
    assert main([*argv, "--run-dir", str(run)]) == 0
    config = (run / "config.json").read_text()
    assert '"variant": "binarized"' in config and '"levels": 2' in config
    capsys.readouterr()
    code = main([*argv, "--variant", "8bit", "--run-dir", str(tmp_path / "eight")])
    err = capsys.readouterr().err
    assert code != 0 and "levels=2" in err and "levels=256" in err, err


def test_vdm_samplers_decode_binary_models_on_the_datas_own_scale():
    """decode=True gives the decoder's mean on the data's scale: (z_0/ᾱ_0 + 1)/2 at levels = 2
    (the grid {−1, 1} read as {0, 1}), z_0/ᾱ_0 at 256 levels."""
    from latentkit_vdm import sample_ode, sample_sde

    for levels, to_data in ((2, lambda v: (v + 1) / 2), (256, lambda v: v)):
        torch.manual_seed(0)
        m = lk.load_model("vdm", data_shape=(4,), levels=levels, hidden=(8,)).double()
        alpha, _ = m.core.scales(torch.zeros((), dtype=torch.float64))
        for sampler, kw in ((sample_sde, {"steps": 5}), (sample_ode, {})):
            z0 = sampler(m, 3, generator=torch.Generator().manual_seed(1), **kw)
            x = sampler(m, 3, decode=True, generator=torch.Generator().manual_seed(1), **kw)
            torch.testing.assert_close(x, to_data(z0 / alpha), rtol=1e-12, atol=1e-12)
