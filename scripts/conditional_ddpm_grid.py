"""A grid of the class-conditional MLP DDPM's samples, a row per class, from the weights
``bench/conditional_guidance.py --save`` wrote (the same model fields as that command).

    python scripts/conditional_ddpm_grid.py runs/conditional/cfg-mlp1024-skip-10k.pt \
        --guidance 3 --clip --out docs/img/conditional_ddpm_samples.png
"""

from __future__ import annotations

import argparse

import torch

import latentkit as lk
from latentkit.plots import sample_grid
from latentkit.sampling import class_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    ap.add_argument("weights", help="the state dict bench/conditional_guidance.py --save wrote")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--clip", action="store_true", help="the model with clip_denoised=True")
    ap.add_argument("--per-class", type=int, default=8)
    ap.add_argument("--hidden", default="1024,1024")
    ap.add_argument("--timesteps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="conditional_ddpm_samples.png")
    args = ap.parse_args()
    model = lk.load_model(
        "ddpm", data_shape=(1, 28, 28), network="mlp", num_timesteps=args.timesteps,
        hidden=tuple(int(h) for h in args.hidden.split(",")), loss="simple", classes=10,
        eps_skip=True, clip_denoised=args.clip,
    )  # fmt: skip
    model.load_state_dict(torch.load(args.weights, weights_only=True))
    model.eval()
    labels = class_grid(model, args.per_class)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        x = lk.sample(model, labels.shape[0], condition=labels, guidance=args.guidance,
                      likelihood_mean=True)  # fmt: skip
    x = torch.nan_to_num(x, nan=-1.0).clamp(-1, 1)  # a diverged chain shows as a blank
    title = f"ddpm (MLP, eps_skip{', clipped x̂_0' if args.clip else ''}), w = {args.guidance:g}"
    print(sample_grid((x + 1) / 2, args.out, ncols=args.per_class, title=title))


if __name__ == "__main__":
    main()
