"""The sweep's tables (terminal and Markdown) and its plot of overhead against batch size."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.sweep import FULL_T_GOAL, GOALS, MEMORY_GOAL

__all__ = ["at_a_glance", "markdown", "plot_overhead", "print_sweep", "verdict"]

MARK = {"met": "✓", "missed": "✗", "undecided": "≈"}
TASKS = ("train step", "ELBO eval")


def verdict(ci: tuple[float, float, float], goal: float, *, strict: bool = False) -> str:
    """``met`` when the whole 95% CI is within the goal (≤ goal, or < goal when ``strict``),
    ``missed`` when none of it is, ``undecided`` when it straddles the goal."""
    _, lo, hi = ci
    if strict:
        return "met" if hi < goal else "missed" if lo >= goal else "undecided"
    return "met" if hi <= goal else "missed" if lo > goal else "undecided"


def _ratio(ci) -> str:
    return f"{ci[0]:.3f} ({ci[1]:.2f}–{ci[2]:.2f})"


def _kib(b: int) -> str:
    return f"{b / 1024:,.0f}"


def _memory_ratio(cell: dict, name: str = "latentkit") -> float | None:
    mem = cell.get("memory")
    if not mem or not mem.get("hand-written"):
        return None
    return mem[name] / mem["hand-written"]


def _hidden(sweep: dict, width: str) -> str:
    for name, hidden in sweep["size"]["widths"]:
        if name == width:
            return "-".join(str(h) for h in hidden)
    return width


def _net(sweep: dict, model: str, width: str) -> str:
    s = sweep["size"]
    h = _hidden(sweep, width)
    if model == "vae":
        return f"{s['data_dim']}-{h}-{s['latent_dim']}"
    if model == "hvae":
        return f"{s['data_dim']}-{h}, z {'/'.join(map(str, s['hvae_latents']))}"
    return f"ε-MLP {s['ddpm_dim']}-{h}"


def _tally(cells: list[dict], key: str, goal_of, strict: bool = False) -> str:
    vs = [verdict(c[key], goal_of(c), strict=strict) for c in cells if key in c]
    if not vs:
        return "not measured"
    parts = [f"{vs.count(k)} {MARK[k]}" for k in ("met", "undecided", "missed") if vs.count(k)]
    return f"{' '.join(parts)} of {len(vs)}"


def at_a_glance(sweep: dict) -> list[str]:
    """Lines for the report's *At a glance* list."""
    out = []
    for task in TASKS:
        cs = [c for c in sweep["cells"] if c["task"] == task]
        if not cs:
            continue
        rs = [c["ratio"][0] for c in cs]
        b1 = min(c["batch"] for c in cs)
        ov = [c["overhead_us"] for c in cs if c["batch"] == b1]
        out.append(
            f"- Sweep, {task}, latentkit ÷ hand-written eager: {min(rs):.2f}–{max(rs):.2f}× "
            f"over {len(cs)} cells (goal ≤ {GOALS[task]}: {_tally(cs, 'ratio', _goal)}); "
            f"the fixed cost, overhead at batch {b1}: {min(ov):+.0f} to {max(ov):+.0f} µs per call"
        )
        cc = [c for c in cs if "compiled_ratio" in c]
        if cc:
            out.append(
                f"- Sweep, {task}, compiled ÷ hand-written eager: "
                f"{min(c['compiled_ratio'][0] for c in cc):.2f}–"
                f"{max(c['compiled_ratio'][0] for c in cc):.2f}× (goal < 1: "
                f"{_tally(cc, 'compiled_ratio', lambda c: 1.0, strict=True)})"
            )
    if sweep["full_t"]:
        eff = [p["efficiency"] for p in sweep["full_t"]]
        out.append(
            f"- Sweep, DDPM full-T bound ÷ plain ε-network forward: {min(eff):.2f}–"
            f"{max(eff):.2f} (goal ≥ {FULL_T_GOAL})"
        )
    return out


def _loaded(sweep: dict) -> bool:
    """Whether other jobs shared the CPU during the sweep: the 1- and 5-minute load averages
    at its end (they average its last minutes) above the sweep's own torch threads by more
    than half a core. The load at its start averages the minutes before it began (a job that
    ended as the sweep started still shows there), so it decides nothing."""
    if sweep["device"] != "cpu":
        return False
    try:
        end = [float(v) for v in str(sweep.get("load_end", "")).split()[:2]]
    except ValueError:
        return False
    found = re.search(r"with (\d+) threads?", str(sweep.get("device_string", "")))
    threads = int(found.group(1)) if found else 1
    return bool(end) and max(end) > threads + 0.5


def _goal(c: dict) -> float:
    return GOALS[c["task"]]


def print_sweep(console: Console, sweep: dict) -> None:
    for task in TASKS:
        cs = [c for c in sweep["cells"] if c["task"] == task]
        if not cs:
            continue
        t = Table(title=f"Sweep: {task}, latentkit ÷ hand-written eager (goal ≤ {GOALS[task]})")
        for col in ("model", "width", "batch", "ratio", "overhead µs", "compiled ÷ hand", "mem"):
            t.add_column(col, justify="left" if col in ("model", "width") else "right")
        for c in cs:
            m = _memory_ratio(c)
            t.add_row(
                c["model"],
                c["width"],
                str(c["batch"]),
                f"{_ratio(c['ratio'])} {MARK[verdict(c['ratio'], _goal(c))]}",
                f"{c['overhead_us']:+.0f}",
                _ratio(c["compiled_ratio"]) if "compiled_ratio" in c else "—",
                f"{m:.2f}" if m is not None else "—",
            )
        console.print(t)


def markdown(sweep: dict, *, command: str, device: str, note: str) -> str:
    """The sweep's section of ``docs/benchmarks.md``."""
    s = sweep["size"]
    L: list[str] = []
    w = L.append
    w("## 5. Overhead across sizes: the sweep\n")
    w("```")
    w(command)
    w("```\n")
    w(f"- **Device:** {device}")
    w(f"- **Measured:** {note}")
    if _loaded(sweep):
        w(
            "- **Status: to be rerun on a quiet machine.** This run shared its machine with "
            "other jobs (see the load average above), so its ratios are noisy — wide "
            "CIs, and single cells off by more than their neighbours (a long call's overhead "
            "in ms is mostly that noise). Rerun `python -m bench.run --sweep` on a quiet "
            "machine before quoting a number; the GPU leg (`--device cuda`) waits for a device."
        )
    elif sweep["device"] == "cpu" and sweep.get("load_end"):
        w(
            f"- **Quiet:** the load average at the end ({sweep['load_end']}: the last 1 and 5 "
            "minutes) is the sweep's own threads, so no other job shared the CPU; the load "
            "at the start averages the minutes before it began."
        )
    if sweep.get("clock"):
        w(
            f"- **Clock:** {sweep['clock']}. The machine is shared: time it spends on other "
            "jobs is not counted, though their effect on caches and memory bandwidth is."
        )
    w(
        f"- **Cells:** {', '.join(s['models'])} × batch {', '.join(map(str, s['batches']))} × "
        f"widths {', '.join(f'{n} (hidden {_hidden(sweep, n)})' for n, _ in s['widths'])}; "
        f"each cell its own interleaved group of {s['rounds']} rounds (blocks of about "
        f"{s['block_seconds'] * 1e3:.0f} ms per contender). Synthetic data: binary "
        f"{s['data_dim']}-d pixels for vae and hvae, 8-bit {s['ddpm_dim']}-d values for the "
        f"DDPM (T = {s['ddpm_T']} for training; the full-T bound at T = {s['ddpm_eval_T']}, "
        f"every timestep, so that batch 512 stays a few seconds). The networks: "
        + "; ".join(f"{m} {n}: {_net(sweep, m, n)}" for m in s["models"] for n, _ in s["widths"])
        + "."
    )
    w(
        "- **Columns:** *ratio* latentkit ÷ hand-written eager (median of paired rounds, "
        "95% CI); *overhead* latentkit − hand-written in µs per call (median of paired "
        "differences), comparable across sizes; *validate=False*: the same bound without "
        "the public entry's input checks (every value finite and inside the likelihood's "
        "support), ÷ hand-written, against the same goal: what the engine alone costs; "
        "*compiled*: `torch.compile` of the objective "
        "(forward, and its backward by AOTAutograd; Adam eager) or of "
        "`latentkit.elbo(..., validate=False)`, ÷ hand-written **eager**, goal < 1, with its "
        "compile time at that batch (`dynamic=True`: one graph for batch 1, one for every "
        "larger batch, so the later batches show about 0 s; Dynamo is reset for each path, "
        "but torch's on-disk compile caches keep what earlier runs built, so a first run on "
        "a fresh machine compiles longer); *memory*: peak bytes one call allocates above "
        "what was live before it, the median of five calls, latentkit ÷ "
        f"hand-written (goal ≤ {MEMORY_GOAL}). "
        + (
            "On CPU the peak is the running sum of torch's CPU-allocator allocations and "
            "frees in time order from `torch.profiler`'s memory events (`bench/sweep.py: "
            "peak_bytes`); an operator's own scratch freed before it returns is not seen, "
            "and one call's reading varies with the order in which the profiler records the "
            "old gradients' frees and the new ones' allocations (a VAE step read 7, 238 and "
            "407 KiB), hence the median. "
            "On CUDA it is `torch.cuda.max_memory_allocated`."
            if sweep["device"] == "cpu"
            else "Measured by `torch.cuda.max_memory_allocated` after resetting the peak."
        )
        + "\n"
    )
    why = {(e["model"], e["task"], e["width"]): _where(e) for e in sweep["explained"]}
    for task in TASKS:
        cs = [c for c in sweep["cells"] if c["task"] == task]
        if not cs:
            continue
        w(f"### {task}: goal ≤ {GOALS[task]}\n")
        w(
            "| model | width | batch | latentkit ms | hand ms | ratio (95% CI) | overhead µs "
            "| goal | where the rest goes | validate=False ÷ hand (95% CI) | compiled ms "
            "| compiled ÷ hand (95% CI) | compile s | peak KiB latentkit / hand | memory ratio |"
        )
        w("|---|---|---:|---:|---:|---:|---:|:-:|---|---:|---:|---:|---:|---:|---:|")
        for c in cs:
            comp = "—", "—", "—"
            if "compiled_ratio" in c:
                mark = MARK[verdict(c["compiled_ratio"], 1.0, strict=True)]
                comp = (
                    f"{c['compiled_ms']:.3f}",
                    f"{_ratio(c['compiled_ratio'])} {mark}",
                    f"{c['compile_s']:.1f}",
                )
            elif "compile_error" in c:
                comp = ("—", f"did not compile: {c['compile_error']}", "—")
            mem, mr = "—", "—"
            if c.get("memory"):
                mem = f"{_kib(c['memory']['latentkit'])} / {_kib(c['memory']['hand-written'])}"
                r = _memory_ratio(c)
                mr = f"{r:.2f}" if r is not None else "—"
            v = verdict(c["ratio"], _goal(c))
            where = "" if v == "met" else why.get((c["model"], c["task"], c["width"]), "—")
            unchecked = "—"
            if "unchecked_ratio" in c:
                mark = MARK[verdict(c["unchecked_ratio"], _goal(c))]
                unchecked = f"{_ratio(c['unchecked_ratio'])} {mark}"
            w(
                f"| {c['model']} | {c['width']} | {c['batch']} | {c['latentkit_ms']:.3f} "
                f"| {c['hand_ms']:.3f} | {_ratio(c['ratio'])} | {c['overhead_us']:+.0f} "
                f"| {MARK[v]} | {where} | {unchecked} | {comp[0]} | {comp[1]} | {comp[2]} "
                f"| {mem} | {mr} |"
            )
        w("")
    w(
        "✓: the whole 95% CI meets the goal; ✗: none of it does; ≈: the CI straddles it (a "
        "tie within this machine's noise).\n"
    )
    w("![overhead against batch size](img/overhead_sweep.png)\n")
    if sweep["full_t"]:
        w(f"### DDPM full-T bound against the plain ε-network forward: goal ≥ {FULL_T_GOAL}\n")
        w(
            "The full-T bound of B examples (`latentkit.elbo`, layer-batched, 8192 pairs per "
            "call) against ε_θ alone on the same B·T (example, t) rows in the same chunks; "
            f"ε-MLP {s['ddpm_dim']}-{_hidden(sweep, s['widths'][-1][0])}; "
            f"{s['full_t_rounds']} interleaved rounds, one call of each per round. The last "
            "column is the plain forward's own spread, its slowest round ÷ its fastest: the "
            "same work, so what the machine's noise alone does to one call.\n"
        )
        w(
            "| T | batch | bound pairs/s | forward pairs/s | efficiency (95% CI) | goal "
            "| forward slowest ÷ fastest |"
        )
        w("|---:|---:|---:|---:|---:|:-:|---:|")
        for p in sweep["full_t"]:
            ci = (p["efficiency"], *p["efficiency_ci"])
            mark = MARK[
                "met" if ci[1] >= FULL_T_GOAL else "missed" if ci[2] < FULL_T_GOAL else "undecided"
            ]
            forward = p["raw"]["forward"]
            w(
                f"| {p['T']} | {p['batch']} | {p['elbo_pairs_per_s']:.0f} "
                f"| {p['forward_pairs_per_s']:.0f} | {_ratio(ci)} | {mark} "
                f"| {max(forward) / min(forward):.2f} |"
            )
        w("")
    if sweep["explained"]:
        w("### Where the rest goes, for every ratio over its goal\n")
        w(
            "For each (model, task, width) with a cell whose ratio CI reaches above its goal: "
            "cProfile of the latentkit call and of the hand-written one at batch 1 (where "
            "the fixed cost is nearly all of the gap), the extra self-time per call by where "
            "it is spent, and latentkit's costliest Python functions there. cProfile inflates "
            "pure-Python time several-fold: these rows say *where*, the overhead column above "
            "says *how much*.\n"
        )
        w(
            "| model | task | width | aten ops latentkit / hand | Δ µs core / plugin / "
            "torch.distributions / einops / torch.nn+optim | costliest functions "
            "(self µs per call) |"
        )
        w("|---|---|---|---:|---:|---|")
        for e in sweep["explained"]:
            d = e["delta_us"]
            groups = " / ".join(f"{d[g]:+.0f}" for g in PYTHON_GROUPS)
            top = "; ".join(f"`{f['where']}` {f['self_us']:.0f}" for f in e["top"])
            ops = " / ".join(map(str, e["ops"])) if e.get("ops") else "—"
            w(f"| {e['model']} | {e['task']} | {e['width']} | {ops} | {groups} | {top} |")
        w("")
    return "\n".join(L)


PYTHON_GROUPS = (
    "latentkit core",
    "latentkit plugin",
    "torch.distributions",
    "einops",
    "torch.nn / optim (Python)",
)


def _where(e: dict) -> str:
    """The profile row in a few words: the extra operators, the Python layer with the most
    extra self-time and latentkit's costliest function in it (cProfile at batch 1; the
    section below has the whole row)."""
    group, extra = max(
        ((g, e["delta_us"][g]) for g in PYTHON_GROUPS), key=lambda kv: kv[1], default=("", 0.0)
    )
    top = next((f for f in e["top"] if f["group"] == group), e["top"][0] if e["top"] else None)
    fn = f", `{top['where'].rsplit('/', 1)[-1]}` {top['self_us']:.0f} µs" if top else ""
    ops = f"{e['ops'][0] - e['ops'][1]:+d} aten ops; " if e.get("ops") else ""
    return f"{ops}{group} {extra:+.0f} µs{fn}"


def plot_overhead(sweep: dict, path: Path) -> None:
    """Overhead (µs per call) and ratio against batch size, one line per model and width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    colors = {"vae": "tab:blue", "hvae": "tab:green", "ddpm": "tab:purple"}
    styles = {name: st for (name, _), st in zip(sweep["size"]["widths"], ("o--", "s-"))}
    for col, task in enumerate(TASKS):
        for model in sweep["size"]["models"]:
            for width, _ in sweep["size"]["widths"]:
                cs = [
                    c
                    for c in sweep["cells"]
                    if (c["model"], c["task"], c["width"]) == (model, task, width)
                ]
                if not cs:
                    continue
                bs = [c["batch"] for c in cs]
                kw = dict(color=colors.get(model, "k"), label=f"{model} {width}")
                axes[0, col].plot(bs, [c["overhead_us"] for c in cs], styles[width], **kw)
                axes[1, col].errorbar(
                    bs,
                    [c["ratio"][0] for c in cs],
                    yerr=[
                        [c["ratio"][0] - c["ratio"][1] for c in cs],
                        [c["ratio"][2] - c["ratio"][0] for c in cs],
                    ],
                    fmt=styles[width],
                    capsize=2,
                    **kw,
                )
        axes[0, col].axhline(0, color="k", lw=0.8)
        # Symmetric log: the fixed cost (hundreds of µs) and a long call's noise both show.
        # Linear within ±100 µs, so that 0 and ±10² are a decade apart (at ±1000 the ticks
        # 10² and 0 fell on one another).
        axes[0, col].set_yscale("symlog", linthresh=100)
        axes[0, col].set_title(f"{task}: latentkit − hand-written eager")
        axes[0, col].set_ylabel("overhead, µs per call")
        axes[1, col].axhline(1.0, color="k", lw=0.8)
        axes[1, col].axhline(GOALS[task], color="tab:red", ls="--", lw=1, label="goal")
        axes[1, col].set_ylabel("ratio latentkit ÷ hand-written (95% CI)")
        axes[1, col].set_xlabel("batch size")
        axes[1, col].set_xscale("log")
        bs = sorted({c["batch"] for c in sweep["cells"]})
        axes[1, col].set_xticks(bs, [str(b) for b in bs])
        axes[1, col].minorticks_off()
    axes[0, 0].legend(fontsize=7, handlelength=3)  # long enough to show the dashes
    axes[1, 0].legend(fontsize=7, handlelength=3)
    fig.suptitle(f"Framework overhead against batch size ({sweep['device']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
