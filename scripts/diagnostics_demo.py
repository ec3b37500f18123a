"""Posterior collapse on digits, and two remedies: the figures of docs/diagnostics.md.

A VAE with more latent dimensions than the data need (32 for 8×8 binarized digits) is
trained three times from the same initial weights and data order, for the same few hundred
steps: the plain ELBO, the ELBO with KL warm-up, and the ELBO with free bits per dimension.
Each is diagnosed on the 1,500 training digits every ``--every`` steps (in its own random
stream, so training is not perturbed) and at the end. Writes::

    OUT/diagnostics_comparison.png   per-dimension KL and activity, the three side by side
    OUT/diagnostics_units.png        the plain ELBO's units, in latent order
    OUT/diagnostics_training.png     I_q and active units over training (plain ELBO)
    OUT/diagnostics_ddpm.png         a DDPM's I(x_0; x_t) on 8-bit digits along t

and prints the tables quoted in the docs (``--json PATH`` also saves every figure).

Run: ``OMP_NUM_THREADS=1 python scripts/diagnostics_demo.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import torch
from rich.console import Console

import latentkit as lk
from latentkit import diagnostics as dg
from latentkit.training import TrainConfig, Trainer, seed_everything

REMEDIES = {
    "plain ELBO": {},
    "KL warm-up": {"warmup_steps": None},  # filled in: 3/4 of the run
    "free bits 0.1/dim": {"free_bits": 0.1, "free_bits_per": "dimension", "estimator": "analytic"},
}


def train_and_diagnose(name, options, ds, args, quiet):
    seed_everything(0)
    model = lk.load_model(
        "vae", data_shape=ds.data_shape, latent_dim=args.latent_dim, likelihood="bernoulli"
    )
    cfg = TrainConfig(steps=args.steps, batch_size=128, seed=0, progress=False, log_every=50)
    trainer = Trainer(
        model, ds.train, cfg, objective="elbo", objective_config=options, console=quiet
    )
    history = []
    for step in range(args.every, args.steps + 1, args.every):
        trainer.fit(until=step)
        d = dg.diagnose(model, ds.train, num_draws=args.draws)
        history.append({"split": "diagnostics", "step": step, **d.metrics()})
    test = lk.evaluate(model, ds.test, iwae_k=0)
    return d, history, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--out", default="docs/img")
    parser.add_argument("--json", default=None, help="also write every figure to this file")
    args = parser.parse_args()
    out = Path(args.out)
    REMEDIES["KL warm-up"]["warmup_steps"] = 3 * args.steps // 4
    ds = lk.load_dataset("digits", variant="binarized")
    quiet = Console(file=io.StringIO())
    console = Console(width=110)
    runs, record = {}, {"steps": args.steps, "latent_dim": args.latent_dim, "runs": {}}
    for name, options in REMEDIES.items():
        d, history, test = train_and_diagnose(name, options, ds, args, quiet)
        runs[name] = d
        console.print(dg.diagnostics_table(d, title=f"{name} (objective_config={options})"))
        record["runs"][name] = {
            "objective_config": options,
            "diagnostics": d.to_json(),
            "history": history,
            "test_elbo": test.elbo.to_json(),
        }
        if name == "plain ELBO":
            dg.diagnostics_plot(d, out / "diagnostics_units.png")
            dg.training_diagnostics_plot(
                history, out / "diagnostics_training.png", title="plain ELBO, 32 latent dims"
            )
    dg.comparison_plot(
        runs,
        out / "diagnostics_comparison.png",
        title=f"VAE on binarized digits, {args.latent_dim} latent dims, {args.steps} steps",
    )
    # A DDPM's q is fixed: I(x_0; x_t) needs no training, only its forward chain.
    ds8 = lk.load_dataset("digits", variant="8bit")
    ddpm = lk.load_model("ddpm", data_shape=ds8.data_shape, network="mlp", hidden=(8,))
    x0 = ds8.train[:500]
    dd = dg.diagnose(ddpm, x0, num_draws=1)
    dg.diagnostics_plot(
        dd, out / "diagnostics_ddpm.png", title="I(x_0; x_t) on 500 8-bit digits, T = 1000 (linear)"
    )
    record["ddpm"] = {
        "t": [layer.layer for layer in dd.layers],
        "mutual_information": [layer.mutual_information.to_json() for layer in dd.layers],
        "log_n": dd.log_n,
    }
    print_summary(record)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))
    console.print(f"wrote {out}/diagnostics_*.png")


def print_summary(record: dict) -> None:
    """Markdown tables: the final figures of each run, and active units over training."""
    rows = [
        "| objective | ELBO (train) | test ELBO | E_x KL | I_q | KL(q(z)‖p(z)) | active units "
        "| units with KL > 0.1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in record["runs"].items():
        d = run["diagnostics"]

        def pm(e):
            return f"{e['mean']:.2f} ± {e['stderr']:.2f}"

        big = sum(v > 0.1 for v in d["layers"][0]["per_dimension_kl"])
        rows.append(
            f"| {name} | {pm(d['elbo'])} | {pm(run['test_elbo'])} | {pm(d['expected_kl'])} "
            f"| {pm(d['mutual_information'])} | {pm(d['aggregate_kl'])} "
            f"| {d['active_units']} / {d['latent_dims']} | {big} |"
        )
    steps = [h["step"] for h in next(iter(record["runs"].values()))["history"]]
    rows += ["", "| step | " + " | ".join(map(str, steps)) + " |"]
    rows.append("|---" * (len(steps) + 1) + "|")
    for name, run in record["runs"].items():
        cells = [f"{h['active_units']} ({h['mutual_information']:.2f})" for h in run["history"]]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    ddpm = record["ddpm"]
    rows += ["", "| t | " + " | ".join(map(str, ddpm["t"])) + " |"]
    rows.append("|---" * (len(ddpm["t"]) + 1) + "|")
    rows.append(
        "| I(x_0; x_t) | "
        + " | ".join(f"{e['mean']:.2f}" for e in ddpm["mutual_information"])
        + " |"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
