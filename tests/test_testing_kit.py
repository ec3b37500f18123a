"""The plugin author's kit: latentkit's property checks pass on the built-in and example
models, catch deliberately broken models with a shrunk counterexample, run from a plugin
author's own pytest suite through the ``latentkit_check`` fixture, and ``verify_command``
returns the documented exit codes.
"""

from __future__ import annotations

import pathlib

import attrs
import pytest
import torch
from attrs import validators as v
from hypothesis import settings
from hypothesis import strategies as st
from latentkit_vae.strategies import vae_configs
from rich.console import Console
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence, register_kl

import latentkit as lk
from latentkit.distributions import diag_normal
from latentkit.networks import GaussianHead
from latentkit.testing import CHECKS, run_check, run_checks
from latentkit.testing.verify import verify_command

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).resolve().parents[1]
GMM_SUITE = ROOT / "docs" / "examples" / "gmm_plugin" / "tests"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The checks are thousands of tiny tensor ops; intra-op threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- deliberately broken models, registered in process ----------------------------------


@attrs.frozen(kw_only=True)
class ToyConfig:
    data_dim: int = attrs.field(default=2, validator=[v.instance_of(int), v.gt(0)])
    latent_dim: int = attrs.field(default=1, validator=[v.instance_of(int), v.gt(0)])


def toy_configs():
    return st.fixed_dictionaries({"data_dim": st.integers(1, 3), "latent_dim": st.integers(1, 2)})


class ToyGenerative(lk.GenerativeChain):
    """Factor analysis: z ~ N(0, I), x | z ~ N(Wz + c, diag σ²); exact log p applies."""

    def __init__(self, cfg: ToyConfig):
        super().__init__((cfg.data_dim,), [(cfg.latent_dim,)])
        self.decoder = nn.Linear(cfg.latent_dim, cfg.data_dim)
        self.log_noise = nn.Parameter(torch.zeros(cfg.data_dim))

    def prior(self, n: int):
        zeros = self.log_noise.new_zeros(n, self.latent_shapes[0][0])
        return diag_normal(zeros, torch.ones_like(zeros))

    def likelihood(self, z1):
        return diag_normal(self.decoder(z1), self.log_noise.exp())

    def linear_gaussian(self):
        d = self.latent_shapes[0][0]
        return lk.LinearGaussianSpec(
            prior_mean=self.log_noise.new_zeros(d),
            prior_var=self.log_noise.new_ones(d),
            transitions=(),
            weight=self.decoder.weight,
            bias=self.decoder.bias,
            noise_var=(2 * self.log_noise).exp(),
        )


class ForgetfulNormal(Normal):
    """A Normal whose registered KL forgets the log(σ_p/σ_q) term: it can go negative."""


@register_kl(ForgetfulNormal, Normal)
def _forgetful_kl(q: Normal, p: Normal) -> torch.Tensor:
    return (q.scale**2 + (q.loc - p.loc) ** 2) / (2 * p.scale**2) - 0.5


class ForgetfulEncoder(lk.SingleLayerPosterior):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.net = nn.Linear(cfg.data_dim, 2 * cfg.latent_dim)

    def forward(self, x):
        loc, raw = self.net(x).chunk(2, dim=-1)
        scale = nn.functional.softplus(raw) + 1e-3
        return Independent(ForgetfulNormal(loc, scale, validate_args=False), 1)


class BatchCentredEncoder(lk.SingleLayerPosterior):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.net = nn.Linear(cfg.data_dim, 2 * cfg.latent_dim)
        self.head = GaussianHead(1e-3)

    def forward(self, x):
        return self.head(self.net(x - x.mean(0, keepdim=True)))  # the bug: a batch statistic


class BrokenModels:
    @staticmethod
    @lk.hookimpl
    def latentkit_models():
        def negative_kl(cfg):
            return lk.LatentModel(ToyGenerative(cfg), ForgetfulEncoder(cfg))

        def batch_coupled(cfg):
            return lk.LatentModel(ToyGenerative(cfg), BatchCentredEncoder(cfg))

        return [
            lk.ModelSpec("negative-kl", ToyConfig, negative_kl, test_configs=toy_configs),
            lk.ModelSpec("batch-coupled", ToyConfig, batch_coupled, test_configs=toy_configs),
        ]


@pytest.fixture
def broken_models():
    lk.register_plugin(BrokenModels, name="broken-models")
    yield
    lk.unregister_plugin(BrokenModels)


def statuses(results) -> dict[str, str]:
    return {r.check.key: r.status for r in results}


# ---- the checks pass on correct models ---------------------------------------------------


def test_checks_pass_on_vae_across_its_options():
    """vae over linear/MLP, Gaussian/Bernoulli/discretized (the strategies' ``vae_configs``);
    linear Gaussian configs make the exact-oracle check applicable."""
    results = run_checks("vae", configs=vae_configs())
    failures = [f"{r.check.key}: {r.detail}\n{r.counterexample}" for r in results if r.failed]
    assert failures == []
    assert statuses(results)["exact-log-p"] == "passed"


@pytest.mark.parametrize("name", ["hvae", "ddpm"])
def test_checks_pass_on_the_other_built_ins(name):
    """Each built-in family, on the configs its plugin declares for the checks."""
    if name not in lk.list_models():
        pytest.skip(f"{name!r} is not registered here (plugin not installed)")
    # A smoke run of the kit on them (their own suites test them in depth, and `latentkit
    # verify` runs 25 examples a check): 10 examples on the configs the plugin declares, or
    # 3 on its default config when it declares none.
    declared = lk.get_model_spec(name).test_configs is not None
    results = run_checks(
        name, max_examples=min(10 if declared else 3, settings.default.max_examples)
    )
    failures = [f"{r.check.key}: {r.detail}\n{r.counterexample}" for r in results if r.failed]
    assert failures == []


def test_example_plugin_suite_runs_the_checks_through_the_fixture(pytester):
    """The docs' GMM plugin's own suite (EM monotonicity, ELBO = log p at every E-step, and
    ``latentkit_check("gmm")``) passes, run as a third party would run it."""
    if "gmm" not in lk.list_models():
        pytest.skip("the example plugin is not installed: pip install -e docs/examples/gmm_plugin")
    result = pytester.runpytest(str(GMM_SUITE), "-p", "no:cacheprovider", "-v")
    cuda = torch.cuda.is_available()
    result.assert_outcomes(passed=5 if cuda else 4, skipped=0 if cuda else 1)
    result.stdout.fnmatch_lines(["*test_latentkit_checks[[]cpu[]] PASSED*"])


# ---- the checks catch broken models ------------------------------------------------------


def test_a_kl_that_goes_negative_is_caught(broken_models):
    """A registered closed-form KL without its log-scale term: the exact KL ≥ 0 check, the
    exact ELBO_β ≤ ELBO check and analytic-vs-Monte-Carlo all fail with a shrunk case;
    finiteness and batch independence, which the bug does not touch, pass."""
    touched = ["beta-ordering", "kl-nonnegative", "kl-analytic-vs-mc"]
    results = run_checks("negative-kl", checks=["finite", "batch-independence", *touched])
    status = statuses(results)
    assert {key for key, s in status.items() if s == "failed"} == set(touched)
    assert status["finite"] == status["batch-independence"] == "passed"
    kl_check = next(r for r in results if r.check.key == "kl-nonnegative")
    assert "closed-form KL term prior_matching is negative" in kl_check.detail
    printed = kl_check.counterexample.removeprefix("Falsifying example: ")
    assert printed.startswith("ModelCase(name='negative-kl'")
    # The printed case is Python: pasted back, it rebuilds the case, which fails again.
    case = eval(printed, {"ModelCase": lk.testing.ModelCase})
    assert repr(case) == printed
    q = case.model.posterior(case.x)
    assert bool((kl_divergence(q, case.model.generative.prior(case.x.shape[0])) < 0).any())
    with pytest.raises(lk.testing.CheckFailure, match="prior_matching is negative"):
        kl_check.check.run(case)


def test_batch_coupling_is_caught_and_nothing_else(broken_models):
    """An encoder that centres x by the batch mean: only batch independence fails (q is
    still a valid distribution for each example, so every bound holds)."""
    status = statuses(run_checks("batch-coupled"))
    assert {key for key, s in status.items() if s == "failed"} == {"batch-independence"}


class SometimesUnbuildable:
    @attrs.frozen
    class Config:
        bad: bool = False

    @staticmethod
    @lk.hookimpl
    def latentkit_models():
        def build(cfg):
            if cfg.bad:
                raise RuntimeError("this config cannot be built")
            return lk.load_model("vae", data_shape=(2,), latent_dim=1, hidden=(3,))

        configs = lambda: st.fixed_dictionaries({"bad": st.booleans()})  # noqa: E731
        return [
            lk.ModelSpec("unbuildable", SometimesUnbuildable.Config, build, test_configs=configs)
        ]


def test_a_model_that_cannot_always_be_built_fails_samples_and_skips_the_rest():
    """One failure, shrunk to the config that cannot be built, instead of ten."""
    lk.register_plugin(SometimesUnbuildable, name="unbuildable")
    try:
        results = run_checks("unbuildable")
    finally:
        lk.unregister_plugin(SometimesUnbuildable)
    first, *rest = results
    assert first.check.key == "samples" and first.status == "failed"
    assert "config={'bad': True}" in first.detail and "this config cannot be built" in first.detail
    assert first.counterexample.startswith("Falsifying example: latentkit.testing.build_model(")
    assert {r.status for r in rest} == {"skipped"}
    assert all("no case could be drawn (see 'samples')" in r.detail for r in rest)


def test_a_check_asks_for_the_cases_it_applies_to():
    """``exact-log-p`` applies to the linear hvae configs only (a minority of those the
    plugin declares): it rejects the others while drawing, so all its examples run it and
    the result says how many cases were drawn for them; on configs it never applies to, it
    stops asking after ``SEARCH_LIMIT`` cases and says it is not applicable, and why."""
    from latentkit.testing.checks.runner import SEARCH_LIMIT

    exact = next(c for c in CHECKS if c.key == "exact-log-p")
    if "hvae" in lk.list_models():
        result = run_check(exact, "hvae", max_examples=6)
        assert result.status == "passed", result.detail
        assert (result.examples, result.not_applicable) == (6, 0)
        assert result.drawn > result.examples
        assert f"6 of 6 examples ({result.drawn} drawn)" == result.coverage
    mlp = st.just({"data_shape": (2,), "latent_dim": 1, "architecture": "mlp", "hidden": (3,)})
    result = run_check(exact, "vae", configs=mlp, max_examples=SEARCH_LIMIT + 5)
    assert result.status == "not applicable"
    assert "linear" in result.detail or "Gaussian" in result.detail, result.detail


def test_unknown_check_and_unknown_model_are_clear_errors():
    with pytest.raises(ValueError, match="unknown check.*known checks"):
        run_checks("vae", checks=["no-such-check"])
    with pytest.raises(lk.UnknownModelError, match="registered models"):
        run_checks("no-such-model")


def test_every_check_says_what_it_proves():
    assert len({c.key for c in CHECKS}) == len(CHECKS)
    for check in CHECKS:
        assert "Proves:" in check.run.__doc__, check.key


# ---- the enumerated estimator (exact sums over a discrete q) -----------------------------


def test_enumerated_elbo_is_the_exact_expectation_over_a_discrete_q():
    """Σ_k q(k|x) log p(x|k) − KL(q ‖ p(z)), computed independently, for a learned q."""
    if "gmm" not in lk.list_models():
        pytest.skip("the example plugin is not installed: pip install -e docs/examples/gmm_plugin")
    model = lk.testing.build_model("gmm", {"components": 4, "posterior": "amortized"}, seed=3)
    x = torch.randn(5, 2, dtype=torch.float64)
    q = model.posterior.top(x)
    K = 4
    log_lik = torch.stack(
        [model.generative.likelihood(torch.full((5,), k)).log_prob(x) for k in range(K)], -1
    )
    expected = (q.probs * log_lik).sum(-1) - kl_divergence(q, model.generative.prior(5))
    result = lk.elbo(model, x, estimator="enumerated")
    assert torch.allclose(result.total, expected, rtol=1e-12, atol=1e-12)
    # Its gradient reaches the encoder through q's probabilities; a sampled k gives none.
    encoder = list(model.posterior.parameters())
    grads = torch.autograd.grad(result.reconstruction.sum(), encoder)
    assert all(bool(g.abs().sum() > 0) for g in grads)
    sampled = lk.elbo(model, x, estimator="analytic").reconstruction.sum()
    assert torch.autograd.grad(sampled, encoder, allow_unused=True)[0] is None


def test_enumerated_estimator_refuses_what_it_cannot_enumerate():
    with pytest.raises(lk.EstimatorError, match="needs a discrete q"):
        lk.elbo(
            lk.load_model("vae", data_shape=(2,), latent_dim=1),
            torch.zeros(1, 2),
            estimator="enumerated",
        )
    if "hvae" in lk.list_models():
        model = lk.load_model("hvae")
        with pytest.raises(lk.EstimatorError, match="enumeration covers one"):
            lk.elbo(model, torch.zeros(1, *model.data_shape), estimator="enumerated")


# ---- the pytest plugin -------------------------------------------------------------------


def test_fixture_fails_an_authors_test_with_the_counterexample(pytester, broken_models):
    pytester.makepyfile(
        """
        def test_my_model(latentkit_check):
            latentkit_check("batch-coupled", checks=["batch-independence"])
        """
    )
    result = pytester.runpytest("--latentkit-device", "cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*batch-independence*failed*",
            "*FAILED batch-independence (batch independence)*",
            "*Falsifying example: ModelCase(name='batch-coupled'*",
        ]
    )


def test_fixture_runs_once_per_device_and_the_option_narrows_it(pytester):
    # Tests the parametrization, not the model: two examples of one check are enough.
    pytester.makepyfile(
        """
        def test_vae(latentkit_check):
            results = latentkit_check("vae", checks=["finite"], max_examples=2)
            assert [r.status for r in results] == ["passed"]
        """
    )
    result = pytester.runpytest("-v", "-rs", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*test_vae[[]cpu[]] PASSED*", "*test_vae[[]cuda[]]*"])
    if not torch.cuda.is_available():
        result.stdout.fnmatch_lines(["*cuda: no CUDA device on this machine*"])
    narrowed = pytester.runpytest("-v", "-p", "no:cacheprovider", "--latentkit-device", "cpu")
    narrowed.assert_outcomes(passed=1)
    assert "[cuda]" not in narrowed.stdout.str()


# ---- latentkit verify --------------------------------------------------------------------


def run_verify(name: str, **options) -> tuple[int, str]:
    console = Console(record=True, width=200, force_terminal=False)
    code = verify_command(name, console=console, **options)
    return code, console.export_text()


def test_verify_passes_a_correct_model():
    # The exit code and the table; vae's properties are tested with 25 examples above.
    code, out = run_verify("vae", max_examples=3)
    assert code == 0, out
    assert "latentkit verify vae" in out and "no check failed" in out
    for check in CHECKS:
        assert check.key in out


def test_verify_fails_a_broken_model_with_a_counterexample(broken_models):
    code, out = run_verify("batch-coupled", max_examples=10)
    assert code == 1, out
    assert "FAILED" in out and "shrunk counterexample" in out
    assert f"1 of {len(CHECKS)} checks failed" in out
    assert "Falsifying example: ModelCase(name='batch-coupled'" in out


def test_verify_usage_errors_exit_2():
    code, out = run_verify("no-such-model")
    assert code == 2 and "no model named 'no-such-model'" in out and "vae" in out
    code, out = run_verify("vae", max_examples=0)
    assert code == 2 and "--max-examples" in out
    if not torch.cuda.is_available():
        code, out = run_verify("vae", device="cuda")
        assert code == 2 and "no CUDA device" in out
