"""The continuous-time model's likelihood essentials (``docs/continuous.md``, "Likelihood
essentials"; Kingma et al. 2021, VDM): Fourier features of z_t, conditioning on normalised
γ(t), and the variance-minimising gradient of a learned schedule's interior.

float64 throughout; the tolerances are stated where they are not round-off.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from latentkit_ddpm.networks import timestep_embedding
from latentkit_vdm.networks import ContinuousEps, LinearEps
from latentkit_vdm.schedule import LearnedLogSNR

import latentkit as lk
from latentkit.config import unstructure_config
from latentkit.diffusion import alpha_bar_sq, beta_bar_sq
from latentkit.trained import load_trained_model

F64 = torch.float64
Z = 4.5  # two-sided z-test: false alarm 6.8e-6 under the normal approximation


def _model(**kw):
    cfg = dict(data_shape=(3,), num_timesteps=4, hidden=(16,), decoder="gaussian")
    cfg.update(kw)
    torch.manual_seed(0)
    return lk.load_model("vdm", **cfg).double()


def _perturb(params, seed, scale):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _interior(schedule: LearnedLogSNR):
    return [getattr(schedule, name) for name in schedule.INTERIOR]


def _inner_inputs(net: ContinuousEps, z, t):
    """What ``net`` hands its inner DDPM network: (x, the time embedding's argument)."""
    seen = []
    handle = net.inner.register_forward_pre_hook(lambda module, args: seen.append(args))
    try:
        with torch.no_grad():
            out = net(z, t)
    finally:
        handle.remove()
    return seen[0][0], seen[0][1], out


# ---- the network's input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_shape", "network"), [((3,), "mlp"), ((1, 4, 4), "mlp"), ((2, 4, 4), "unet")]
)
def test_fourier_features_are_sin_and_cos_of_2_to_the_n_pi_z_joined_to_z(data_shape, network):
    """The inner network receives [z, sin(2^n₁ π z), cos(2^n₁ π z), sin(2^n₂ π z), …]: for the
    MLP as blocks of D along the flattened feature axis, for the U-Net as extra channels; it
    is built that wide (D·5 inputs, C·5 channels for two exponents) and ε̂ keeps z's shape."""
    exponents = (3, 5)
    model = _model(data_shape=data_shape, network=network, fourier_exponents=exponents, channels=4)
    net = model.core.net
    z = torch.randn(6, *data_shape, dtype=F64)
    t = torch.rand(6, dtype=F64)
    x, _, out = _inner_inputs(net, z, t)
    parts = [z]
    for n in exponents:
        parts += [torch.sin(2**n * math.pi * z), torch.cos(2**n * math.pi * z)]
    if network == "unet":
        want = torch.cat(parts, dim=1)
        assert net.inner.conv_in.in_channels == 5 * data_shape[0]
    else:
        want = torch.cat([p.flatten(1) for p in parts], dim=1)
        x = x.flatten(1)
        assert net.inner.layers[0].in_features == 5 * math.prod(data_shape)
    assert x.shape == want.shape
    assert torch.allclose(x, want, rtol=0, atol=1e-12)
    assert out.shape == z.shape
    plain = _model(data_shape=data_shape, network=network, fourier_exponents=(), channels=4)
    x, _, _ = _inner_inputs(plain.core.net, z, t)
    assert torch.equal(x, z)


@pytest.mark.parametrize("schedule", ["cosine", "learned"])
def test_time_embedding_sees_1000_times_gamma_normalised_by_the_configured_ends(schedule):
    """With ``time_input="gamma"`` the embedding's argument is 1000 (γ(t) − γ_min⁰)/(γ_max⁰ −
    γ_min⁰) with the config's ends — also after a learned schedule's own ends have moved —
    which is not 1000 t for these schedules; with ``time_input="t"`` it is 1000 t."""
    ends = (-7.0, 3.0)
    model = _model(schedule=schedule, gamma_min=ends[0], gamma_max=ends[1])
    if schedule == "learned":
        _perturb(model.core.log_snr.parameters(), 4, 0.8)  # ends and interior both move
        s = model.core.log_snr
        assert abs(float(s.gamma_min.detach()) - ends[0]) > 0.1
    t = torch.linspace(0.02, 0.98, 7, dtype=F64)
    z = torch.randn(7, 3, dtype=F64)
    _, arg, _ = _inner_inputs(model.core.net, z, t)
    gamma, _ = model.core.gamma(t)
    want = 1000 * (gamma - ends[0]) / (ends[1] - ends[0])
    assert torch.allclose(arg, want, rtol=1e-13, atol=1e-10)
    assert float((arg - 1000 * t).abs().max()) > 10.0  # γ-normalised is not t here
    model_t = _model(schedule=schedule, gamma_min=ends[0], gamma_max=ends[1], time_input="t")
    _, arg, _ = _inner_inputs(model_t.core.net, z, t)
    assert torch.allclose(arg, 1000 * t, rtol=1e-15)


def test_the_linear_network_embeds_the_same_argument_and_takes_no_features():
    """``network="linear"`` embeds 1000·normalised γ(t) too (its a, b are functions of the SNR)
    and takes no Fourier features (it must stay linear in z for the exact oracle)."""
    ends = (-7.0, 3.0)
    model = _model(network="linear", schedule="cosine", gamma_min=ends[0], gamma_max=ends[1])
    net = model.core.net
    assert isinstance(net, LinearEps)
    _perturb(net.parameters(), 2, 0.5)
    seen = []
    net.proj.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    t = torch.linspace(0.05, 0.95, 5, dtype=F64)
    with torch.no_grad():
        net.coefficients(t)
    gamma, _ = model.core.gamma(t)
    want = timestep_embedding(1000 * (gamma - ends[0]) / (ends[1] - ends[0]), net.embed_dim)
    assert torch.allclose(seen[0], want, rtol=0, atol=1e-12)
    assert model.generative.linear_gaussian() is not None


def test_with_gamma_conditioning_the_diffusion_term_is_free_of_the_schedules_interior():
    """VDM §5: ∫₀¹ ½ γ'(t) ‖ε − ε̂(z_t; γ(t))‖² dt = ∫ ½ ‖ε − ε̂(z_γ; γ)‖² dγ over [γ_min, γ_max],
    so for fixed x and ε it does not change when a learned schedule's interior does (ends
    kept); conditioned on t it does. Midpoint rule on n = 10,000 t; allowed: 8/3 of the
    Richardson estimates |I_n − I_2n| of the two quadrature errors."""

    def integral(model, n):
        t = (torch.arange(n, dtype=F64) + 0.5) / n
        with torch.no_grad():
            return model.core.diffusion_integrand(x.expand(n, 3), t, eps.expand(n, 3)).mean()

    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(1, 3, generator=g, dtype=F64), torch.randn(1, 3, generator=g, dtype=F64)
    change = {}
    for time_input in ("gamma", "t"):
        model = _model(schedule="learned", gamma_min=-6.0, gamma_max=4.0, time_input=time_input)
        _perturb(model.core.net.parameters(), 3, 0.3)
        before = [integral(model, n) for n in (10_000, 20_000)]
        _perturb(_interior(model.core.log_snr), 5, 1.0)
        after = [integral(model, n) for n in (10_000, 20_000)]
        allowed = 8 / 3 * (abs(before[0] - before[1]) + abs(after[0] - after[1]))
        change[time_input] = (float(abs(after[0] - before[0])), float(allowed))
    assert change["gamma"][0] < change["gamma"][1], change
    assert change["t"][0] > 100 * change["t"][1], change


# ---- the variance-minimising gradient --------------------------------------------------------


def _learned_case():
    model = _model(schedule="learned", gamma_min=-6.0, gamma_max=4.0)
    _perturb(model.parameters(), 3, 0.3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, generator=g, dtype=F64)
    t = torch.rand(8, generator=g, dtype=F64)
    return model, x, t


def _elbo_at(model, x, t, schedule_gradient="elbo"):
    torch.manual_seed(7)  # the same z_0 and ε every call: common random numbers
    return model.core.elbo(x, t=t, schedule_gradient=schedule_gradient)


def _gradients(model, x, t, schedule_gradient):
    model.zero_grad()
    (-_elbo_at(model, x, t, schedule_gradient).total.mean()).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_variance_gradient_of_the_interior_is_the_gradient_of_mean_squared_diffusion_term():
    """With ``schedule_gradient="variance"``, −ELBO_∞'s batch mean sends each interior
    parameter of the learned schedule (w1, b1, w2, b2, w3) ∂/∂η mean_i L_diff,i², checked
    against central differences at every element of the scalars and 16 spread elements of
    each 64-vector (h = 1e-4; x, t, z_0 and ε held fixed):
    allowed 1e4 ulps of mean L² over h (the differences' round-off; their truncation
    h² f'''/6 is far smaller), while the plain ELBO's gradient differs by O(1)."""
    model, x, t = _learned_case()
    schedule = model.core.log_snr
    variance = _gradients(model, x, t, "variance")
    plain = _gradients(model, x, t, "elbo")
    h = 1e-4
    with torch.no_grad():
        value = float(_elbo_at(model, x, t).diffusion.pow(2).mean())
        allowed = 1e4 * torch.finfo(F64).eps * value / h
        for name in schedule.INTERIOR:
            p = getattr(schedule, name)
            flat = p.data.view(-1)
            picked = range(0, flat.numel(), max(1, flat.numel() // 16))
            numeric = torch.empty(len(picked), dtype=F64)
            for j, i in enumerate(picked):
                keep = float(flat[i])
                flat[i] = keep + h
                up = _elbo_at(model, x, t).diffusion.pow(2).mean()
                flat[i] = keep - h
                down = _elbo_at(model, x, t).diffusion.pow(2).mean()
                flat[i] = keep
                numeric[j] = (up - down) / (2 * h)
            key = f"generative.core.log_snr.{name}"
            got = variance[key].view(-1)[list(picked)]
            assert torch.allclose(got, numeric, rtol=1e-6, atol=allowed), name
            assert float((plain[key].view(-1)[list(picked)] - numeric).abs().max()) > 0.1, name


def test_variance_gradient_leaves_the_ends_and_the_network_the_elbos_gradient():
    """The ends (γ_min, raw span) and every ε-network weight get the bound's own gradient under
    ``schedule_gradient="variance"`` (to round-off), and the loss's value is −ELBO_∞."""
    model, x, t = _learned_case()
    variance = _gradients(model, x, t, "variance")
    plain = _gradients(model, x, t, "elbo")
    interior = {f"generative.core.log_snr.{n}" for n in LearnedLogSNR.INTERIOR}
    assert set(variance) == set(plain) and interior < set(variance)
    for name, grad in plain.items():
        if name not in interior:
            assert float(grad.abs().max()) > 0, name
            assert torch.allclose(variance[name], grad, rtol=1e-12, atol=1e-14), name
    with torch.no_grad():
        a = _elbo_at(model, x, t, "variance").total
        b = _elbo_at(model, x, t, "elbo").total
    assert torch.equal(a, b)


def test_the_continuous_objective_defaults_to_the_variance_gradient_and_evaluation_stays_plain():
    """``make_objective("continuous", model)`` uses ``schedule_gradient="variance"``;
    ``model.continuous_elbo`` (evaluation) is the plain bound, gradient included; a bad value
    is refused, naming the option."""
    model, x, _ = _learned_case()
    loss = lk.make_objective("continuous", model)
    assert loss.config.schedule_gradient == "variance"
    key = "generative.core.log_snr.w2"

    def grad_of(fn):
        model.zero_grad()
        torch.manual_seed(9)
        fn().mean().backward()
        return dict(model.named_parameters())[key].grad.clone()

    by_objective = grad_of(lambda: loss(model, x))
    by_evaluation = grad_of(lambda: -model.continuous_elbo(x).total)

    def core_grad(mode):
        return grad_of(lambda: -model.core.elbo(x, schedule_gradient=mode).total)

    assert torch.allclose(by_objective, core_grad("variance"), rtol=1e-12, atol=1e-14)
    assert torch.allclose(by_evaluation, core_grad("elbo"), rtol=1e-12, atol=1e-14)
    assert float((by_objective - by_evaluation).abs().max()) > 1e-3
    with pytest.raises(lk.ConfigError, match="schedule_gradient"):
        lk.make_objective("continuous", model, schedule_gradient="sq")
    with pytest.raises(lk.ConfigError, match="schedule_gradient"):
        model.core.diffusion_integrand(x, x[:, 0], x, schedule_gradient="sq")


class _OptimalGivenGamma(torch.nn.Module):
    """ε̂*(z; γ) = β̄ (z − ᾱ m)/(ᾱ² s² + β̄²), the optimal ε for data N(m, diag s²), from the γ
    the model hands it (so a function of the SNR alone)."""

    takes_gamma = True

    def __init__(self, mean, var):
        super().__init__()
        self.mean, self.var = mean, var

    def forward(self, z, t, gamma):
        a2, s2 = alpha_bar_sq(gamma.unsqueeze(-1)), beta_bar_sq(gamma.unsqueeze(-1))
        return s2.sqrt() * (z - a2.sqrt() * self.mean) / (a2 * self.var + s2)


def test_variance_steps_lower_the_variance_keep_the_bound_and_gamma_monotone_and_pinned():
    """100 Adam steps on the interior alone with the variance gradient (optimal γ-conditioned
    network, data N(m, diag s²) with small s², so the integrand varies over t): Var[L_diff]
    over 20,000 fixed (x, t, ε) draws falls below 3/4 of its start, its mean (the diffusion
    term, free of the interior) stays within a z-test, and γ stays increasing (γ' > 0 on 1,001
    t) and pinned to its ends (γ(0) = γ_min, γ(1) = γ_min + softplus(raw span))."""
    mean = torch.tensor([0.3, -0.2], dtype=F64)
    var = torch.tensor([0.01, 0.05], dtype=F64)
    g = torch.Generator().manual_seed(0)
    data = mean + var.sqrt() * torch.randn(4096, 2, generator=g, dtype=F64)
    model = _model(
        data_shape=(2,), network="linear", schedule="learned", gamma_min=-10.0, gamma_max=10.0
    )
    model.core.net = _OptimalGivenGamma(mean, var)
    schedule = model.core.log_snr
    draws = torch.Generator().manual_seed(11)
    xs = data[torch.randint(0, 4096, (20_000,), generator=draws)]
    ts = torch.rand(20_000, generator=draws, dtype=F64)
    noise = torch.randn(xs.shape, generator=draws, dtype=F64)

    def terms():
        with torch.no_grad():
            return model.core.diffusion_integrand(xs, ts, noise)

    before = terms()
    grid = torch.linspace(0, 1, 1001, dtype=F64)
    with torch.no_grad():
        start_profile, _ = schedule.profile(grid)
    opt = torch.optim.Adam(_interior(schedule), lr=0.05)
    loss = lk.make_objective("continuous", model)
    torch.manual_seed(1)
    for _ in range(100):
        batch = data[torch.randint(0, 4096, (64,))]
        opt.zero_grad()
        loss(model, batch).mean().backward()
        opt.step()
    after = terms()
    assert float(after.var()) < 0.75 * float(before.var())
    diff = after - before
    assert abs(float(diff.mean() / (diff.std() / math.sqrt(diff.numel())))) < Z
    with torch.no_grad():
        gamma, dgamma = schedule(grid)
        profile, _ = schedule.profile(grid)
        span = torch.nn.functional.softplus(schedule.raw_span)
    assert bool((dgamma > 0).all())
    assert torch.allclose(gamma[0], schedule.gamma_min.detach(), rtol=0, atol=1e-12)
    assert torch.allclose(gamma[-1], (schedule.gamma_min + span).detach(), rtol=0, atol=1e-12)
    assert float((profile - start_profile).abs().max()) > 0.05  # the interior did move


# ---- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"fourier_exponents": (7, 7)},
        {"fourier_exponents": (-1,)},
        {"fourier_exponents": (13,)},
        {"fourier_exponents": (7.0,)},
        {"fourier_exponents": (True,)},
        {"time_input": "snr"},
    ],
)
def test_bad_essential_values_name_the_field(values):
    (field,) = values
    with pytest.raises(lk.ConfigError, match=field):
        lk.load_model("vdm", data_shape=(3,), **values)


def test_defaults_are_the_papers_settings():
    """Fourier features at n = 7, 8 (VDM's frequencies) and γ-conditioning on by default."""
    cfg = lk.load_model("vdm", data_shape=(3,)).config
    assert cfg.fourier_exponents == (7, 8) and cfg.time_input == "gamma"


def test_the_new_fields_survive_json_and_a_checkpoint(tmp_path):
    """The config round-trips through JSON and ``lk.load_model``, and a trained checkpoint
    rebuilds the same network (same ε̂ on the same input) with the same fields."""
    kw = dict(schedule="learned", fourier_exponents=(2, 6), time_input="t", hidden=(8,))
    model = _model(**kw).float()
    restored = lk.load_model("vdm", **json.loads(json.dumps(unstructure_config(model.config))))
    assert restored.config == model.config
    torch.manual_seed(0)
    data = torch.randn(32, 3)
    cfg = lk.TrainConfig(steps=2, batch_size=8, progress=False)
    lk.Trainer(model, data, cfg, run_dir=tmp_path / "run").fit()
    loaded, _ = load_trained_model(tmp_path / "run")
    assert loaded.config == model.config
    assert loaded.config.fourier_exponents == (2, 6) and loaded.config.time_input == "t"
    z, t = torch.randn(4, 3), torch.rand(4)
    with torch.no_grad():
        assert torch.equal(loaded.core.eps(z, t), model.eval().core.eps(z, t))


def test_x_prediction_turns_the_networks_output_into_eps_and_weights_its_error_by_the_snr():
    """prediction="x": the network's output is x̂ and ε̂ = (z − ᾱ x̂)/β̄ with ᾱ, β̄ of the same
    γ(t); so ε − ε̂ = −(ᾱ/β̄)(x − x̂) and the diffusion integrand is ½ γ' e^{−γ} ‖x − x̂‖²
    (SNR = e^{−γ}), for a per-example t and a 0-d t. A linear network is refused."""
    torch.manual_seed(0)
    m = lk.load_model(
        "vdm", data_shape=(5,), hidden=(8,), prediction="x", schedule="learned"
    ).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    core = m.core
    z, t = torch.randn(4, 5, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
    g, dg = core.gamma(t)
    raw = core.net(z, t, g) if getattr(core.net, "takes_gamma", False) else core.net(z, t)
    a, s = torch.sigmoid(-g).sqrt()[:, None], torch.sigmoid(g).sqrt()[:, None]
    torch.testing.assert_close(core.eps(z, t), (z - a * raw) / s, rtol=1e-12, atol=1e-12)
    t0 = torch.tensor(0.3, dtype=torch.float64)
    torch.testing.assert_close(core.eps(z, t0), core.eps(z, t0.expand(4)), rtol=0, atol=0)

    x, noise = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    z_t = a * x + s * noise
    x_hat = core.net(z_t, t, g) if getattr(core.net, "takes_gamma", False) else core.net(z_t, t)
    expected = 0.5 * dg * torch.exp(-g) * (x - x_hat).pow(2).sum(-1)
    got = core.diffusion_integrand(x, t, noise)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    with pytest.raises(lk.ConfigError, match="prediction"):
        lk.load_model("vdm", data_shape=(5,), network="linear", prediction="x")
