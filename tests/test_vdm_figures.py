"""The vdm's likelihood figures (``latentkit_vdm.figures.likelihood_figures``) recomputed
from their definitions with the model's own public methods, at the same seed, on tiny
float64 models: each figure's mean, standard error and median in nats and bits/dim, the
per-example average over t draws, the flagged examples' prior log-density in the prior's
own standard deviations, the divergence estimator and each figure's short label.

Tolerances: the same float64 operations in the same order give the same values; 1e-12
relative (1e-9 absolute on values near 0) leaves room for a reordered sum, far below any
formula change (a factor D ln 2 = 2.77, √(D/2), or examples mixed within a mean)."""

from __future__ import annotations

import math

import torch
from latentkit_vdm.figures import ode_decoder_bound

import latentkit as lk
from latentkit.ode import ode_log_prob, prior_typical

F64 = torch.float64
D = 4
BITS = D * math.log(2.0)  # nats per bit/dim of one example
FAST = {"rtol": 1e-3, "atol": 1e-3}
"""Solver tolerances: the figures are compared with solves at the same tolerances, so the
solver's precision does not enter the comparison."""


def _close(got: float, want: float) -> bool:
    return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-9)


def _summary(nll: torch.Tensor) -> tuple[float, float, float]:
    """Mean, its standard error (sample sd / √n) and median of ``nll``."""
    n = nll.numel()
    mean = float(nll.sum()) / n
    sd = math.sqrt(float(((nll - mean) ** 2).sum()) / (n - 1))
    return mean, sd / math.sqrt(n), float(nll.median())


def _check(figure: dict, nll: torch.Tensor, *, bits: bool) -> None:
    """``figure`` holds the mean ± s.e. and median of ``nll`` (nats), and in bits/dim when
    ``bits`` (else none)."""
    mean, se, median = _summary(nll)
    assert _close(figure["nll_nats"]["mean"], mean), (figure["nll_nats"], mean)
    assert _close(figure["nll_nats"]["stderr"], se), (figure["nll_nats"], se)
    assert _close(figure["median_nll_nats"], median)
    if not bits:
        assert figure["bits_per_dim"] is None
        assert figure.get("median_bits_per_dim") is None
        return
    assert _close(figure["bits_per_dim"]["mean"], mean / BITS)
    assert _close(figure["bits_per_dim"]["stderr"], se / BITS), (figure["bits_per_dim"], se)
    assert _close(figure["median_bits_per_dim"], median / BITS)


def _model(*, random_output: bool = False, **config):
    """A tiny float64 vdm; with ``random_output`` its ε-network's zero-initialized output
    layer is drawn at random: ε̂ depends on z_t and t, so each draw of t changes an example's
    −ELBO_∞ (left at zero, ε̂ = 0: the ODE is linear and cheap to solve)."""
    torch.manual_seed(0)
    model = lk.load_model(
        "vdm", data_shape=(D,), num_timesteps=8, network="mlp", hidden=(8,), **config
    ).double()
    with torch.no_grad():
        for p in model.generative.core.net.parameters():
            if random_output and not p.any():
                p.normal_(0.0, 0.5)
    return model.eval()


def test_the_two_bounds_are_means_of_each_examples_own_bound_in_nats_and_bits():
    """8-bit data, batches of 3 over 5 examples, 3 draws of t each: −ELBO_T is
    −``lk.elbo``; −ELBO_∞ of an example is the mean of its own 3 draws of
    ``continuous_elbo`` at stratified t_j = (u + j)/3, u ~ U(0, 1) per example (the draws
    in the order the evaluation makes them). The examples' levels differ widely, so a mean
    taken across examples instead of across an example's draws changes the spread and the
    median. Bits/dim are the nats over D ln 2, the standard error too."""
    model = _model(random_output=True)
    levels = torch.tensor([[0, 0, 0, 0], [255, 255, 255, 255], [0, 255, 0, 255],
                           [128, 127, 3, 250], [40, 200, 90, 10]])  # fmt: skip
    data = (2 * levels / 255 - 1).to(F64)
    k, seed = 3, 5
    fig = model.likelihood_figures(
        data, ode_examples=0, batch_size=3, t_draws=k, num_t=4, seed=seed
    )
    disc, cont = [], []
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for x in data.split(3):
            disc.append(-lk.elbo(model, x).total)
            u = torch.rand(x.shape[0], 1, dtype=F64)
            t = torch.cat([(u[i] + torch.arange(k, dtype=F64)) / k for i in range(x.shape[0])])
            draws = -model.continuous_elbo(x.repeat_interleave(k, dim=0), t=t).total
            cont.append(torch.stack([draws[i * k : (i + 1) * k].mean() for i in range(len(x))]))
    disc, cont = torch.cat(disc), torch.cat(cont)
    assert fig["discrete_data"] is True
    _check(fig["discrete"], disc, bits=True)
    _check(fig["continuous"], cont, bits=True)
    assert fig["discrete"]["label"] == "−ELBO_T (T=8)" and fig["discrete"]["num_timesteps"] == 8
    assert fig["continuous"]["label"] == "−ELBO_∞"
    assert fig["ode"] is None and fig["ode_direct"] is None


def _push_row_off(monkeypatch, model, row: int, rate: float = 5.0) -> None:
    """The probability-flow drift with +``rate``·z added on batch row ``row``: that
    example's path ends far out in the prior's tail, thousands of nats above its bound."""
    flow = model.generative.probability_flow

    def drift(t, z):
        out = flow(t, z).clone()
        out[row] += rate * z[row]
        return out

    monkeypatch.setattr(model.generative, "probability_flow", drift)


def test_ode_figures_on_real_data_are_in_nats_with_the_prior_in_its_own_sds(monkeypatch):
    """A Gaussian decoder on real data: no figure has bits/dim. The two ODE figures are
    −``ode_decoder_bound`` and −``ode_log_prob(x).log_density`` (exact divergence, its
    noise from a generator seeded with the evaluation's seed, drawn in the evaluation's
    order); an example is flagged when its density figure exceeds its −ELBO_T by more than
    the margin, with (log p_prior(z(1)) − m)/s, m and s the mean and sd of
    ``prior_typical``."""
    model = _model(decoder="gaussian")
    data = torch.randn(4, D, generator=torch.Generator().manual_seed(2), dtype=F64)
    _push_row_off(monkeypatch, model, row=1)
    seed = 3
    fig = model.likelihood_figures(data, ode_examples=3, batch_size=4, num_t=4, t_draws=2,
                                   seed=seed, **FAST)  # fmt: skip
    torch.manual_seed(seed)
    with torch.no_grad():
        bound = -lk.elbo(model, data).total[:3]
        gen = torch.Generator().manual_seed(seed)
        ode = -ode_decoder_bound(model, data[:3], generator=gen, **FAST)
        direct = ode_log_prob(model, data[:3], generator=gen, **FAST)
    mean, sd = prior_typical(model, seed)
    assert fig["discrete_data"] is False
    for key in ("discrete", "continuous"):
        assert fig[key]["bits_per_dim"] is None and "median_bits_per_dim" not in fig[key]
    _check(fig["ode"], ode, bits=False)
    _check(fig["ode_direct"], -direct.log_density, bits=False)
    excess = (-direct.log_density - bound) / BITS
    flagged = [i for i in range(3) if excess[i] > 1.0]
    assert flagged == [1]  # the pushed example, alone
    got = fig["ode_direct"]["flagged"]
    assert [f["index"] for f in got] == flagged
    want_sds = (float(direct.prior_log_prob[1]) - mean) / sd
    assert want_sds < -10 and _close(got[0]["prior_sds"], want_sds)
    assert fig["ode"]["divergence"] == fig["ode_direct"]["divergence"] == direct.divergence
    assert direct.divergence == "exact"
    assert fig["ode"]["label"] == "ODE (decoder)" and fig["ode_direct"]["label"] == "ODE (at x)"
    assert fig["ode_direct"]["bound"] == "exact up to solver tolerance"


def test_the_ode_figures_name_the_divergence_estimator_they_used():
    model = _model()
    data = (2 * torch.randint(0, 256, (2, D), generator=torch.Generator().manual_seed(4)) / 255
            - 1).to(F64)  # fmt: skip
    fig = model.likelihood_figures(data, ode_examples=2, num_t=4, t_draws=1,
                                   divergence="hutchinson", **FAST)  # fmt: skip
    assert fig["ode"]["divergence"] == fig["ode_direct"]["divergence"] == "hutchinson"
