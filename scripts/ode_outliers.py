"""Why a few test digits get thousands of bits/dim from the probability-flow ODE: the evidence.

    python scripts/ode_outliers.py                               # docs/img/ode_outliers.png
    python scripts/ode_outliers.py --set time_input=t --steps 3000 --out /tmp   # another model

Trains the continuous-time model of ``scripts/continuous_figure.py`` (ε-MLP (256, 256) on the
flattened 8-bit digits, 3,000 steps of 128, seed 0; ``--set`` overrides model fields), then for
the first ``--examples`` test digits computes

* the ODE likelihood (``latentkit.ode_log_prob``: dopri5, exact divergence, uniform
  dequantization) and the same digit's continuous bound −ELBO_∞ (mean of ``--draws`` draws);
* ‖z(1)‖², where the ODE carries the digit: under the model's own prior N(0, I) it is χ²_D,
  so a tail probability below ``--alpha`` says the trajectory left the prior's typical set;
* for the worst digit and two typical ones, a second solver (classical RK4, ``--rk4-steps``
  fixed steps, float64): the path ‖z(t)‖ and the drift's largest local expansion rate
  λ(t) = ½ γ' β̄ (μ_max − β̄), μ_max the top eigenvalue of the symmetric part of ∂ε̂/∂z
  (the drift is ½ γ' β̄ (ε̂ − β̄ z), so its Jacobian is ½ γ' β̄ (∂ε̂/∂z − β̄ I)).

Prints a per-digit table of the flagged digits and writes the figure and a JSON of the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import latentkit as lk


def _value(text: str):
    """A ``--set`` value: JSON where it parses (numbers, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def train(steps: int, seed: int, overrides: dict, ds) -> lk.LatentModel:
    torch.manual_seed(seed)
    fields = {"network": "mlp", "num_timesteps": 1000, **overrides}
    model = lk.load_model("vdm", data_shape=ds.data_shape, **fields)
    cfg = lk.TrainConfig(steps=steps, batch_size=128, seed=seed, progress=False)
    lk.Trainer(model, ds.train, cfg).fit()
    return model.eval()


def rk4_path(core, y: torch.Tensor, steps: int, every: int) -> tuple[list, torch.Tensor]:
    """Fixed-step RK4 from t = 0 to 1; rows of (t, ‖z‖, λ) every ``every`` steps."""
    z, h, rows = y.clone(), 1.0 / steps, []
    for k in range(steps):
        t = torch.tensor(k * h, dtype=y.dtype)
        if k % every == 0:
            gam, dg = core.gamma(t)
            sigma = torch.sigmoid(gam).sqrt()
            rates = []
            for i in range(z.shape[0]):
                jac = torch.autograd.functional.jacobian(
                    lambda v, t=t: core.eps(v[None], t)[0].flatten(), z[i]
                ).reshape(z[i].numel(), -1)
                mu = torch.linalg.eigvalsh((jac + jac.T) / 2).max()
                rates.append(float(0.5 * dg * sigma * (mu - sigma)))
            rows.append((float(t), z.flatten(1).norm(dim=1).tolist(), rates))
        with torch.no_grad():
            f = core.probability_flow
            k1 = f(t, z)
            k2 = f(t + h / 2, z + h / 2 * k1)
            k3 = f(t + h / 2, z + h / 2 * k2)
            k4 = f(t + h, z + h * k3)
            z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return rows, z


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--draws", type=int, default=64, help="draws of −ELBO_∞ per digit")
    parser.add_argument("--alpha", type=float, default=1e-6, help="χ²_D tail flag level")
    parser.add_argument("--rk4-steps", type=int, default=2000)
    parser.add_argument("--set", action="append", default=[], help="model field=value")
    parser.add_argument("--out", default="docs/img")
    parser.add_argument("--json")
    args = parser.parse_args()
    overrides = dict(s.split("=", 1) for s in args.set)
    overrides = {k: _value(v) for k, v in overrides.items()}

    ds = lk.load_dataset("digits", variant="8bit")
    model = train(args.steps, args.seed, overrides, ds).double()
    core, D = model.core, math.prod(ds.data_shape)
    x = ds.test[: args.examples].double()
    nats_to_bpd = 1.0 / (D * math.log(2.0))

    g = torch.Generator().manual_seed(args.seed)
    ode = lk.ode_log_prob(model, x, divergence="exact", dequantize=True, generator=g)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        elbo = torch.stack([model.continuous_elbo(x).total for _ in range(args.draws)]).mean(0)
    ode_bpd, elbo_bpd = ode.bits_per_dim, -elbo * nats_to_bpd
    r2 = ode.z_end.flatten(1).pow(2).sum(-1)
    tail = torch.special.gammaincc(torch.tensor(D / 2.0, dtype=r2.dtype), r2 / 2)  # χ²_D sf
    flagged = (tail < args.alpha).nonzero().flatten().tolist()

    print(f"{args.examples} test digits: ODE median {ode_bpd.median():.3f} bits/dim, mean "
          f"{ode_bpd.mean():.3f}; −ELBO_∞ median {elbo_bpd.median():.3f}, mean {elbo_bpd.mean():.3f}")
    print(f"χ²_{D} tail of ‖z(1)‖² below {args.alpha:g}: {len(flagged)} digit(s) {flagged}")
    print("| digit | ODE bits/dim | −ELBO_∞ bits/dim | ‖z(1)‖ | χ² tail |")
    print("|---|---|---|---|---|")
    worst = sorted(range(len(ode_bpd)), key=lambda i: -float(ode_bpd[i]))[:5]
    for i in worst:
        print(f"| {i} | {ode_bpd[i]:.2f} | {elbo_bpd[i]:.2f} | {r2[i].sqrt():.1f} | {tail[i]:.2g} |")

    order = ode_bpd.argsort()
    typical = [int(order[len(order) // 2]), int(order[len(order) // 4])]
    chosen = [worst[0], *typical]
    gen = torch.Generator().manual_seed(args.seed)
    u = torch.rand(x.shape, generator=gen, dtype=x.dtype)  # the same dequantization as above
    y = (x + 2.0 / 255.0 * (u - 0.5))[chosen]
    rows, z_rk4 = rk4_path(core, y, args.rk4_steps, every=args.rk4_steps // 40)
    agree = (z_rk4 - ode.z_end[chosen]).flatten(1).norm(dim=1) / ode.z_end[chosen].flatten(1).norm(
        dim=1
    )
    print(f"dopri5 vs RK4 ({args.rk4_steps} steps): relative ‖Δz(1)‖ = {agree.tolist()}")

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.scatter(elbo_bpd, ode_bpd, s=12)
    ax.scatter(elbo_bpd[flagged], ode_bpd[flagged], s=40, facecolors="none", edgecolors="r",
               label=f"‖z(1)‖² χ² tail < {args.alpha:g}")
    lo = float(min(elbo_bpd.min(), ode_bpd.min()))
    ax.plot([lo, float(elbo_bpd.max())], [lo, float(elbo_bpd.max())], "k:", lw=1, label="equal")
    ax.set_yscale("log")
    ax.set_xlabel("−ELBO_∞ (bits/dim)")
    ax.set_ylabel("ODE, dequantized (bits/dim)")
    ax.set_title("per test digit")
    ax.legend(fontsize=8)
    ts = [r[0] for r in rows]
    names = [f"digit {chosen[0]} (worst)", f"digit {chosen[1]} (median)",
             f"digit {chosen[2]} (quartile)"]
    for j, name in enumerate(names):
        axes[1].plot(ts, [r[1][j] for r in rows], label=name)
        axes[2].plot(ts, [r[2][j] for r in rows], label=name)
    axes[1].axhline(math.sqrt(D), color="k", ls=":", lw=1, label="√D (prior's typical ‖z‖)")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("t")
    axes[1].set_ylabel("‖z(t)‖ along the ODE path (RK4)")
    axes[1].legend(fontsize=8)
    axes[2].set_xlabel("t")
    axes[2].set_ylabel("largest local expansion rate λ(t)")
    axes[2].legend(fontsize=8)
    title = f"vdm on 8-bit digits, {args.steps} steps" + (f", {overrides}" if overrides else "")
    fig.suptitle(title)
    fig.tight_layout()
    path = out / "ode_outliers.png"
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")
    if args.json:
        payload = {
            "overrides": overrides, "steps": args.steps, "ode_bpd": ode_bpd.tolist(),
            "elbo_bpd": elbo_bpd.tolist(), "z_end_norm": r2.sqrt().tolist(),
            "flagged": flagged, "chosen": chosen, "path": rows, "rk4_vs_dopri5": agree.tolist(),
            "nfe": ode.nfe,
        }
        pathlib.Path(args.json).write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
