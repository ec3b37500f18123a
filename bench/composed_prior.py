"""The continuous-time bound of composed runs (a VAE with a ``vdm`` prior) beside plain ones.

A composed model whose prior is a continuous-time diffusion has two bounds on log p(x):

* ELBO_∞ = E_q[log p_A(x | z) − log q_A(z | x) + ELBO_∞,B(z)], the prior's term its
  continuous-time bound on z (what the ``composed`` objective trains; an unbiased Monte
  Carlo estimate of a lower bound on log p(x) of the continuous-time model);
* the discrete chain at T steps (``latentkit evaluate``'s figure, T = 12), whose diffusion
  term weighs each step's ε-error by (e^{Δγ} − 1)/Δγ ≥ 1 times the continuous rate: on a
  50-dimensional latent with γ spanning 18.3 it is hundreds of nats looser (docs/compose.md).

This prints −ELBO_∞ per run (its mean over ``--draws`` draws per image, ± the standard
error over images) on the run's recorded test split, and −ELBO for a plain model, on the same
binarized test images, so the figures are paired:

    python -m bench.composed_prior runs/vae-vdm runs/iwae-paper-vae --limit 10000 --draws 8
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import latentkit as lk
from latentkit.cli.evaluate import _load_recorded_data
from latentkit.composition import composed_objective


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.composed_prior", description=__doc__)
    ap.add_argument("runs", nargs="+", help="run folders (their newest checkpoint)")
    ap.add_argument("--limit", type=int, default=2000, help="test images (first N)")
    ap.add_argument("--draws", type=int, default=8, help="draws of the bound per image")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument(
        "--exact-normal",
        action="store_true",
        help="a vdm prior with eps_skip and the Gaussian decoder: its bound estimated with the "
        "N(0, I) part in closed form (normal_part = 'exact': the same bound, less noise)",
    )
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


@torch.no_grad()
def bound(model: lk.LatentModel, x: torch.Tensor, draws: int) -> torch.Tensor:
    """Per image, the mean over ``draws`` of ELBO_∞ (composed) or the ELBO (plain), ``[n]``."""
    if model.name == "composed":
        objective = composed_objective(model)
        return -torch.stack([objective(model, x) for _ in range(draws)]).mean(0)
    return lk.elbo(model, x, num_samples=draws).total


def measure(run: str, args: argparse.Namespace) -> dict:
    model, info = lk.load_trained_model(run)
    core = getattr(getattr(model, "prior", None), "generative", None)
    core = getattr(core, "core", None)
    if args.exact_normal and core is not None and core.eps_skip and core.decoder_kind == "gaussian":
        core.exact_normal_part = True  # the same bound, its N(0, I) part in closed form
    ds = _load_recorded_data(info, {})
    x = ds.test[: args.limit]
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    values = torch.cat([bound(model, part, args.draws) for part in x.split(args.batch)])
    kind = "ELBO_inf" if model.name == "composed" else "ELBO"
    return {
        "run": run,
        "model": model.name,
        "step": info.get("step"),
        "bound": kind,
        "nll": -float(values.mean()),
        "se": float(values.std()) / math.sqrt(len(values)),
        "images": len(values),
        "seconds": time.perf_counter() - start,
        "values": values,
    }


def paired(values: torch.Tensor, first: torch.Tensor) -> str:
    """−bound of this run less the first run's, on the same images: mean ± its standard
    error over images (the draws differ, the images are shared)."""
    d = first - values
    return f"{float(d.mean()):+.2f} ± {float(d.std()) / math.sqrt(len(d)):.2f}"


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    print(
        f"{'run':40s} {'model':9s} {'step':>7s} {'bound':9s} {'-bound (nats)':>16s} "
        f"{'vs the first':>14s} {'images':>6s}"
    )
    first = None
    for run in args.runs:
        r = measure(run, args)
        figure = f"{r['nll']:.2f} ± {r['se']:.2f}"
        same = first is not None and len(first) == len(r["values"])
        versus = paired(r["values"], first) if same else ""
        first = r["values"] if first is None else first
        print(
            f"{r['run']:40s} {r['model']:9s} {r['step']:>7} {r['bound']:9s} {figure:>16s} "
            f"{versus:>14s} {r['images']:>6d}  ({r['seconds']:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
