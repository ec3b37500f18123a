"""M2 on MNIST with a few labels per class: the test error of its classifier q(y | x).

Kingma et al. (2014), Table 1: M2 alone, 100 labels, 11.97% (± 1.71) test error, after far
longer training than this script's default. The settings are the paper's: z of 50
dimensions, one hidden layer of 500 softplus units in every network, a Bernoulli likelihood
of binarized images (drawn afresh at each use), Adam, α = 0.1·N.

The trainer draws batches uniformly from the training set, where 100 labelled images among
60,000 are one in every six batches of 100; ``--repeat-labelled R`` puts R copies of each
labelled image in the training set instead (N_l = R × the labelled images, so the
classification term keeps the paper's weight α·E_labelled[−log q(y|x)]; the labelled
images' own bound counts R times).

    python -m bench.m2_semisupervised --steps 8000 --labels-per-class 10

prints the command, the budget, and the test error of argmax_y q(y | x) on the 10,000 test
images.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch
from latentkit_m2 import classification_error, mask_labels

import latentkit as lk


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.m2_semisupervised", description=__doc__)
    ap.add_argument("--steps", type=int, default=8000, help="Adam steps")
    ap.add_argument("--labels-per-class", type=int, default=10)
    ap.add_argument("--repeat-labelled", type=int, default=1, help="copies of each labelled image")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=0, help="test error every N steps (0: end)")
    args = ap.parse_args(argv)
    print("command:", shlex.join([sys.executable, "-m", "bench.m2_semisupervised", *sys.argv[1:]]))
    torch.manual_seed(args.seed)
    data = lk.load_dataset("mnist", variant="unit", flatten=True)
    test = lk.load_dataset("mnist", variant="binarized", flatten=True, seed=args.seed)
    labels = mask_labels(data.train_labels, args.labels_per_class, args.seed, num_classes=10)
    known = labels >= 0
    r = args.repeat_labelled
    x = torch.cat([data.train[~known], data.train[known].repeat(r, 1)])
    y = torch.cat([labels[~known], labels[known].repeat(r)])
    n_labelled = int(known.sum())
    model = lk.load_model(
        "m2",
        data_shape=(784,),
        likelihood="bernoulli",
        alpha=0.1 * len(data.train),
        labelled=r * n_labelled,
    )
    print(
        f"{n_labelled} labelled of {len(data.train)} training images (× {r} in the training "
        f"set), α = {model.config.alpha:g}, weight per labelled row α/N_l = "
        f"{model.config.classification_weight:g}"
    )
    cfg = lk.TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=False,
        log_every=500,
        checkpoint_every=0,
    )
    trainer = lk.Trainer(model, x, cfg, train_labels=y, objective="m2", dynamic_binarization=True)
    t0 = time.perf_counter()
    every = args.eval_every or args.steps
    done = 0
    while done < args.steps:
        done = min(done + every, args.steps)
        trainer.fit(until=done)
        err = classification_error(model.eval(), test.test, test.test_labels)
        model.train()
        print(
            f"step {done}: test error {100 * err:.2f}% ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    print(
        f"M2, {args.labels_per_class} labels per class, {args.steps} steps of "
        f"{args.batch_size} in {time.perf_counter() - t0:.0f} s: test error of "
        f"argmax q(y|x) on {len(test.test)} images = {100 * err:.2f}% (paper: 11.97%)"
    )


if __name__ == "__main__":
    main()
