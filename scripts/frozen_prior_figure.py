"""Draw docs/img/frozen_prior_gain.png: what a prior gains on a frozen VAE's test bound.

    python scripts/frozen_prior_figure.py docs/reproduction/aggregate-posterior-fit.*.log \\
        [--out FILE.png]

Reads the tables ``bench.aggregate_posterior_fit`` printed (``| r(z) | test | training |``
rows): the ``vdm`` rows become curves of the test gain against training steps (with the
standard error as a band where the row gives one; weights averaged or not, one curve per
log), the other densities' test gains horizontal lines. The figure of docs/compose.md.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROW = re.compile(r"^\| (?P<name>[^|]+?) \| +(?P<test>[+-]\d+\.\d+) ± (?P<se>\d+\.\d+) \|")
STEPS = re.compile(r"^vdm, (\d+) steps")


def read(path: Path) -> tuple[list[tuple[int, float, float]], dict[str, float]]:
    """The vdm rows (steps, test gain, stderr) and the other rows (name → test gain)."""
    curve, lines = [], {}
    for line in path.read_text().splitlines():
        m = ROW.match(line)
        if m is None:
            continue
        name, test, se = m["name"], float(m["test"]), float(m["se"])
        steps = STEPS.match(name)
        if steps:
            curve.append((int(steps[1]), test, se))
        elif name != "N(0, I)":
            lines[re.sub(r" \(.*\)$", "", name)] = test
    return curve, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/img/frozen_prior_gain.png"))
    args = ap.parse_args()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drawn: set[str] = set()
    for path in args.logs:
        curve, lines = read(path)
        if curve:
            steps, gain, se = zip(*curve, strict=True)
            label = path.stem.split(".")[-1].removeprefix("vdm-")
            ax.plot(steps, gain, "o-", label=f"vdm prior ({label})")
            lo = [g - 2 * s for g, s in zip(gain, se, strict=True)]
            hi = [g + 2 * s for g, s in zip(gain, se, strict=True)]
            ax.fill_between(steps, lo, hi, alpha=0.15)
        for name, value in lines.items():
            if name not in drawn and value > -2:  # the memorising mixture (−11) off the axis
                drawn.add(name)
                ax.axhline(value, ls="--", lw=1, color="0.4")
                ax.annotate(name, (0, value), xycoords=("axes fraction", "data"),
                            xytext=(4, 3), textcoords="offset points", fontsize=8)  # fmt: skip
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("Adam steps of the prior (batch 256), the VAE frozen")
    ax.set_ylabel("test bound gain over N(0, I), nats / image")
    ax.set_title("A prior on a trained VAE's latent: what carries to test images")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
