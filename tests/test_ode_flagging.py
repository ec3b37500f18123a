"""The ODE figure over a data set, each example checked against its own ELBO-based bound
(``latentkit.ode.OdeFigure``, ``evaluate(..., ode_examples=N)``, ``latentkit evaluate --ode N``,
the vdm's ``likelihood_figures``): an example whose figure exceeds its bound by more than the
margin (bits/dim) is flagged and listed, never folded silently into a mean."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import latentkit as lk
from latentkit.ode import ODE_FLAG_MARGIN, OdeFigure, check_margin, ode_figure

F64 = torch.float64
D = 4
BITS = D * math.log(2.0)  # nats per bit/dim of one example


def _figure(excess_bits, *, margin=1.0, bound=10.0, ode=None):
    """An OdeFigure whose examples exceed a bound of ``bound`` nats by ``excess_bits``."""
    excess = torch.tensor(excess_bits, dtype=F64)
    values = bound + excess * BITS if ode is None else torch.tensor(ode, dtype=F64)
    n = values.numel()
    return OdeFigure(
        ode=values,
        bound=torch.full((n,), bound, dtype=F64),
        nfe=torch.arange(n) + 100,
        solve_nfe=tuple(range(100, 100 + n)),
        data_dims=D,
        margin=margin,
    )


def test_an_example_is_flagged_when_it_exceeds_its_bound_by_more_than_the_margin():
    """Flagged ⇔ (ode − bound)/(D ln 2) > margin, or not finite. 1.2 bits/dim is 0.83 nats/dim
    (flagged in bits only), 0.99 bits/dim is 2.7 nats an example (flagged only in nats per
    example), −5 bits/dim is below the bound (flagged only if the sign were dropped)."""
    f = _figure([0.5, 1.2, 0.99, -5.0, 40.0])
    assert f.flagged_mask.tolist() == [False, True, False, False, True]
    assert [e.index for e in f.flagged] == [1, 4]
    assert torch.allclose(
        f.excess_bits_per_dim, torch.tensor([0.5, 1.2, 0.99, -5.0, 40.0], dtype=F64)
    )
    nonfinite = _figure([0.0, 0.0, 0.0], ode=[10.0, math.nan, math.inf])
    assert nonfinite.flagged_mask.tolist() == [False, True, True]


def test_the_margin_is_strict_and_zero_flags_only_what_is_above_the_bound():
    """margin = 0: an example exactly at its bound is not flagged, one ulp above it is."""
    above = math.nextafter(10.0, 11.0)
    f = _figure([0.0, 0.0], margin=0.0, ode=[10.0, above])
    assert f.flagged_mask.tolist() == [False, True]


def test_the_json_reports_every_example_and_without_the_flagged():
    """The mean ± s.e. and median with and without the flagged, in nats and bits/dim; each
    flagged example with its index, both figures, its excess and its solve's NFE."""
    f = _figure([0.1, 3.0, -0.2, 0.3, 7.0])
    out = f.to_json(bits=True)
    values = f.ode
    kept = values[[0, 2, 3]]
    assert out["num_examples"] == 5 and out["without_flagged"]["num_examples"] == 3
    assert math.isclose(out["nll_nats"]["mean"], float(values.mean()), rel_tol=1e-12)
    assert math.isclose(out["median_nll_nats"], float(values.median()), rel_tol=1e-12)
    w = out["without_flagged"]
    assert math.isclose(w["nll_nats"]["mean"], float(kept.mean()), rel_tol=1e-12)
    assert math.isclose(w["nll_nats"]["stderr"], float(kept.std() / math.sqrt(3)), rel_tol=1e-12)
    assert math.isclose(w["median_nll_nats"], float(kept.median()), rel_tol=1e-12)
    assert math.isclose(w["bits_per_dim"]["mean"], float(kept.mean()) / BITS, rel_tol=1e-12)
    assert math.isclose(w["median_bits_per_dim"], float(kept.median()) / BITS, rel_tol=1e-12)
    assert math.isclose(out["bits_per_dim"]["mean"], float(values.mean()) / BITS, rel_tol=1e-12)
    assert [e["index"] for e in out["flagged"]] == [1, 4]
    first = out["flagged"][0]
    assert first["nfe"] == 101 and first["bound_nats"] == 10.0
    assert math.isclose(first["ode_nats"], 10.0 + 3.0 * BITS, rel_tol=1e-12)
    assert math.isclose(first["excess_bits_per_dim"], 3.0, rel_tol=1e-12)
    assert out["margin_bits_per_dim"] == 1.0
    assert out["nfe"] == {"total": sum(range(100, 105)), "per_solve": [100, 101, 102, 103, 104]}
    assert out["warning"].startswith("ODE figure: 2 of 5 examples flagged")
    assert "#1 (" in out["warning"] and "#4 (" in out["warning"] and "NFE 104" in out["warning"]
    json.dumps(out)
    plain = f.to_json(bits=False)
    assert plain["bits_per_dim"] is None and plain["without_flagged"]["bits_per_dim"] is None
    assert _figure([0.1, 0.2]).to_json(bits=True)["warning"] is None


def test_the_warning_lists_at_most_ten_and_counts_the_rest():
    f = _figure([5.0] * 13)
    line = f.warning(bits=True)
    assert "#9 (" in line and "#10 (" not in line and "and 3 more" in line
    assert "mean" in line and "— without" in line  # every example flagged: no mean without


FAST = {"rtol": 1e-3, "atol": 1e-3}
"""Solver tolerances of these tests: a vdm trained even one step takes ~10³ drift evaluations
at the default 1e-5 (about 300 here); the mechanics, not the figure's precision, are tested."""


def _tiny_trained_vdm():
    """A 4-dimensional vdm on 8-bit data (network mlp), 3 Adam steps of its objective."""
    torch.manual_seed(0)
    model = lk.load_model(
        "vdm", data_shape=(D,), num_timesteps=8, network="mlp", hidden=(16,)
    ).double()
    levels = torch.randint(0, 256, (64, D), generator=torch.Generator().manual_seed(1))
    data = (2 * levels / 255 - 1).double()
    loss = lk.make_objective(*model.default_objective[:1], model, **model.default_objective[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(3):
        opt.zero_grad()
        loss(model, data[16 * step : 16 * step + 16], step).mean().backward()
        opt.step()
    return model.eval(), data


EXPAND = 10.0
"""The injected outlier: an extra drift +c z on one example, c = 10. Its z grows by about
e^(c − ½ γ' β̄²) over [0, 1] (the schedule's own contraction ½ γ' β̄² is at most ~10 here), so
its −log p gains ½‖z(1)‖² ≫ 10³ nats at the prior, against c D = 40 nats of divergence:
thousands of bits/dim, far past the loose −ELBO_T of these barely trained models (their ODE
figure lies 30-50 bits/dim below it)."""


def _expand(f, z, row: int):
    """The drift ``f`` with +c z added on batch row ``row``."""
    extra = torch.zeros_like(f)
    extra[row] = EXPAND * z[row]
    return f + extra


def _perturb_row(monkeypatch, model, row: int):
    """The model's drift with +c z added on batch row ``row`` (:data:`EXPAND`)."""
    flow = model.generative.probability_flow

    def perturbed(t, z):
        return _expand(flow(t, z), z, row)

    monkeypatch.setattr(model.generative, "probability_flow", perturbed)


def test_evaluate_reports_the_ode_figure_and_flags_an_injected_outlier(monkeypatch):
    """evaluate(ode_examples=6): the figure is −log_prob_bound of ode_log_prob at the same
    seed (dequantized, 8-bit bins), none flagged; with example 2's drift perturbed, example 2
    alone is flagged and the mean without it is the mean of the other five."""
    model, data = _tiny_trained_vdm()
    report = lk.evaluate(model, data[:8], iwae_k=0, ode_examples=6, seed=3, ode_options=FAST)
    o = report.ode
    assert o is not None and o.ode.shape == (6,) and not o.flagged
    gen = torch.Generator().manual_seed(3)
    direct = lk.ode_log_prob(model, data[:6], dequantize=True, generator=gen, **FAST)
    assert torch.equal(o.ode, -direct.log_prob_bound.double())
    assert torch.allclose(o.bound, -report.per_example["elbo"][:6].double())
    assert o.solve_nfe == (direct.nfe,) and o.reference == "−ELBO"
    js = report.to_json()["ode"]
    assert js["num_examples"] == 6 and js["flagged"] == [] and js["warning"] is None
    assert js["nfe"]["total"] == direct.nfe and js["bits_per_dim"]["mean"] > 0

    _perturb_row(monkeypatch, model, row=2)
    bad = lk.evaluate(model, data[:8], iwae_k=0, ode_examples=6, seed=3, ode_options=FAST).ode
    assert [e.index for e in bad.flagged] == [2]
    assert bad.excess_bits_per_dim[2] > ODE_FLAG_MARGIN
    js = bad.to_json(bits=True)
    others = bad.ode[[0, 1, 3, 4, 5]]
    assert math.isclose(js["without_flagged"]["nll_nats"]["mean"], float(others.mean()))
    assert js["nll_nats"]["mean"] > js["without_flagged"]["nll_nats"]["mean"]
    assert js["flagged"][0]["index"] == 2 and js["flagged"][0]["nfe"] == bad.solve_nfe[0]


def test_evaluate_compares_with_the_iwae_bound_when_it_has_one():
    """With IWAE-k computed, each example's ODE figure is compared with its −IWAE_k (the
    tighter bound), and the report says so."""
    model, data = _tiny_trained_vdm()
    report = lk.evaluate(model, data[:4], iwae_k=2, ode_examples=3, ode_options=FAST)
    assert report.ode.reference == "−IWAE_2"
    assert torch.equal(report.ode.bound, -report.per_example["iwae"][:3].double())
    assert report.to_json()["ode"]["reference"] == "−IWAE_2"


def test_evaluate_refuses_a_bad_ode_request_before_any_work():
    model, data = _tiny_trained_vdm()
    vae = lk.load_model("vae", data_shape=(D,), latent_dim=2)
    with pytest.raises(lk.InputError, match="ode_examples = 2: .*probability_flow"):
        lk.evaluate(vae, torch.rand(4, D), ode_examples=2)
    with pytest.raises(lk.ConfigError, match="ode_margin must be a finite number ≥ 0"):
        lk.evaluate(model, data, ode_examples=2, ode_margin=-1.0)
    with pytest.raises(lk.ConfigError, match="rtol = 1e-20 is below"):
        lk.evaluate(model, data, ode_examples=2, ode_options={"rtol": 1e-20})
    with pytest.raises(lk.ConfigError, match=r"\['bin_width'\] are set by the evaluation"):
        lk.evaluate(model, data, ode_examples=2, ode_options={"bin_width": 0.1})
    with pytest.raises(lk.ConfigError, match="ode_examples must be an int"):
        lk.evaluate(model, data, ode_examples=1.5)
    assert check_margin(0) == 0.0  # a margin of 0 flags anything above the bound


def test_ode_figure_needs_one_bound_per_example():
    model, data = _tiny_trained_vdm()
    with pytest.raises(lk.ShapeError, match=r"bound must be \[N\] = \[4\]"):
        ode_figure(model, data[:4], torch.zeros(3), discrete=True)


def test_vdm_likelihood_figures_flag_against_the_discrete_bound(monkeypatch):
    """The vdm's two ODE figures are each checked against the example's own −ELBO_T: with
    row 1 of every batch of 2 perturbed, examples 1 and 3 are flagged in both, each with its
    own solve's NFE and its −ELBO_T (the first batch's is the first draw after the seed)."""
    model, data = _tiny_trained_vdm()
    torch.manual_seed(7)
    first_batch = -lk.elbo(model, data[:2]).total.detach().double()
    _perturb_row(monkeypatch, model, row=1)
    fig = model.likelihood_figures(
        data[:6], ode_examples=4, batch_size=2, num_t=4, t_draws=2, ode_margin=0.5, seed=7, **FAST
    )
    for key in ("ode", "ode_direct"):
        f = fig[key]
        assert f["reference"] == "−ELBO_T, T = 8" and f["margin_bits_per_dim"] == 0.5
        assert [e["index"] for e in f["flagged"]] == [1, 3], key
        assert [e["nfe"] for e in f["flagged"]] == f["nfe"]["per_solve"]
        assert math.isclose(f["flagged"][0]["bound_nats"], float(first_batch[1]), rel_tol=1e-12)
        assert f["without_flagged"]["num_examples"] == 2 and f["num_examples"] == 4
        assert f["warning"].startswith("ODE figure: 2 of 4 examples flagged")
    json.dumps(fig)
    with pytest.raises(lk.ConfigError, match="ode_margin"):
        model.likelihood_figures(data[:6], ode_examples=2, ode_margin=math.nan)


def test_latentkit_evaluate_ode_prints_the_flagged_example_and_writes_it(tmp_path, monkeypatch):
    """``latentkit evaluate RUN --ode 3``: report JSON has the ODE figure with the flagged
    example's index, the table its rows and a warning line names it (and the vdm's own two
    ODE figures flag it too). The checkpoint is trained one step at a tiny learning rate:
    its drift stays cheap to integrate at the CLI's default tolerance."""
    from cli_runner import run_cli
    from latentkit_vdm.model import VDMGenerative

    levels = np.random.default_rng(0).integers(0, 256, size=(48, D), dtype=np.uint8)
    np.save(tmp_path / "x.npy", levels)
    run = tmp_path / "run"
    code, out, err = run_cli(
        ["train", "--model", "vdm", "--data", f"file:{tmp_path / 'x.npy'}", "--steps", "1",
         "--batch-size", "16", "--lr", "1e-7", "--set", "num_timesteps=4", "--set", "network=mlp",
         "--set", "hidden=[8]", "--run-dir", str(run), "--no-progress"],
        timeout=120,
    )  # fmt: skip
    assert code == 0, out + err
    flow = VDMGenerative.probability_flow

    def perturbed(self, t, z):
        return _expand(flow(self, t, z), z, 1)

    monkeypatch.setattr(VDMGenerative, "probability_flow", perturbed)
    code, out, err = run_cli(
        ["evaluate", str(run), "--eval-limit", "4", "--iwae-k", "0", "--diagnose", "0",
         "--ode", "3", "--json", str(tmp_path / "e.json")],
        timeout=120,
    )  # fmt: skip
    assert code == 0, out + err
    ode = json.loads((tmp_path / "e.json").read_text())["ode"]
    assert ode["num_examples"] == 3 and [e["index"] for e in ode["flagged"]] == [1]
    assert ode["without_flagged"]["num_examples"] == 2 and ode["nfe"]["total"] > 0
    assert "ODE −log p, 3 examples" in out and "without the 1 flagged" in out
    assert "warning: ODE figure: 1 of 3 examples flagged" in out and "#1 (" in out
    assert "warning: ode_direct: ODE figure: 1 of 3 examples flagged" in out  # --ode 3 for all
    assert "path left the prior" in out
    code, out, err = run_cli(["evaluate", str(run), "--ode", "2", "--ode-margin", "-1"])
    assert code != 0 and "--ode-margin: 'ode_margin' must be a number ≥ 0" in err


def test_a_flagged_example_says_why_when_its_path_left_the_prior(monkeypatch):
    """The injected outlier's path is carried far out (its z grows by ~e^10): its end's prior
    log-density is far more than PRIOR_ATYPICAL_SDS of the prior's own sds below typical, so
    its reason is 'path left the prior'; the unperturbed examples' ends are typical (within
    5 sds: the model's ODE carries the data to the prior). A flagged example whose path ended
    typically is 'unexplained', and a non-finite one 'not finite'."""
    from latentkit.ode import PRIOR_ATYPICAL_SDS, prior_typical

    model, data = _tiny_trained_vdm()
    _perturb_row(monkeypatch, model, row=2)
    bad = lk.evaluate(model, data[:8], iwae_k=0, ode_examples=6, seed=3, ode_options=FAST).ode
    (flag,) = bad.flagged
    assert flag.prior_sds < -PRIOR_ATYPICAL_SDS and flag.reason.startswith("path left the prior")
    rest = bad.prior_sds[[0, 1, 3, 4, 5]]
    assert bool((rest.abs() < 5).all()), rest
    assert bad.to_json(bits=True)["flagged"][0]["reason"] == flag.reason
    assert "path left the prior" in bad.warning(bits=True)
    # the yardstick: N(0, I) in D dimensions has log-density sd √(D/2) at its own draws
    mean, sd = prior_typical(model, seed=0, draws=4096)
    half = D / 2
    assert abs(mean + half * math.log(2 * math.pi) + half) < 4 * math.sqrt(half / 4096)
    assert abs(sd - math.sqrt(half)) < 0.1 * math.sqrt(half)
    plain = _figure([3.0, 3.0, 0.0], ode=[10.0 + 3 * BITS, math.inf, 10.0])
    plain = OdeFigure(**{**attrs_dict(plain), "prior_sds": torch.tensor([-1.0, 0.0, 0.0])})
    assert [f.reason for f in plain.flagged] == ["unexplained", "not finite"]


def attrs_dict(fig: OdeFigure) -> dict:
    import attrs

    return {a.name: getattr(fig, a.name) for a in attrs.fields(OdeFigure)}
