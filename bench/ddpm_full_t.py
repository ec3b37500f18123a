"""Full-T DDPM ELBO throughput: the layer-batched estimator against the network's own forward.

A DDPM with T = 1000 on a batch of 8-bit images (sklearn's 8×8 digits mapped to [-1, 1], or
random data of MNIST shape). Measured side by side, medians over repeats after warm-up:

* ``full-T ELBO (layer-batched)``: ``latentkit.elbo(..., estimator="layer-batched")`` — every
  one of the T terms for every image, in chunked network calls over (image, t) pairs;
* ``plain forward``: ε_θ(x_t, t) alone on as many (image, t) rows as one ELBO chunk holds;
* ``full-T ELBO (sequential)``: the ``analytic`` estimator, a Python loop of T calls (skip it
  with ``--no-sequential``).

The measurements are timed in turns (ELBO, forward, sequential, ELBO, …), so a change in
the machine's load affects them alike.

An (image, t) pair is one network evaluation; a full-T ELBO of B images is B·T pairs
(T − 1 KL terms and the decoder term; the prior term has no network). The ratio of the
ELBO's pairs/s to the forward's pairs/s is the estimator's efficiency (1 = no overhead).

    python bench/ddpm_full_t.py                       # digits, T = 1000, batch 16
    python bench/ddpm_full_t.py --data mnist-shape --batch 8 --device cuda
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

import latentkit as lk


def images(kind: str, batch: int, seed: int) -> torch.Tensor:
    """A batch of 8-bit images mapped to [-1, 1]: 2k/255 − 1."""
    if kind == "digits":
        from latentkit.data import load_dataset

        return load_dataset("digits", variant="8bit").test[:batch]
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 1, 28, 28), generator=gen).float() / 127.5 - 1


def interleaved_medians(
    fns: dict[str, Callable[[], object]], *, warmup: int, repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds of each function, timed in turns (a, b, a, b, …) after ``warmup``
    rounds, so a change in the machine's load hits every measurement alike."""

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for _ in range(warmup):
        for fn in fns.values():
            timed(fn)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("digits", "mnist-shape"), default="digits")
    ap.add_argument("--timesteps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--pairs-per-call", type=int, default=4096)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-sequential", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    x = images(args.data, args.batch, args.seed).to(device)
    B, T = x.shape[0], args.timesteps
    model = lk.load_model(
        "ddpm", data_shape=tuple(x.shape[1:]), num_timesteps=T, channels=args.channels
    ).to(device)
    model.eval()
    net = model.generative.net
    # Rows in the ELBO's largest network call: the estimator chunks T − 1 layers × B images.
    rows = min(max(1, args.pairs_per_call // B), max(T - 1, 1)) * B
    x_rows = x.repeat(math.ceil(rows / B), 1, 1, 1)[:rows]
    t_rows = torch.randint(1, T + 1, (rows,), device=device)

    def full_t_elbo() -> lk.ElboResult:
        return lk.elbo(model, x, estimator="layer-batched", pairs_per_call=args.pairs_per_call)

    with torch.inference_mode():
        bound = full_t_elbo()
        fns = {"elbo": full_t_elbo, "forward": lambda: net(x_rows, t_rows)}
        if not args.no_sequential:
            fns["sequential"] = lambda: lk.elbo(model, x, estimator="analytic")
        sec = interleaved_medians(fns, warmup=args.warmup, repeats=args.repeats, device=device)
    results = [
        ("full-T ELBO (layer-batched)", rows, sec["elbo"], B / sec["elbo"], B * T / sec["elbo"]),
        (
            "plain forward ε_θ(x_t, t)",
            rows,
            sec["forward"],
            rows / sec["forward"],
            rows / sec["forward"],
        ),
    ]
    if not args.no_sequential:
        s = sec["sequential"]
        results.append(("full-T ELBO (sequential, T calls)", B, s, B / s, B * T / s))

    params = sum(p.numel() for p in net.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"DDPM T={T}, {args.data} {tuple(x.shape[1:])} batch {B}, U-Net {params / 1e3:.0f}k "
        f"params, float32, {name} ({torch.get_num_threads()} threads), torch {torch.__version__}"
    )
    bpd = lk.bits_per_dim(bound.total, model.data_dims).mean().item()
    print(f"untrained model's full-T bound: {bpd:.2f} bits/dim (one layer-batched draw)")
    print()
    row = "| {:<34} | {:>9} | {:>9} | {:>10} | {:>11} |"
    print(row.format("measurement", "rows/call", "median s", "images/s", "pairs/s"))
    print(row.format(*("-" * w for w in (34, 9, 9, 10, 11))).replace(" ", "-"))
    for label, r, sec, ips, pps in results:
        print(row.format(label, r, f"{sec:.4f}", f"{ips:.2f}", f"{pps:.0f}"))
    print()
    print(
        f"layer-batched ELBO pairs/s ÷ plain forward pairs/s = {results[0][4] / results[1][4]:.2f}"
    )
    if len(results) > 2:
        print(f"layer-batched ÷ sequential (images/s) = {results[0][3] / results[2][3]:.1f}×")


if __name__ == "__main__":
    main()
