"""A diffusion prior fitted to a trained VAE's aggregate posterior, the VAE frozen.

LSGM starts from a trained VAE. With ``eps_skip`` a ``vdm`` prior starts as N(0, I) exactly
(to the bound), so composing a trained VAE with an untrained skip prior changes nothing; the
prior's training alone then moves the bound by

    ELBO_∞(x) − ELBO(x) = E_{q(z|x)}[ELBO_∞,B(z) − log N(z; 0, I)],

whose mean over the data is at most KL(q(z) ‖ N(0, I)), the aggregate posterior's divergence
from the standard normal (Hoffman & Johnson 2016's "marginal KL"), less what the prior's own
bound leaves. This trains only the prior (the composed objective's gradient reaches only its
parameters) and prints the test figures, paired on the same images:

    python -m bench.prior_on_frozen_vae runs/iwae-paper-vae --steps 5000 --limit 2000
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import latentkit as lk
from latentkit.cli.evaluate import _load_recorded_data
from latentkit.composition import compose, composed_objective


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.prior_on_frozen_vae", description=__doc__)
    ap.add_argument("run", help="a trained VAE's run folder (its newest checkpoint, averaged)")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden", default="256,256", help="the prior's MLP widths")
    ap.add_argument("--limit", type=int, default=2000, help="test images scored")
    ap.add_argument("--draws", type=int, default=16, help="draws of each bound per image")
    ap.add_argument(
        "--weighting",
        choices=("elbo", "simple"),
        default="elbo",
        help="the prior's training loss: its continuous bound (elbo) or ½‖ε − ε̂‖² (simple, "
        "LSGM's reweighted prior objective; no bound)",
    )
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def train_prior(model, objective, data: torch.Tensor, args: argparse.Namespace) -> float:
    """Adam on the prior's parameters alone, batches drawn from ``data`` (binarized afresh:
    the grey levels as Bernoulli probabilities); returns the seconds it took."""
    params = list(model.prior.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    start = time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(0, data.shape[0], (args.batch_size,))
        x = torch.bernoulli(data[idx])
        loss = objective(model, x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 1000 == 0:
            print(f"step {step}: loss {loss.item():.2f}", flush=True)
    return time.perf_counter() - start


@torch.no_grad()
def per_image(fn, x: torch.Tensor, draws: int) -> torch.Tensor:
    return torch.cat([torch.stack([fn(p) for _ in range(draws)]).mean(0) for p in x.split(500)])


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    torch.manual_seed(args.seed)
    vae, info = lk.load_trained_model(args.run)
    ds = _load_recorded_data(info, {})
    widths = tuple(int(w) for w in args.hidden.split(","))
    prior = lk.load_model(
        "vdm",
        data_shape=tuple(vae.generative.latent_shapes[-1]),
        decoder="gaussian",
        hidden=widths,
        fourier_exponents=(),
        eps_skip=True,
        normal_part="exact",
    )  # fmt: skip  (exact: the same bound and prior gradient, less noise in the figures)
    for p in vae.parameters():
        p.requires_grad_(False)
    model = compose(vae, prior=prior)
    objective = composed_objective(model, prior_objective="continuous")  # the bound
    training = objective
    if args.weighting == "simple":
        simple = {"weighting": "simple"}
        training = composed_objective(
            model, prior_objective="score-matching", prior_objective_config=simple
        )
    grey = lk.load_dataset("mnist", variant="unit", flatten=True).train[:50_000]
    seconds = train_prior(model.train(), training, grey.reshape(-1, *vae.data_shape), args)
    model.eval()
    x = ds.test[: args.limit]
    plain = per_image(lambda b: lk.elbo(vae, b).total, x, args.draws)
    composed = per_image(lambda b: -objective(model, b), x, args.draws)
    diff = composed - plain
    n = len(x)
    print(
        f"prior trained {args.steps} steps ({args.weighting}) in {seconds:.0f} s "
        f"({args.run}, {n} test images)"
    )
    print(f"plain VAE   −ELBO   {-plain.mean():.2f} ± {plain.std() / math.sqrt(n):.2f}")
    print(f"vdm prior   −ELBO_∞ {-composed.mean():.2f} ± {composed.std() / math.sqrt(n):.2f}")
    print(f"paired: −ELBO_∞ − (−ELBO) = {-diff.mean():.2f} ± {diff.std() / math.sqrt(n):.2f}")


if __name__ == "__main__":
    main()
