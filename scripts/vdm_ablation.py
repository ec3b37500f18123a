"""Ablate the continuous-time model's likelihood essentials on 8-bit digits at one budget; print
a Markdown table of −ELBO_T and −ELBO_∞ (bits/dim ± s.e.), write JSON, and save the per-t
breakdown of every variant in one figure.

    python scripts/vdm_ablation.py --threads 2 --json vdm_ablation.json   # full size (CPU, long)
    python scripts/vdm_ablation.py --steps 20 --eval-limit 32 --out /tmp/abl --json /tmp/a.json

Variants of ``vdm`` (``docs/continuous.md``, "Likelihood essentials"), each trained on −ELBO_∞
(the ``continuous`` objective, low-discrepancy t, ``schedule_gradient="variance"``):

* ``baseline``: time_input="t", no Fourier features, the linear schedule;
* ``+gamma``: γ-conditioning alone. With the linear schedule the embedding's argument
  1000 (γ(t) − γ_min)/(γ_max − γ_min) is 1000 t up to float rounding, so this row should
  equal ``baseline`` within the run-to-run noise of rounding: a control, not an effect;
* ``+fourier``: Fourier features (n = 7, 8) alone;
* ``+learned``: the learned schedule alone, its interior on the variance gradient (with
  t-conditioning E[L_diff] does depend on the interior, so this gradient is then only a
  heuristic);
* ``+learned+gamma``: the learned schedule with γ-conditioning (where γ-conditioning matters);
* ``all``: γ-conditioning, Fourier features and the learned schedule;

and ``ddpm`` with the same ε-MLP, T, steps, batch, learning rate and seed (its own default
objective, the one-timestep ELBO estimate). Every model sees the same data order (same
seed). −ELBO_T (T = 1000) is latentkit's evaluation of the discrete chain
(``latentkit.evaluation.evaluate``, ``discrete=True``); −ELBO_∞ averages ``--t-draws`` draws
of (t, ε, z_0) per test digit, t stratified per digit. Both on the test digits, bits/dim,
± one standard error over digits.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time

import torch
from latentkit_vdm.ode import per_t_breakdown

import latentkit as lk
from latentkit.evaluation import evaluate

VARIANTS: dict[str, dict] = {
    "baseline": {"time_input": "t", "fourier_exponents": (), "schedule": "linear"},
    "+gamma": {"time_input": "gamma", "fourier_exponents": (), "schedule": "linear"},
    "+fourier": {"time_input": "t", "fourier_exponents": (7, 8), "schedule": "linear"},
    "+learned": {"time_input": "t", "fourier_exponents": (), "schedule": "learned"},
    "+learned+gamma": {"time_input": "gamma", "fourier_exponents": (), "schedule": "learned"},
    "all": {"time_input": "gamma", "fourier_exponents": (7, 8), "schedule": "learned"},
    # The digits use 17 of the 256 levels (2/16 apart on [−1, 1]): frequencies down to that
    # spacing (n = 4: period 1/8) as well as the 8-bit bin's (n = 7, 8).
    "+fourier-wide": {
        "time_input": "t",
        "fourier_exponents": (4, 5, 6, 7, 8),
        "schedule": "linear",
    },
    "all-wide": {
        "time_input": "gamma",
        "fourier_exponents": (4, 5, 6, 7, 8),
        "schedule": "learned",
    },
}
MODELS = (*VARIANTS, "ddpm")


def _log(message: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)


def _train(name: str, settings: dict, ds, args, start: float):
    torch.manual_seed(args.seed)
    common = {
        "data_shape": ds.data_shape,
        "network": "mlp",
        "hidden": tuple(args.hidden),
        "num_timesteps": 1000,
    }
    if name == "ddpm":
        model = lk.load_model("ddpm", **common)
        objective = {}
    else:
        model = lk.load_model("vdm", **common, **settings)
        objective = {
            "objective": "continuous",
            "objective_config": {"t_sampler": "low-discrepancy", "schedule_gradient": "variance"},
        }
    cfg = lk.TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=False,
        log_every=max(1, args.steps // 10),
    )
    trainer = lk.Trainer(model, ds.train, cfg, **objective)
    every = max(1, args.steps // 10)
    for until in range(every, args.steps + every, every):
        result = trainer.fit(until=min(until, args.steps))
        loss = result.last_metrics.get("train", {}).get("loss", math.nan)
        _log(f"  {name}: step {result.step}/{args.steps}, loss {loss:.2f} nats", start)
    return model.eval()


def _bits(values: torch.Tensor, dims: int) -> dict:
    """Mean and standard error over examples of −log-likelihood values in nats, as bits/dim."""
    scale = dims * math.log(2.0)
    n = values.numel()
    return {
        "mean": float(values.mean()) / scale,
        "stderr": float(values.std() / math.sqrt(n)) / scale if n > 1 else math.nan,
        "num_examples": n,
    }


@torch.no_grad()
def _continuous_nll(model, data: torch.Tensor, draws: int, seed: int, batch: int = 100):
    """−ELBO_∞ per example (nats), the mean of ``draws`` draws of (t, ε, z_0), t = (u + j)/draws
    with one u ~ U(0, 1) per example (stratified: each draw's t is marginally uniform)."""
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(0, data.shape[0], batch):
            x = data[i : i + batch]
            u = torch.rand(x.shape[0], 1, dtype=x.dtype)
            t = ((u + torch.arange(draws, dtype=x.dtype)) / draws).reshape(-1)
            total = model.continuous_elbo(x.repeat_interleave(draws, dim=0), t=t).total
            out.append(-total.reshape(-1, draws).mean(-1).double())
    return torch.cat(out)


def _evaluate(name: str, model, test: torch.Tensor, args) -> dict:
    dims = test[0].numel()
    report = evaluate(model, test, iwae_k=0, discrete=True, seed=args.seed)
    scale = dims * math.log(2.0)
    row = {
        "discrete": {
            "mean": -report.elbo.mean / scale,
            "stderr": report.elbo.stderr / scale,
            "num_examples": test.shape[0],
        },
        "continuous": None,
        "per_t": None,
    }
    if name != "ddpm":
        row["continuous"] = _bits(_continuous_nll(model, test, args.t_draws, args.seed), dims)
        row["per_t"] = per_t_breakdown(model, test, num_t=args.num_t, seed=args.seed)
        with torch.no_grad():
            ends, _ = model.core.gamma(torch.tensor([0.0, 1.0]))
        row["gamma_ends"] = [float(g) for g in ends]
    return row


def _cell(fig: dict | None) -> str:
    return "—" if fig is None else f"{fig['mean']:.3f} ± {fig['stderr']:.3f}"


def _table(rows: dict) -> str:
    lines = [
        "| variant | time input | Fourier n | schedule | −ELBO_T, T = 1000 | −ELBO_∞ |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        s = VARIANTS.get(name)
        setting = (
            ["—", "—", "discrete (DDPM)"]
            if s is None
            else [
                s["time_input"],
                ", ".join(map(str, s["fourier_exponents"])) or "none",
                s["schedule"],
            ]
        )
        cells = [f"`{name}`", *setting, _cell(row["discrete"]), _cell(row["continuous"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(rows: dict, path: pathlib.Path, title: str) -> pathlib.Path:
    """The per-t breakdown of every ``vdm`` variant: ½ γ'(t) E‖ε − ε̂‖² (left, log scale; its
    integral over t is the diffusion term) and E‖ε − ε̂‖² (right), one curve per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (name, row) in enumerate(rows.items()):
        per_t = row.get("per_t")
        if per_t is None:
            continue
        total = sum(per_t["integrand"]) / len(per_t["integrand"])
        label = f"{name} (∫ ≈ {total:.1f} nats)"
        left.plot(per_t["t"], per_t["integrand"], color=f"C{i}", label=label)
        right.plot(per_t["t"], per_t["eps_mse"], color=f"C{i}", label=name)
    left.set(xlabel="t", ylabel="nats per unit t", yscale="log")
    left.set_title("½ γ'(t) E‖ε − ε̂‖²", fontsize=9)
    right.set(xlabel="t", ylabel="E‖ε − ε̂‖²")
    right.set_title("ε-prediction error", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _render(args) -> None:
    """The table and figure of saved ``--json`` outputs, which must share their settings."""
    rows: dict[str, dict] = {}
    settings = None
    for name in args.render:
        payload = json.loads(pathlib.Path(name).read_text())
        mine = {k: v for k, v in payload["settings"].items() if k != "variants"}
        if settings is not None and mine != settings:
            raise SystemExit(f"--render: {name} was run with other settings: {mine} vs {settings}")
        settings = mine
        rows.update(payload["results"])
    order = [n for n in MODELS if n in rows]
    rows = {n: rows[n] for n in order}
    _publish(rows, settings, args.out)


def _publish(rows: dict, settings: dict, out: str) -> None:
    """Print the table and draw the per-t figure of ``rows`` run with ``settings``."""
    print(_table(rows))
    print(
        f"\nbits/dim on {settings['num_test']} test digits, ± one standard error; "
        f"{settings['steps']} steps of {settings['batch_size']}, lr {settings['lr']}, "
        f"seed {settings['seed']}"
    )
    path = _figure(
        rows,
        pathlib.Path(out) / "vdm_ablation_per_t.png",
        f"vdm essentials on 8-bit digits ({settings['steps']} steps): diffusion term per t",
    )
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps per model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="MLP widths")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--t-draws", type=int, default=16, help="draws per digit for −ELBO_∞")
    parser.add_argument("--num-t", type=int, default=64, help="grid points of the per-t figure")
    parser.add_argument("--eval-limit", type=int, default=None, help="first N test digits")
    parser.add_argument(
        "--variants",
        default=",".join(MODELS),
        help=f"comma-separated subset of {', '.join(MODELS)}",
    )
    parser.add_argument("--out", default="docs/img", help="folder for vdm_ablation_per_t.png")
    parser.add_argument("--json", help="write every figure and the settings here as JSON")
    parser.add_argument(
        "--render",
        nargs="+",
        metavar="JSON",
        help="train nothing: merge these --json outputs (runs of the same settings, e.g. the "
        "variants run in two sittings) into one table and figure",
    )
    args = parser.parse_args()
    if args.render:
        _render(args)
        return
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown or not names:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(MODELS)}")
    if args.steps < 1 or args.t_draws < 1 or args.num_t < 1:
        parser.error("--steps, --t-draws and --num-t must be ≥ 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    ds = lk.load_dataset("digits", variant="8bit")
    test = ds.test if args.eval_limit is None else ds.test[: args.eval_limit]
    _log(
        f"{len(names)} models, {args.steps} steps of {args.batch_size} at lr {args.lr}, "
        f"seed {args.seed}, MLP {tuple(args.hidden)}; {test.shape[0]} test digits",
        start,
    )
    rows: dict[str, dict] = {}
    for k, name in enumerate(names, 1):
        _log(f"[{k}/{len(names)}] training {name}", start)
        t0 = time.perf_counter()
        model = _train(name, VARIANTS.get(name, {}), ds, args, start)
        seconds = time.perf_counter() - t0
        _log(f"[{k}/{len(names)}] evaluating {name}", start)
        rows[name] = {**_evaluate(name, model, test, args), "train_seconds": seconds}
        done = rows[name]
        _log(
            f"[{k}/{len(names)}] {name}: −ELBO_T {_cell(done['discrete'])}, "
            f"−ELBO_∞ {_cell(done['continuous'])} bits/dim",
            start,
        )

    print()
    settings = {
        k: getattr(args, k)
        for k in ("steps", "batch_size", "lr", "seed", "hidden", "t_draws", "num_t")
    } | {"num_test": test.shape[0]}
    _publish(rows, settings, args.out)
    if args.json:
        payload = {
            "settings": settings | {"variants": {n: VARIANTS.get(n) for n in names}},
            "results": rows,
        }
        out = pathlib.Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=1))
        print(f"json: {out}")


if __name__ == "__main__":
    main()
