"""The continuous-time figure of a composed model with a ``vdm`` prior
(``latentkit.composition.figures``): the bound training minimises, beside the T = 12 chain's.

Statistical checks are z-tests at Z = 4.5 standard errors at a fixed seed."""

from __future__ import annotations

import math

import torch

import latentkit as lk
from latentkit.composition import compose
from latentkit.composition.figures import continuous_figures

Z = 4.5
F64 = torch.float64


def _parts(**prior_options):
    torch.manual_seed(0)
    outer = lk.load_model("vae", data_shape=(6,), latent_dim=3, hidden=(8,)).double()
    prior = lk.load_model(
        "vdm", data_shape=(3,), decoder="gaussian", hidden=(8,), fourier_exponents=(),
        gamma_min=-13.3, **prior_options,
    ).double()  # fmt: skip
    return outer, prior


def test_an_untrained_skip_prior_gives_the_plain_vaes_bound():
    """With an untrained ``eps_skip`` prior (N(0, I) to within ~1e-5 nats at γ_min = −13.3;
    ``tests/test_vdm_eps_skip.py``), the figure is the outer VAE's own −ELBO: z-test of the
    two means over the same 300 examples (each ± its standard error over examples, which
    bounds the paired one's). The plain VAE's prior term is analytic; any slip of the prior's
    sign or scale moves the figure by tens of nats."""
    outer, prior = _parts(eps_skip=True, normal_part="exact")
    model = compose(outer, prior=prior)
    x = torch.randn(300, 6, dtype=F64)
    fig = continuous_figures(model, x, discrete=False, seed=1)["continuous"]
    torch.manual_seed(2)
    with torch.no_grad():
        plain = -lk.elbo(outer, x, num_samples=16).total
    se = fig["nll_nats"]["stderr"] + float(plain.std()) / math.sqrt(300)
    assert abs(fig["nll_nats"]["mean"] - float(plain.mean())) < Z * se
    assert fig["bits_per_dim"] is None and fig["num_examples"] == 300


def test_the_figure_is_the_objectives_bound_and_leaves_the_random_stream_alone():
    """With a trained-looking prior (random weights), the figure's mean is the composed
    objective's (with the prior's continuous bound) over the same examples (z-test), it
    is reproducible from its seed, and the caller's random stream is as it was."""
    from latentkit.composition import composed_objective

    outer, prior = _parts()
    for p in prior.parameters():
        p.data.normal_(0, 0.3)
    model = compose(outer, prior=prior)
    x = torch.randn(200, 6, dtype=F64)
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    fig = continuous_figures(model, x, discrete=True, seed=4)["continuous"]
    assert torch.equal(torch.random.get_rng_state(), before)
    again = continuous_figures(model, x, discrete=True, seed=4)["continuous"]
    assert again["nll_nats"] == fig["nll_nats"]
    objective = composed_objective(model, prior_objective="continuous")
    with torch.no_grad():
        loss = torch.stack([objective(model, x) for _ in range(16)]).mean(0)
    se = fig["nll_nats"]["stderr"] + float(loss.std()) / math.sqrt(200)
    assert abs(fig["nll_nats"]["mean"] - float(loss.mean())) < Z * se
    bits = fig["bits_per_dim"]["mean"] * 6 * math.log(2)
    assert abs(bits - fig["nll_nats"]["mean"]) < 1e-9 * abs(bits)


def test_each_examples_draws_are_spread_over_t(monkeypatch):
    """Each example's 16 draws take t one in each 1/16 of [0, 1) (the prior's low-discrepancy
    t over tiled copies: gaps of exactly 1/16 between its sorted t's, around the circle); with
    adjacent copies its t's would lie within 16/(16 n) of each other, and its mean keep most
    of a single draw's variance (on the MNIST model: ± 3.85 against ± 0.77 nats). The rows
    the objective sees are matched to their examples, and the t the prior drew at each row."""
    import latentkit.registry as registry
    from latentkit.composition.figures import continuous_values

    outer, prior = _parts()
    model = compose(outer, prior=prior)
    core, rows, times = prior.generative.core, [], []
    original_elbo, original_make = core.elbo, registry.make_objective

    def spy_elbo(*args, **kwargs):
        out = original_elbo(*args, **kwargs)
        times.append(out.t)
        return out

    def spy_make(name, *args, **kwargs):
        objective = original_make(name, *args, **kwargs)
        if name != "composed":
            return objective
        return lambda m, x, *rest: (rows.append(x), objective(m, x, *rest))[1]

    core.elbo = spy_elbo
    monkeypatch.setattr(registry, "make_objective", spy_make)
    x = torch.randn(5, 6, dtype=F64)
    continuous_values(model, x, seed=5, batch_size=5, t_draws=16)
    (seen,), (t,) = rows, times
    example = (seen.unsqueeze(1) == x.unsqueeze(0)).all(-1).int().argmax(-1)  # each row's
    for i in range(5):
        mine = t[example == i].sort().values
        assert len(mine) == 16
        gaps = torch.diff(mine, append=mine[:1] + 1)
        torch.testing.assert_close(gaps, torch.full_like(gaps, 1 / 16), rtol=0, atol=1e-12)
