"""IWAE-k evaluation speed: q(z|x) built once per example against once per draw.

``latentkit.iwae`` draws a one-layer model's k samples from one q(z|x) per example
(``bounds._one_layer_log_weights``); before, it repeated every example k times and ran the
encoder on all k·batch rows (``bounds._estimator_log_weights``, still the path of deeper
chains). Both are timed interleaved on the same model, chunked as ``latentkit evaluate``
does, and the per-example IWAE of the two agrees in distribution (same draws when one chunk
holds every row).

    python -m bench.iwae_speed                 # 784-200-200-50 Bernoulli VAE, k = 5000
    python -m bench.iwae_speed --k 500 --examples 4
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import latentkit as lk
from latentkit.bounds import RunningLogSumExp, _estimator_log_weights
from latentkit.estimators import monte_carlo_estimator


def iwae_per_draw(model, x, k: int, chunk: int) -> torch.Tensor:
    """The IWAE with the encoder run once per draw (the path before q was built once)."""
    est = monte_carlo_estimator(model)
    out = []
    for start in range(0, x.shape[0], 1):
        acc = RunningLogSumExp(1, dtype=x.dtype, device=x.device)
        xi = x[start : start + 1]
        for done in range(0, k, chunk):
            acc.add(_estimator_log_weights(est, model, xi, min(chunk, k - done)))
        out.append(acc.result())
    return torch.cat(out) - math.log(k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--examples", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=5000, help="rows per network call")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = lk.load_model(
        "vae",
        data_shape=(784,),
        latent_dim=50,
        hidden=(200, 200),
        activation="tanh",
        likelihood="bernoulli",
    ).eval()
    x = (torch.rand(args.examples, 784, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    fns = {
        "q once per example (latentkit.iwae)": lambda: lk.iwae(model, x, args.k, chunk=args.chunk),
        "q once per draw (before)": lambda: iwae_per_draw(model, x, args.k, args.chunk),
    }
    times = {name: [] for name in fns}
    # One torch thread: the calling thread's CPU time (the machine may be shared).
    clock = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter
    values = {}
    with torch.no_grad():
        for name, fn in fns.items():
            values[name] = fn()  # warm-up
        for r in range(args.rounds):
            for name in fns if r % 2 == 0 else list(fns)[::-1]:
                t0 = clock()
                fns[name]()
                times[name].append(clock() - t0)
    print(
        f"VAE 784-200-200-50, k = {args.k}, {args.examples} examples, chunk {args.chunk}, "
        f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds, "
        f"{'thread CPU time' if clock is time.thread_time else 'wall time'}"
    )
    med = {n: sorted(t)[len(t) // 2] for n, t in times.items()}
    for name in fns:
        per = med[name] / args.examples
        print(
            f"  {name:<36} {per:.3f} s per example -> 10,000 examples in "
            f"{per * 1e4 / 60:.1f} min; IWAE {values[name].mean().item():.3f}"
        )
    a, b = (med[n] for n in fns)
    print(f"  speed-up: {b / a:.2f}x")


if __name__ == "__main__":
    main()
