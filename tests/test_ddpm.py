"""The DDPM plugin against the theory: DESIGN §7 identities 5–9, and 1–3 for ``ddpm``.

Notation (docs/ddpm.md): q(x_t | x_{t-1}) = N(α_t x_{t-1}, β_t² I), α_t² + β_t² = 1,
ᾱ_t = α_1⋯α_t, β̄_t = √(1 − ᾱ_t²).

Exact identities run in float64 with tolerances a few hundred ulps of the terms involved.
Statistical ones are stated with their bound:

* z-tests compare means of R independent replicates, |z| ≤ Z = 4.5 two-sided (one-sided for
  inequalities): a false alarm rate of 6.8e-6 (3.4e-6) per comparison, so under 1e-3 for the
  few hundred comparisons of a CI run (which is derandomized, hence reproducible anyway).
* distributional checks use the Dvoretzky–Kiefer–Wolfowitz bound: n i.i.d. draws of a
  continuous F have sup |F_n − F| > √(ln(2/δ) / 2n) with probability ≤ δ = 1e-6.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from latentkit_ddpm import (
    DDPMPosterior,
    LinearGaussianReverse,
    cosine_beta,
    gaussian_data_reverse,
    linear_beta,
    make_schedule,
)
from latentkit_ddpm.gaussian_oracle import gaussian_data_marginals
from latentkit_ddpm.model import DDPMConfig
from latentkit_ddpm.strategies import ddpm_configs, schedules

import latentkit as lk
from latentkit.distributions import diag_normal
from latentkit.testing import strategies as lks

Z = 4.5
DKW_DELTA = 1e-6
F64 = torch.float64


# --- strategies and helpers ---------------------------------------------------------------


def gentle_schedules(min_T: int = 1, max_T: int = 6) -> st.SearchStrategy[dict]:
    """Cosine or given schedules (the linear one at small T caps β_t² at 0.999 for most t,
    which makes the neural bounds' variance needlessly large for the statistical tests)."""
    return schedules(min_T, max_T).filter(lambda s: s["schedule"] != "linear")


def posterior(device, sched: dict, event_dims: int = 1) -> DDPMPosterior:
    return DDPMPosterior(make_schedule(DDPMConfig(**sched)), event_dims).to(device, F64)


def ddpm(device, seed: int, sched: dict, *, D: int = 3, scale: float = 0.3, **config):
    """A small vector DDPM with random parameters (far from the zero-initialized output)."""
    config.setdefault("decoder", "gaussian")
    model = lk.load_model("ddpm", data_shape=(D,), hidden=(16, 16), **sched, **config)
    lks.randomize_parameters(model, seed, scale)
    return model.to(device, F64)


def normals(seed: int, *shape: int, device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=F64).to(device)


def eight_bit(seed: int, n: int, D: int, device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, D), generator=gen).to(F64) / 127.5 - 1).to(device)


def close(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | float = 1.0, ulps: float = 1e3):
    """|a − b| ≤ ulps · eps64 · (1 + scale): exact up to round-off in terms of size ``scale``."""
    tol = ulps * torch.finfo(F64).eps * (1 + torch.as_tensor(scale, dtype=F64))
    return bool(((a - b).abs() <= tol.to(a.device)).all())


def z_ok(a: torch.Tensor, b: torch.Tensor, *, one_sided: bool = False) -> bool:
    """Means of independent replicates a, b (``[R, batch]``) agree: |ā − b̄| ≤ Z·se
    (one-sided: ā ≤ b̄ + Z·se). A constant pair (se = 0) must agree to round-off."""
    diff = a.mean(0) - b.mean(0)
    se = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt()
    slack = Z * se + 1e-9 * (1 + a.mean(0).abs())
    return bool(((diff if one_sided else diff.abs()) <= slack).all())


def dkw_statistic(u: torch.Tensor) -> tuple[float, float]:
    """(sup |F_n − Φ|, its DKW bound at δ) for draws ``u`` claimed i.i.d. N(0, 1)."""
    u = u.flatten().sort().values.cpu()
    n = u.numel()
    cdf = torch.special.ndtr(u)
    i = torch.arange(1, n + 1, dtype=cdf.dtype)
    stat = torch.maximum(i / n - cdf, cdf - (i - 1) / n).max().item()
    return stat, math.sqrt(math.log(2 / DKW_DELTA) / (2 * n))


# --- the plugin and its schedules -----------------------------------------------------------


def test_ddpm_is_registered_from_its_entry_point():
    assert "ddpm" in lk.list_models()
    assert lk.get_model_spec("ddpm").plugin == "latentkit-ddpm"


def test_linear_schedule_matches_the_ddpm_paper():
    """Paper β_t (= our β_t²) runs linearly from 1e-4 to 0.02 at T = 1000."""
    beta = linear_beta(1000)
    assert close(beta[0] ** 2, torch.tensor(1e-4, dtype=F64))
    assert close(beta[-1] ** 2, torch.tensor(0.02, dtype=F64))


def test_cosine_schedule_matches_improved_ddpm():
    """Paper ᾱ_t (= our ᾱ_t²) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s)·π/2), where uncapped."""
    T, s = 50, 0.008
    sched = make_schedule(DDPMConfig(num_timesteps=T, schedule="cosine")).to(dtype=F64)
    t = torch.arange(T + 1, dtype=F64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    uncapped = cosine_beta(T) ** 2 < 0.999
    ok = torch.cat([torch.tensor([True]), uncapped])
    assert close(sched.alpha_bar[ok] ** 2, (f / f[0])[ok])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"schedule": "given", "num_timesteps": 3, "beta": (0.1, 1.0, 0.2)}, "'beta'"),
        ({"schedule": "given", "num_timesteps": 2, "beta": (0.1, 0.0)}, "t=2"),
        ({"schedule": "given", "num_timesteps": 3, "beta": (0.1, 0.2)}, "'beta' must hold"),
        ({"schedule": "cosine", "beta": (0.1,)}, "'beta' is only read"),
        ({"num_timesteps": 0}, "num_timesteps"),
        ({"data_shape": (1, 6, 6), "channel_mult": (1, 2, 2)}, "'channel_mult'"),
        ({"loss": "simple", "reverse_variance": "learned"}, "'loss'"),
    ],
)
def test_bad_config_names_the_field(values, message):
    with pytest.raises(lk.ConfigError, match=message):
        lk.load_model("ddpm", **values)


@given(sched=schedules(max_T=30))
def test_schedule_constants_survive_a_float32_round_trip(sched):
    """α_t² + β_t² = 1 in float64 even after ``.float().double()`` (float64 master copy)."""
    s = make_schedule(DDPMConfig(**sched)).float().double()
    assert close(s.alpha**2 + s.beta**2, torch.ones_like(s.alpha))
    assert close(s.alpha_bar**2 + s.beta_bar**2, torch.ones_like(s.alpha))


# --- identities 5, 6, 9: the forward chain's closed forms -----------------------------------


@given(sched=schedules(), seed=lks.seeds())
def test_forward_steps_compose_to_the_marginal(device, sched, seed):
    """(5) Composing q(x_1|x_0), q(x_2|x_1), …, q(x_t|x_{t-1}) gives q(x_t|x_0) = N(ᾱ_t x_0,
    β̄_t² I) (seed 001, eq. 25).

    Exact: each step maps N(a x_0, w I) to N(α_t a x_0, (α_t² w + β_t²) I); α_t, β_t are read
    off the chain's own ``first``/``up`` distributions. Statistical: x_t drawn by ancestral
    steps, standardized by the closed form, passes the DKW bound for N(0, 1).
    """
    q = posterior(device, sched)
    T = sched["num_timesteps"]
    x0 = normals(seed, 4, 3, device=device)
    ones = torch.ones_like(x0)
    step = q.first(ones)
    a, w = step.mean, step.variance
    draws = q.first(x0.expand(500, 4, 3).reshape(2000, 3)).sample()
    for t in range(1, T + 1):
        if t > 1:
            step = q.up(t, ones, ones)  # mean α_t·1, variance β_t²
            a, w = step.mean * a, step.mean**2 * w + step.variance
            draws = q.up(t, draws, None).sample()
        marginal = q.marginal(t, x0)
        assert close(a * x0, marginal.mean, x0.abs())
        assert close(w.expand_as(x0), marginal.variance)
    standardized = (draws - q.marginal(T, x0.repeat(500, 1)).mean) / q.marginal(T, x0).stddev[0]
    stat, bound = dkw_statistic(standardized)
    assert stat <= bound


@given(sched=schedules(min_T=2), seed=lks.seeds(), batched=st.booleans())
def test_bayes_rule_posterior_equals_the_closed_form(device, sched, seed, batched):
    """(6) log q(x_t|x_{t-1}) + log q(x_{t-1}|x_0) − log q(x_t|x_0) = log q(x_{t-1}|x_t, x_0)
    at arbitrary points, for an int t and for a LongTensor of t (one per example). Exact."""
    q = posterior(device, sched)
    T = sched["num_timesteps"]
    x0, x_prev, x_t = normals(seed, 3, 5, 2, device=device).unbind(0)
    gen = torch.Generator().manual_seed(seed)
    if batched:
        t = torch.randint(2, T + 1, (5,), generator=gen).to(device)
    else:
        t = int(torch.randint(2, T + 1, (), generator=gen))
    bayes = q.up(t, x_prev, x0).log_prob(x_t) + q.marginal(t - 1, x0).log_prob(x_prev)
    bayes = bayes - q.marginal(t, x0).log_prob(x_t)
    closed = q.down(t, x_t, x0).log_prob(x_prev)
    assert close(bayes, closed, bayes.abs() + closed.abs())


@given(sched=schedules(), seed=lks.seeds())
def test_two_noise_draws_merge_into_one(device, sched, seed):
    """(9) α_t β̄_{t-1} ε̄ + β_t ε ~ β̄_t ε' for independent standard ε̄, ε (seed 001, eq. 27).

    Exact: the map (ε̄, ε) ↦ (ε', ω) = R (ε̄, ε), R = [[α_t β̄_{t-1}, β_t], [β_t, −α_t β̄_{t-1}]] / β̄_t,
    is orthogonal (RᵀR = I ⟺ α_t² β̄_{t-1}² + β_t² = β̄_t²), so ε', ω are i.i.d. N(0, 1); and
    eq. 27 recovers ε from them. Statistical: the merged draws pass the DKW bound.
    """
    s = make_schedule(DDPMConfig(**sched)).to(device, F64)
    t = torch.arange(1, sched["num_timesteps"] + 1, device=device)
    a, b, bb = s.alpha[t] * s.beta_bar[t - 1], s.beta[t], s.beta_bar[t]
    R = torch.stack([torch.stack([a, b], -1), torch.stack([b, -a], -1)], -2) / bb[:, None, None]
    eye = torch.eye(2, dtype=F64, device=device).expand_as(R)
    assert close(R.transpose(-1, -2) @ R, eye)
    eps_bar, eps = normals(seed, 2, len(t), 4000, device=device).unbind(0)
    merged = (a[:, None] * eps_bar + b[:, None] * eps) / bb[:, None]
    omega = (b[:, None] * eps_bar - a[:, None] * eps) / bb[:, None]
    assert close((b[:, None] * merged - a[:, None] * omega) / bb[:, None], eps, 10.0)
    stat, bound = dkw_statistic(merged)
    assert stat <= bound


# --- identities 7, 8 and the layer-batched path --------------------------------------------


@given(
    sched=gentle_schedules(),
    seed=lks.seeds(),
    decoder=st.sampled_from(("gaussian", "discretized")),
    variance=st.sampled_from(("beta", "posterior", "learned")),
)
def test_top_down_and_bottom_up_elbos_agree_in_expectation(device, sched, seed, decoder, variance):
    """(7) E[analytic top-down ELBO] = E[bottom-up Monte Carlo ELBO] (seed 000's derivation):
    per example, the means of R = 256 replicates each pass the two-sided z-test at Z = 4.5."""
    model = ddpm(device, seed, sched, decoder=decoder, reverse_variance=variance)
    x = eight_bit(seed, 3, 3, device)
    torch.manual_seed(seed)
    top_down = lk.elbo(model, x, estimator="analytic", num_samples=256).samples
    bottom_up = lk.elbo(model, x, estimator="bottom-up", num_samples=256).samples
    assert z_ok(top_down, bottom_up)


@given(sched=gentle_schedules(min_T=2, max_T=8), seed=lks.seeds(), chunk=st.integers(1, 20))
def test_layer_batched_and_sequential_analytic_agree_in_expectation(device, sched, seed, chunk):
    """Every layer's term and the total of ``layer-batched`` (x_t ~ q(x_t|x_0) per layer, in
    chunks of ``chunk`` (example, layer) pairs per network call) match the sequential
    ``analytic`` estimator in expectation: z-tests at Z = 4.5 over R = 128 replicates."""
    model = ddpm(device, seed, sched, decoder="discretized", reverse_variance="learned")
    x = eight_bit(seed, 2, 3, device)
    torch.manual_seed(seed)
    R = 128
    seq = lk.elbo(model, x.repeat(R, 1), estimator="analytic")
    bat = lk.elbo(model, x.repeat(R, 1), estimator="layer-batched", pairs_per_call=chunk)
    for a, b in [(seq.total, bat.total), *zip(seq.layer_kl.T, bat.layer_kl.T)]:
        assert z_ok(a.reshape(R, 2), b.reshape(R, 2))


@given(sched=schedules(max_T=8), seed=lks.seeds(), t_seed=lks.seeds())
def test_layer_batched_transition_matches_the_per_layer_call(device, sched, seed, t_seed):
    """p(x_{t-1}|x_t) for a LongTensor t equals the int-t call row by row (one network call)."""
    model = ddpm(device, seed, sched, reverse_variance="learned")
    p, T = model.generative, sched["num_timesteps"]
    z = normals(seed, 6, 3, device=device)
    t = torch.randint(1, T + 1, (6,), generator=torch.Generator().manual_seed(t_seed))
    batched = p.transition(t.to(device), z)
    for i, ti in enumerate(t.tolist()):
        single = p.transition(ti, z[i : i + 1])
        assert close(batched.mean[i], single.mean[0], single.mean.abs())
        assert close(batched.stddev[i], single.stddev[0], single.stddev)


def _gaussian_data(seed: int, D: int, device):
    gen = torch.Generator().manual_seed(seed)
    mean = (torch.rand(D, generator=gen, dtype=F64) * 4 - 2).to(device)
    std = (torch.rand(D, generator=gen, dtype=F64) * 2.5 + 0.2).to(device)
    return mean, std


def _prior_mismatch(q: DDPMPosterior, x0, mean, std):
    """Δ(x_0) = E_{q(x_T|x_0)}[log q(x_T) − log N(x_T; 0, I)], Gaussian in closed form."""
    m, v = gaussian_data_marginals(q.schedule, mean, std)
    a, w = q.top(x0).mean, q.top(x0).variance  # q(x_T | x_0) = N(a, w)

    def expected_log_normal(mu, var):  # E_{y ~ N(a, w)} log N(y; mu, var), summed over dims
        return (-0.5 * torch.log(2 * math.pi * var) - ((a - mu) ** 2 + w) / (2 * var)).sum(-1)

    return expected_log_normal(m[-1], v[-1]) - expected_log_normal(0.0, torch.ones_like(a))


@given(sched=schedules(max_T=10), seed=lks.seeds(), D=st.integers(1, 4))
def test_gaussian_data_with_exact_reverse_chain_has_an_exact_elbo(device, sched, seed, D):
    """(8) Data N(m, s² I), transitions the exact reverse q(x_{t-1}|x_t), prior q(x_T): p's joint
    is q's, so every Monte Carlo sample of log p(x_{0:T}) − log q(x_{1:T}|x_0) equals
    log p(x_0) = log N(x_0; m, s² I) — at any x_0, exactly (bottom-up and top-down draws alike);
    the linear-Gaussian oracle agrees."""
    q = posterior(device, sched)
    mean, std = _gaussian_data(seed, D, device)
    model = lk.LatentModel(gaussian_data_reverse(q.schedule, mean, std), q).to(device, F64)
    x0 = normals(seed, 5, D, device=device) * 2
    log_p = diag_normal(mean.expand_as(x0), std.expand_as(x0)).log_prob(x0)
    assert close(lk.exact_log_prob(model, x0), log_p, log_p.abs(), ulps=1e5)
    torch.manual_seed(seed)
    for estimator in ("bottom-up", "top-down-mc"):
        r = lk.elbo(model, x0, estimator=estimator, num_samples=8)
        size = r.reconstruction.abs() + r.prior_matching.abs() + r.layer_kl.abs().sum(-1)
        assert close(r.samples, log_p.expand_as(r.samples), size, ulps=1e4)


@given(sched=schedules(max_T=10), seed=lks.seeds(), D=st.integers(1, 4))
def test_gaussian_data_with_a_standard_prior_elbo_closed_form(device, sched, seed, D):
    """(8) Same chain with p(x_T) = N(0, I): ELBO = log q(x_0) − Δ(x_0), Δ(x_0) =
    E_{q(x_T|x_0)}[log q(x_T) − log N(x_T; 0, I)] (Gaussian, closed form).

    Exact, sample by sample: with shared draws, the analytic estimator's value under N(0, I)
    is its value under the exact prior q(x_T) minus Δ(x_0). Statistical: the bottom-up mean
    over R = 512 draws matches log q(x_0) − Δ(x_0) (z-test, Z = 4.5).
    """
    q = posterior(device, sched)
    mean, std = _gaussian_data(seed, D, device)
    exact = lk.LatentModel(gaussian_data_reverse(q.schedule, mean, std), q).to(device, F64)
    standard = lk.LatentModel(gaussian_data_reverse(q.schedule, mean, std, prior="standard"), q).to(
        device, F64
    )
    x0 = normals(seed, 3, D, device=device) * 2
    log_q0 = diag_normal(mean.expand_as(x0), std.expand_as(x0)).log_prob(x0)
    delta = _prior_mismatch(q, x0, mean, std)
    torch.manual_seed(seed)
    with_exact = lk.elbo(exact, x0, estimator="analytic", num_samples=4)
    torch.manual_seed(seed)
    with_standard = lk.elbo(standard, x0, estimator="analytic", num_samples=4)
    size = with_exact.samples.abs() + with_exact.prior_matching.abs() + delta.abs()
    assert close(with_standard.samples, with_exact.samples - delta, size, ulps=1e4)
    mc = lk.elbo(standard, x0, estimator="bottom-up", num_samples=512).samples
    assert z_ok(mc, (log_q0 - delta).expand(2, -1))


# --- identities 1–3 for ddpm -----------------------------------------------------------------


def _random_linear_reverse(seed: int, T: int, D: int, device) -> LinearGaussianReverse:
    gen = torch.Generator().manual_seed(seed)

    def u(lo, hi, *shape):
        return torch.rand(*shape, generator=gen, dtype=F64) * (hi - lo) + lo

    return LinearGaussianReverse(
        u(0.3, 1.5, T, D), u(-1, 1, T, D), u(0.1, 1.0, T, D), u(-1, 1, D), u(0.5, 2.0, D)
    ).to(device)


@given(sched=gentle_schedules(max_T=5), seed=lks.seeds(), D=st.integers(1, 3))
def test_log_p_bounds_elbo_and_iwae_with_the_exact_oracle(device, sched, seed, D):
    """(1, 3) With an exact log p(x_0) (a linear-Gaussian reverse chain: latentkit's oracle),
    ELBO ≤ IWAE_2 ≤ IWAE_8 ≤ log p in expectation — one-sided z-tests at Z = 4.5 over
    R = 256 replicates; and for the Gaussian-data chain with p(x_T) = N(0, I), exactly:
    log p(x_0) − (log q(x_0) − Δ(x_0)) = KL(q(x_{1:T}|x_0) ‖ p(x_{1:T}|x_0)) ≥ 0."""
    q = posterior(device, sched)
    T = sched["num_timesteps"]
    model = lk.LatentModel(_random_linear_reverse(seed, T, D, device), q).to(device, F64)
    x0 = normals(seed, 2, D, device=device)
    log_p = lk.exact_log_prob(model, x0).expand(2, -1)
    torch.manual_seed(seed)
    R = 256
    bound = lk.elbo(model, x0, estimator="analytic", num_samples=R).samples
    iwae2 = lk.iwae(model, x0.repeat(R, 1), 2).reshape(R, 2)
    iwae8 = lk.iwae(model, x0.repeat(R, 1), 8).reshape(R, 2)
    assert z_ok(bound, iwae2, one_sided=True)
    assert z_ok(iwae2, iwae8, one_sided=True)
    assert z_ok(iwae8, log_p, one_sided=True)

    mean, std = _gaussian_data(seed, D, device)
    standard = lk.LatentModel(gaussian_data_reverse(q.schedule, mean, std, prior="standard"), q).to(
        device, F64
    )
    elbo = diag_normal(mean.expand_as(x0), std.expand_as(x0)).log_prob(x0)
    elbo = elbo - _prior_mismatch(q, x0, mean, std)
    gap = lk.exact_log_prob(standard, x0) - elbo
    assert bool((gap >= -1e-9 * (1 + elbo.abs())).all())


@given(
    sched=schedules(max_T=8),
    seed=lks.seeds(),
    beta=lks.betas(),
    estimator=st.sampled_from(("analytic", "layer-batched")),
)
def test_beta_orders_the_bound(device, sched, seed, beta, estimator):
    """(2) ELBO_β ≤ ELBO for β ≥ 1 and ≥ for β ≤ 1, draw by draw: with analytic KL terms every
    per-draw KL sum is ≥ 0, so ELBO_β − ELBO = −(β − 1)·KL (shared draws)."""
    model = ddpm(device, seed, sched, decoder="discretized")
    x = eight_bit(seed, 3, 3, device)
    torch.manual_seed(seed)
    weighted = lk.elbo(model, x, beta=beta, estimator=estimator, num_samples=4)
    torch.manual_seed(seed)
    plain = lk.elbo(model, x, estimator=estimator, num_samples=4)
    kl = plain.reconstruction - plain.total
    assert bool((kl >= 0).all())
    assert close(weighted.total, plain.total - (beta - 1) * kl, plain.total.abs() * (1 + beta))
    if beta >= 1:
        assert bool((weighted.samples <= plain.samples + 1e-9 * plain.samples.abs()).all())
    else:
        assert bool((weighted.samples >= plain.samples - 1e-9 * plain.samples.abs()).all())


@given(sched=gentle_schedules(max_T=4), seed=lks.seeds())
def test_neural_ddpm_elbo_below_iwae_in_expectation(device, sched, seed):
    """(3) ELBO ≤ IWAE_2 ≤ IWAE_8 for a DDPM with a random ε-network, in expectation:
    one-sided z-tests at Z = 4.5 over R = 128 replicates."""
    model = ddpm(device, seed, sched, decoder="discretized", reverse_variance="posterior")
    x = eight_bit(seed, 2, 3, device)
    torch.manual_seed(seed)
    R = 128
    with torch.no_grad():
        bound = lk.elbo(model, x, estimator="analytic", num_samples=R).samples
        iwae2 = lk.iwae(model, x.repeat(R, 1), 2).reshape(R, 2)
        iwae8 = lk.iwae(model, x.repeat(R, 1), 8).reshape(R, 2)
    assert z_ok(bound, iwae2, one_sided=True)
    assert z_ok(iwae2, iwae8, one_sided=True)


# --- training losses ------------------------------------------------------------------------


@given(
    sched=schedules(min_T=2, max_T=10),
    seed=lks.seeds(),
    variance=st.sampled_from(("beta", "posterior")),
)
def test_layer_kl_is_a_weighted_simple_loss(device, sched, seed, variance):
    """With σ_t fixed, KL(q(x_{t-1}|x_t,x_0) ‖ p(x_{t-1}|x_t)) = w_t‖ε − ε_θ‖² + c_t for t ≥ 2,
    w_t = β_t⁴ / (2σ_t² α_t² β̄_t²) (seed 001, eq. 29), c_t = D/2·(β̃_t²/σ_t² − 1 − log β̃_t²/σ_t²):
    L_simple drops w_t, so it is a reweighted bound, not the ELBO. Exact."""
    model = ddpm(device, seed, sched, reverse_variance=variance)
    s, p, T, D = model.schedule, model.generative, sched["num_timesteps"], 3
    x0, noise = normals(seed, 2, 6, D, device=device).unbind(0)
    t = torch.randint(2, T + 1, (6,), generator=torch.Generator().manual_seed(seed)).to(device)
    x_t = model.q_sample(x0, t, noise)
    eps, log_var = p.eps_and_log_var(t, x_t)
    kl = model.timestep_term(x0, t, x_t, eps, log_var)
    var = log_var.exp().flatten()
    w = s.beta[t] ** 4 / (2 * var * s.alpha[t] ** 2 * s.beta_bar[t] ** 2)
    ratio = s.beta_tilde[t] ** 2 / var
    c = D / 2 * (ratio - 1 - ratio.log())
    simple = (noise - eps).pow(2).sum(-1)
    assert close(kl, w * simple + c, kl.abs() + c.abs(), ulps=1e5)


@pytest.mark.parametrize(
    "config",
    [
        {"loss": "elbo"},
        {"loss": "elbo", "timestep_sampler": "importance"},
        {"loss": "simple"},
        {"loss": "hybrid", "reverse_variance": "learned"},
        {"loss": "elbo", "reverse_variance": "learned", "schedule": "cosine"},
    ],
    ids=lambda c: "-".join(map(str, c.values())),
)
def test_images_train_and_sample(device, config):
    """The U-Net DDPM on 8-bit images: every loss is finite, reaches every parameter that it
    should, and ``latentkit.sample`` draws images on the 8-bit grid."""
    model = lk.load_model("ddpm", data_shape=(1, 8, 8), num_timesteps=12, channels=8, **config).to(
        device
    )
    torch.manual_seed(0)
    x = (torch.randint(0, 256, (4, 1, 8, 8), device=device).float() / 127.5) - 1
    for _ in range(2):  # the importance sampler records its history in training mode
        model.zero_grad()
        loss = lk.training_loss(model, x)
        assert loss.shape == (4,) and bool(torch.isfinite(loss).all())
        loss.mean().backward()
    net = model.generative.net
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    images = lk.sample(model, 3)
    assert images.shape == (3, 1, 8, 8)
    levels = (images + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    bound = lk.elbo(model, x)
    assert bound.estimator == "layer-batched" and bool(torch.isfinite(bound.total).all())


@given(config=ddpm_configs(), seed=lks.seeds())
def test_every_declared_config_trains_and_samples(device, config, seed):
    """Every config the plugin declares for latentkit's checks (T = 1 included): the training
    loss is finite with finite gradients, samples are finite, and a learned σ_t² stays
    between β̃_t² and β_t² (a conditional config: given classes 0, 1, 2)."""
    model = lk.load_model("ddpm", **config)
    lks.randomize_parameters(model, seed, 0.5)
    model = model.to(device, F64)
    if model.condition_spec is not None:
        model = model.given(torch.arange(3, device=device))
    x = lk.sample(model, 3)
    assert bool(torch.isfinite(x).all())
    loss = lk.training_loss(model, x)
    assert loss.shape == (3,) and bool(torch.isfinite(loss).all())
    loss.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    s, T = model.schedule, config["num_timesteps"]
    t = torch.arange(1, T + 1, device=device).repeat_interleave(3)
    _, log_var = model.generative.eps_and_log_var(t, x.repeat(T, *[1] * (x.ndim - 1)))
    lower = s.gather(s.log_sigma_sq_lower, t, log_var).expand_as(log_var)
    upper = s.gather(s.log_sigma_sq_upper, t, log_var).expand_as(log_var)
    slack = 1e-12 * (1 + lower.abs() + upper.abs())
    assert bool((log_var >= torch.minimum(lower, upper) - slack).all())
    assert bool((log_var <= torch.maximum(lower, upper) + slack).all())
