"""Quality under a fixed budget: the same steps, batches, architecture and optimizer.

* VAE on binarized MNIST (the embedded copy; sklearn's digits when it is missing, and the
  report says so): latentkit's VAE trained by ``latentkit.training.Trainer`` against
  pythae's ``VAE`` (the same encoder and decoder, same initial weights) trained on the same
  batches in the same order (``latentkit.training.DataOrder``) with the same Adam. Both are
  scored by the same code: test NLL ≈ −IWAE-k (``latentkit.iwae``; pythae's weights are
  copied into a latentkit VAE), plus pythae's own ``get_nll`` on a subset as a cross-check.
* DDPM on the embedded 8-bit digits: bits/dim of the full-T ELBO on the test split
  (``latentkit.elbo``, layer-batched) after latentkit trains with ``loss="elbo"`` and
  ``loss="simple"``, and after diffusers' L_simple step trains the same ε-network.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import attrs
import torch
from torch import Tensor

import latentkit as lk
from bench import peers

__all__ = ["QualitySize", "run_ddpm", "run_vae"]


@attrs.frozen
class QualitySize:
    vae_steps: int = 1500
    batch: int = 128
    lr: float = 1e-3
    latent_dim: int = 16
    hidden: tuple[int, ...] = (256, 256)
    iwae_k: int = 100
    test_examples: int = 2000
    pythae_nll_examples: int = 200
    ddpm_steps: int = 2000
    ddpm_timesteps: int = 1000
    ddpm_test_examples: int = 0  # 0: the whole test split
    seed: int = 0


def _mean_se(values: Tensor) -> tuple[float, float]:
    v = values.double()
    return v.mean().item(), (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else 0.0


def _train_latentkit(model, data: Tensor, steps: int, size: QualitySize) -> tuple[float, str]:
    """Train with latentkit's own Trainer; returns (seconds, how)."""
    from latentkit.training import TrainConfig, Trainer

    cfg = TrainConfig(
        steps=steps,
        batch_size=size.batch,
        lr=size.lr,
        seed=size.seed,
        log_every=steps,
        eval_every=0,
        checkpoint_every=0,
        progress=False,
    )
    trainer = Trainer(model, data, cfg, run_dir=None)
    t0 = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - t0, "latentkit.training.Trainer"


def _train_loop(
    params, loss_fn: Callable[[Tensor], Tensor], data: Tensor, steps: int, size: QualitySize
) -> float:
    """The Trainer's batches (DataOrder) and seed, a plain Adam loop around ``loss_fn``."""
    from latentkit.training import DataOrder

    order = DataOrder(data.shape[0], size.batch, size.seed)
    opt = torch.optim.Adam(params, lr=size.lr)
    torch.manual_seed(size.seed)
    t0 = time.perf_counter()
    for step in range(steps):
        loss = loss_fn(data[order.indices(step)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


@torch.no_grad()
def _iwae(model, x: Tensor, k: int, seed: int, rows_per_call: int = 20_000) -> Tensor:
    torch.manual_seed(seed)
    per = max(1, rows_per_call // k)
    return torch.cat([lk.iwae(model, c, k) for c in x.split(per)])


@torch.no_grad()
def _elbo(model, x: Tensor, seed: int, per: int = 500) -> Tensor:
    torch.manual_seed(seed)
    return torch.cat([lk.elbo(model, c).total for c in x.split(per)])


def run_vae(train: Tensor, test: Tensor, size: QualitySize, log: Callable[[str], None]) -> dict:
    D = train.shape[1]
    torch.manual_seed(size.seed)
    model = lk.load_model(
        "vae",
        data_shape=(D,),
        latent_dim=size.latent_dim,
        hidden=size.hidden,
        likelihood="bernoulli",
    )
    initial = copy.deepcopy(model)
    test = test[: size.test_examples]
    out: dict = {
        "steps": size.vae_steps,
        "batch": size.batch,
        "lr": size.lr,
        "iwae_k": size.iwae_k,
        "test_examples": test.shape[0],
        "architecture": f"{D}-{'-'.join(map(str, size.hidden))}-{size.latent_dim} "
        "MLP encoder and decoder, Bernoulli likelihood",
    }
    secs, how = _train_latentkit(model, train, size.vae_steps, size)
    model.eval()
    nll_lk = -_iwae(model, test, size.iwae_k, size.seed + 1)
    elbo_lk = _elbo(model, test, size.seed + 2)
    out["latentkit"] = {
        "train_s": secs,
        "trained_by": how,
        "nll": _mean_se(nll_lk),
        "elbo": _mean_se(elbo_lk),
    }
    log(f"  latentkit VAE: NLL {out['latentkit']['nll'][0]:.2f} nats ({secs:.0f} s training)")
    if peers.available()["pythae"] is not None:
        out["pythae"] = None
        return out
    pv = peers.pythae_vae(initial)
    secs = _train_loop(pv.parameters(), lambda x: pv({"data": x}).loss, train, size.vae_steps, size)
    pv.eval()
    scored = copy.deepcopy(initial).eval()  # pythae's trained weights in a latentkit VAE
    scored.posterior.net.load_state_dict(pv.encoder.net.state_dict())
    scored.generative.decoder.load_state_dict(pv.decoder.net.state_dict())
    nll_py = -_iwae(scored, test, size.iwae_k, size.seed + 1)
    elbo_py = _elbo(scored, test, size.seed + 2)
    sub = test[: size.pythae_nll_examples]
    torch.manual_seed(size.seed + 3)
    with torch.no_grad():
        own = -float(pv.get_nll(sub, n_samples=size.iwae_k, batch_size=size.iwae_k))
    torch.manual_seed(size.seed + 3)
    same_sub = -_iwae(scored, sub, size.iwae_k, size.seed + 3)
    out["pythae"] = {
        "train_s": secs,
        "trained_by": "plain Adam loop, Trainer's batches",
        "nll": _mean_se(nll_py),
        "elbo": _mean_se(elbo_py),
        "own_get_nll": {
            "examples": sub.shape[0],
            "nll": own,
            "latentkit_iwae_same_examples": _mean_se(same_sub)[0],
        },
    }
    out["paired_nll_difference"] = _mean_se(nll_lk - nll_py)  # latentkit − pythae, nats
    log(
        f"  pythae VAE: NLL {out['pythae']['nll'][0]:.2f} nats ({secs:.0f} s training); "
        f"its own get_nll on {sub.shape[0]}: {own:.2f}"
    )
    return out


def run_ddpm(train: Tensor, test: Tensor, size: QualitySize, log: Callable[[str], None]) -> dict:
    D = train.shape[1]
    if size.ddpm_test_examples:
        test = test[: size.ddpm_test_examples]
    out: dict = {
        "steps": size.ddpm_steps,
        "batch": size.batch,
        "lr": size.lr,
        "T": size.ddpm_timesteps,
        "test_examples": test.shape[0],
        "architecture": f"MLP ε-network {'-'.join(map(str, size.hidden))} on {D}-d "
        "vectors, linear schedule, σ_t² = β_t², discretized decoder",
        "runs": {},
    }

    def build(loss: str):
        torch.manual_seed(size.seed)
        return lk.load_model(
            "ddpm",
            data_shape=(D,),
            num_timesteps=size.ddpm_timesteps,
            network="mlp",
            hidden=size.hidden,
            loss=loss,
        )

    def score(model) -> dict:
        model.eval()
        bpd = lk.bits_per_dim(_elbo(model, test, size.seed + 2, per=64), D)
        return {"bits_per_dim": _mean_se(bpd)}

    for loss in ("elbo", "simple"):
        model = build(loss)
        secs, how = _train_latentkit(model, train, size.ddpm_steps, size)
        out["runs"][f"latentkit loss={loss}"] = {"train_s": secs, "trained_by": how, **score(model)}
        log(
            f"  latentkit DDPM loss={loss}: "
            f"{out['runs'][f'latentkit loss={loss}']['bits_per_dim'][0]:.3f} bits/dim"
        )
    if peers.available()["diffusers"] is None:
        model = build("simple")
        net = model.generative.net
        sched = peers.diffusers_scheduler(size.ddpm_timesteps)
        secs = _train_loop(
            net.parameters(),
            lambda x: peers.diffusers_step_loss(lambda a, t: net(a, t)[:, 0], sched, x),
            train,
            size.ddpm_steps,
            size,
        )
        out["runs"]["diffusers L_simple"] = {
            "train_s": secs,
            "trained_by": "plain Adam loop, Trainer's batches",
            **score(model),
        }
        log(
            f"  diffusers DDPM: {out['runs']['diffusers L_simple']['bits_per_dim'][0]:.3f} bits/dim"
        )
    return out
