"""The composed objective's training step, eager against ``torch.compile``, side by side.

The model is the recipe ``iwae-paper-vae-vdm-prior``'s (the IWAE paper's VAE 784-200-200-50,
tanh, Bernoulli, with a ``vdm`` prior over z: ``eps_skip``, MLP 256-256, no Fourier
features); a step is forward + backward + Adam on one batch of 100 binary images, the loss
the ``composed`` objective's. Each contender has its own copy of the model and optimiser
(the same initial weights); their steps alternate in interleaved rounds, and the table gives
the medians per step with a 95% interval and the ratio:

    OMP_NUM_THREADS=1 python -m bench.composed_compile --rounds 15 --inner 20
"""

from __future__ import annotations

import argparse
import copy

import torch

import latentkit as lk
from bench.timing import eager_against_compiled, interleaved
from latentkit.composition import compose, composed_objective


def _model() -> lk.LatentModel:
    outer = lk.load_model("vae", data_shape=(784,), latent_dim=50, hidden=(200, 200),
                          activation="tanh", likelihood="bernoulli")  # fmt: skip
    prior = lk.load_model("vdm", data_shape=(50,), decoder="gaussian", eps_skip=True,
                          fourier_exponents=(), hidden=(256, 256))  # fmt: skip
    return compose(outer, prior=prior)


def _step(model: lk.LatentModel, x: torch.Tensor, compiled: bool):
    objective = composed_objective(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        return objective(model, x).mean()

    forward = torch.compile(loss) if compiled else loss

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        forward().backward()
        optimiser.step()

    return step


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.composed_compile", description=__doc__)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--inner", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = _model()
    x = torch.bernoulli(torch.rand(args.batch, 784, generator=torch.Generator().manual_seed(1)))
    contenders = {
        "eager": _step(copy.deepcopy(model), x, compiled=False),
        "compiled": _step(copy.deepcopy(model), x, compiled=True),
    }
    found = interleaved(contenders, rounds=args.rounds, inner=args.inner, warmup=3)
    eager_against_compiled(found, f"composed objective, training step, batch {args.batch}")


if __name__ == "__main__":
    main()
