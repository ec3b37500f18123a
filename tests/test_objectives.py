"""Training objectives (``latentkit.objectives``, docs/objectives.md): DESIGN §7 identity 11.

Each objective is checked against the bound it claims:

* exact identities (the IWAE objective's value is ``latentkit.iwae`` on the same draws; a
  warm-up's loss is −ELBO_β(step) on the same draw; free bits by their formula) in float64
  to a few ulps;
* unbiasedness (one-layer and importance-sampled ELBOs, the hybrid loss's λ·T·L_t, DReG and
  STL gradients) by z-tests of group means: each group averages ≥ 128 i.i.d. replicates, so
  its mean is close to normal even for skewed terms, and |z| ≤ Z = 4.5 has a false-alarm
  rate under 2.5e-5 per coordinate (t with ≥ 58 degrees of freedom), under 2e-3 for all the
  coordinates compared here (the seeds are fixed, so CI runs are reproducible anyway).

Mutations tried by hand and the test that catches each (docs/objectives.md keeps the list):
single-layer scale (L − 1) → (L − 2): ``test_single_layer_elbo_is_unbiased``; hybrid λ·T →
λ·(T − 1): ``test_hybrid_is_simple_plus_lambda_T_times_the_bound_terms``; importance weight
1/p(l) → p(l), or p(l) ∝ the mean term instead of √(mean term²):
``test_importance_sampled_elbo_is_unbiased``; DReG w̃² → w̃ (that is, STL):
``test_dreg_and_stl_gradients``; IWAE − log k → − log(k − 1): ``test_iwae_objective_is_iwae``;
warm-up cosine phase (1 + cos) or a linear ramp off by one step:
``test_warmup_schedule_values``; free bits clamping per example instead of the batch mean,
or ≥ instead of >: ``test_free_bits_per_layer_and_per_dimension``.
"""

from __future__ import annotations

import math

import attrs
import pytest
import torch
from torch.distributions import kl_divergence

import latentkit as lk
from latentkit.estimators import training_estimator
from latentkit.objectives import ElboObjective, warmup_factor
from latentkit.testing.strategies import randomize_parameters

F64 = torch.float64
Z = 4.5


def z_max(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |z| of the difference of group means (rows: groups; columns: coordinates)."""
    se = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt()
    diff = (a.mean(0) - b.mean(0)).abs()
    z = torch.where(se > 0, diff / se.clamp_min(1e-300), torch.where(diff > 1e-12, math.inf, 0.0))
    return float(z.max())


def z_against_the_full_bound(objective, model, x, groups=40, per_group=128) -> float:
    """max |z| between −objective and the full bound (``layer-batched``), per example, over
    ``groups`` group means of ``per_group`` replicates each."""
    n = x.shape[0]
    xs = x.repeat(per_group, 1)
    torch.manual_seed(0)
    with torch.no_grad():
        est = [-objective(model, xs).view(per_group, n).mean(0) for _ in range(groups)]
        full = [
            lk.elbo(model, xs, estimator="layer-batched").total.view(per_group, n).mean(0)
            for _ in range(groups)
        ]
    return z_max(torch.stack(est), torch.stack(full))


def linear_vae(seed: int = 3) -> lk.LatentModel:
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear").double()
    return randomize_parameters(model, seed, 0.7)


def small_ddpm(seed: int = 0, T: int = 4, **config) -> lk.LatentModel:
    model = lk.load_model(
        "ddpm", data_shape=(3,), num_timesteps=T, schedule="cosine", hidden=(16,), **config
    ).double()
    return randomize_parameters(model, seed, 0.5).eval()


# ---- the registry and the hook ----------------------------------------------------------


def test_builtin_and_plugin_objectives_are_registered():
    names = lk.list_objectives()
    assert {"elbo", "iwae", "simple", "hybrid"} <= set(names)
    specs = lk.objective_specs()
    assert specs["elbo"].plugin == "latentkit" and specs["hybrid"].plugin == "latentkit-ddpm"


def test_bad_objective_names_and_fields_are_one_clear_line():
    model = linear_vae()
    with pytest.raises(lk.ConfigError, match="no objective named 'iwea'.*elbo"):
        lk.make_objective("iwea", model)
    with pytest.raises(lk.ConfigError, match=r"objective 'iwae'.*unknown.*\['kk'\]"):
        lk.make_objective("iwae", model, kk=3)
    with pytest.raises(lk.ConfigError, match="objective 'iwae'.*'k' must be an int ≥ 1"):
        lk.make_objective("iwae", model, k=0)
    with pytest.raises(lk.ConfigError, match="'warmup_shape' must be one of"):
        lk.make_objective("elbo", model, warmup_shape="sigmoid")
    with pytest.raises(lk.ConfigError, match="objective 'hybrid' does not apply.*DDPM"):
        lk.make_objective("hybrid", model)
    with pytest.raises(lk.ConfigError, match="layer_sampler='importance'.*layer-batched"):
        lk.make_objective("elbo", model, layer_sampler="importance")


@attrs.frozen
class _Half:
    scale: float = 0.5


class _HalfElbo(lk.Objective):
    def forward(self, model, x, step=None):
        return -self.config.scale * lk.elbo(model, x, validate=False).total


class _ThirdParty:
    @staticmethod
    @lk.hookimpl
    def latentkit_objectives():
        return [lk.ObjectiveSpec("half-elbo", _Half, _HalfElbo, "test: ½ · −ELBO")]


class _Clash:
    @staticmethod
    @lk.hookimpl
    def latentkit_objectives():
        return [lk.ObjectiveSpec("iwae", _Half, _HalfElbo, "test: a name already taken")]


def test_a_plugin_adds_an_objective_through_the_hook():
    plugin, clash = _ThirdParty(), _Clash()
    lk.register_plugin(plugin, "third-party objective")
    lk.register_plugin(clash, "clashing objective")
    try:
        assert "half-elbo" in lk.list_objectives()
        model = linear_vae()
        x = torch.randn(3, 4, dtype=F64)
        objective = lk.make_objective("half-elbo", model, scale=0.25)
        torch.manual_seed(0)
        loss = objective(model, x)
        torch.manual_seed(0)
        assert torch.equal(loss, -0.25 * lk.elbo(model, x).total)
        faults = [str(f) for f in lk.plugin_faults()]
        assert any("objective name 'iwae' is already registered by latentkit" in f for f in faults)
        assert lk.objective_specs()["iwae"].plugin == "latentkit"  # the first one stays
    finally:
        lk.unregister_plugin(plugin)
        lk.unregister_plugin(clash)


def test_beta_vae_and_ddpm_declare_their_default_objectives():
    assert lk.load_model("beta-vae", beta=2.5).default_objective == ("elbo", {"beta": 2.5})
    assert lk.load_model("vae").default_objective == ("elbo", {})
    hybrid = lk.load_model("ddpm", data_shape=(3,), num_timesteps=4, loss="hybrid")
    assert hybrid.default_objective == ("hybrid", {"weight": 0.001})
    assert lk.default_objective(hybrid).name == "hybrid"


def test_the_objective_choice_is_built_once_and_again_when_it_changes():
    """``model.objective_choice`` (``default_objective``, its old name, read and written
    alike) names what ``lk.training_objective`` builds: the same object on every call (its
    state carries over), a new one once the choice changes, in place or replaced.
    ``lk.default_objective`` is ``training_objective``'s old name."""
    assert lk.default_objective is lk.training_objective
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2)
    first = lk.training_objective(model)
    assert lk.training_objective(model) is first
    model.default_objective = ("elbo", {"beta": 2.0})
    assert model.objective_choice == lk.ObjectiveChoice("elbo", {"beta": 2.0})
    assert isinstance(model.default_objective, lk.ObjectiveChoice)
    second = lk.training_objective(model)
    assert second is not first and second.config.beta == 2.0
    model.objective_choice.options["beta"] = 3.0
    assert lk.training_objective(model).config.beta == 3.0


# ---- ELBO: estimators, layer samplers --------------------------------------------------


def test_single_layer_elbo_is_unbiased():
    """E[one-layer estimate] = the full-T bound: the scale L − 1 is the reciprocal of the
    probability of each layer (a z-test per example, R = 40 groups of 128)."""
    model = small_ddpm(T=4)
    x = torch.tensor([[166, 64, 242], [26, 140, 153]], dtype=F64) / 127.5 - 1  # 8-bit levels
    objective = lk.make_objective("elbo", model)
    assert objective.estimator.name == "single-layer"
    assert z_against_the_full_bound(objective, model, x) <= Z


def test_importance_sampled_elbo_is_unbiased():
    """With any learned p(l), E[term_l / p(l)] = Σ_l term_l: the importance-sampled objective
    has the full bound's mean (z-test), and its p(l) is the √E[term²] rule's."""
    model = small_ddpm(T=5)
    objective = lk.make_objective("elbo", model, layer_sampler="importance", history=4)
    gen = torch.Generator().manual_seed(1)
    objective.layer_history[:, :4] = torch.rand(4, 4, generator=gen, dtype=F64) * 10
    objective.layer_count.fill_(4)
    w = objective.layer_weights()
    rms = objective.layer_history[:, :4].pow(2).mean(-1).sqrt()
    expected = 0.999 * rms / rms.sum() + 0.001 / 4
    assert torch.allclose(w, expected / expected.sum(), rtol=1e-12)
    x = torch.tensor([[166, 64, 242], [26, 140, 153]], dtype=F64) / 127.5 - 1  # 8-bit levels
    assert z_against_the_full_bound(objective, model, x) <= Z


def test_importance_sampler_history_matches_one_at_a_time_pushes():
    """The vectorized ring buffer keeps what pushing each term in batch order would: per
    layer the last ``history`` terms (as a multiset) and the count of all terms."""
    model = small_ddpm(T=6).train()
    objective = lk.make_objective("elbo", model, layer_sampler="importance", history=3)
    gen = torch.Generator().manual_seed(5)
    reference: dict[int, list[float]] = {i: [] for i in range(5)}
    for _ in range(4):
        idx = torch.randint(0, 5, (11,), generator=gen)
        term = torch.rand(11, generator=gen, dtype=F64)
        objective._record(idx, term)
        for i, v in zip(idx.tolist(), term.tolist()):
            reference[i].append(v)
    for i in range(5):
        kept = sorted(reference[i][-3:])
        count = int(objective.layer_count[i])
        assert count == len(reference[i])
        if count >= 3:
            assert sorted(objective.layer_history[i, :3].tolist()) == pytest.approx(kept, abs=0)


def test_importance_sampled_elbo_is_uniform_until_every_layer_has_a_history():
    model = small_ddpm(T=5)
    objective = lk.make_objective("elbo", model, layer_sampler="importance", history=10)
    objective.layer_count[:3] = 10
    assert torch.equal(objective.layer_weights(), torch.full((4,), 0.25, dtype=F64))


# ---- warm-up and free bits --------------------------------------------------------------


def test_warmup_schedule_values():
    assert warmup_factor(0, 100, "linear") == 0.0
    assert warmup_factor(25, 100, "linear") == 0.25
    assert warmup_factor(100, 100, "linear") == 1.0 and warmup_factor(500, 100, "linear") == 1.0
    assert warmup_factor(25, 100, "cosine") == pytest.approx((1 - math.cos(math.pi / 4)) / 2)
    assert warmup_factor(50, 100, "cosine") == pytest.approx(0.5)
    assert warmup_factor(None, 100, "cosine") == 1.0 and warmup_factor(7, 0, "linear") == 1.0
    as_tensor = warmup_factor(torch.tensor(25), 100, "cosine")
    assert float(as_tensor) == pytest.approx(warmup_factor(25, 100, "cosine"), rel=1e-15)
    objective = lk.make_objective("elbo", linear_vae(), beta=2.0, warmup_steps=10, warmup_start=0.5)
    assert objective.beta_at(0) == 0.5 and objective.beta_at(5) == 1.25
    assert objective.beta_at(10) == 2.0 and objective.beta_at(None) == 2.0


def test_warmup_changes_the_loss_and_never_the_reported_bound():
    """The loss at step s is −ELBO_β(s) on the same draw; ``latentkit.elbo`` and evaluation
    are untouched by the objective."""
    model = linear_vae()
    x = torch.randn(5, 4, dtype=F64)
    objective = lk.make_objective("elbo", model, warmup_steps=8, warmup_shape="linear")
    for step in (0, 2, 8, torch.tensor(4)):
        torch.manual_seed(1)
        loss = objective(model, x, step)
        torch.manual_seed(1)
        bound = lk.elbo(model, x, beta=float(objective.beta_at(step)))
        assert torch.allclose(loss, -bound.total, rtol=1e-14, atol=0)
    torch.manual_seed(1)
    before = lk.elbo(model, x).total
    objective(model, x, 0)  # no state of the model is touched
    torch.manual_seed(1)
    assert torch.equal(lk.elbo(model, x).total, before)


def test_free_bits_per_layer_and_per_dimension():
    """Free bits count each group as max(λ, its batch-mean KL) and give a group below λ no
    gradient; the per-dimension groups are the Gaussian KL's closed form per latent."""
    model = lk.load_model("hvae", data_shape=(5,), latent_dims=(3, 2), hidden=(8,)).double()
    randomize_parameters(model, 2, 0.6)
    x = torch.randn(6, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    est = training_estimator(model, "analytic")  # gives the unclamped groups
    torch.manual_seed(0)
    plain = est(model, x, per_dimension=True)
    for per in ("layer", "dimension"):
        groups = (
            [plain.layer_kl[:, 0], plain.prior_matching]
            if per == "layer"
            else [*plain.per_dimension[0].T, *plain.per_dimension[1].T]
        )
        means = torch.stack([g.mean() for g in groups])
        lam = float(means.detach().median())  # some groups below λ, some above
        objective = lk.make_objective(
            "elbo", model, estimator="analytic", free_bits=lam, free_bits_per=per
        )
        torch.manual_seed(0)
        loss = objective(model, x)
        expected = -plain.reconstruction.mean() + torch.clamp(means, min=lam).sum()
        assert torch.allclose(loss.mean(), expected, rtol=1e-13)
        assert torch.allclose(plain.total(), lk.Draw(*plain[:3]).total())  # bound unclamped
    # A group held at λ gets no gradient: with λ above every group, q is trained by the
    # reconstruction alone.
    above_all = 2 * float(plain.layer_kl.detach().mean() + plain.prior_matching.detach().mean())
    objective = lk.make_objective("elbo", model, estimator="analytic", free_bits=above_all)
    torch.manual_seed(0)
    objective(model, x).sum().backward()
    with_free_bits = [p.grad.clone() for p in model.posterior.parameters()]
    model.zero_grad()
    torch.manual_seed(0)
    (-est(model, x).reconstruction).sum().backward()
    for a, b in zip(with_free_bits, model.posterior.parameters()):
        assert torch.allclose(a, b.grad, rtol=1e-12, atol=1e-300)


def test_free_bits_per_dimension_closed_form_for_a_gaussian_vae():
    model = linear_vae()
    x = torch.randn(7, 4, dtype=F64)
    q = model.posterior.top(x)
    mu, var = q.mean, q.variance
    per_dim = 0.5 * (mu**2 + var - 1 - var.log())  # KL(N(μ, σ²) ‖ N(0, 1)) per latent
    assert torch.allclose(per_dim.sum(-1), kl_divergence(q, model.generative.prior(7)))
    lam = 0.3
    objective = lk.make_objective("elbo", model, free_bits=lam, free_bits_per="dimension")
    torch.manual_seed(4)
    loss = objective(model, x)
    torch.manual_seed(4)
    recon = lk.elbo(model, x).reconstruction
    expected = -recon.mean() + torch.clamp(per_dim.mean(0), min=lam).sum()
    assert torch.allclose(loss.mean(), expected, rtol=1e-13)


def test_free_bits_need_an_estimator_that_gives_the_groups():
    with pytest.raises(lk.ConfigError, match="single-layer"):
        lk.make_objective("elbo", small_ddpm(), free_bits=0.5)
    with pytest.raises(lk.ConfigError, match="per-dimension"):
        lk.make_objective(
            "elbo",
            small_ddpm(),
            estimator="layer-batched",
            free_bits=0.5,
            free_bits_per="dimension",
        )


# ---- IWAE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gradient", ["standard", "stl", "dreg"])
@pytest.mark.parametrize(
    "name,config",
    [
        ("vae", {"data_shape": (4,), "latent_dim": 2, "hidden": (8,)}),
        ("hvae", {"data_shape": (4,), "latent_dims": (3, 2), "hidden": (8,)}),
        ("hvae", {"data_shape": (4,), "latent_dims": (3, 2), "posterior": "bottom-up"}),
    ],
    ids=["vae", "hvae-ladder", "hvae-markov"],
)
def test_iwae_objective_is_iwae(name, config, gradient):
    """The objective's value is −``latentkit.iwae`` on the same draws, whatever the gradient."""
    model = randomize_parameters(lk.load_model(name, **config).double(), 1, 0.6)
    x = torch.randn(3, 4, dtype=F64)
    objective = lk.make_objective("iwae", model, k=7, gradient=gradient)
    torch.manual_seed(2)
    loss = objective(model, x)
    torch.manual_seed(2)
    assert torch.allclose(loss, -lk.iwae(model, x, 7), rtol=1e-13, atol=0)
    loss.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _gradient_groups(model, gradient, k, x, groups=30, per_group=128, seed=0):
    torch.manual_seed(seed)
    objective = lk.make_objective("iwae", model, k=k, gradient=gradient)
    rows = []
    for _ in range(groups):
        model.zero_grad()
        objective(model, x.repeat(per_group, 1)).mean().backward()
        q = torch.cat([p.grad.flatten() for p in model.posterior.parameters()])
        p = torch.cat([p.grad.flatten() for p in model.generative.parameters()])
        rows.append((q.clone(), p.clone()))
    return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])


@pytest.mark.parametrize(
    "name,config",
    [
        ("vae", {"data_shape": (4,), "latent_dim": 2, "architecture": "linear"}),
        ("hvae", {"data_shape": (4,), "latent_dims": (2, 2), "architecture": "linear"}),
    ],
    ids=["vae", "hvae-ladder"],
)
def test_dreg_and_stl_gradients(name, config):
    """On linear-Gaussian models: DReG's gradients have the standard IWAE gradient's
    expectation for every k (q's and p's); STL's p-gradient too, and its q-gradient at
    k = 1 only. At k = 4 STL's q-gradient is biased (Tucker et al. 2019), and the test can
    see it: the same z-test that DReG passes rejects it, so a DReG that weighed its path
    term by w̃ instead of w̃² would fail."""
    model = randomize_parameters(lk.load_model(name, **config).double(), 3, 0.7)
    x = torch.tensor([[1.5, -2.0, 0.7, 2.4]], dtype=F64)
    for k in (1, 4):
        std_q, std_p = _gradient_groups(model, "standard", k, x, seed=1)
        for gradient in ("dreg", "stl"):
            q, p = _gradient_groups(model, gradient, k, x, seed=2)
            assert z_max(p, std_p) <= Z, (k, gradient, "p")
            if gradient == "dreg" or k == 1:
                assert z_max(q, std_q) <= Z, (k, gradient, "q")
            else:
                assert z_max(q, std_q) > Z, "STL's bias at k = 4 should be visible"


def test_path_gradients_refuse_a_discrete_posterior():
    model = lk.load_model("gmm", data_dim=2, components=3, posterior="amortized")
    objective = lk.make_objective("iwae", model, k=3, gradient="dreg")
    with pytest.raises(lk.EstimatorError, match="reparameterizable"):
        objective(model, torch.randn(2, 2))


# ---- the DDPM's losses ---------------------------------------------------------------------


def test_hybrid_is_simple_plus_lambda_T_times_the_bound_terms():
    """hybrid − simple on the same (t, ε) is λ·T·L_t; over t ~ U{1..T} its mean is λ·Σ_t L_t,
    the bound without its prior term: −(reconstruction − Σ layer_kl) (z-test)."""
    model = small_ddpm(T=4)
    lam = 0.01
    hybrid = lk.make_objective("hybrid", model, weight=lam)
    simple = lk.make_objective("simple", model)
    x = torch.tensor([[166, 64, 242], [26, 140, 153]], dtype=F64) / 127.5 - 1  # 8-bit levels
    est, full = [], []
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(40):
            xs = x.repeat(128, 1)
            state = torch.get_rng_state()
            h = hybrid(model, xs)
            torch.set_rng_state(state)
            s = simple(model, xs)
            est.append(((h - s) / lam).view(128, 2).mean(0))
            r = lk.elbo(model, xs, estimator="layer-batched")
            full.append((r.layer_kl.sum(-1) - r.reconstruction).view(128, 2).mean(0))
    assert z_max(torch.stack(est), torch.stack(full)) <= Z


def test_simple_refuses_a_learned_variance():
    model = lk.load_model("ddpm", data_shape=(3,), num_timesteps=4, reverse_variance="learned")
    with pytest.raises(lk.ConfigError, match="simple.*learned"):
        lk.make_objective("simple", model)


# ---- the ladder's features: once per pass -----------------------------------------------------


def test_the_ladder_encodes_once_per_pass():
    model = lk.load_model("hvae", data_shape=(4,), latent_dims=(3, 2, 2), hidden=(8,))
    calls = []
    model.posterior.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    lk.elbo(model, torch.randn(3, 4))
    assert len(calls) == 1
    calls.clear()
    lk.iwae(model, torch.randn(3, 4), 5)
    assert len(calls) == 1


# ---- in the trainer: resume is exact with objective state ------------------------------------


def test_trainer_resumes_the_importance_sampler_exactly(tmp_path):
    torch.manual_seed(0)
    data = torch.randint(0, 256, (64, 3)) / 127.5 - 1  # 8-bit levels (the decoder's grid)
    cfg = lk.TrainConfig(steps=12, batch_size=16, checkpoint_every=6, progress=False, log_every=6)

    def trainer(run_dir):
        torch.manual_seed(0)
        model = lk.load_model(
            "ddpm", data_shape=(3,), num_timesteps=4, hidden=(8,), timestep_sampler="importance"
        )
        return lk.Trainer(
            model,
            data,
            cfg,
            objective="elbo",
            objective_config={"layer_sampler": "importance", "history": 2},
            run_dir=run_dir,
        )

    straight = trainer(tmp_path / "a")
    straight.fit()
    first = trainer(tmp_path / "b")
    first.fit(until=6)
    again = trainer(tmp_path / "b")
    again.resume(tmp_path / "b")
    assert int(again.loss_objective.layer_count.sum()) == 6 * 16
    again.fit()
    for a, b in zip(straight.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(
        straight.loss_objective.state_dict().values(), again.loss_objective.state_dict().values()
    ):
        assert torch.equal(a, b)
    assert isinstance(straight.loss_objective, ElboObjective)
