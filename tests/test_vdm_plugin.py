"""The ``vdm`` plugin as a user meets it: registry, configs, objectives, errors, CLI, verify,
the likelihood figures and the page ``docs/continuous.md``."""

from __future__ import annotations

import importlib
import json
import math
import pathlib
import re
import sys

import pytest
import torch

import latentkit as lk
from latentkit.ode import ode_log_prob

ROOT = pathlib.Path(__file__).resolve().parents[1]
F64 = torch.float64


def _tiny(**kw):
    cfg = dict(data_shape=(3,), num_timesteps=4, hidden=(8,), decoder="gaussian")
    cfg.update(kw)
    torch.manual_seed(0)
    return lk.load_model("vdm", **cfg).double()


def test_plugin_registers_the_model_and_its_objectives():
    assert "vdm" in lk.list_models()
    assert {"continuous", "score-matching"} <= set(lk.list_objectives())
    assert not [f for f in lk.plugin_faults() if "vdm" in str(f)]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"gamma_min": 2.0, "gamma_max": 1.0}, "gamma_max"),
        ({"gamma_min": float("nan")}, "gamma_min"),
        ({"schedule": "quadratic"}, "schedule"),
        ({"network": "unet"}, "unet"),
        ({"num_timesteps": 0}, "num_timesteps"),
        ({"t_sampler": "sobol"}, "t_sampler"),
    ],
)
def test_bad_config_values_name_the_field(values, field):
    with pytest.raises(lk.ConfigError, match=field):
        lk.load_model("vdm", data_shape=(3,), **values)


def test_with_timesteps_shares_the_network_and_refuses_bad_T():
    model = _tiny()
    other = model.with_timesteps(16)
    assert other.core is model.core and other.num_layers == 17
    assert other.config.num_timesteps == 16 and model.config.num_timesteps == 4
    for bad in (0, 2.5, True):
        with pytest.raises(lk.ConfigError, match="num_timesteps"):
            model.with_timesteps(bad)


def test_objectives_are_the_bounds_they_claim_and_refuse_other_models():
    """``continuous`` is −ELBO_∞ at the same draws; ``score-matching`` has λ = g²; both refuse a
    model without a continuous-time diffusion, naming why."""
    model = _tiny()
    x = torch.randn(6, 3, dtype=F64)
    torch.manual_seed(1)
    loss = lk.make_objective("continuous", model, t_sampler="antithetic")(model, x)
    torch.manual_seed(1)
    e = model.continuous_elbo(x, t_sampler="antithetic")
    assert torch.allclose(loss, -e.total)
    assert torch.allclose(e.total, e.reconstruction - e.prior_matching - e.diffusion)
    assert model.default_objective == ("continuous", {"t_sampler": "low-discrepancy"})
    vae = lk.load_model("vae", data_shape=(3,), latent_dim=2)
    for name in ("continuous", "score-matching"):
        with pytest.raises(lk.LatentkitError, match="continuous-time diffusion"):
            lk.make_objective(name, vae)


def test_training_reduces_the_continuous_loss():
    """A few hundred steps of ``continuous`` on Gaussian data lower −ELBO_∞ (held-out, many t)."""
    torch.manual_seed(0)
    data = 0.5 + 0.3 * torch.randn(512, 3, dtype=F64)
    model = _tiny(hidden=(32,))
    loss = lk.make_objective("continuous", model)

    def held_out():
        torch.manual_seed(5)
        with torch.no_grad():
            return float(-model.continuous_elbo(data.repeat(8, 1)).total.mean())

    before = held_out()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(200):
        batch = data[torch.randint(0, 512, (64,))]
        opt.zero_grad()
        loss(model, batch, step).mean().backward()
        opt.step()
    assert held_out() < before - 1.0


def test_ode_log_prob_errors_name_what_is_wrong(monkeypatch):
    model = _tiny()
    x = torch.randn(2, 3, dtype=F64)
    vae = lk.load_model("vae", data_shape=(3,), latent_dim=2)
    with pytest.raises(lk.InputError, match="probability_flow"):
        ode_log_prob(vae, torch.randn(2, 3))
    with pytest.raises(lk.ConfigError, match="divergence"):
        ode_log_prob(model, x, divergence="trace")
    with pytest.raises(lk.ConfigError, match="probe"):
        ode_log_prob(model, x, probe="sphere")
    with pytest.raises(lk.ConfigError, match="num_probes"):
        ode_log_prob(model, x, num_probes=0)
    with pytest.raises(lk.ConfigError, match="rtol"):
        ode_log_prob(model, x, rtol=-1.0)
    with pytest.raises(lk.LatentkitError):
        ode_log_prob(model, torch.randn(2, 4, dtype=F64))
    monkeypatch.setitem(sys.modules, "torchdiffeq", None)
    with pytest.raises(ImportError, match=r"latentkit\[ode\]"):
        ode_log_prob(model, x)


def test_hutchinson_averages_its_probes():
    """With num_probes = k the estimate is the mean of k single-probe estimates (Rademacher on a
    diagonal Jacobian: every probe exact, so the average must be exact too, not k times it)."""
    from latentkit_vdm.gaussian_oracle import OptimalGaussianEps

    model = _tiny(gamma_min=-5.0, gamma_max=5.0)
    mean, var = torch.tensor([0.3, -1.0, 2.0], dtype=F64), torch.tensor([0.5, 1.5, 0.2], dtype=F64)
    model.core.net = OptimalGaussianEps(model.core.log_snr, mean, var)
    x = torch.randn(4, 3, dtype=F64)
    exact = ode_log_prob(model, x, divergence="exact", rtol=1e-8, atol=1e-8).log_density
    many = ode_log_prob(
        model, x, divergence="hutchinson", num_probes=3, rtol=1e-8, atol=1e-8
    ).log_density
    assert torch.allclose(exact, many, atol=1e-8)


def test_likelihood_figures_report_three_bounds_and_the_per_t_breakdown(tmp_path):
    model = lk.load_model("vdm", data_shape=(4,), num_timesteps=8, hidden=(8,)).double()
    levels = torch.randint(0, 256, (20, 4))
    data = (2 * levels / 255 - 1).double()
    fig = model.likelihood_figures(data, ode_examples=6, num_t=8, batch_size=10)
    assert fig["discrete_data"]
    for key in ("discrete", "continuous", "ode", "ode_direct"):
        bpd = fig[key]["bits_per_dim"]["mean"]
        nats = fig[key]["nll_nats"]["mean"]
        assert math.isclose(bpd, nats / (4 * math.log(2)), rel_tol=1e-9)
    assert fig["ode"]["num_examples"] == 6 and fig["discrete"]["num_timesteps"] == 8
    assert len(fig["per_t"]["t"]) == 8 and all(v > 0 for v in fig["per_t"]["integrand"])
    json.dumps(fig)
    png = model.per_t_plot(fig["per_t"], tmp_path / "per_t.png")
    assert png.exists() and png.stat().st_size > 0
    with pytest.raises(lk.ConfigError, match="ode_examples"):
        model.likelihood_figures(data, ode_examples=-1)
    none = model.likelihood_figures(data, ode_examples=0, num_t=8, batch_size=10)
    assert none["ode"] is None and none["ode_direct"] is None
    assert none["discrete"] == fig["discrete"]  # the same seed: the bounds are unchanged


def test_verify_runs_the_generic_checks_on_vdm():
    """``latentkit verify vdm``'s checks pass on the plugin's test configs (a few examples),
    and exact-log-p runs and passes on its linear-Gaussian ones (a linear ε-network and the
    Gaussian decoder, one draw in six, which the three examples' search may miss)."""
    from hypothesis import strategies as st
    from latentkit_vdm.strategies import vdm_configs

    from latentkit.testing import check_model

    results = check_model("vdm", max_examples=3, derandomize=True)
    assert not [r for r in results if r.failed]

    def linear_gaussian(cfg: dict) -> bool:
        return cfg["network"] == "linear" and cfg["decoder"] == "gaussian"

    configs: st.SearchStrategy[dict] = vdm_configs().filter(linear_gaussian)
    exact = check_model(
        "vdm", max_examples=3, derandomize=True, checks=["exact-log-p"], configs=configs
    )
    assert [(r.status, r.examples, r.not_applicable) for r in exact] == [("passed", 3, 0)]


def test_derandomized_draws_do_not_depend_on_the_modules_imported_before(tmp_path, monkeypatch):
    """The verify test above draws the same configs whatever ran before it in the session: a
    module imported in between, its source full of constants in the ranges ``vdm_configs``
    draws from, leaves a derandomized run's draws as they were (tests/conftest.py pins
    Hypothesis's pool of source constants, which grew with every module imported)."""
    from hypothesis import given, settings
    from latentkit_vdm.strategies import vdm_configs

    def draws() -> list[dict]:
        seen: list[dict] = []

        @settings(max_examples=100, derandomize=True, database=None)
        @given(vdm_configs())
        def collect(cfg):
            seen.append(cfg)

        collect()
        return seen

    before = draws()
    floats = ", ".join(str(-9.5 + k / 8) for k in range(140) if k != 76)  # -9.5 … 7.875, no 0
    (tmp_path / "lk_probe_constants.py").write_text(f"VALUES = [{floats}]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("lk_probe_constants")
        assert draws() == before
    finally:
        sys.modules.pop("lk_probe_constants", None)


def test_cli_trains_and_evaluates(tmp_path):
    from cli_runner import run_cli

    run = tmp_path / "run"
    code, out, err = run_cli(
        [
            "train", "--model", "vdm", "--data", "digits", "--steps", "3", "--batch-size", "16",
            "--set", "num_timesteps=8", "--set", "network=mlp", "--set", "hidden=[16]",
            "--run-dir", str(run),
            "--no-progress", "--limit", "64",
        ],
        timeout=300,
    )  # fmt: skip
    assert code == 0, out + err
    code, out, err = run_cli(
        ["evaluate", str(run), "--eval-limit", "8", "--iwae-k", "0", "--diagnose", "0",
         "--ode", "4", "--json", str(tmp_path / "e.json")],
        timeout=300,
    )  # fmt: skip
    assert code == 0, out + err
    assert "ELBO" in out and "−ELBO_∞ (T → ∞)" in out and "ODE density" in out
    figures = json.loads((tmp_path / "e.json").read_text())["likelihood_figures"]
    assert set(figures) >= {"discrete", "continuous", "ode", "ode_direct", "per_t"}
    assert figures["discrete"]["num_timesteps"] == 8
    assert figures["ode"]["num_examples"] == figures["ode_direct"]["num_examples"] == 4
    code, out, err = run_cli(
        ["report", str(run), "--iwae-k", "0", "--diagnose", "0", "--eval-limit", "8"], timeout=300
    )
    assert code == 0, out + err
    report = json.loads((run / "report.json").read_text())
    assert report["likelihood_figures"]["continuous"]["nll_nats"]["mean"] > 0
    # no --ode: no ODE figure of any kind (they are slow)
    assert report["likelihood_figures"]["ode"] is None and report.get("ode") is None
    assert (run / "per_t.png").stat().st_size > 0 and report["files"]["per_t"].endswith("per_t.png")


BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def test_the_unet_serves_image_data_in_every_bound_and_trains():
    """``network="auto"`` on (C, H, W) data is the U-Net: the discrete-T ELBO, the
    continuous-time bound and the default objective run through it, finite and per
    example, the loss reaches the U-Net's weights, and ε̂ depends on t."""
    torch.manual_seed(0)
    model = lk.load_model(
        "vdm", data_shape=(1, 8, 8), num_timesteps=4, channels=8, channel_mult=(1, 2)
    )
    assert model.config.resolved_network == "unet"
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    bound = lk.elbo(model, x, validate=False).total
    continuous = model.continuous_elbo(x).total
    assert bound.shape == continuous.shape == (3,)
    assert torch.isfinite(bound).all() and torch.isfinite(continuous).all()
    lk.training_loss(model, x, validate=False).mean().backward()  # off the 8-bit grid, as above
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    net = model.core.net
    z = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        for weight in net.parameters():  # the output layer starts at zero (ε̂ = 0)
            if weight.abs().sum() == 0:
                weight.normal_(std=0.02)
        early, late = net(z, torch.full((2,), 0.1)), net(z, torch.full((2,), 0.9))
    assert early.shape[0] == 2 and not torch.allclose(early, late)
