"""``clip_denoised``: the reverse mean at x̂_0 held in the data's range [−1, 1].

Checked against the DDPM paper's own notation (ᾱ_t = Π(1 − β_t), eq. 7's posterior mean),
computed here from the paper's β_t in float64, not from the plugin's tables.
"""

from __future__ import annotations

import pytest
import torch

import latentkit as lk

T = 40  # the paper's end β_T = 0.02 · 1000/T = 0.5 stays under the 0.999 cap


def model(**config) -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model("ddpm", data_shape=(6,), hidden=(16,), num_timesteps=T, **config).double()


def paper_mean(t: int, x_t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Eq. 7 of the DDPM paper at x̂_0 = clip((x_t − √(1−ᾱ_t) ε)/√ᾱ_t), linear β from 1e-4 to
    0.02 over 1000 steps rescaled to T (uncapped at this T; the plugin's ``linear`` schedule)."""
    beta = torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=torch.float64)
    abar = torch.cumprod(1 - beta, 0)
    b, ab = beta[t - 1], abar[t - 1]
    ab_prev = abar[t - 2] if t >= 2 else torch.tensor(1.0, dtype=torch.float64)
    x0 = ((x_t - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
    return ab_prev.sqrt() * b / (1 - ab) * x0 + (1 - b).sqrt() * (1 - ab_prev) / (1 - ab) * x_t


@pytest.mark.parametrize("t", [1, 2, 7, T])
def test_clipped_mean_is_the_papers_posterior_mean_at_the_clipped_x0(t):
    p = model(clip_denoised=True).generative
    torch.manual_seed(t)
    x_t, eps = torch.randn(64, 6, dtype=torch.float64) * 3, torch.randn(64, 6, dtype=torch.float64)
    # float64 round-off of a handful of operations on values of order 10
    torch.testing.assert_close(p.mean(t, x_t, eps), paper_mean(t, x_t, eps), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t", [2, 7, T])
def test_off_the_boundary_the_clipped_mean_is_the_default_mean(t):
    clipped, plain = model(clip_denoised=True).generative, model().generative
    m = plain.schedule.exact
    x0 = torch.rand(64, 6, dtype=torch.float64) * 1.8 - 0.9  # inside [−1, 1]
    eps = torch.randn(64, 6, dtype=torch.float64)
    x_t = m["alpha_bar"][t] * x0 + m["beta_bar"][t] * eps
    got = clipped.mean(t, x_t, eps)
    torch.testing.assert_close(got, plain.mean(t, x_t, eps), rtol=1e-10, atol=1e-12)
    # and where x̂_0 leaves [−1, 1], the two differ
    far = x_t + 5 * m["alpha_bar"][t]
    assert (clipped.mean(t, far, eps) - plain.mean(t, far, eps)).abs().max() > 1e-3


def test_per_example_timesteps_gather_the_clipped_rows():
    p = model(clip_denoised=True).generative
    t = torch.tensor([1, 5, T, 9])
    x_t, eps = torch.randn(4, 6, dtype=torch.float64) * 3, torch.randn(4, 6, dtype=torch.float64)
    rows = torch.stack([p.mean(int(s), x_t[i : i + 1], eps[i : i + 1])[0] for i, s in enumerate(t)])
    torch.testing.assert_close(p.mean(t, x_t, eps), rows, rtol=1e-12, atol=1e-12)


def test_the_bound_and_samples_use_the_clipped_mean():
    m = model(clip_denoised=True, levels=4)
    x = torch.tensor([[-1.0, -1 / 3, 1 / 3, 1.0, 1.0, -1.0]], dtype=torch.float64).repeat(3, 1)
    assert torch.isfinite(lk.elbo(m, x).total).all()
    torch.manual_seed(1)
    _, latents = lk.sample(m, 50, return_latents=True)
    # every reverse mean's x̂_0 is in [−1, 1], so the last latent's mean is too
    assert m.generative.mean(1, latents[0], torch.randn_like(latents[0]) * 10).abs().max() <= 1


def test_clip_denoised_is_refused_without_a_bounded_data_range():
    with pytest.raises(lk.ConfigError, match="clip_denoised.*discretized.*'gaussian'"):
        lk.load_model("ddpm", data_shape=(4,), decoder="gaussian", clip_denoised=True)
    with pytest.raises(lk.ConfigError, match="(?i)true or false.*clip_denoised"):
        lk.load_model("ddpm", data_shape=(4,), clip_denoised=1)


# ``eps_skip``: ε_θ = β̄_t x_t + the network's output ----------------------------------------


def twins(**config) -> tuple[lk.LatentModel, lk.LatentModel]:
    """The model with and without ``eps_skip``, the same weights (moved off their zero init)."""
    plain, skip = model(**config), model(eps_skip=True, **config)
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.3 * torch.randn_like(p))
    skip.load_state_dict(plain.state_dict())
    return plain, skip


@pytest.mark.parametrize("t", [1, 2, 17, T])
def test_eps_skip_adds_the_papers_beta_bar_times_x_t(t):
    plain, skip = twins()
    beta = torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=torch.float64)
    beta_bar = (1 - torch.cumprod(1 - beta, 0)[t - 1]).sqrt()  # √(1 − ᾱ_t), paper notation
    z = torch.randn(5, 6, dtype=torch.float64)
    got, _ = skip.generative.eps_and_log_var(t, z)
    want, _ = plain.generative.eps_and_log_var(t, z)
    torch.testing.assert_close(got, want + beta_bar * z, rtol=1e-12, atol=1e-12)


def test_eps_skip_with_guidance_adds_it_once():
    plain, skip = twins(classes=3)
    c, z, t = (
        torch.tensor([0, 2, 1]),
        torch.randn(3, 6, dtype=torch.float64),
        torch.tensor([3, 9, T]),
    )
    (beta_bar,) = skip.generative.skip_rows.rows(t, z)
    for w in (0.0, 2.0):
        got, _ = skip.given(c, guidance=w).generative.eps_and_log_var(t, z)
        want, _ = plain.given(c, guidance=w).generative.eps_and_log_var(t, z)
        torch.testing.assert_close(got, want + beta_bar * z, rtol=1e-12, atol=1e-12)


def test_eps_skip_trains_and_its_bound_is_finite():
    m = model(eps_skip=True, levels=4)
    x = torch.tensor([[-1.0, -1 / 3, 1 / 3, 1.0, 1.0, -1.0]], dtype=torch.float64).repeat(3, 1)
    loss = lk.training_loss(m, x)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(lk.elbo(m, x).total).all()
    with pytest.raises(lk.ConfigError, match="(?i)true or false.*eps_skip"):
        lk.load_model("ddpm", data_shape=(4,), eps_skip="yes")
