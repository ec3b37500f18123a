"""Train a DDPM and the continuous-time model at the same small budget on 8-bit digits; print
the likelihood table of ``docs/continuous.md`` and save its per-t breakdown figure.

    python scripts/continuous_figure.py                      # the docs' numbers (CPU, minutes)
    python scripts/continuous_figure.py --steps 50 --out /tmp  # a quick look

Both models: the same ε-MLP (256, 256) on the flattened 1×8×8 digits, T = 1000 for the
discrete chains, the same optimizer, steps, batch size and seed. The DDPM trains on its
one-timestep ELBO estimate, the continuous model on −ELBO_∞ (low-discrepancy t); the
figures are the true bounds on the 297 test digits (bits/dim, 8-bit data).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

import torch
from latentkit_vdm.ode import per_t_plot

import latentkit as lk
from latentkit.evaluation import evaluate


def _train(name: str, ds, steps: int, batch_size: int, seed: int):
    torch.manual_seed(seed)
    model = lk.load_model(name, data_shape=ds.data_shape, network="mlp", num_timesteps=1000)
    cfg = lk.TrainConfig(steps=steps, batch_size=batch_size, seed=seed, progress=False)
    lk.Trainer(model, ds.train, cfg).fit()
    return model.eval()


def _row(name: str, discrete: dict, *others: dict | None) -> str:
    def cell(fig):
        if fig is None:
            return "—"
        bpd = fig["bits_per_dim"]
        return f"{bpd['mean']:.3f} ± {bpd['stderr']:.3f}"

    return f"| `{name}` | " + " | ".join(cell(f) for f in (discrete, *others)) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ode-examples", type=int, default=100)
    parser.add_argument("--divergence", default="exact", help="exact, hutchinson or auto")
    parser.add_argument("--out", default="docs/img", help="folder for continuous_per_t.png")
    parser.add_argument("--json", help="also write the figures as JSON here")
    args = parser.parse_args()
    ds = lk.load_dataset("digits", variant="8bit")
    scale = ds.test[0].numel() * math.log(2.0)

    ddpm = _train("ddpm", ds, args.steps, args.batch_size, args.seed)
    report = evaluate(ddpm, ds.test, iwae_k=0, discrete=True, seed=args.seed)
    ddpm_discrete = {
        "bits_per_dim": {"mean": -report.elbo.mean / scale, "stderr": report.elbo.stderr / scale}
    }

    vdm = _train("vdm", ds, args.steps, args.batch_size, args.seed)
    figures = vdm.likelihood_figures(
        ds.test,
        discrete=True,
        ode_examples=args.ode_examples,
        seed=args.seed,
        divergence=args.divergence,
    )
    out = pathlib.Path(args.out)
    path = per_t_plot(
        figures["per_t"],
        out / "continuous_per_t.png",
        title=f"continuous-time diffusion on 8-bit digits ({args.steps} steps): diffusion "
        "term per t",
    )
    print("| model | −ELBO_T, T = 1000 | −ELBO_∞ | ODE + decoder | ODE at x, uniform deq. |")
    print("|---|---|---|---|---|")
    print(_row("ddpm", ddpm_discrete, None, None, None))
    v = figures
    print(_row("vdm", v["discrete"], v["continuous"], v["ode"], v["ode_direct"]))
    print(
        f"bits/dim on {ds.test.shape[0]} test digits (ODE: first {figures['ode']['num_examples']},"
        f" {figures['ode']['divergence']} divergence); figure: {path}"
    )
    for key in ("ode", "ode_direct"):
        print(f"{key}: median {figures[key]['median_bits_per_dim']:.3f} bits/dim")
    if args.json:
        payload = {"ddpm": ddpm_discrete, "vdm": figures, "steps": args.steps}
        pathlib.Path(args.json).write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
