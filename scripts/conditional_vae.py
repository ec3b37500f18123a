"""The conditional VAE of docs/conditional.md against the same VAE unconditioned.

Trains both at the main job's budget (8,000 steps of 128 on binarized MNIST), each with
``--report`` (IWAE-100 on the 10,000 test images; the conditional one given the labels, with
its marginal NLL and generative classifier on the first 1,000), then scores 1,000 samples of
the conditional model (classes 0..9 in turn) with the shipped MNIST LeNet
(``latentkit.quality``): the share it labels as their class. From the repository root:

    python scripts/conditional_vae.py              # both runs, then the sample accuracy
    python scripts/conditional_vae.py --score-only # the accuracy of runs/conditional/cvae
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch

import latentkit as lk
from latentkit.quality import classifier_score, load_feature_network

RUNS = {"cvae": ["--set", "model.classes=10"], "vae": []}
COMMON = ["--data", "mnist", "--steps", "8000", "--batch-size", "128", "--eval-every", "2000",
          "--checkpoint-every", "2000", "--report", "--overwrite", "--no-progress"]  # fmt: skip


def score(run: str, n: int, seed: int) -> None:
    model, _ = lk.load_trained_model(run)
    labels = torch.arange(n) % 10
    torch.manual_seed(seed)
    with torch.no_grad():
        x = lk.sample(model, n, condition=labels, likelihood_mean=True)
    _, logits = load_feature_network().features_and_logits(x, kind="binary")
    s = classifier_score(logits, labels)
    share = f"{100 * s.accuracy:.1f}% ± {100 * s.accuracy_se:.1f}%"
    print(f"{run}: {n} samples, the LeNet labels {share} as their class (score {s.score:.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--score-only", action="store_true")
    p.add_argument("--samples", type=int, default=1000)
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if not args.score_only:
        for name, extra in RUNS.items():
            cmd = ["latentkit", "train", "--model", "vae", *extra, *COMMON]
            subprocess.run([*cmd, "--run-dir", f"runs/conditional/{name}"], check=True, env=env)
    score("runs/conditional/cvae", args.samples, seed=0)


if __name__ == "__main__":
    sys.exit(main())
