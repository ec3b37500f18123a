"""What a better prior can gain on a trained VAE with its encoder and decoder frozen.

With q(z | x) and p(x | z) fixed, replacing the prior N(0, I) by any density r(z) moves the
ELBO of an image x by exactly

    E_{q(z|x)}[log r(z) − log N(z; 0, I)],

so the mean of that over test images is the test bound's gain, whatever r is. This draws
z ~ q(z | x) for training and test images of a trained VAE's run and scores several r,
fitted to the training draws only:

* ``gaussian``: the full-covariance Gaussian (the maximum-likelihood mean and covariance);
* ``gmm-K``: a full-covariance mixture of K Gaussians (EM, float64);
* ``vdm``: the ``vdm`` prior of ``bench.prior_on_frozen_vae`` (``eps_skip``, Gaussian
  decoder, an MLP), trained alone on z ~ q(z | x_n) drawn afresh for each batch, scored
  with its continuous bound ELBO_∞(z) (exact normal part) in place of log r(z): a lower
  bound on its gain, the same figure a composed model's test bound moves by;
* ``posterior-mixture``: the training images' aggregate posterior itself,
  r(z) = (1/N) Σ_n q(z | x_n) over the N training images (Hoffman & Johnson 2016's q(z)).

Each is scored on draws from test images (the gain a prior of that form would give the test
bound) and on draws from training images (the posterior mixture's in-sample figure includes
each draw's own q(z | x_n): the memorised part). The gap between the two columns is what a
prior fitted to the training posteriors cannot carry to new images:

    python -m bench.aggregate_posterior_fit runs/iwae-paper-vae --train 50000 --limit 2000
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch

import latentkit as lk
from latentkit.cli.data import _load_recorded_data
from latentkit.diagnostics import aggregate_log_prob


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.aggregate_posterior_fit", description=__doc__
    )
    ap.add_argument("run", help="a trained one-layer VAE's run folder")
    ap.add_argument("--train", type=int, default=50_000, help="training images fitted")
    ap.add_argument("--limit", type=int, default=2000, help="test (and training) images scored")
    ap.add_argument("--draws", type=int, default=4, help="draws of z per scored image")
    ap.add_argument("--components", default="10,100", help="the mixtures' K")
    ap.add_argument("--em-steps", type=int, default=100)
    ap.add_argument(
        "--vdm-steps",
        default="0",
        help="the vdm row's Adam steps (0: no row); a list (2000,10000) gives a row at each",
    )
    ap.add_argument("--vdm-hidden", default="256,256", help="the vdm prior's MLP widths")
    ap.add_argument("--vdm-lr", type=float, default=1e-3)
    ap.add_argument("--vdm-batch", type=int, default=256)
    ap.add_argument(
        "--vdm-ema",
        type=float,
        default=0.0,
        help="EMA decay of the weights scored (0: the trained weights themselves)",
    )
    ap.add_argument("--skip-mixture", action="store_true", help="no posterior-mixture row")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def posterior_of(vae):
    """x -> q(z | x) of a one-layer model (its only factor)."""
    q = vae.posterior
    if vae.num_layers != 1:
        raise SystemExit("a one-layer model is needed (its q(z | x) is one factor)")
    return lambda x: q.top(q.encode(x)) if q.top_down else q.first(q.encode(x))


def standard_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def fit_gmm(z: torch.Tensor, k: int, steps: int, seed: int):
    """EM for a full-covariance mixture of ``k`` Gaussians on ``z`` [n, d] (float64); returns
    its log density as a function. Covariances get 1e-6 on the diagonal (float64 round-off
    against singular components, far below any posterior's variance here)."""
    g = torch.Generator().manual_seed(seed)
    n, d = z.shape
    means = z[torch.randperm(n, generator=g)[:k]].clone()
    covs = torch.cov(z.T).expand(k, d, d).clone()
    logw = torch.full((k,), -math.log(k), dtype=z.dtype)
    eye = 1e-6 * torch.eye(d, dtype=z.dtype)

    def log_joint(x):
        dist = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
        return dist.log_prob(x.unsqueeze(1)) + logw  # [n, k]

    for _ in range(steps):
        resp = torch.softmax(log_joint(z), dim=1)  # [n, k]
        nk = resp.sum(0) + 1e-12
        logw = torch.log(nk / n)
        means = (resp.T @ z) / nk[:, None]
        diff = z.unsqueeze(1) - means  # [n, k, d]
        covs = torch.einsum("nk,nkd,nke->kde", resp, diff, diff) / nk[:, None, None] + eye
    return lambda x: torch.logsumexp(log_joint(x), dim=1)


def vdm_rows(posterior, fit_x, z_test, z_seen, args) -> None:
    """Rows ``vdm (S steps)``: the prior trained on batches of 256 draws z ~ q(z | x_n) (one
    fresh draw per row from the training images' posteriors), scored by its bound."""
    from latentkit.registry import training_objective

    with torch.no_grad():
        qs = [posterior(b) for b in fit_x.split(1000)]
        mean = torch.cat([q.mean for q in qs]).reshape(len(fit_x), -1)
        std = torch.cat([q.stddev for q in qs]).reshape(len(fit_x), -1)
    prior = lk.load_model(
        "vdm", data_shape=(mean.shape[1],), decoder="gaussian", fourier_exponents=(),
        hidden=tuple(int(w) for w in args.vdm_hidden.split(",")), eps_skip=True,
        normal_part="exact",
    )  # fmt: skip
    objective = training_objective(prior)
    opt = torch.optim.Adam(prior.parameters(), lr=args.vdm_lr)
    scored = copy.deepcopy(prior) if args.vdm_ema else prior
    pairs = list(zip(scored.parameters(), prior.parameters(), strict=True))
    marks = sorted(int(s) for s in args.vdm_steps.split(","))
    start, done = time.perf_counter(), 0
    for mark in marks:
        prior.train()
        for _ in range(mark - done):
            i = torch.randint(0, len(mean), (args.vdm_batch,))
            z = mean[i] + std[i] * torch.randn_like(mean[i])
            loss = objective(prior, z).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if args.vdm_ema:
                with torch.no_grad():
                    for avg, p in pairs:
                        avg.lerp_(p, 1 - args.vdm_ema)
        done = mark
        scored.eval()
        with torch.no_grad():
            bound = lambda z: torch.cat(  # noqa: E731
                [-objective(scored, b.float()).double() for b in z.split(2000)]
            )
            seconds = time.perf_counter() - start
            report(f"vdm, {mark} steps ({seconds:.0f} s)", bound, z_test, z_seen, args.draws)


def draws(posterior, x: torch.Tensor, m: int) -> torch.Tensor:
    """m draws of z ~ q(z | x) per row, [m · len(x), d], the draws of one image adjacent."""
    with torch.no_grad():
        z = torch.cat([posterior(b).sample((m,)).transpose(0, 1) for b in x.split(1000)])
    return z.reshape(-1, z.shape[-1])


def report(name: str, fn, z_test: torch.Tensor, z_train: torch.Tensor, m: int) -> None:
    """The gain over N(0, I) per image, mean ± standard error over images, test and train."""
    cells = []
    for z in (z_test, z_train):
        gain = (fn(z) - standard_log_prob(z)).reshape(-1, m).mean(1)
        cells.append(f"{gain.mean():+8.2f} ± {gain.std() / math.sqrt(len(gain)):.2f}")
    print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    torch.manual_seed(args.seed)
    vae, info = lk.load_trained_model(args.run)
    vae.eval()
    posterior = posterior_of(vae)
    ds = _load_recorded_data(info, {})
    grey = lk.load_dataset("mnist", variant="unit", flatten=True).train[: args.train]
    fit_x = torch.bernoulli(grey).reshape(-1, *vae.data_shape)
    test_x = ds.test[: args.limit].reshape(-1, *vae.data_shape)
    seen_x = fit_x[: args.limit]
    z_fit = draws(posterior, fit_x, 1).double()
    z_test = draws(posterior, test_x, args.draws).double()
    z_seen = draws(posterior, seen_x, args.draws).double()
    print(f"{args.run}: r fitted to one draw from each of {len(fit_x)} training images; scored")
    print(f"on {args.draws} draws from each of {args.limit} test / training images (the first")
    print(f"{args.limit} fitted). Gain = E_q[log r(z) − log N(z; 0, I)] per image, nats.\n")
    print("| r(z) | test | training (in-sample) |\n|---|---|---|")
    report("N(0, I)", standard_log_prob, z_test, z_seen, args.draws)
    mean, cov = z_fit.mean(0), torch.cov(z_fit.T)
    gauss = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    report("gaussian (full covariance)", gauss.log_prob, z_test, z_seen, args.draws)
    for k in (int(c) for c in args.components.split(",") if c):
        start = time.perf_counter()
        fn = fit_gmm(z_fit, k, args.em_steps, args.seed)
        report(f"gmm-{k} ({time.perf_counter() - start:.0f} s EM)", fn, z_test, z_seen, args.draws)
    if args.vdm_steps != "0":
        vdm_rows(posterior, fit_x, z_test, z_seen, args)
    if args.skip_mixture:
        return
    with torch.no_grad():
        mix = lambda z: aggregate_log_prob(posterior, z.float(), fit_x).double()  # noqa: E731
        report(f"posterior mixture of {len(fit_x)}", mix, z_test, z_seen, args.draws)


if __name__ == "__main__":
    main()
