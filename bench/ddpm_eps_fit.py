"""How well an MLP ε-network fits ε at each t, and whether the reverse chain stays on the data.

Trains an unconditional ``ddpm`` (MLP, T = 1000, L_simple) on MNIST's 8-bit digits, with or
without ``eps_skip`` (ε_θ = β̄_t x_t + the network), then prints ‖ε − ε_θ(x_t, t)‖²/D on 256
test digits at several t (with the range of the x̂_0 it implies) and the standard deviation
of 16 ancestral chains every 100 steps from t = T down to 1 (the data's is about 0.8).

    python -m bench.ddpm_eps_fit --steps 1500                 # the MLP alone
    python -m bench.ddpm_eps_fit --steps 1500 --eps-skip      # with the skip

docs/ddpm.md quotes both (2 CPU threads, about 100 s of training each).
"""

from __future__ import annotations

import argparse
import time

import torch

import latentkit as lk
from latentkit.training import TrainConfig, Trainer

PROBED = (1, 10, 50, 100, 300, 500, 700, 900, 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="training steps (default: tiny)")
    ap.add_argument("--hidden", default="1024,1024", help="the ε-MLP's hidden widths")
    ap.add_argument("--eps-skip", action="store_true", help="eps_skip=True")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = lk.load_dataset("mnist", variant="8bit")
    torch.manual_seed(0)
    model = lk.load_model(
        "ddpm", data_shape=data.data_shape, network="mlp", num_timesteps=1000, loss="simple",
        hidden=tuple(int(h) for h in args.hidden.split(",")), eps_skip=args.eps_skip,
    )  # fmt: skip
    config = TrainConfig(
        steps=args.steps, batch_size=128, lr=1e-3, seed=0, progress=False, checkpoint_every=0
    )
    start = time.perf_counter()
    result = Trainer(model, data.train, config).fit()
    loss = result.last_metrics["train"]["loss"] / data.train[0].numel()
    print(f"eps_skip={args.eps_skip}: {args.steps} steps in {time.perf_counter() - start:.0f} s, "
          f"L_simple {loss:.4f} per dimension")  # fmt: skip
    model.eval()
    p, s, x0 = model.generative, model.schedule, data.test[:256]
    with torch.no_grad():
        print(f"{'t':>5} {'‖ε−ε_θ‖²/D':>11} {'x̂_0 min':>9} {'x̂_0 max':>9}")
        for t in PROBED:
            eps = torch.randn_like(x0)
            x_t = s.alpha_bar[t] * x0 + s.beta_bar[t] * eps
            e, _ = p.eps_and_log_var(t, x_t)
            x0_hat = (x_t - s.beta_bar[t] * e) / s.alpha_bar[t]
            mse = (e - eps).pow(2).mean().item()
            print(f"{t:>5} {mse:>11.4f} {x0_hat.min().item():>9.2f} {x0_hat.max().item():>9.2f}")
        z = p.prior(16).sample()
        print(f"{'t':>5} {'chain std':>10} {'max |x_t|':>10}")
        for layer in range(1000, 1, -1):
            z = p.transition(layer, z).sample()
            if layer % 100 == 0 or layer == 2:
                print(f"{layer - 1:>5} {z.std().item():>10.3f} {z.abs().max().item():>10.2f}")


if __name__ == "__main__":
    main()
