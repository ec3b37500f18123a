"""Agreement checks: two computations of one quantity agree — analytic and Monte Carlo
KL, top-down and bottom-up descriptions of q, CPU and CUDA."""

from __future__ import annotations

import copy

import attrs
import torch

from latentkit.bounds import elbo
from latentkit.errors import NotTractableError
from latentkit.oracles import exact_log_prob
from latentkit.testing.checks.case import ModelCase, NotApplicable
from latentkit.testing.checks.path import draw_with_log_prob, draws_own_density, kl_terms, walk
from latentkit.testing.checks.stats import (
    assert_close,
    assert_in_expectation,
    enumerable,
    expected_elbo,
    per_replicate,
    replicated,
)
from latentkit.testing.strategies import seeded

__all__ = ["device_agreement", "estimator_agreement", "kl_analytic_vs_monte_carlo"]


@torch.no_grad()
def kl_analytic_vs_monte_carlo(case: ModelCase) -> None:
    """Analytic KL = Monte Carlo KL in expectation (DESIGN §7.10).

    Proves: for a top-down chain, each KL term from the ``analytic`` estimator and the
    log-ratio log q(z) − log p(z) from ``top-down-mc`` at the same draws agree in
    expectation (two-sided paired sequential z-test: at the same draws the closed form is
    a control variate for the log-ratio, so only the within-layer spread remains); for a
    one-layer discrete q, the closed form equals Σ_z q(z|x) log(q(z|x)/p(z)) over q's
    support exactly. Catches a registered closed form that is wrong, or a ``log_prob``
    that disagrees with it. Not applicable when q is not top-down or torch has no closed
    form for any of its terms.
    """
    model, x = case.model, case.x
    if not model.posterior.top_down:
        raise NotApplicable("the posterior chain is not top-down: its KL terms are log-ratios")
    with case.draws():
        kls = walk(model, x).closed_form_kls
    if not any(v is not None for v in kls.values()):
        raise NotApplicable("torch has no closed-form KL for any term of this model")
    if enumerable(model, x):
        summed = elbo(model, x, estimator="enumerated").prior_matching
        assert_close(kls["prior_matching"], summed, "closed-form KL vs Σ_z q log(q/p)")
        return

    def both(r: int, stage: int) -> tuple[dict, dict]:
        xr = replicated(x, r)
        with case.draws(1 + 64 * stage):
            analytic = kl_terms(elbo(model, xr, estimator="analytic"))
        with case.draws(1 + 64 * stage):
            sampled = kl_terms(elbo(model, xr, estimator="top-down-mc"))
        return analytic, sampled

    first = both(64, 0)
    for term in first[0]:
        if kls.get(term) is None:
            continue

        def draw(r: int, stage: int, term=term):
            analytic, sampled = first if stage == 0 else both(r, stage)
            return per_replicate(analytic[term], r), per_replicate(sampled[term], r)

        assert_in_expectation(
            draw, f"E[{term}]", relation="=", names=("analytic", "Monte Carlo"), paired=True
        )


@torch.no_grad()
def estimator_agreement(case: ModelCase) -> None:
    """Top-down and bottom-up descriptions of q agree (DESIGN §1, §7.7).

    Proves: for a posterior chain that offers both factorizations, the ELBO from the
    top-down ``analytic`` estimator and from the ``bottom-up`` Monte Carlo estimator have
    the same mean (two-sided sequential z-test, independent replicates). With one latent
    layer both describe the single factor q(z_1|x), so the check is exact: ``top(x)`` and
    ``first(x)`` give the same log density at draws from each (and at every support point
    of a discrete q); for factors that hand out their density with their draws
    (``rsample_and_log_prob``), the same draws and densities under one seed. Not
    applicable unless q is both top-down and bottom-up.
    """
    model, x = case.model, case.x
    q = model.posterior
    if not (q.top_down and q.bottom_up):
        raise NotApplicable("the posterior chain does not offer both top-down and bottom-up")
    if model.num_layers == 1:
        down, up = q.top(x), q.first(x)
        if draws_own_density(down) or draws_own_density(up):
            with case.draws():
                z_down, log_down = draw_with_log_prob(down)
            with case.draws():
                z_up, log_up = draw_with_log_prob(up)
            assert_close(z_down, z_up, "z_1 ~ q(z_1|x): top(x) vs first(x), same seed")
            assert_close(log_down, log_up, "log q(z_1|x): top(x) vs first(x), same seed")
            return
        with case.draws():
            points = [draw_with_log_prob(down)[0], draw_with_log_prob(up)[0]]
        if down.has_enumerate_support:
            points.append(down.enumerate_support(expand=True))
        for z in points:
            assert_close(down.log_prob(z), up.log_prob(z), "log q(z_1|x): top(x) vs first(x)")
        return

    def draw(r: int, stage: int):
        xr = replicated(x, r)
        with case.draws(1 + 64 * stage):
            down = per_replicate(elbo(model, xr, estimator="analytic").total, r)
        with case.draws(2 + 64 * stage):
            up = per_replicate(elbo(model, xr, estimator="bottom-up").total, r)
        return down, up

    assert_in_expectation(draw, "E[ELBO]", relation="=", names=("top-down", "bottom-up"))


@torch.no_grad()
def device_agreement(case: ModelCase) -> None:
    """CPU and CUDA agree under one seed.

    Proves: the same parameters on CPU and on CUDA give, along one latent path drawn on
    CPU, the same log density for every factor of q and of p (round-off allowance), the
    same exact log p(x) where it is tractable, and ELBOs of the same mean (two-sided
    sequential z-test; the devices' generators draw differently; exact sums for a
    one-layer discrete q). Skipped without CUDA.
    """
    cpu = copy.deepcopy(case.model).to("cpu")
    gpu = copy.deepcopy(case.model).to("cuda")
    x_cpu, x_gpu = case.x.to("cpu"), case.x.to("cuda")
    with seeded(case.seed, "cpu"):
        path = walk(cpu, x_cpu)
    on_gpu = walk(gpu, x_gpu, [z.to("cuda") for z in path.latents])
    for factor, value in path.log_densities.items():
        if factor in path.own_density_only:
            continue  # its density comes with its draws: not evaluated at the CPU's draw
        assert_close(on_gpu.log_densities[factor].cpu(), value, f"{factor}: CUDA vs CPU")
    try:
        log_p = exact_log_prob(cpu, x_cpu)
    except NotTractableError:
        pass
    else:
        assert_close(exact_log_prob(gpu, x_gpu).cpu(), log_p, "exact log p(x): CUDA vs CPU")
    case_cpu = attrs.evolve(case, model=cpu, x=x_cpu, x_swap=case.x_swap.cpu(), device="cpu")
    case_gpu = attrs.evolve(case, model=gpu, x=x_gpu, x_swap=case.x_swap.cuda(), device="cuda")

    def draw(r: int, stage: int):
        on_cpu = expected_elbo(cpu, x_cpu, case_cpu, 1 + 64 * stage, r)
        on_cuda = expected_elbo(gpu, x_gpu, case_gpu, 1 + 64 * stage, r).cpu()
        return on_cuda, on_cpu

    assert_in_expectation(draw, "E[ELBO]", relation="=", names=("CUDA", "CPU"))
