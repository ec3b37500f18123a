"""Train the feature network of sample quality (latentkit.quality.LeNet) and write its file.

    python scripts/train_feature_net.py                       # the shipped file (~70 s, 1 thread)
    python scripts/train_feature_net.py --seed 1 --out /tmp/lenet_seed1.safetensors
    python scripts/train_feature_net.py --dataset fashion-mnist --name fashion-lenet \\
        --out my_lenet.safetensors   # a user's own data: then load_feature_network(path)

The embedded MNIST training split (``lk.load_dataset("mnist")``; nothing is downloaded),
every example shown once per epoch in a seeded order, each time either as its gray levels
([0, 1], what 8-bit and continuous samples look like) or as a fresh stochastic binarization
(what binarized samples look like), with probability ½ each. Adam with a cosine learning
rate, one CPU thread, deterministic algorithms: the same command on the same machine and
torch version writes the same bytes. Accuracy on the test split is printed for the gray
and the binarized (seed 0) test images and recorded in the file; docs/quality.md gives the
shipped file's figures.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import pathlib
import sys
import time

import torch
import torch.nn.functional as F
from torch import Tensor

import latentkit as lk
from latentkit.quality.features import LeNet, feature_file_bytes, shipped_weights_path
from latentkit.safe_io import atomic_write_bytes


def accuracy(net: LeNet, images: Tensor, labels: Tensor, batch: int = 1000) -> float:
    """Share of ``images`` whose argmax logit is the label."""
    net.eval()
    right = 0
    with torch.no_grad():
        for s in range(0, images.shape[0], batch):
            right += int((net(images[s : s + batch]).argmax(1) == labels[s : s + batch]).sum())
    return right / images.shape[0]


def train(args: argparse.Namespace) -> tuple[LeNet, dict]:
    data = lk.load_dataset(args.dataset, variant="unit", limit=args.limit)
    if data.train_labels is None:
        sys.exit(f"{args.dataset} has no labels; a classifier needs them")
    x, y = data.train, data.train_labels
    classes = int(y.max()) + 1
    torch.manual_seed(args.seed)
    net = LeNet(channels=x.shape[1], classes=classes)
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(x.shape[0] / args.batch)
    total = steps_per_epoch * args.epochs
    step = 0
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(x.shape[0], generator=gen)
        for s in range(0, x.shape[0], args.batch):
            idx = order[s : s + args.batch]
            xb = x[idx]
            binary = torch.rand(xb.shape[0], 1, 1, 1, generator=gen) < 0.5
            drawn = (torch.rand(xb.shape, generator=gen) < xb).to(xb.dtype)
            xb = torch.where(binary, drawn, xb)
            for group in opt.param_groups:
                group["lr"] = args.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        print(f"epoch {epoch + 1}/{args.epochs}: last batch loss {loss.item():.4f}", flush=True)
    binarized = lk.load_dataset(args.dataset, variant="binarized", seed=0, limit=args.limit)
    info = {
        "name": args.name,
        "dataset": data.description,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "torch": torch.__version__,
        "test_accuracy_gray": accuracy(net, data.test, data.test_labels),
        "test_accuracy_binarized": accuracy(net, binarized.test, binarized.test_labels),
        "test_examples": int(data.test.shape[0]),
    }
    return net, info


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist", help="a latentkit data set with labels")
    ap.add_argument("--name", default="mnist-lenet", help="the name figures are labelled with")
    ap.add_argument("--out", type=pathlib.Path, default=shipped_weights_path())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--limit", type=int, default=None, help="first examples only (smoke runs)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    net, info = train(args)
    blob = feature_file_bytes(net, info)
    atomic_write_bytes(args.out, blob)
    print(
        f"test accuracy {info['test_accuracy_gray']:.4f} (gray), "
        f"{info['test_accuracy_binarized']:.4f} (binarized) on {info['test_examples']} images; "
        f"{sum(p.numel() for p in net.parameters())} parameters; "
        f"{time.perf_counter() - start:.0f} s\nwrote {args.out} ({len(blob)} bytes), "
        f"sha256 {hashlib.sha256(blob).hexdigest()}"
    )


if __name__ == "__main__":
    main()
