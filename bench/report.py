"""Tables (rich on the terminal, Markdown in ``docs/benchmarks.md``) and the plots."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.timing import ratio

__all__ = ["markdown", "plot_full_bound", "plot_ratios", "print_tables", "ratio_rows"]

OVERHEAD_TARGET = 1.05
EFFICIENCY_TARGET = 0.80


def ratio_rows(groups) -> list[dict]:
    """One row per reported pair: the paired-round ratio and both medians."""
    rows = []
    for g in groups:
        for a, b in g.pairs:
            med, lo, hi = ratio(g.timings[a], g.timings[b])
            peer = b not in ("hand-written",)
            target = "< 1 (faster)" if peer else f"≤ {OVERHEAD_TARGET}"
            rows.append(
                {
                    "model": g.model,
                    "task": g.task,
                    "data": g.data,
                    "a": a,
                    "b": b,
                    "ratio": med,
                    "ci": (lo, hi),
                    "a_ms": g.timings[a].median * 1e3,
                    "b_ms": g.timings[b].median * 1e3,
                    "kind": "peer" if peer else "overhead",
                    "target": target,
                    "rounds": len(g.timings[a].per_call),
                    "calls_per_round": g.inner,
                }
            )
    return rows


def verdict(r: dict) -> str:
    """``met`` when the whole 95% CI of the ratio meets the target, ``missed`` when none of it
    does, ``undecided`` when the interval straddles the target (a tie within the noise)."""
    lo, hi = r["ci"]
    if r["kind"] == "peer":
        return "met" if hi < 1.0 else "missed" if lo >= 1.0 else "undecided"
    return "met" if hi <= OVERHEAD_TARGET else "missed" if lo > OVERHEAD_TARGET else "undecided"


MARK = {"met": "✓", "missed": "✗", "undecided": "≈ (CI straddles it)"}


def _fmt_ratio(r: dict) -> str:
    return f"{r['ratio']:.3f} ({r['ci'][0]:.2f}–{r['ci'][1]:.2f})"


def print_tables(
    console: Console, rows: list[dict], checks: list[dict], full: dict | None, quality: dict | None
) -> None:
    t = Table(title="latentkit ÷ other, per step (median of paired rounds; 95% CI)")
    for col in ("model", "task", "other", "ratio", "latentkit ms", "other ms", "target"):
        t.add_column(col, justify="right" if col not in ("model", "task", "other") else "left")
    for r in rows:
        mark = {"met": "[green]✓[/]", "missed": "[red]✗[/]", "undecided": "[yellow]≈[/]"}[
            verdict(r)
        ]
        t.add_row(
            r["model"],
            r["task"],
            r["b"] if r["a"] == "latentkit" else f"{r['b']} (vs {r['a']})",
            _fmt_ratio(r),
            f"{r['a_ms']:.2f}",
            f"{r['b_ms']:.2f}",
            f"{r['target']} {mark}",
        )
    console.print(t)
    t = Table(title="Same loss on the same weights and draws")
    for col in ("pair", "latentkit", "other", "max |Δ|", "rel", "ok"):
        t.add_column(col)
    for c in checks:
        t.add_row(
            c["pair"],
            f"{c['latentkit']:.4f}",
            f"{c['other']:.4f}",
            f"{c['max_abs_diff']:.2e}",
            f"{c['max_rel_diff']:.1e}",
            "[green]yes[/]" if c["ok"] else "[red]NO[/]",
        )
    console.print(t)
    if full:
        t = Table(title="DDPM full-T ELBO vs plain ε-network forward (same pairs)")
        for col in (
            "net",
            "T",
            "batch",
            "ELBO images/s",
            "ELBO pairs/s",
            "forward pairs/s",
            "efficiency",
        ):
            t.add_column(col, justify="right")
        for p in _full_points(full):
            t.add_row(
                p["net"],
                str(p["T"]),
                str(p["batch"]),
                f"{p['elbo_images_per_s']:.2f}",
                f"{p['elbo_pairs_per_s']:.0f}",
                f"{p['forward_pairs_per_s']:.0f}",
                f"{p['efficiency']:.2f}",
            )
        console.print(t)
    if quality:
        for line in _quality_lines(quality):
            console.print(line)


def _full_points(full: dict) -> list[dict]:
    seen, out = set(), []
    for p in full["by_T"] + full["by_batch"]:
        key = (p["T"], p["batch"])
        if key not in seen:
            seen.add(key)
            out.append({"net": "MLP", **p})
    if full.get("unet"):
        out.append({"net": "U-Net", **full["unet"]})
    return out


def _pm(x: tuple[float, float], digits: int = 2) -> str:
    return f"{x[0]:.{digits}f} ± {x[1]:.{digits}f}"


def _quality_lines(q: dict) -> list[str]:
    lines = []
    v = q.get("vae")
    if v:
        lines.append(
            f"VAE test NLL (−IWAE-{v['iwae_k']}, nats): latentkit "
            f"{_pm(v['latentkit']['nll'])}"
            + (f", pythae {_pm(v['pythae']['nll'])}" if v.get("pythae") else "")
        )
    d = q.get("ddpm")
    if d:
        lines.append(
            "DDPM test bits/dim: "
            + ", ".join(f"{k} {_pm(r['bits_per_dim'], 3)}" for k, r in d["runs"].items())
        )
    return lines


def plot_ratios(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']} {r['task']}\nvs {r['b']}" for r in rows]
    meds = [r["ratio"] for r in rows]
    err = [
        [m - r["ci"][0] for m, r in zip(meds, rows)],
        [r["ci"][1] - m for m, r in zip(meds, rows)],
    ]
    colors = ["tab:blue" if r["kind"] == "overhead" else "tab:orange" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, meds, xerr=err, color=colors, alpha=0.8, capsize=3)
    ax.axvline(1.0, color="k", lw=1)
    ax.axvline(OVERHEAD_TARGET, color="tab:red", lw=1, ls="--", label="5% overhead target")
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("time ratio latentkit ÷ other (median of paired rounds, 95% CI bars)")
    ax.set_title("Per-step time: blue = hand-written PyTorch, orange = peer library")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_full_bound(full: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    sweeps = (
        ("by_T", "T", f"T (batch {full['by_T'][0]['batch']})"),
        ("by_batch", "batch", f"batch size (T = {full['by_batch'][0]['T']})"),
    )
    for ax, (key, x, label) in zip(axes[:2], sweeps):
        pts = full[key]
        xs = [p[x] for p in pts]
        ax.plot(
            xs,
            [p["efficiency"] for p in pts],
            "o-",
            color="tab:blue",
            label="MLP ε-net: ELBO pairs/s ÷ forward pairs/s",
        )
        ax.fill_between(
            xs,
            [p["efficiency_ci"][0] for p in pts],
            [p["efficiency_ci"][1] for p in pts],
            color="tab:blue",
            alpha=0.2,
            label="95% CI of the median over rounds",
        )
        if full.get("unet") and key == "by_batch":
            u = full["unet"]
            ax.plot(
                [u["batch"]],
                [u["efficiency"]],
                "D",
                color="tab:purple",
                label=f"U-Net, batch {u['batch']}",
            )
        ax.axhline(EFFICIENCY_TARGET, color="tab:red", ls="--", lw=1, label="80% target")
        ax.set_ylim(0, 1.1)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.set_xlabel(label)
        ax.set_ylabel("efficiency of the full-T ELBO")
        ax.legend(fontsize=7, loc="lower left")
    ax = axes[2]
    pts = full["by_T"]
    xs = [p["T"] for p in pts]
    ax.loglog(
        xs, [p["elbo_images_per_s"] for p in pts], "o-", color="tab:green", label="full-T ELBO"
    )
    ax.loglog(
        xs,
        [p["forward_pairs_per_s"] / p["T"] for p in pts],
        "s--",
        color="tab:gray",
        label="plain forward, same pairs",
    )
    ax.minorticks_off()
    ax.set_xticks(xs, [str(v) for v in xs])
    ax.set_xlabel(f"T (batch {pts[0]['batch']})")
    ax.set_ylabel("images/s")
    ax.set_title("throughput ∝ 1/T", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle("DDPM full-T ELBO against the ε-network's plain forward", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(ctx: dict) -> str:
    """The whole ``docs/benchmarks.md`` from the run's results."""
    rows, checks, full, quality = ctx["rows"], ctx["checks"], ctx["full"], ctx["quality"]
    L = []
    w = L.append
    w("# Benchmarks\n")
    w(
        "latentkit side by side with a hand-written minimal PyTorch implementation of the same "
        "networks and losses (`bench/baselines.py`) and with the libraries a user would pick "
        "instead (pythae, diffusers). Generated by the command below; do not edit by hand. "
        "The diffusion U-Net's training throughput against a hand-written loop: "
        "[benchmarks_unet.md](benchmarks_unet.md).\n"
    )
    w("```")
    w(ctx["command"])
    w("```\n")
    w(f"- **Device:** {ctx['device']}")
    w(load_line(ctx))
    w(f"- **Versions:** {ctx['versions']}")
    w(
        f"- **Wall time of the whole command:** {ctx['wall_s'] / 60:.1f} min "
        f"({ctx['size']} size). Raw per-round timings: `{ctx['json']}`."
    )
    w(f"- **GPU:** {ctx['gpu']}\n")
    if ctx.get("sweeps"):
        w(
            "Sections 1–4 come from the command above; section 5, the overhead sweep, from "
            "`python -m bench.run --sweep`, run separately (its own device, load and command "
            "lines are at its head). Re-running either re-renders this page with the other's "
            "saved results (`bench/results.json`, `bench/sweep_results*.json`)."
            + (
                " **Sections 1–4 predate section 5's run** and the code it measured (the "
                "per-call costs removed since: argument validation, estimator resolution, "
                "einops in the likelihood, the DDPM's schedule gathers, the one-layer "
                "estimate's placement tensor, indexing backwards); rerun `python -m bench.run` "
                "to bring them up to date."
                if ctx.get("sections_older")
                else ""
            )
            + "\n"
        )

    glance = "\n".join([_at_a_glance(rows, full, quality), *(ctx.get("sweep_glance") or [])])
    if glance.strip():
        w("## At a glance\n")
        w(glance + "\n")
    w("## Method\n")
    w(
        "Every comparison is one *group* of contenders measured in the same run: each contender "
        "gets untimed warm-up calls, then rounds in which every contender runs a block of calls "
        "back to back, the order reversed every other round (A B, B A, …). A block lasts about "
        f"{ctx['block_s']:.2f} s (calls per block calibrated once, the same for all contenders "
        "of a group). A **ratio** is the median over rounds of the per-round ratio "
        "latentkit ÷ other (the two blocks of a round ran seconds apart, so a slow spell of the "
        "machine hits both); the range in brackets is a distribution-free 95% confidence "
        "interval of that median (order statistics of the per-round ratios). Absolute "
        "medians are given in ms on the device above. A *training step* is "
        "`loss.mean()`, `zero_grad`, `backward`, `Adam.step` on one batch; an *ELBO "
        "evaluation* is one bound per example under `torch.no_grad()` through "
        "`latentkit.elbo(model, x)` with its defaults (input validation included). Each "
        "contender owns a copy of the same initial weights and cycles through the same 8 "
        "batches.\n"
    )

    w("## 1. Framework overhead: latentkit vs hand-written PyTorch\n")
    w(
        "Target: latentkit within 5% of the hand-written step (ratio ≤ 1.05). ✓: the whole "
        "95% CI meets the target; ✗: none of it does; ≈: the CI straddles it.\n"
    )
    w(_md_ratio_table([r for r in rows if r["kind"] == "overhead"]))
    w("")
    w("![per-step ratios](img/bench_ratios.png)\n")
    hs = ctx.get("hotspots") or []
    if hs:
        w(_md_hotspots(hs, ctx.get("ladder") or {}))

    w("## 2. Against peer libraries\n")
    w(
        "Target: faster per step than each peer (ratio < 1), with the same loss; marks as in "
        "section 1. pythae "
        f"{ctx['peer_versions'].get('pythae')}, diffusers {ctx['peer_versions'].get('diffusers')}"
        ".\n"
    )
    prs = [r for r in rows if r["kind"] == "peer"]
    if prs:
        w(_md_ratio_table(prs))
    for name, why in ctx["peer_missing"].items():
        w(f"- **{name} could not be used:** `{why}`")
    w("")
    w("How each peer is wired (`bench/peers.py`):\n")
    w(
        "- **pythae** `VAE` / `BetaVAE` with custom `BaseEncoder`/`BaseDecoder` wrappers around "
        "copies of latentkit's encoder and decoder MLPs. The encoder hands pythae "
        "log σ² = 2 log(softplus(raw) + 1e-4), so q(z|x) is the same Gaussian; the decoder "
        "hands it sigmoid(logits). *Where the definitions differ:* pythae's `bce` "
        "reconstruction loss is `F.binary_cross_entropy` on probabilities (its log clamped at "
        "−100), latentkit's Bernoulli takes logits (`binary_cross_entropy_with_logits`); they "
        "agree except for saturated logits. pythae returns the batch mean of BCE + β·KL, "
        "latentkit's `training_loss` the per-example −ELBO_β (the trainer takes the mean). "
        "pythae's ELBO-evaluation contender is its `forward` under `no_grad` (pythae has no "
        "separate bound API; its `get_nll` is per-example IWAE, used in section 4)."
    )
    w(
        "- **diffusers** `DDPMScheduler(beta_schedule='linear', 1e-4 → 0.02, T=1000)`, the "
        "training step of diffusers' examples: `add_noise`, ε-network, `F.mse_loss(ε̂, ε)`, "
        "around a copy of latentkit's ε-network. It is compared with latentkit's "
        '`loss="simple"` (the same objective, DDPM eq. 14). *Where the definitions differ:* '
        "`F.mse_loss` averages over the D dimensions, latentkit sums them (latentkit's batch "
        "mean = D × diffusers' loss); diffusers numbers timesteps 0..T−1, latentkit 1..T (the "
        "network is called with `t + 1`); diffusers computes its schedule in float32, latentkit "
        "in float64. diffusers has no variational bound, so there is no ELBO row for it.\n"
    )

    w("### Same loss on the same weights and draws\n")
    w(
        "Each implementation gets latentkit's initial weights and the same seed; the per-example "
        "losses must agree to float32 round-off (|Δ| ≤ 1e-5 × max |loss|). Neither side draws a "
        "normal it does not use, so one seed feeds both alike. `tests/test_bench_baselines.py` "
        "repeats these checks in the test suite.\n"
    )
    w("| pair | latentkit | other | max \\|Δ\\| | relative | agrees |")
    w("|---|---:|---:|---:|---:|:-:|")
    for c in checks:
        w(
            f"| {c['pair']} | {c['latentkit']:.4f} | {c['other']:.4f} | "
            f"{c['max_abs_diff']:.1e} | {c['max_rel_diff']:.1e} | {'yes' if c['ok'] else 'NO'} |"
        )
    w("")

    if full:
        w("## 3. Full-bound evaluation: DDPM full-T ELBO throughput\n")
        w(
            "The measurement `bench/ddpm_full_t.py` defines, here interleaved and swept: the "
            "full-T ELBO of B images (`latentkit.elbo`, layer-batched, "
            f"`pairs_per_call={full['pairs_per_call']}`) is B·T (image, t) pairs, each one "
            "ε-network evaluation; the **efficiency** is its pairs/s divided by the pairs/s of "
            "the plain ε-network forward on the same B·T rows in the same chunks. Target: "
            f"≥ {EFFICIENCY_TARGET:.0%}. Data: {full['data']}; MLP ε-network "
            f"({full['mlp_params'] / 1e3:.0f}k parameters) on flattened images"
            + (
                f", and the default U-Net ({full['unet']['params'] / 1e3:.0f}k parameters) on "
                "1×8×8 images at one point"
                if full.get("unet")
                else ""
            )
            + ". T < 1000 uses DDPM's linear schedule rescaled to T steps.\n"
        )
        w(
            "| ε-network | T | batch | full-T ELBO images/s | ELBO pairs/s | forward pairs/s "
            "| efficiency (95% CI) |"
        )
        w("|---|---:|---:|---:|---:|---:|---:|")
        for p in _full_points(full):
            lo, hi = p["efficiency_ci"]
            w(
                f"| {p['net']} | {p['T']} | {p['batch']} | {p['elbo_images_per_s']:.2f} | "
                f"{p['elbo_pairs_per_s']:.0f} | {p['forward_pairs_per_s']:.0f} | "
                f"{p['efficiency']:.2f} ({lo:.2f}–{hi:.2f}) |"
            )
        w("")
        w("![full-T scaling](img/bench_full_t.png)\n")
        dr = full.get("draws")
        if dr:
            h = dr["hand_over_latentkit"]
            w(
                f"What the bound itself costs (MLP, T = {dr['T']}, batch {dr['batch']}, "
                "interleaved): the hand-written full-T ELBO (`bench/baselines.py`, same chunks) "
                f"takes {h[0]:.2f}× latentkit's time (95% CI {h[1]:.2f}–{h[2]:.2f}), so the "
                "efficiency lost against the plain forward is the bound's own elementwise "
                "work — drawing x_t, q's posterior mean, the KL, the timestep embedding per "
                "row — more than framework overhead.\n"
            )
        if ctx.get("full_note"):
            w(ctx["full_note"] + "\n")

    if quality:
        w("## 4. Quality under a fixed budget\n")
        v = quality.get("vae")
        if v:
            w(
                f"**VAE on {quality['vae_data']}.** Budget: {v['steps']} Adam steps "
                f"(lr {v['lr']}), batch {v['batch']}, {v['architecture']}; both models start "
                "from the same initial weights and see the same batches in the same order "
                "(`latentkit.training.DataOrder`, seed 0). latentkit trains with "
                "`latentkit.training.Trainer`; pythae's `VAE` trains in a plain Adam loop over "
                "the same batches (pythae's own `BaseTrainer` works in epochs, keeps the best "
                "epoch on an eval set and writes checkpoints, which would change the budget). "
                f"Test NLL is −IWAE-{v['iwae_k']} (`latentkit.iwae`) on the first "
                f"{v['test_examples']} test images, the same code for both models (pythae's "
                "trained weights copied into a latentkit VAE); ± is the standard error over "
                "images.\n"
            )
            w(
                f"| model | test NLL (nats, −IWAE-{v['iwae_k']}) | test −ELBO (nats) "
                "| training wall time |"
            )
            w("|---|---:|---:|---:|")
            lk_ = v["latentkit"]
            neg = (-lk_["elbo"][0], lk_["elbo"][1])
            w(f"| latentkit VAE | {_pm(lk_['nll'])} | {_pm(neg)} | {lk_['train_s']:.0f} s |")
            if v.get("pythae"):
                py = v["pythae"]
                w(
                    f"| pythae VAE | {_pm(py['nll'])} | {-py['elbo'][0]:.2f} ± {py['elbo'][1]:.2f}"
                    f" | {py['train_s']:.0f} s |"
                )
                d = v["paired_nll_difference"]
                o = py["own_get_nll"]
                w("")
                if abs(d[0]) < 1e-3 and d[1] < 1e-3:
                    w(
                        "The two runs agree to the printed digit, and not by luck: section 2 "
                        "shows the two losses are the same function of the same draws, so "
                        "with the same initial weights, batches and seed the two training "
                        "trajectories coincide (pythae's probability-space BCE would part "
                        "only at saturated logits, which these steps did not reach). It says "
                        "latentkit's Trainer and pythae's model reach the same quality for the "
                        "same budget; it cannot say which is better, because nothing differs. "
                    )
                w(
                    f"Paired difference latentkit − pythae over the same test images: "
                    f"{_pm(d)} nats. Cross-check with pythae's own estimator: "
                    f"`VAE.get_nll(n_samples={v['iwae_k']})` on the first {o['examples']} test "
                    f"images gives {o['nll']:.2f} nats; `latentkit.iwae` on the same images and "
                    f"weights gives {o['latentkit_iwae_same_examples']:.2f} (independent draws)."
                    " Training wall times ran one after the other, not interleaved: they are "
                    "indicative only."
                )
            w("")
        d = quality.get("ddpm")
        if d:
            w(
                f"**DDPM on the embedded 8-bit digits** ({d['test_examples']} test images). "
                f"Budget: {d['steps']} Adam steps (lr {d['lr']}), batch {d['batch']}, "
                f"T = {d['T']}, {d['architecture']}. Bits/dim of the full-T ELBO "
                "(`latentkit.elbo`, layer-batched, one draw per term) on the test split — an "
                "upper bound on the discrete NLL; ± is the standard error over images. The "
                "diffusers run trains the same ε-network (same initial weights, same batches) "
                "with its L_simple step; its bound is evaluated by latentkit.\n"
            )
            w("| training objective | test bits/dim (full-T bound) | training wall time |")
            w("|---|---:|---:|")
            for k, r in d["runs"].items():
                w(f"| {k} | {_pm(r['bits_per_dim'], 3)} | {r['train_s']:.0f} s |")
            w("")
        if quality.get("note"):
            w(quality["note"] + "\n")
    for section in (ctx.get("sweeps") or {}).values():
        w(section)
    w("## GPU\n")
    w(ctx["gpu"] + "\n")
    return "\n".join(L)


def _span(rs: list[dict]) -> str:
    lo, hi = min(r["ratio"] for r in rs), max(r["ratio"] for r in rs)
    return f"{lo:.2f}×" if abs(hi - lo) < 0.005 else f"{lo:.2f}–{hi:.2f}×"


def _tally(rs: list[dict]) -> str:
    v = [verdict(r) for r in rs]
    parts = [
        f"{v.count(k)} {w}"
        for k, w in (("met", "met"), ("missed", "missed"), ("undecided", "within the noise"))
        if v.count(k)
    ]
    return ", ".join(parts)


def _at_a_glance(rows: list[dict], full: dict | None, quality: dict | None) -> str:
    out = []
    over = [r for r in rows if r["kind"] == "overhead"]
    for task in ("train step", "ELBO eval", "full-T ELBO eval"):
        rs = [r for r in over if r["task"] == task]
        if rs:
            out.append(
                f"- latentkit ÷ hand-written PyTorch, {task}: {_span(rs)} "
                f"({', '.join(r['model'] for r in rs)}; 5% target: {_tally(rs)})"
            )
    for peer in ("pythae", "diffusers"):
        rs = [r for r in rows if r["kind"] == "peer" and r["b"] == peer]
        if rs:
            out.append(f"- latentkit ÷ {peer}: {_span(rs)} (faster: {_tally(rs)})")
    if full:
        pts = _full_points(full)
        mlp = [p for p in pts if p["net"] == "MLP"]
        eff = [p["efficiency"] for p in mlp]
        line = (
            f"- DDPM full-T ELBO throughput ÷ plain forward: {min(eff):.2f}–{max(eff):.2f} "
            "with the MLP ε-network"
        )
        if full.get("unet"):
            line += f", {full['unet']['efficiency']:.2f} with the U-Net"
        out.append(line + " (target ≥ 0.80)")
    if quality and quality.get("vae"):
        v = quality["vae"]
        line = f"- VAE test NLL after {v['steps']} steps: latentkit {_pm(v['latentkit']['nll'])}"
        if v.get("pythae"):
            line += f", pythae {_pm(v['pythae']['nll'])}"
        out.append(line + " nats")
    if quality and quality.get("ddpm"):
        d = quality["ddpm"]
        out.append(
            f"- DDPM test bits/dim after {d['steps']} steps: "
            + ", ".join(f"{k} {r['bits_per_dim'][0]:.2f}" for k, r in d["runs"].items())
        )
    return "\n".join(out)


KEY_GROUPS = ("latentkit core", "latentkit plugin", "torch.distributions", "einops")


def _md_hotspots(hs: list[dict], ladder: dict) -> str:
    out = ["### Where the overhead is\n"]
    d = hs[0]["dispatch_us"]
    out.append(
        "For every pair that does not meet its target: the paired gap latentkit − "
        "hand-written at the benchmark's batch and at batch 1 (interleaved as above), the "
        "aten operators one call "
        "dispatches (torch.profiler; nested ones included), and cProfile's extra self-time in "
        "latentkit's own code, its plugins, torch.distributions and einops (cProfile inflates "
        "pure-Python time several-fold: these columns say *where*, the gaps say *how much*). "
        f"One trivial operator (an in-place add on a 1-element tensor) costs {d:.1f} µs here.\n"
    )
    out.append(
        "| model | task | ratio | gap at benchmark batch µs | gap at batch 1 µs | aten ops "
        "latentkit / hand | cProfile Δ µs: core / plugin / torch.distributions / einops |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for h in hs:
        a, b = h["latentkit"]["groups_us"], h["hand"]["groups_us"]
        deltas = " / ".join(f"{a[g] - b[g]:+.0f}" for g in KEY_GROUPS)
        g1 = f"{h['gap_batch1_us']:.0f}" if "gap_batch1_us" in h else "—"
        out.append(
            f"| {h['model']} | {h['task']} | {h['ratio']:.3f} | {h['gap_us']:.0f} | {g1} | "
            f"{h['ops'][0]} / {h['ops'][1]} | {deltas} |"
        )
    out.append("")
    if ladder:
        out.append(
            "**The VAE's ELBO evaluation, built up from plain tensors to latentkit** "
            "(`bench/hotspots.py: vae_ladder`; forward only, `no_grad`, interleaved; each "
            "line adds one layer to the one above it):\n"
        )
        sizes = sorted(ladder, key=int)
        head = " | ".join(f"batch {b}: µs (ops)" for b in sizes)
        out.append(f"| implementation | {head} |")
        out.append("|---|" + "---:|" * len(sizes))
        for name in ladder[sizes[0]]:
            cells = " | ".join(
                f"{ladder[b][name]['us']:.0f} ({ladder[b][name]['ops']})" for b in sizes
            )
            out.append(f"| {name} | {cells} |")
        out.append("")
    out.append(
        "Costliest Python functions of latentkit's contender in these layers (cProfile, "
        "self µs per call, calls per call):\n"
    )
    out.append("| model | task | function | self µs | calls |")
    out.append("|---|---|---|---:|---:|")
    for h in hs:
        picked = [f for f in h["latentkit"]["top_python"] if f["group"] in KEY_GROUPS][:4]
        for f in picked:
            where = f["where"].replace("/work/main/", "")
            out.append(
                f"| {h['model']} | {h['task']} | `{where}` | {f['self_us']:.0f} | "
                f"{f['ncalls']:.0f} |"
            )
    out.append("")
    return "\n".join(out)


def _md_ratio_table(rows: list[dict]) -> str:
    out = [
        "| model | task | data and size | vs | ratio latentkit ÷ other (95% CI) | latentkit ms "
        "| other ms | rounds × calls | target |",
        "|---|---|---|---|---:|---:|---:|---:|:-:|",
    ]
    for r in rows:
        vs = r["b"] if r["a"] == "latentkit" else f"{r['b']} (vs {r['a']})"
        out.append(
            f"| {r['model']} | {r['task']} | {r['data']} | {vs} | {_fmt_ratio(r)} | "
            f"{r['a_ms']:.2f} | {r['b_ms']:.2f} | {r['rounds']} × "
            f"{r['calls_per_round']} | {r['target']} {MARK[verdict(r)]} |"
        )
    return "\n".join(out)


def load_line(ctx: dict) -> str:
    """The report's load line: the load averages, and whether another job shared the CPU,
    judged as the sweep judges it (the end load against the command's torch threads)."""
    from bench.sweep_report import _loaded

    shared = _loaded({"device": "cpu", "load_end": ctx["load_end"], "device_string": ctx["device"]})
    return (
        f"- **Load average** (1, 5, 15 min) at start: {ctx['load_start']}; at end: "
        f"{ctx['load_end']}. "
        + (
            "The machine was shared with other jobs while this ran"
            if shared
            else "The load at the end (its last 1 and 5 minutes) is this command's own "
            "thread: no other job shared the CPU"
        )
        + "; every comparison is interleaved to cancel noise (see *Method*), absolute times "
        "are not comparable across runs or machines."
    )
