"""Full-bound evaluation: the DDPM's full-T ELBO against the plain forward of its ε-network.

The measurement is the one ``bench/ddpm_full_t.py`` defines (and it supplies the digit
images): a full-T ELBO of B images is B·T (image, t) pairs, T − 1 KL terms and the decoder
term, each one network evaluation; its throughput in pairs/s is set against ε_θ(x_t, t)
alone on the same B·T rows in the same chunks (``pairs_per_call``), and the ratio is the
estimator's efficiency (1 = the bound costs nothing beyond the network). Here the two are
timed interleaved, and swept over T and over the batch size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import attrs
import torch
from torch import Tensor

import latentkit as lk
from bench import baselines
from bench.timing import interleaved, ratio

__all__ = ["FullBoundSize", "digit_images", "measure_point", "run"]


@attrs.frozen
class FullBoundSize:
    timesteps: tuple[int, ...] = (100, 250, 500, 1000)
    batch_at_T: int = 16  # the batch of the T sweep
    batches: tuple[int, ...] = (4, 16, 64)  # the batch sweep, at T = max(timesteps)
    hidden: tuple[int, ...] = (256, 256)
    pairs_per_call: int = 8192  # latentkit's default
    rounds: int = 7
    unet_batch: int = 2  # one U-Net point at T = max(timesteps); 0 skips it
    unet_rounds: int = 5


def digit_images(batch: int) -> Tensor:
    """8-bit digits in [-1, 1], ``[batch, 1, 8, 8]``: ``bench/ddpm_full_t.py``'s images."""
    try:
        from bench.ddpm_full_t import images
    except ImportError:  # the other script is absent: the same data, loaded the same way
        from latentkit.data import load_dataset

        return load_dataset("digits", variant="8bit").test[:batch]
    return images("digits", batch, 0)


def _forward_rows(model, x: Tensor, pairs_per_call: int) -> Callable[[], None]:
    """ε_θ on every (image, t) pair of a full-T ELBO, chunked as the layer-batched estimator."""
    net = model.generative.net
    n, T = x.shape[0], model.num_layers
    per_call = max(1, pairs_per_call // n)
    chunks = []
    for ts in torch.arange(1, T + 1, device=x.device).split(per_call):
        c = ts.shape[0]
        chunks.append((x.repeat(c, *([1] * (x.ndim - 1))), ts.repeat_interleave(n)))

    def run() -> None:
        for xr, tr in chunks:
            net(xr, tr)

    return run


def measure_point(
    model, x: Tensor, *, pairs_per_call: int, rounds: int, clock=time.perf_counter
) -> dict:
    """One (T, B) point: interleaved full-T ELBO and plain forward, pairs/s and efficiency
    (``clock``: wall time by default, see ``bench.timing.cpu_clock``)."""
    B, T = x.shape[0], model.num_layers
    contenders = {
        "elbo": lambda: lk.elbo(model, x, estimator="layer-batched", pairs_per_call=pairs_per_call),
        "forward": _forward_rows(model, x, pairs_per_call),
    }
    with torch.inference_mode():
        t = interleaved(contenders, rounds=rounds, inner=1, warmup=1, clock=clock)
    med, lo, hi = ratio(t["forward"], t["elbo"])  # forward time / ELBO time = efficiency
    return {
        "T": T,
        "batch": B,
        "pairs": B * T,
        "elbo_s": t["elbo"].median,
        "forward_s": t["forward"].median,
        "elbo_images_per_s": B / t["elbo"].median,
        "elbo_pairs_per_s": B * T / t["elbo"].median,
        "forward_pairs_per_s": B * T / t["forward"].median,
        "efficiency": med,
        "efficiency_ci": (lo, hi),
        "raw": {k: list(v.per_call) for k, v in t.items()},
    }


def against_hand_written(model, x: Tensor, size: FullBoundSize) -> dict:
    """latentkit's full-T ELBO against the hand-written one (``bench/baselines.py``, same
    chunks): what the bound itself costs beyond the network, and what the framework adds."""
    hand = baselines.DDPM.from_latentkit(model)
    contenders = {
        "latentkit": lambda: lk.elbo(model, x, pairs_per_call=size.pairs_per_call),
        "hand-written": lambda: hand.elbo(x, pairs_per_call=size.pairs_per_call),
    }
    with torch.inference_mode():
        t = interleaved(contenders, rounds=size.rounds, inner=1, warmup=1)
    return {
        "T": model.num_layers,
        "batch": x.shape[0],
        "seconds": {k: v.median for k, v in t.items()},
        "hand_over_latentkit": ratio(t["hand-written"], t["latentkit"]),
    }


def run(size: FullBoundSize, log: Callable[[str], None], seed: int = 0) -> dict:
    T_max = max(size.timesteps)
    images = digit_images(max((*size.batches, size.batch_at_T, size.unet_batch)))
    flat = images.flatten(1)

    def mlp_model(T: int):
        torch.manual_seed(seed)
        return lk.load_model(
            "ddpm", data_shape=(flat.shape[1],), num_timesteps=T, network="mlp", hidden=size.hidden
        ).eval()

    by_T, by_batch = [], []
    for T in size.timesteps:
        p = measure_point(
            mlp_model(T),
            flat[: size.batch_at_T],
            pairs_per_call=size.pairs_per_call,
            rounds=size.rounds,
        )
        by_T.append(p)
        log(
            f"  MLP T={T:>4} batch {size.batch_at_T}: efficiency {p['efficiency']:.2f}, "
            f"{p['elbo_images_per_s']:.1f} images/s"
        )
    model = mlp_model(T_max)
    for B in size.batches:
        p = next((q for q in by_T if q["T"] == T_max), None) if B == size.batch_at_T else None
        if p is None:
            p = measure_point(
                model, flat[:B], pairs_per_call=size.pairs_per_call, rounds=size.rounds
            )
        by_batch.append(p)
        log(
            f"  MLP T={T_max} batch {B:>3}: efficiency {p['efficiency']:.2f}, "
            f"{p['elbo_images_per_s']:.1f} images/s"
        )
    unet = None
    if size.unet_batch:
        torch.manual_seed(seed)
        m = lk.load_model(
            "ddpm", data_shape=tuple(images.shape[1:]), num_timesteps=T_max, network="unet"
        ).eval()
        unet = measure_point(
            m,
            images[: size.unet_batch],
            pairs_per_call=size.pairs_per_call,
            rounds=size.unet_rounds,
        )
        unet["params"] = sum(p.numel() for p in m.generative.net.parameters())
        log(
            f"  U-Net T={T_max} batch {size.unet_batch}: efficiency {unet['efficiency']:.2f}, "
            f"{unet['elbo_images_per_s']:.2f} images/s"
        )
    draws = against_hand_written(model, flat[: size.batch_at_T], size)
    log(f"  hand-written full-T ELBO ÷ latentkit: {draws['hand_over_latentkit'][0]:.2f}")
    mlp_params = sum(p.numel() for p in model.generative.net.parameters())
    return {
        "by_T": by_T,
        "by_batch": by_batch,
        "unet": unet,
        "mlp_params": mlp_params,
        "data": f"digits 8-bit, {math.prod(images.shape[1:])} dims",
        "pairs_per_call": size.pairs_per_call,
        "draws": draws,
    }
