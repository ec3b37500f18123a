"""Write tests/data/legacy_runs/reference.json: each legacy run's ELBO on fixed test digits.

The run folders under tests/data/legacy_runs/ were trained (3 steps, tiny networks) by the
code of commit 02a93d1 with

    latentkit train --model M --data digits --steps 3 --batch-size 16 --checkpoint-every 0 \
        --set train.ema_decay=0.9 --no-progress --run-dir RUN --set hidden=[16] [...]

(ddpm: --set network=mlp --set num_timesteps=20; vdm: --set network=mlp). This script, run
by the same commit, recorded what those checkpoints evaluate to; tests/test_legacy_checkpoints.py
checks that today's code loads them and evaluates them to the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import latentkit as lk

ROOT = Path(__file__).resolve().parents[1] / "tests" / "data" / "legacy_runs"
MODELS = ("vae", "beta-vae", "hvae", "iaf", "vamp", "ddpm", "vdm")


def reference(run: Path) -> dict[str, object]:
    model, info = lk.load_trained_model(run)
    model = model.double()
    x = lk.load_dataset("digits", variant=info["data"]["variant"]).test[:8].double()
    torch.manual_seed(0)
    with torch.no_grad():
        bound = lk.elbo(model, x, num_samples=2)
    return {"weights": info["weights"], "elbo": bound.total.tolist()}


if __name__ == "__main__":
    out = {m: reference(ROOT / m) for m in MODELS}
    (ROOT / "reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
