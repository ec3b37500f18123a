"""Where the encoder's gradient noise lies under three estimators of one composed bound.

A VAE with an ``eps_skip`` ``vdm`` prior (the recipe ``iwae-paper-vae-vdm-prior``) has three
estimators of the same bound, with the same expected gradient (docs/compose.md, "Training a
diffusion prior"):

* ``estimated``: the prior's continuous bound drawn whole at one (t, ε) per example;
* ``exact``: ``normal_part = "exact"``, its standard-normal part in closed form, only the
  residual drawn;
* ``independent``: the exact value, with the gradient of the standard-normal part estimated
  at draws of (t, ε, z_0) of its own, independent of the residual's.

``grad RUN`` prints, on one batch of training images at the run's newest checkpoint, the
encoder's gradient over ``--draws`` draws of each: the total variance (over every encoder
parameter) and the variance along the mean gradient's direction. ``train CONFIG RUN_DIR``
trains ``latentkit train --config CONFIG`` with the ``independent`` form (the config must set
``normal_part = "exact"``), for the comparison of trained models:

    python -m bench.normal_part_noise grad runs/vdm-prior-20k --draws 600
    python -m bench.normal_part_noise train runs/vdm-prior-exact-20k/config.toml runs/indep
    python -m bench.composed_prior runs/vdm-prior-20k runs/indep --limit 2000 --draws 16 \\
        --exact-normal

Measured (docs/compose.md): at the estimated run's step 20,000, total variance 1,120 /
884 / 2,093 and along the mean 18.3 / 23.8 / 30.4 (estimated / exact / independent); the
trained models 106.12 / 112.35 / 123.01 nats.

``train --form`` also takes forms that change only what the encoder receives from the
residual's term (config: ``normal_part = "exact"``): ``detached`` (nothing), ``score`` (the
network's smoothed residual score, one deterministic call), ``encoder-draws`` (the mean of
``--encoder-draws`` further draws, the network held fixed in them) and ``ramp`` (its gradient
scaled by w rising 0 → 1 over ``--ramp START END`` steps; the composed objective's
``encoder_warmup`` for any prior). Trained 20,000 steps and paired with the plain VAE's
99.89 on 2,000 test images: 99.76, 104.31, 109.02, 99.55 (``--ramp 10000 15000``), and
99.37 for ``detached`` with the prior on 8 draws (docs/compose.md, "Less noise does not
help").
"""

from __future__ import annotations

import argparse
import sys

import torch
from latentkit_vdm.continuous import ContinuousDiffusion, sample_times

import latentkit as lk
from latentkit.diffusion import alpha_bar_sq, beta_bar_sq
from latentkit.registry import training_objective
from latentkit.trained import load_trained_model

MODES = ("estimated", "exact", "independent")
_CLOSED = ContinuousDiffusion.normal_part


def _sampled_normal_part(core: ContinuousDiffusion, x: torch.Tensor) -> torch.Tensor:
    """The standard-normal part of the bound (ε̂ = β̄_t z_t) at draws of its own."""
    t = torch.rand(x.shape[0], dtype=x.dtype, device=x.device)
    eps = torch.randn_like(x)
    g, dg = core.gamma(t)
    gx = core._bc(g, x)
    z_t = alpha_bar_sq(gx).sqrt() * core.on_grid(x) + beta_bar_sq(gx).sqrt() * eps
    err = (eps - beta_bar_sq(gx).sqrt() * z_t).pow(2).flatten(1).sum(-1)
    return core.reconstruction(x) - core.prior_matching(x) - 0.5 * dg * err


def _independent(core: ContinuousDiffusion, x: torch.Tensor) -> torch.Tensor:
    """The closed form's value with the independently sampled part's gradient."""
    closed = _CLOSED(core, x)
    if not torch.is_grad_enabled():
        return closed
    sampled = _sampled_normal_part(core, x)
    return closed.detach() + sampled - sampled.detach()


_INTEGRAND = ContinuousDiffusion.diffusion_integrand


def _residual_without_encoder_gradient(core: ContinuousDiffusion, x: torch.Tensor, *a, **k):
    """The residual's term (``minus_normal``) at z cut from the encoder: the same value and
    the same gradient for the prior's network; the encoder's gradient is the closed-form
    normal part's alone (as if its prior were N(0, I)). Not a gradient of the bound."""
    if k.get("minus_normal"):
        x = x.detach()
    return _INTEGRAND(core, x, *a, **k)


SCORE_GAMMA = -2.94
"""γ of the smoothed score the ``score`` form hands the encoder: β̄² = sigmoid(γ) = 0.05."""


def _residual_with_score_gradient(core: ContinuousDiffusion, x: torch.Tensor, *a, **k):
    """The detached form's residual term, its value and the prior network's gradient
    unchanged, plus a term of value 0 whose gradient for z (so the encoder) is −α·(the
    residual's score at γ = ``SCORE_GAMMA``, ε = 0): −α s_res(α z), s_res = −net(α z)/β̄,
    one deterministic network call. An estimate of −∇_z (log p_B(z) − log N(z; 0, I))
    without the draws' noise, biased by the smoothing. Not a gradient of the bound."""
    if not k.get("minus_normal"):
        return _INTEGRAND(core, x, *a, **k)
    term = _INTEGRAND(core, x.detach(), *a, **k)
    if torch.is_grad_enabled() and x.requires_grad:
        with torch.no_grad():
            g = x.new_full((x.shape[0],), SCORE_GAMMA)
            alpha, sigma = alpha_bar_sq(g).sqrt()[:, None], beta_bar_sq(g).sqrt()[:, None]
            t = _time(core, g)
            z_t = alpha * x
            residual = core.eps(z_t, t, g) - sigma * z_t  # the network's part of ε̂
            grad = alpha * residual / sigma
        surrogate = (x * grad).flatten(1).sum(-1)
        term = term + surrogate - surrogate.detach()
    return term


ENCODER_DRAWS = 8
"""Draws of (t, ε) the ``encoder-draws`` form averages for the encoder's gradient."""


def _residual_with_encoder_draws(core: ContinuousDiffusion, x: torch.Tensor, *a, **k):
    """The residual's term at one draw for its value and the prior network's gradient (the
    detached form's), plus a term of value 0 whose gradient for z is the mean over
    ``ENCODER_DRAWS`` further draws of (t, ε) of the residual term's gradient, the network
    held fixed in them: the full form's expected gradients for every parameter, the encoder's
    with ENCODER_DRAWS times less variance, the prior network's as before."""
    if not k.get("minus_normal"):
        return _INTEGRAND(core, x, *a, **k)
    term = _INTEGRAND(core, x.detach(), *a, **k)
    if torch.is_grad_enabled() and x.requires_grad:
        params = [p for p in core.parameters() if p.requires_grad]
        for p in params:  # the network held fixed: these draws reach z alone
            p.requires_grad_(False)
        try:
            n, draws = x.shape[0], ENCODER_DRAWS
            rows = x.repeat(draws, *([1] * (x.ndim - 1)))
            t = sample_times(draws * n, "low-discrepancy", like=x)
            many = _INTEGRAND(core, rows, t, torch.randn_like(rows), minus_normal=True)
            many = many.reshape(draws, n).mean(0)
        finally:
            for p in params:
                p.requires_grad_(True)
        term = term + many - many.detach()
    return term


RAMP = (10_000, 15_000)
"""Training steps over which the ``ramp`` form's encoder weight w rises from 0 to 1."""
_CALLS = [0]  # training calls of the residual's term so far (one per step)


def _ramp_weight(step: int) -> float:
    start, end = RAMP
    return min(max((step - start) / max(end - start, 1), 0.0), 1.0)


def _residual_ramped(core: ContinuousDiffusion, x: torch.Tensor, *a, **k):
    """The residual's term at z_w = sg(z) + w (z − sg(z)): its value and the prior network's
    gradient unchanged, the encoder's gradient through it scaled by w (0: the detached form,
    1: the full one), w rising linearly over the training steps ``RAMP`` (a step is counted
    at each call with the gradient on). Not a gradient of the bound while w < 1."""
    if not k.get("minus_normal") or not (torch.is_grad_enabled() and x.requires_grad):
        return _INTEGRAND(core, x, *a, **k)
    w = _ramp_weight(_CALLS[0])
    _CALLS[0] += 1
    return _INTEGRAND(core, x.detach() + w * (x - x.detach()), *a, **k)


def _time(core: ContinuousDiffusion, gamma: torch.Tensor) -> torch.Tensor:
    """t with γ(t) = gamma for the linear schedule γ_min + (γ_max − γ_min) t (the recipe's)."""
    if type(core.log_snr).__name__ != "LinearLogSNR":
        raise lk.ConfigError("the score form needs the linear schedule (schedule = 'linear')")
    lo, _ = core.gamma(gamma.new_zeros(()))
    hi, _ = core.gamma(gamma.new_ones(()))
    return (gamma - lo) / (hi - lo)


def _use(core: ContinuousDiffusion, mode: str) -> None:
    core.exact_normal_part = mode != "estimated"
    ContinuousDiffusion.normal_part = _independent if mode == "independent" else _CLOSED


def gradient_noise(run: str, draws: int, batch: int) -> None:
    model, _ = load_trained_model(run)
    model.train()
    x = lk.load_dataset("mnist", variant="binarized", seed=0).train[:batch].float()
    core = model.prior.generative.core
    objective = training_objective(model)
    encoder = list(model.outer.posterior.parameters())
    found = {}
    for mode in MODES:
        _use(core, mode)
        torch.manual_seed(0)
        rows = []
        for _ in range(draws):
            grads = torch.autograd.grad(objective(model, x).mean(), encoder)
            rows.append(torch.cat([g.flatten() for g in grads]))
        found[mode] = torch.stack(rows)
    _use(core, "estimated")
    direction = found["estimated"].mean(0)
    direction = direction / direction.norm()
    print(f"{run}: encoder gradient over {draws} draws on {batch} training images")
    print(f"{'form':12s} {'total var':>10s} {'var along mean':>15s} {'|mean|':>8s}")
    for mode, g in found.items():
        along = float(((g - g.mean(0)) @ direction).var())
        total, size = float(g.var(0).sum()), float(g.mean(0).norm())
        print(f"{mode:12s} {total:10.1f} {along:15.2f} {size:8.3f}")


def main(argv: list[str] | None = None) -> int:
    global ENCODER_DRAWS, RAMP
    ap = argparse.ArgumentParser(prog="python -m bench.normal_part_noise", description=__doc__)
    sub = ap.add_subparsers(dest="what", required=True)
    g = sub.add_parser("grad", help="the encoder's gradient noise of the three forms")
    g.add_argument("run")
    g.add_argument("--draws", type=int, default=600)
    g.add_argument("--batch", type=int, default=100)
    t = sub.add_parser("train", help="train a config with the independent form")
    t.add_argument("config")
    t.add_argument("run_dir")
    t.add_argument(
        "--form",
        choices=("independent", "detached", "score", "encoder-draws", "ramp"),
        default="independent",
        help="independent: the normal part's gradient at draws of its own; detached: the "
        "residual's term without the encoder's gradient (config: normal_part = exact); "
        "score: detached, the encoder given the prior network's smoothed residual score; "
        "encoder-draws: the encoder's residual gradient averaged over --encoder-draws draws",
    )
    t.add_argument("--encoder-draws", type=int, default=ENCODER_DRAWS)
    t.add_argument("--ramp", type=int, nargs=2, default=RAMP, metavar=("START", "END"))
    args = ap.parse_args(argv)
    if args.what == "grad":
        gradient_noise(args.run, args.draws, args.batch)
        return 0
    from latentkit.cli import main as cli

    if args.form == "detached":
        ContinuousDiffusion.diffusion_integrand = _residual_without_encoder_gradient
    elif args.form == "score":
        ContinuousDiffusion.diffusion_integrand = _residual_with_score_gradient
    elif args.form == "encoder-draws":
        ENCODER_DRAWS = args.encoder_draws
        ContinuousDiffusion.diffusion_integrand = _residual_with_encoder_draws
    elif args.form == "ramp":
        RAMP = tuple(args.ramp)
        ContinuousDiffusion.diffusion_integrand = _residual_ramped
    else:
        ContinuousDiffusion.normal_part = _independent
    return cli(["train", "--config", args.config, "--run-dir", args.run_dir, "--no-progress"])


if __name__ == "__main__":
    sys.exit(main())
