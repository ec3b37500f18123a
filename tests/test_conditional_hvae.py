"""The conditional hierarchical VAE (``hvae`` with ``classes`` = K): p(x, z_1..z_L | c) and
q(z_1..z_L | x, c), every factor reading the class's one-hot features.

The exact log p(x | c) of a linear conditional hvae equals the Gaussian closed form computed
here from the weights (the moments of z_L, ..., z_1, x propagated down the chain, not the
oracle's messages up from x); the exact posterior makes every ELBO draw equal log p(x | c);
the ladder q(· | x, c) can be the exact posterior of every class at once; changing c changes
every factor; the checks kit verifies the model given a seeded class. A condition dropped
in any factor fails one of these (the mutants are listed in the test of each). Float64.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from latentkit_hvae import HVAEConfig
from torch.nn import functional as F

import latentkit as lk
from latentkit.testing.checks import run_checks

K, D = 3, 3


def linear_chvae(seed: int, dims=(2, 1), posterior: str = "top-down") -> lk.LatentModel:
    torch.manual_seed(seed)
    model = lk.load_model(
        "hvae",
        data_shape=(D,),
        latent_dims=dims,
        architecture="linear",
        posterior=posterior,
        classes=K,
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.6)
    return model


def closed_form(model: lk.LatentModel, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """log N(x; m_x(c), S_x(c)) with z_L ~ N(μ_c, diag σ_c²), z_{l-1} = A_l z_l + b_l + V_l e_c
    + N(0, diag τ_l²) and x = W z_1 + b + U e_c + N(0, diag ψ): the mean and covariance of
    each layer given c, from the top down, read off the weights."""
    p = model.generative
    e = F.one_hot(c, K).double()
    loc, log_scale = (e @ p.prior_map).chunk(2, -1)
    dims = [s[0] for s in p.latent_shapes]
    out = []
    for i in range(x.shape[0]):
        mean, cov = loc[i], torch.diag(log_scale[i].exp() ** 2)
        for step, d in zip(reversed(p.transitions), reversed(dims[1:]), strict=True):
            layer = step.linear
            A, V = layer.weight[:, :d], layer.weight[:, d:]
            tau = F.softplus(step.raw_scale) + step.min_scale
            mean, cov = A @ mean + layer.bias + V @ e[i], A @ cov @ A.T + torch.diag(tau**2)
        out_layer = p.decoder[0]
        W, U = out_layer.weight[:, : dims[0]], out_layer.weight[:, dims[0] :]
        psi = p.lik.linear_gaussian_variance()
        mean_x = W @ mean + out_layer.bias + U @ e[i]
        cov_x = W @ cov @ W.T + torch.diag(psi)
        out.append(torch.distributions.MultivariateNormal(mean_x, cov_x).log_prob(x[i]))
    return torch.stack(out)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    # float64: the oracle (messages up from x) and the closed form (moments down from z_L)
    # take different routes through D×D and d×d products of O(1) weights; 1e-9 relative
    # leaves room for their round-off only.
    return bool(torch.allclose(a, b, rtol=1e-9, atol=1e-9))


depths = st.sampled_from([(2, 1), (1, 2, 1), (2, 2)])
cases = st.tuples(
    st.integers(0, 2**16), depths, st.lists(st.integers(0, K - 1), min_size=1, max_size=5)
)


@given(cases)
@settings(max_examples=12)
def test_exact_log_prob_given_c_is_the_closed_form(case):
    """The oracle's spec given c is the chain the weights describe. Mutants caught: c dropped
    from the prior's map, or from the spec's prior, transitions or decoder bias; the bias
    shift's sign; the weight split at the wrong column; the prior's mean and log-scale
    swapped, its scale not exponentiated or not squared into a variance; the transitions'
    parents off by one; the features of a wrong class."""
    seed, dims, labels = case
    model = linear_chvae(seed, dims)
    c = torch.tensor(labels)
    x = lk.sample(model, len(labels), condition=c)
    assert close(lk.exact_log_prob(model, x, condition=c), closed_form(model, x, c))


@given(cases)
@settings(max_examples=15)
def test_exact_posterior_makes_every_draw_log_p_given_c(case):
    """log p(x, z | c) − log q(z | x, c) with q the exact posterior: every draw is log p(x | c)
    when the factors the bound evaluates (prior, transitions, likelihood, given c) are the
    chain the oracle conditions. Mutants caught: c dropped in the top prior, a transition or
    the likelihood (the oracle still reading it), and those of the oracle above."""
    seed, dims, labels = case
    model = linear_chvae(seed, dims)
    x = torch.randn(len(labels), D, dtype=torch.float64)
    for k in range(K):
        member = model.given(torch.tensor([k]))
        exact = member.with_posterior(lk.exact_posterior(member))
        log_p = lk.exact_log_prob(model, x, condition=k)
        assert close(log_p, closed_form(model, x, torch.full((len(labels),), k)))
        draws = lk.elbo(exact, x, num_samples=6, estimator="top-down-mc").samples
        assert close(draws, log_p.expand(6, -1))


def _softplus_inverse(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def _set_head(layer: torch.nn.Linear, q_at, width: int, k: int) -> None:
    """Set the one-latent head ``layer`` (inputs ``[u, e_c]``, ``u`` of ``width``; outputs
    [mean, raw]) to q_at(u) = the exact factor of class ``k``: its mean, affine in u (each
    coefficient read at a unit vector), and its scale, which does not depend on u."""
    zero = torch.zeros(1, width, dtype=torch.float64)
    base = q_at(zero)
    for j in range(width):
        unit = zero.clone()
        unit[0, j] = 1.0
        layer.weight[0, j] = q_at(unit).mean.flatten()[0] - base.mean.flatten()[0]
    layer.weight[0, width + k] = base.mean.flatten()[0]
    scale = base.variance.flatten()[0].sqrt() - 1e-4  # the head's min_scale (the default)
    layer.weight[1, width + k] = _softplus_inverse(scale)


def fit_exact_ladder(model: lk.LatentModel) -> None:
    """Set a linear ladder q of one-dimensional layers to the exact posterior of each class.
    With p(z_L | c) of unit scale (its log-scale map zeroed), each exact factor's mean is
    affine in its inputs with coefficients the same for every class and offsets per class,
    and its scale is per class: what a linear head of [z_l, x, e_c] expresses exactly."""
    q, L = model.posterior, model.num_layers
    with torch.no_grad():
        model.generative.prior_map[:, 1:].zero_()
        heads = [q.top_head[0][0]] + [h[0][0] for h in q.down_heads]
        for layer in heads:
            layer.weight.zero_()
            layer.bias.zero_()
        for k in range(K):
            member = model.given(torch.tensor([k]))
            exact = lk.exact_posterior(member)
            _set_head(heads[0], exact.top, D, k)
            for l in range(2, L + 1):  # inputs [z_l, x]: z_l first
                down = exact.down
                _set_head(heads[l - 1], lambda u, l=l, q=down: q(l, u[:, :1], u[:, 1:]), 1 + D, k)


@given(cases.map(lambda case: (case[0], case[2])), st.sampled_from([2, 3]))
@settings(max_examples=10)
def test_ladder_reaches_the_exact_posterior_of_every_class(case, depth):
    """q(· | x, c) of the ladder can be the exact posterior of every class at once: then each
    ELBO draw is log p(x | c). Mutants caught: c dropped in the ladder's encoding (its
    offsets per class are then lost); each row reading another row's class."""
    seed, labels = case
    model = linear_chvae(seed, (1,) * depth)
    fit_exact_ladder(model)
    c = torch.tensor(labels)
    x = torch.randn(len(labels), D, dtype=torch.float64)
    draws = lk.elbo(model, x, condition=c, num_samples=4, estimator="top-down-mc").samples
    assert close(draws, lk.exact_log_prob(model, x, condition=c).expand(4, -1))


@pytest.mark.parametrize("architecture", ["linear", "mlp"])
@pytest.mark.parametrize("posterior", ["top-down", "bottom-up"])
def test_condition_reaches_every_factor(architecture, posterior):
    """Changing c changes p(z_L | c), every p(z_{l-1} | z_l, c), p(x | z_1, c) and every factor
    of q. Mutants caught: c dropped in any one of them (the Markov q's first and up steps are
    caught here only)."""
    torch.manual_seed(0)
    dims = (2, 3, 2)
    model = lk.load_model(
        "hvae",
        data_shape=(D,),
        latent_dims=dims,
        architecture=architecture,
        posterior=posterior,
        hidden=(5,),
        classes=K,
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.6)
    x = torch.randn(2, D, dtype=torch.float64)
    z = {d: torch.randn(2, d, dtype=torch.float64) for d in set(dims)}
    a, b = model.given(torch.tensor([0, 0])), model.given(torch.tensor([1, 1]))

    def differ(factor) -> bool:
        da, db = factor(a), factor(b)
        return not torch.equal(da.mean, db.mean) or not torch.equal(da.stddev, db.stddev)

    assert differ(lambda m: m.generative.prior(2))
    for l in (2, 3):
        assert differ(lambda m, l=l: m.generative.transition(l, z[dims[l - 1]]))
    assert differ(lambda m: m.generative.likelihood(z[dims[0]]))
    if posterior == "top-down":
        assert differ(lambda m: m.posterior.top(x))
        for l in (2, 3):
            assert differ(lambda m, l=l: m.posterior.down(l, z[dims[l - 1]], x))
    else:
        assert differ(lambda m: m.posterior.first(x))
        for l in (2, 3):
            assert differ(lambda m, l=l: m.posterior.up(l, z[dims[l - 2]], x))


def test_unconditional_model_is_unchanged_by_the_field():
    """classes = 0 builds today's model (no condition, the same state-dict keys and shapes);
    K adds the prior's map and widens by K the inputs of the decoder, the transitions and
    q's first layers, and nothing else."""
    plain = lk.load_model("hvae", data_shape=(D,), latent_dims=(2, 1), hidden=(4,))
    zero = lk.load_model("hvae", data_shape=(D,), latent_dims=(2, 1), hidden=(4,), classes=0)
    cond = lk.load_model("hvae", data_shape=(D,), latent_dims=(2, 1), hidden=(4,), classes=K)
    shapes = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    assert zero.condition_spec is None
    assert {k: tuple(v.shape) for k, v in zero.state_dict().items()} == shapes
    wide = {k: tuple(v.shape) for k, v in cond.state_dict().items()}
    assert wide.pop("generative.prior_map") == (K, 2)
    widened = {k for k in shapes if wide[k] != shapes[k]}
    assert widened == {
        "generative.decoder.0.weight",
        "generative.transitions.0.0.0.weight",
        "posterior.blocks.0.0.weight",
    }
    assert all(wide[k][1] == shapes[k][1] + K for k in widened)
    assert cond.condition_spec == lk.ConditionSpec(num_classes=K)


@pytest.mark.parametrize("value", [1, -1, True, 2.0, "3", 100_001])
def test_bad_classes_are_a_config_error_naming_the_field(value):
    with pytest.raises(lk.ConfigError, match="'classes'"):
        HVAEConfig(classes=value)
    with pytest.raises(lk.ConfigError, match="classes"):
        lk.load_model("hvae", classes=value)


def test_the_checks_kit_verifies_a_conditional_hvae():
    """The kit's checks on linear and MLP conditional hvaes given a seeded class (the exact
    log-p comparison on the linear ones)."""
    configs = st.sampled_from(
        [
            {
                "data_shape": (3,),
                "latent_dims": (2, 1),
                "architecture": "linear",
                "likelihood": "gaussian",
                "posterior": posterior,
                "classes": K,
            }
            for posterior in ("top-down", "bottom-up")
        ]
        + [{"data_shape": (3,), "latent_dims": (2, 2), "hidden": (4,), "classes": K}]
    )
    results = run_checks("hvae", configs=configs, max_examples=4, shrink=False)
    ok = ("passed", "skipped", "not applicable")
    assert all(r.status in ok for r in results), [(r.check.key, r.detail) for r in results]
    assert {r.check.key for r in results if r.status == "passed"} >= {
        "exact-log-p",
        "iwae-ordering",
        "samples",
    }
