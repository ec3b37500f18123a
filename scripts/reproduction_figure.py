"""Draw docs/img/reproduction_curves.png: each recipe run's validation ELBO against wall time.

    python scripts/reproduction_figure.py RUN_DIR[=RECIPE[=LABEL]] ... [--out FILE.png]

Reads each run's ``metrics.jsonl`` (the ``validation`` lines and the ``train`` lines' clock)
and its ``config.json`` (for the label); the horizontal lines mark the published test NLLs
of the recipes (their ``[recipe]`` tables), once per recipe: ``RUN_DIR=RECIPE`` names the
recipe a run folder was trained from, else the folder's name is taken as the recipe's; a
folder named otherwise is labelled "RECIPE (FOLDER)" unless a LABEL is given. A run that
logged a validation IWAE bound (an IWAE-trained one) also gets it, dashed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from latentkit.plots import read_metrics
from latentkit.recipes import recipe_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="RUN_DIR, RUN_DIR=RECIPE or RUN_DIR=RECIPE=LABEL")
    ap.add_argument("--out", type=Path, default=Path("docs/img/reproduction_curves.png"))
    args = ap.parse_args()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drawn: set[str] = set()  # recipes whose published NLL is drawn (once each)
    for arg in args.runs:
        path, _, rest = arg.partition("=")
        recipe, _, name = rest.partition("=")
        run = Path(path)
        recipe = recipe or run.name
        lines = read_metrics(run / "metrics.jsonl")
        if not lines:
            continue
        start = min(m["time"] for m in lines if "time" in m)
        valid = [m for m in lines if m.get("split") == "validation"]
        minutes = [(m["time"] - start) / 60 for m in valid]
        nll = [-m["elbo"] for m in valid]
        label = name or (recipe if run.name == recipe else f"{recipe} ({run.name})")
        (line,) = ax.plot(minutes, nll, marker="o", ms=2, label=f"{label}: −ELBO (validation)")
        bound = [(t, -m["iwae"]) for t, m in zip(minutes, valid, strict=True) if "iwae" in m]
        if bound:  # an IWAE-trained run: the bound it optimises, too
            k = next(m["iwae_k"] for m in valid if "iwae" in m)
            ax.plot(*zip(*bound, strict=True), ls="--", color=line.get_color(),
                    label=f"{label}: −IWAE-{k} (validation)")  # fmt: skip
        try:
            published = recipe_info(recipe).get("published_nll")
        except Exception:
            published = None
        if isinstance(published, (int, float)) and recipe not in drawn:
            drawn.add(recipe)
            ax.axhline(published, color=line.get_color(), ls=":", lw=1)
            # Staggered along x: the published values lie within a nat or two of each other.
            ax.text(0.02 + 0.3 * (len(drawn) - 1), published, f" published NLL {published}",
                    color=line.get_color(), va="bottom", fontsize=8,
                    transform=ax.get_yaxis_transform())  # fmt: skip
    ax.set_xlabel("wall time (minutes; each run's cores and threads: docs/reproduction.md)")
    ax.set_ylabel("nats (lower is better)")
    ax.set_title("Recipes on binarized MNIST: validation −ELBO over training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    lo = ax.get_ylim()
    ax.set_ylim(min(lo[0], 80), min(lo[1], 130))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()
