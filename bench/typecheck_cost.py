"""What ``latentkit.arguments.checked`` (annotations checked by typeguard at an entry point)
costs per call: three decorated public functions timed with and without the decorator
(``fn.__wrapped__``), interleaved (``bench.timing``), on the CPU time of one thread.

    OMP_NUM_THREADS=1 python -m bench.typecheck_cost [--rounds 31]

The three span the annotation kinds the decorator meets: plain classes (decided by one
``isinstance``), generic ``Sequence[int]`` (typeguard, every item) and a class's
``__init__``. For scale, the last line times one ``lk.elbo`` call of the same small model,
which the decorator never wraps (its per-step path stays unchecked by annotations).
"""

from __future__ import annotations

import argparse

import torch

import latentkit as lk
from bench.timing import cpu_clock, device_string, difference, interleaved, ratio
from latentkit.networks import GaussianHead, check_unet_shape


def contenders() -> dict[str, tuple]:
    """name → (checked call, the same call without the decorator)."""
    torch.manual_seed(0)
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear")
    x = torch.zeros(8, 4)
    exact, unet, head = lk.exact_log_prob, check_unet_shape, GaussianHead.__init__
    plain_head = GaussianHead.__new__(GaussianHead)
    return {
        "exact_log_prob(model, x)  [2 classes + a bool]": (
            lambda: exact(model, x),
            lambda: exact.__wrapped__(model, x),
        ),
        "check_unet_shape((1, 8, 8), (1, 2))  [2 × Sequence[int]]": (
            lambda: unet((1, 8, 8), (1, 2)),
            lambda: unet.__wrapped__((1, 8, 8), (1, 2)),
        ),
        "GaussianHead.__init__(head, 1e-4)  [a class's float]": (
            lambda: head(plain_head, 1e-4),
            lambda: head.__wrapped__(plain_head, 1e-4),
        ),
        "(for scale) lk.elbo(model, x), never decorated": (
            lambda: lk.elbo(model, x),
            None,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--inner", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock, clock_name = cpu_clock("cpu")
    print(f"# {device_string()}\n# clock: {clock_name}; {args.rounds} rounds × {args.inner} calls")
    print(f"{'function':58} {'without':>10} {'with':>10} {'cost':>10} {'ratio (95% CI)':>20}")
    for name, (with_check, without) in contenders().items():
        calls = (
            {"with": with_check} if without is None else {"with": with_check, "without": without}
        )
        timed = interleaved(calls, rounds=args.rounds, inner=args.inner, clock=clock)
        w = timed["with"].median * 1e9
        if without is None:
            print(f"{name:58} {'':>10} {w:>9.0f}n")
            continue
        wo = timed["without"].median * 1e9
        cost = difference(timed["with"], timed["without"]) * 1e9
        r, lo, hi = ratio(timed["with"], timed["without"])
        print(f"{name:58} {wo:>9.0f}n {w:>9.0f}n {cost:>9.0f}n {r:>8.2f} ({lo:.2f}–{hi:.2f})")
    print("# ns per call: medians over rounds; cost = median of the paired per-round differences")


if __name__ == "__main__":
    main()
