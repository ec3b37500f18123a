"""The m2 objective's training step, eager against ``torch.compile``, side by side.

The model is the recipe ``m2-100-labels``'s (y: 10 classes, z: 50; one hidden layer of 500
softplus units in p(x | y, z), q(z | x, y) and q(y | x); Bernoulli); a step is forward +
backward + Adam on one batch of 100 binary images, half of them labelled (the recipe's
mix), the loss the ``m2`` objective's on the model given the batch's labels (the view made
outside the compiled function, as a compiled loop makes it). Each contender has its own copy
of the model and optimiser (the same initial weights); their steps alternate in interleaved
rounds, and the table gives the medians per step with a 95% interval and the ratio:

    OMP_NUM_THREADS=1 python -m bench.m2_compile --rounds 15 --inner 10

Measured (one thread, AMD EPYC, beside two other single-thread runs on the 2 cores): eager
147.66 ms, compiled 116.84 ms a step, eager / compiled = 1.30 (95% 1.17–1.38); no
recompilation across the rounds (``TORCH_LOGS=recompiles`` prints none).
"""

from __future__ import annotations

import argparse
import copy

import torch

import latentkit as lk
from bench.timing import eager_against_compiled, interleaved


def _step(model: lk.LatentModel, x: torch.Tensor, labels: torch.Tensor, compiled: bool):
    objective = lk.make_objective("m2", model, alpha=3e6, labelled=50_000)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-4)

    def loss(view: lk.LatentModel) -> torch.Tensor:
        return objective(view, x).mean()

    forward = torch.compile(loss) if compiled else loss

    def step() -> None:
        view = model.given(labels, validate=False, allow_missing=True)
        optimiser.zero_grad(set_to_none=True)
        forward(view).backward()
        optimiser.step()

    return step


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.m2_compile", description=__doc__)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--inner", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = lk.load_model("m2", data_shape=(784,))
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.rand(args.batch, 784, generator=g))
    labels = torch.randint(0, 10, (args.batch,), generator=g)
    labels[args.batch // 2 :] = lk.MISSING_LABEL
    contenders = {
        "eager": _step(copy.deepcopy(model), x, labels, compiled=False),
        "compiled": _step(copy.deepcopy(model), x, labels, compiled=True),
    }
    found = interleaved(contenders, rounds=args.rounds, inner=args.inner, warmup=3)
    eager_against_compiled(
        found, f"m2 objective, training step, batch {args.batch} (half labelled)"
    )


if __name__ == "__main__":
    main()
