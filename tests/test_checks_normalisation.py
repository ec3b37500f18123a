"""The ``normalised`` check (DESIGN §7.12) and the tightness part of ``exact-log-p``:
E_{z~d}[r(z)/d(z)] = 1 for a normalised reference r, for every distribution the chains
return; exact sums and draw frequencies for enumerable ones; E_m[p(x, z)/m(z|x)] = p(x)
against the exact oracle. A density off by a constant, by a function of x, or with draws
of another distribution fails; correct ones, a distribution that hands out its density
only with its draws, and separated mixture modes pass.
"""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch
from latentkit_vae.strategies import vae_configs
from rich.console import Console
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    Normal,
    OneHotCategorical,
)

import latentkit as lk
from latentkit.testing import mutants, run_check
from latentkit.testing import strategies as lks
from latentkit.testing.checks import (
    CHECKS,
    CheckFailure,
    ModelCase,
    NotApplicable,
    exact_log_p_bounds,
    normalised,
    walk,
)
from latentkit.testing.checks.normalisation import _check_continuous, _check_discrete
from latentkit.testing.verify import verify_command

NORMALISED = next(c for c in CHECKS if c.key == "normalised")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Stub:
    """What the helpers need of a case: seeded draws."""

    def draws(self, stream: int = 0):
        return lks.seeded(stream)


def linear_case(seed: int = 3, **config) -> ModelCase:
    """A linear-Gaussian VAE case, built from the values its repr prints."""
    config = {
        "data_shape": (3,),
        "latent_dim": 2,
        "architecture": "linear",
        "likelihood": "gaussian",
        **config,
    }
    return ModelCase(
        name="vae",
        config=config,
        seed=seed,
        x=[[0.5, -1.0, 2.0], [0.0, 0.3, -0.7]],
        x_swap=[[1.0, 1.0, 1.0]],
        swap_index=0,
        beta=1.0,
        k=1,
        k_max=4,
        device="cpu",
    )


def with_q(case: ModelCase, wrap) -> ModelCase:
    model = case.model.with_posterior(mutants.MutatedPosterior(case.model.posterior, wrap))
    return ModelCase(**{**_fields(case), "model": model})


def _fields(case: ModelCase) -> dict:
    import attrs

    return {f.name: getattr(case, f.name) for f in attrs.fields(ModelCase)}


def test_the_printed_case_pastes_back():
    """repr(case) is a Python expression that rebuilds the same case (same model, data)."""
    case = linear_case()
    again = eval(repr(case), {"ModelCase": ModelCase})
    assert repr(again) == repr(case)
    assert torch.equal(again.x, case.x) and again.x.dtype == torch.float64
    for a, b in zip(again.model.parameters(), case.model.parameters()):
        assert torch.equal(a, b)


def test_correct_models_pass_across_the_vae_options():
    """Gaussian (all scales), Bernoulli (covered element by element) and discretized (not
    covered: its support is a grid, declared as an interval) likelihoods, linear and MLP."""
    result = run_check(NORMALISED, "vae", configs=vae_configs(), max_examples=15)
    assert result.status == "passed", result.detail + result.counterexample


@pytest.mark.parametrize("offset", [0.25, -0.25])
def test_a_posterior_off_by_a_constant_fails(offset):
    """E_q[r/q'] = e^{−c} for log q' = log q + c: at |c| = 0.25 that is 0.78 or 1.28,
    7 standard errors from 1 at the first 1,024 draws (relative spread ≤ 1 by the shrink)."""
    case = with_q(linear_case(), mutants._offset(offset))
    with pytest.raises(CheckFailure, match=r"q\(z_1\|x\): E_d\[r/d\]"):
        normalised(case)
    normalised(with_q(linear_case(), lambda d, x: mutants.Mutated(d)))  # the wrapper alone


def test_draws_that_do_not_follow_log_prob_fail():
    shifted = with_q(
        linear_case(), lambda d, x: mutants.Mutated(d, move=lambda z, base: z + 0.3 * base.stddev)
    )
    with pytest.raises(CheckFailure, match="E_d"):
        normalised(shifted)


def test_verify_fails_a_posterior_whose_log_prob_is_too_high_by_a_constant():
    """The fault that every ordering check misses (the ELBO and IWAE use the same wrong
    density): ``latentkit verify`` fails it on ``normalised`` and on ``exact-log-p``."""
    console = Console(record=True, width=200, force_terminal=False)
    with mutants.registered([m for m in mutants.MUTANTS if m.key == "q-offset"]):
        code = verify_command("mutant-q-offset", max_examples=5, console=console)
    out = console.export_text()
    assert code == 1, out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ ")}
    assert "FAILED" in rows["normalised"], out
    assert "FAILED" in rows["exact-log-p"], out
    assert "passed" in rows["iwae-ordering"], out


class OwnDensity(torch.distributions.Distribution):
    """A reparameterized Gaussian that gives its log density only with its draws (as an
    inverse autoregressive flow does): ``log_prob`` refuses, as it would need an inverse."""

    arg_constraints: ClassVar[dict] = {}
    has_rsample = True

    def __init__(self, base: Independent, offset: float = 0.0):
        self.base, self.offset = base, offset
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def rsample_and_log_prob(self, sample_shape=()):
        z = self.base.rsample(sample_shape)
        return z, self.base.log_prob(z) + self.offset

    def rsample(self, sample_shape=()):
        return self.base.rsample(sample_shape)

    def log_prob(self, value):
        raise NotImplementedError("no inverse: the density comes with the draw")


def test_own_density_distributions_are_checked_at_their_own_draws_only():
    """``normalised`` and the tightness part of ``exact-log-p`` never call ``log_prob`` of a
    factor with ``rsample_and_log_prob`` (it raises here); an offset is still caught."""
    good = with_q(linear_case(), lambda d, x: OwnDensity(d))
    path = walk(good.model, good.x)
    assert path.own_density_only == {"log q(z_1|x)"}
    normalised(good)
    bad = with_q(linear_case(), lambda d, x: OwnDensity(d, offset=0.5))
    with pytest.raises(CheckFailure, match="E_d"):
        normalised(bad)


def test_tightness_catches_a_likelihood_too_low_which_no_ordering_can():
    """log p(x|z) − 1: ELBO ≤ IWAE ≤ log p still hold, but E_m[p'(x, z)/m]/p(x) = e^{−1}."""
    case = linear_case()
    model = mutants._p(likelihood=mutants._offset(-1.0))(case.model)
    broken = ModelCase(**{**_fields(case), "model": model})
    with pytest.raises(CheckFailure, match=r"m = ½ q \+ ½ exact posterior"):
        exact_log_p_bounds(broken)
    exact_log_p_bounds(case)


def test_separated_mixture_modes_are_referenced_per_component():
    """A MixtureSameFamily with modes 20 standard deviations apart: one Gaussian reference
    would put its mass between them (r/d unbounded); the per-component reference passes,
    and a mixture whose log_prob lacks its −log K fails."""
    locs = torch.tensor([[[-10.0, 0.0], [10.0, 0.0]]], dtype=torch.float64).expand(2, 2, 2)
    comps = Independent(Normal(locs, torch.full_like(locs, 0.5)), 1)
    weights = Categorical(logits=torch.zeros(2, 2, dtype=torch.float64))
    good = MixtureSameFamily(weights, comps)
    assert _check_continuous("mixture", good, Stub(), 0)

    class Unnormalised(MixtureSameFamily):
        def log_prob(self, x):
            return super().log_prob(x) + math.log(2)

    with pytest.raises(CheckFailure, match="mixture"):
        _check_continuous("mixture", Unnormalised(weights, comps), Stub(), 0)


def test_enumerable_distributions_sum_to_one_and_draw_their_probabilities():
    probs = torch.tensor([[0.7, 0.2, 0.1], [1e-6, 0.5, 0.5 - 1e-6]], dtype=torch.float64)
    _check_discrete("q", Categorical(probs=probs), Stub(), 0)
    _check_discrete("q", OneHotCategorical(probs=probs), Stub(), 0)  # outcomes are vectors
    _check_discrete("p(x|z)", Independent(torch.distributions.Bernoulli(probs=probs), 1), Stub(), 0)

    class Offset(Categorical):
        def log_prob(self, value):
            return super().log_prob(value) + 0.01

    with pytest.raises(CheckFailure, match="log Σ_z d"):
        _check_discrete("q", Offset(probs=probs), Stub(), 0)

    class OtherDraws(Categorical):
        def sample(self, sample_shape=()):
            return Categorical(probs=self.probs.flip(-1)).sample(sample_shape)

    with pytest.raises(CheckFailure, match="draw frequency"):
        _check_discrete("q", OtherDraws(probs=probs), Stub(), 0)


def test_a_layer_batched_chains_marginals_are_checked_too():
    """A DDPM's q(x_t | x_0), which the engine's layer-batched estimator uses, is one of the
    checked distributions: a marginal off by a constant fails, the rest of q unchanged."""
    if "ddpm" not in lk.list_models():
        pytest.skip("the ddpm plugin is not installed")
    config = {"num_timesteps": 3, "schedule": "linear", "data_shape": (2,), "hidden": (4,)}
    case = ModelCase(
        name="ddpm",
        config=config,
        seed=1,
        x=[[0.1, -0.2]],
        x_swap=[[0.0, 0.0]],
        swap_index=0,
        beta=1.0,
        k=1,
        k_max=1,
    )
    normalised(case)

    class OffMarginal(mutants.MutatedPosterior):
        def marginal(self, l, x):
            return mutants.Mutated(self.inner.marginal(l, x), offset=lambda z: 0.5 + 0 * z[..., 0])

    broken = case.model.with_posterior(OffMarginal(case.model.posterior))
    with pytest.raises(CheckFailure, match=r"q\(z_1\|x\) \(marginal\)"):
        normalised(ModelCase(**{**_fields(case), "model": broken}))


def test_not_applicable_when_no_factor_is_covered():
    """Every factor with an interval support: nothing to check, and the check says so."""

    class Interval(mutants.Mutated):
        support = torch.distributions.constraints.interval(-1.0, 1.0)

    case = linear_case()
    model = mutants._p(prior=lambda d, c: Interval(d), likelihood=lambda d, c: Interval(d))(
        case.model
    )
    model = model.with_posterior(
        mutants.MutatedPosterior(model.posterior, lambda d, x: Interval(d))
    )
    with pytest.raises(NotApplicable, match="no factor has a real or enumerable support"):
        normalised(ModelCase(**{**_fields(case), "model": model}))
