"""Per-step timings: latentkit against the hand-written baseline and against the peers.

One *group* per model, every contender of a group timed in the same interleaved rounds:

* ``vae``: latentkit, hand-written, pythae ``VAE`` (training step and ELBO evaluation);
* ``beta-vae``: latentkit, hand-written, pythae ``BetaVAE`` (training step);
* ``hvae``: latentkit, hand-written (training step and ELBO evaluation);
* ``ddpm``: latentkit ``loss="elbo"``, hand-written; latentkit ``loss="simple"``, diffusers
  (training step); full-T ELBO through ``latentkit.elbo`` against the hand-written one.

A training step is forward + backward + Adam on one batch (``zero_grad``, ``loss.mean()``,
``backward``, ``step``); an ELBO evaluation is one bound per example under ``no_grad``.
Before timing, each pairing is checked to give the same loss on the same weights and
the same seed (:func:`check_losses`).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import attrs
import torch
from torch import Tensor, nn

import latentkit as lk
from bench import baselines, peers
from bench.timing import Timing, interleaved

__all__ = ["Group", "StepSize", "build_groups", "check_losses", "run_groups"]


@attrs.frozen
class StepSize:
    """Model and batch sizes of the per-step comparisons."""

    batch: int = 128
    hidden: tuple[int, ...] = (256, 256)
    latent_dim: int = 16
    hvae_latents: tuple[int, ...] = (32, 16, 8)
    timesteps: int = 1000
    elbo_batch: int = 128  # VAE / HVAE ELBO evaluation
    ddpm_elbo_batch: int = 8  # full-T: B·T network rows per evaluation
    rounds: int = 31
    block_seconds: float = 0.12  # each contender's block of calls per round lasts about this
    warmup: int = 3


@attrs.define
class Group:
    """Contenders timed together; ``pairs`` are the (numerator, denominator) ratios to report."""

    model: str
    task: str  # "train step" or "ELBO eval"
    data: str
    contenders: dict[str, Callable[[], object]]
    pairs: list[tuple[str, str]]
    loss_checks: list[dict] = attrs.Factory(list)
    timings: dict[str, Timing] = attrs.Factory(dict)
    inner: int = 1


def _train_step(params, loss_fn: Callable[[Tensor], Tensor], batches) -> Callable[[], None]:
    opt = torch.optim.Adam(params, lr=1e-3)
    it = itertools.cycle(batches)

    def step() -> None:
        loss = loss_fn(next(it))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _eval(fn: Callable[[Tensor], Tensor], batches) -> Callable[[], None]:
    it = itertools.cycle(batches)

    def run() -> None:
        with torch.no_grad():
            fn(next(it))

    return run


def _batches(data: Tensor, batch: int, count: int = 8) -> list[Tensor]:
    g = torch.Generator().manual_seed(1234)
    return [data[torch.randperm(data.shape[0], generator=g)[:batch]] for _ in range(count)]


def _vae(name: str, D: int, size: StepSize, **extra) -> lk.LatentModel:
    return lk.load_model(
        name,
        data_shape=(D,),
        latent_dim=size.latent_dim,
        hidden=size.hidden,
        likelihood="bernoulli",
        **extra,
    )


def _ddpm(D: int, size: StepSize, loss: str) -> lk.LatentModel:
    model = lk.load_model(
        "ddpm",
        data_shape=(D,),
        num_timesteps=size.timesteps,
        network="mlp",
        hidden=size.hidden,
        loss=loss,
    )
    # The output layer starts at zero (ε̂ = 0); give it weights so the checks see the network.
    nn.init.normal_(model.generative.net.out.weight, std=0.02)
    return model


def _eps(net: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda x, t: net(x, t)[:, 0]


def _close(name: str, a: Tensor, b: Tensor, *, rtol: float, note: str = "") -> dict:
    a, b = a.detach().double(), b.detach().double()
    diff = (a - b).abs().max().item()
    scale = a.abs().max().item()
    return {
        "pair": name,
        "latentkit": a.mean().item(),
        "other": b.mean().item(),
        "max_abs_diff": diff,
        "max_rel_diff": diff / max(scale, 1e-30),
        "rtol": rtol,
        "ok": diff <= rtol * scale,
        "note": note,
    }


def check_losses(binary: Tensor, eightbit: Tensor, size: StepSize, seed: int = 0) -> list[dict]:
    """Same weights, same seed: latentkit's loss against each other implementation's."""
    out = []
    x, y = binary[:64], eightbit[:64]
    D, Dd = x.shape[1], y.shape[1]

    def both(f, g, s=seed):
        torch.manual_seed(s)
        a = f()
        torch.manual_seed(s)
        return a, g()

    torch.manual_seed(seed)
    vae = _vae("vae", D, size)
    base = baselines.VAE.from_latentkit(vae)
    out.append(
        _close(
            "vae: training_loss vs hand-written",
            *both(lambda: lk.training_loss(vae, x), lambda: base.loss(x)),
            rtol=1e-5,
        )
    )
    out.append(
        _close(
            "vae: latentkit.elbo vs hand-written",
            *both(lambda: lk.elbo(vae, x).total, lambda: -base.loss(x)),
            rtol=1e-5,
        )
    )
    bvae = _vae("beta-vae", D, size, beta=4.0)
    base = baselines.VAE.from_latentkit(bvae)
    out.append(
        _close(
            "beta-vae (β=4): training_loss vs hand-written",
            *both(lambda: lk.training_loss(bvae, x), lambda: base.loss(x)),
            rtol=1e-5,
        )
    )
    hvae = lk.load_model(
        "hvae",
        data_shape=(D,),
        latent_dims=size.hvae_latents,
        hidden=size.hidden,
        likelihood="bernoulli",
    )
    base = baselines.HVAE.from_latentkit(hvae)
    out.append(
        _close(
            "hvae: training_loss vs hand-written",
            *both(lambda: lk.training_loss(hvae, x), lambda: base.loss(x)),
            rtol=1e-5,
        )
    )
    ddpm = _ddpm(Dd, size, "elbo")
    base = baselines.DDPM.from_latentkit(ddpm)
    out.append(
        _close(
            "ddpm: training_loss (one-timestep −ELBO) vs hand-written",
            *both(lambda: lk.training_loss(ddpm, y), lambda: base.loss(y)),
            rtol=1e-5,
        )
    )
    yb = y[: size.ddpm_elbo_batch]
    with torch.no_grad():
        out.append(
            _close(
                "ddpm: full-T latentkit.elbo vs hand-written",
                *both(
                    lambda: lk.elbo(ddpm, yb).total,
                    lambda: base.elbo(yb),
                ),
                rtol=1e-5,
            )
        )
    have = peers.available()
    if have["pythae"] is None:
        pv = peers.pythae_vae(vae)
        out.append(
            _close(
                "vae: mean training_loss vs pythae VAE loss",
                *both(lambda: lk.training_loss(vae, x).mean(), lambda: pv({"data": x}).loss),
                rtol=1e-5,
                note="pythae: BCE on sigmoid probabilities (log clamped at −100), batch mean",
            )
        )
        pb = peers.pythae_vae(bvae, beta=4.0)
        out.append(
            _close(
                "beta-vae: mean training_loss vs pythae BetaVAE loss",
                *both(lambda: lk.training_loss(bvae, x).mean(), lambda: pb({"data": x}).loss),
                rtol=1e-5,
                note="as above, β = 4",
            )
        )
    if have["diffusers"] is None:
        simple = _ddpm(Dd, size, "simple")
        sched = peers.diffusers_scheduler(size.timesteps)
        eps = _eps(simple.generative.net)
        out.append(
            _close(
                "ddpm: loss='simple' batch mean vs D × diffusers MSE",
                *both(
                    lambda: lk.training_loss(simple, y).mean(),
                    lambda: Dd * peers.diffusers_step_loss(eps, sched, y),
                ),
                rtol=1e-5,
                note="diffusers: F.mse_loss is a mean over D as well; schedule in float32",
            )
        )
    return out


def _vae_groups(
    name: str, data: Tensor, desc: str, size: StepSize, have: dict, **extra
) -> list[Group]:
    D = data.shape[1]
    beta = extra.get("beta")
    model = _vae(name, D, size, **extra)
    hand = baselines.VAE.from_latentkit(model)
    xb = _batches(data, size.batch)
    c = {
        "latentkit": _train_step(
            model.parameters(), lambda x: lk.training_loss(model, x).mean(), xb
        ),
        "hand-written": _train_step(hand.parameters(), lambda x: hand.loss(x).mean(), xb),
    }
    pairs = [("latentkit", "hand-written")]
    if have["pythae"] is None:
        pv = peers.pythae_vae(model, beta=beta)
        c["pythae"] = _train_step(pv.parameters(), lambda x: pv({"data": x}).loss, xb)
        pairs.append(("latentkit", "pythae"))
    groups = [Group(name, "train step", f"{desc}, batch {size.batch}", c, pairs)]
    if beta is not None:
        return groups
    ev = copy.deepcopy(model).eval()
    hand_e = baselines.VAE.from_latentkit(ev)
    xe = _batches(data, size.elbo_batch)
    c = {
        "latentkit": _eval(lambda x: lk.elbo(ev, x).total, xe),
        "hand-written": _eval(lambda x: -hand_e.loss(x), xe),
    }
    pairs = [("latentkit", "hand-written")]
    if have["pythae"] is None:
        pv_e = peers.pythae_vae(ev).eval()
        c["pythae"] = _eval(lambda x: pv_e({"data": x}).loss, xe)
        pairs.append(("latentkit", "pythae"))
    groups.append(Group(name, "ELBO eval", f"{desc}, batch {size.elbo_batch}", c, pairs))
    return groups


def _hvae_groups(data: Tensor, desc: str, size: StepSize) -> list[Group]:
    model = lk.load_model(
        "hvae",
        data_shape=(data.shape[1],),
        latent_dims=size.hvae_latents,
        hidden=size.hidden,
        likelihood="bernoulli",
    )
    hand = baselines.HVAE.from_latentkit(model)
    xb = _batches(data, size.batch)
    c = {
        "latentkit": _train_step(
            model.parameters(), lambda x: lk.training_loss(model, x).mean(), xb
        ),
        "hand-written": _train_step(hand.parameters(), lambda x: hand.loss(x).mean(), xb),
    }
    desc = f"{desc}, L={len(size.hvae_latents)} ladder"
    groups = [
        Group(
            "hvae", "train step", f"{desc}, batch {size.batch}", c, [("latentkit", "hand-written")]
        )
    ]
    ev = copy.deepcopy(model).eval()
    hand_e = baselines.HVAE.from_latentkit(ev)
    xe = _batches(data, size.elbo_batch)
    c = {
        "latentkit": _eval(lambda x: lk.elbo(ev, x).total, xe),
        "hand-written": _eval(lambda x: -hand_e.loss(x), xe),
    }
    groups.append(
        Group(
            "hvae",
            "ELBO eval",
            f"{desc}, batch {size.elbo_batch}",
            c,
            [("latentkit", "hand-written")],
        )
    )
    return groups


def _ddpm_groups(data: Tensor, desc: str, size: StepSize, have: dict) -> list[Group]:
    D = data.shape[1]
    model = _ddpm(D, size, "elbo")
    hand = baselines.DDPM.from_latentkit(model)
    yb = _batches(data, size.batch)
    c = {
        "latentkit": _train_step(
            model.parameters(), lambda x: lk.training_loss(model, x).mean(), yb
        ),
        "hand-written": _train_step(hand.parameters(), lambda x: hand.loss(x).mean(), yb),
    }
    pairs = [("latentkit", "hand-written")]
    if have["diffusers"] is None:
        simple = _ddpm(D, size, "simple")
        simple.load_state_dict(model.state_dict())
        net = copy.deepcopy(simple.generative.net)
        sched = peers.diffusers_scheduler(size.timesteps)
        eps = _eps(net)
        c["latentkit loss=simple"] = _train_step(
            simple.parameters(), lambda x: lk.training_loss(simple, x).mean(), yb
        )
        c["diffusers"] = _train_step(
            net.parameters(), lambda x: peers.diffusers_step_loss(eps, sched, x), yb
        )
        pairs.append(("latentkit loss=simple", "diffusers"))
    desc = f"{desc}, T={size.timesteps}, MLP ε-net"
    groups = [Group("ddpm", "train step", f"{desc}, batch {size.batch}", c, pairs)]
    ev = copy.deepcopy(model).eval()
    hand_e = baselines.DDPM.from_latentkit(ev)
    ye = _batches(data, size.ddpm_elbo_batch)
    c = {
        "latentkit": _eval(lambda x: lk.elbo(ev, x).total, ye),
        "hand-written": _eval(lambda x: hand_e.elbo(x), ye),
    }
    groups.append(
        Group(
            "ddpm",
            "full-T ELBO eval",
            f"{desc}, batch {size.ddpm_elbo_batch}",
            c,
            [("latentkit", "hand-written")],
        )
    )
    return groups


def build_groups(
    binary: Tensor,
    eightbit: Tensor,
    size: StepSize,
    *,
    binary_name: str,
    eightbit_name: str,
    seed: int = 0,
) -> list[Group]:
    """Every contender on its own copy of the same initial weights and the same batches."""
    have = peers.available()
    torch.manual_seed(seed)
    bdesc = f"{binary_name} ({binary.shape[1]}-d)"
    return [
        *_vae_groups("vae", binary, bdesc, size, have),
        *_vae_groups("beta-vae", binary, bdesc, size, have, beta=4.0),
        *_hvae_groups(binary, bdesc, size),
        *_ddpm_groups(eightbit, f"{eightbit_name} ({eightbit.shape[1]}-d)", size, have),
    ]


def calibrate(contenders: dict[str, Callable[[], object]], seconds: float, warmup: int) -> int:
    """Calls per block so the slowest contender's block lasts about ``seconds``."""
    import time

    worst = 0.0
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        worst = max(worst, time.perf_counter() - t0)
    return max(1, round(seconds / max(worst, 1e-6)))


def run_groups(groups: list[Group], size: StepSize, log: Callable[[str], None]) -> None:
    for g in groups:
        g.inner = calibrate(g.contenders, size.block_seconds, size.warmup)
        g.timings = interleaved(g.contenders, rounds=size.rounds, inner=g.inner, warmup=1)
        meds = ", ".join(f"{n} {t.median * 1e3:.2f} ms" for n, t in g.timings.items())
        log(f"  {g.model} {g.task}: {meds} ({size.rounds} rounds × {g.inner} calls)")
