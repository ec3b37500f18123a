"""Classifier-free guidance on MNIST: how often the shipped classifier reads a class-conditional
DDPM's samples as the class they were drawn for, at each guidance scale w.

A ``ddpm`` with ``classes=10`` (labels dropped to the null class at ``guidance_drop`` while
training) is trained on MNIST's 8-bit digits in [−1, 1] with ``L_simple``; then, for each w,
``--samples`` digits are drawn (the classes in turn, so each class gets an equal share) with
``latentkit.sample(model, n, condition=c, guidance=w)`` and the decoder's mean, and the
LeNet that ships in ``latentkit.quality`` labels them: the table gives the accuracy (the
share labelled as c) with its binomial standard error, the classifier score and the class
entropy of the samples. Guidance trades diversity for fidelity to c, so accuracy should rise
with w while the entropy of the samples' classes stays near log 10 (the classes are asked
for equally).

What it measured (CPU, 2 shared cores; docs/conditional.md has the table): the MLP
ε-network without ``eps_skip`` (12,000 steps, 1024-1024, T = 1000) drew chains that left
[−1, 1] by two orders of magnitude, read at 0.11 at w = 0, 1, 3 (0.106 clipped, w = 0); with
``--eps-skip`` (10,000 steps) the accuracy rose with w, 0.43 → 0.72 as trained and
0.50 → 0.94 with ``--clip``'s clipped x̂_0.

    python -m bench.conditional_guidance         # tiny: seconds, CI-free, numbers meaningless
    python -m bench.conditional_guidance --eps-skip --clip --steps 10000 --samples 300 \
        --timesteps 1000 --hidden 1024,1024 --limit 60000 --guidance 0,1,3
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import latentkit as lk
from latentkit.quality import classifier_score, load_feature_network
from latentkit.training import TrainConfig, Trainer


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="training steps (default: tiny)")
    ap.add_argument("--samples", type=int, default=50, help="samples per guidance scale")
    ap.add_argument("--guidance", default="0,1,3", help="comma-separated scales w")
    ap.add_argument("--timesteps", type=int, default=50, help="T of the DDPM")
    ap.add_argument("--network", default="mlp", choices=("mlp", "unet"), help="the ε-network")
    ap.add_argument("--hidden", default="128,128", help="the ε-MLP's hidden widths")
    ap.add_argument("--channels", type=int, default=32, help="the U-Net's base width")
    ap.add_argument("--schedule", default="linear", choices=("linear", "cosine"))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--drop", type=float, default=0.1, help="guidance_drop")
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay of the weights (0: off)")
    ap.add_argument("--limit", type=int, default=5000, help="training digits used")
    ap.add_argument(
        "--clip", action="store_true", help="also sample the model with clip_denoised=True"
    )
    ap.add_argument(
        "--eps-skip", action="store_true", help="ε_θ = β̄_t x_t + the network (eps_skip=True)"
    )
    ap.add_argument("--save", default="", help="save the averaged weights to this file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def model_config(args: argparse.Namespace, data_shape: tuple[int, ...]) -> dict:
    """The ``ddpm`` fields the command line gives."""
    return dict(
        data_shape=data_shape,
        network=args.network,
        hidden=tuple(int(h) for h in args.hidden.split(",")),
        channels=args.channels,
        channel_mult=(1, 2, 2),
        num_timesteps=args.timesteps,
        schedule=args.schedule,
        loss="simple",
        classes=10,
        guidance_drop=args.drop,
        eps_skip=args.eps_skip,
    )


def train(args: argparse.Namespace) -> tuple[lk.LatentModel, Trainer, float]:
    """The conditional DDPM trained on MNIST's 8-bit digits and labels."""
    data = lk.load_dataset("mnist", variant="8bit", limit=args.limit)
    torch.manual_seed(args.seed)
    model = lk.load_model("ddpm", **model_config(args, data.data_shape))
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=False,
        checkpoint_every=0,
        log_every=max(1, args.steps // 10),
        ema_decay=args.ema,
    )
    trainer = Trainer(model, data.train, config, train_labels=data.train_labels)
    start = time.perf_counter()
    trainer.fit()
    return model, trainer, time.perf_counter() - start


def clipped_twin(model: lk.LatentModel, args: argparse.Namespace) -> lk.LatentModel:
    """The same trained networks in the model with ``clip_denoised=True`` (x̂_0 held in
    [−1, 1] at every reverse step): a different model, not a different sampler."""
    twin = lk.load_model("ddpm", **model_config(args, model.data_shape), clip_denoised=True)
    twin.load_state_dict(model.state_dict())
    return twin.eval()


def measure(model: lk.LatentModel, n: int, w: float, seed: int) -> dict[str, float]:
    """Draw n digits (classes 0..9 in turn) at guidance w and score them with the LeNet; a
    sample with a non-finite pixel (a chain that diverged) is counted, and misread."""
    labels = torch.arange(n) % 10
    torch.manual_seed(seed)
    start = time.perf_counter()
    x = lk.sample(model, n, condition=labels, guidance=w, likelihood_mean=True)
    seconds = time.perf_counter() - start
    finite = torch.isfinite(x).flatten(1).all(1)
    outside = (x[finite].abs() > 1.5).float().mean().item()
    _, logits = load_feature_network().features_and_logits(
        x[finite].clamp(-1, 1), kind="symmetric8"
    )
    score = classifier_score(logits, labels[finite])
    accuracy = score.accuracy * float(finite.float().mean())  # over all n draws
    return {
        "w": w,
        "accuracy": accuracy,
        "se": math.sqrt(accuracy * (1 - accuracy) / n),
        "score": score.score,
        "class entropy": score.marginal_entropy,
        "outside": outside,
        "diverged": int((~finite).sum()),
        "seconds": seconds,
    }


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    model, trainer, seconds = train(args)
    model.eval()
    if args.save:  # the trained (and averaged) weights, for sampling again without training
        with trainer.optimization.averaged():
            torch.save(model.state_dict(), args.save)
    net = f"MLP {args.hidden}" if args.network == "mlp" else f"U-Net {args.channels}"
    net += ", eps_skip" if args.eps_skip else ""
    print(
        f"ddpm, classes=10, T={args.timesteps} ({args.schedule}), {net}, {args.steps} steps of "
        f"{args.batch_size} on MNIST 8-bit ({seconds:.0f} s); {args.samples} samples per w"
    )
    print(
        f"{'x̂_0':>8} {'w':>5} {'accuracy':>9} {'± s.e.':>7} {'cls score':>9} "
        f"{'H(classes)':>10} {'|x|>1.5':>8} {'diverged':>8} {'s':>6}"
    )
    with trainer.optimization.averaged():
        models = {"free": model}
        if args.clip:  # the averaged weights, in the clipped model
            models["clipped"] = clipped_twin(model, args)
        for name, each in models.items():
            for w in (float(v) for v in args.guidance.split(",")):
                r = measure(each, args.samples, w, args.seed + 1)
                print(
                    f"{name:>8} {r['w']:>5g} {r['accuracy']:>9.3f} {r['se']:>7.3f} "
                    f"{r['score']:>9.2f} {r['class entropy']:>10.3f} {r['outside']:>8.3f} "
                    f"{r['diverged']:>8d} "
                    f"{r['seconds']:>6.1f}",
                    flush=True,
                )
    print(f"(chance: accuracy 0.100; H(classes) of ten equal classes: {math.log(10):.3f})")


if __name__ == "__main__":
    main()
