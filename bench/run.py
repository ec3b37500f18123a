"""One command for every benchmark: ``python -m bench.run`` (or ``python bench/run.py``).

Prints the tables and writes ``docs/benchmarks.md``, ``docs/img/bench_*.png`` and the raw
per-round timings (``bench/results.json``). ``--quick`` runs a tiny size in about a minute
and writes to a scratch folder instead, so it never overwrites the committed report.

``--sweep`` runs the overhead sweep instead (``bench/sweep.py``: vae, hvae, ddpm × batch
1–512 × two widths, eager and compiled, memory, full-T throughput), keeps its raw results in
``bench/sweep_results.json`` (``bench/sweep_results_cuda.json`` with ``--device cuda``), draws
``docs/img/overhead_sweep*.png`` and re-renders ``docs/benchmarks.md`` from the last full run's
``bench/results.json`` with the sweep's section. ``--sweep --quick`` takes seconds (CI runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning at each barrier. On a machine shared with
# other jobs, spinning threads made one VAE step 17× slower (1.3 s against 75 ms, 2 threads
# on 2 busy cores); sleeping costs microseconds of wake-up, the same for every contender.
# It must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("KINETO_LOG_LEVEL", "99")  # torch.profiler's start/stop lines on stderr

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attrs
import torch
from rich.console import Console

from bench import (
    baselines,
    full_bound,
    hotspots,
    peers,
    quality,
    report,
    steps,
    sweep,
    sweep_report,
)
from bench.timing import device_string, difference, interleaved, load_average

ROOT = Path(__file__).resolve().parents[1]

SIZES = {
    "default": {
        "steps": steps.StepSize(),
        "full": full_bound.FullBoundSize(),
        "quality": quality.QualitySize(),
        "mnist_limit": None,
    },
    "quick": {
        "steps": steps.StepSize(
            batch=32,
            hidden=(64, 64),
            hvae_latents=(8, 4),
            timesteps=100,
            elbo_batch=32,
            ddpm_elbo_batch=4,
            rounds=3,
            block_seconds=0.05,
            warmup=1,
        ),
        "full": full_bound.FullBoundSize(
            timesteps=(50, 100),
            batch_at_T=4,
            batches=(2, 4),
            hidden=(64, 64),
            rounds=2,
            unet_batch=0,
        ),
        "quality": quality.QualitySize(
            vae_steps=40,
            hidden=(64, 64),
            iwae_k=8,
            test_examples=100,
            pythae_nll_examples=10,
            ddpm_steps=40,
            ddpm_timesteps=100,
            ddpm_test_examples=20,
        ),
        "mnist_limit": 2000,
    },
}


def load_data(limit: int | None, log) -> tuple[dict, str | None]:
    """Binarized MNIST (digits when it is missing, said loudly) and the 8-bit digits."""
    from latentkit.data import DataSourceError, load_dataset

    note = None
    try:
        b = load_dataset("mnist", variant="binarized", seed=0, flatten=True, limit=limit)
        bname = "binarized MNIST"
    except DataSourceError as exc:
        b = load_dataset("digits", variant="binarized", seed=0, flatten=True)
        bname = "binarized digits (MNIST UNAVAILABLE)"
        note = (
            f"**MNIST was not available on this machine ({exc}); the VAE rows and the "
            "quality comparison use sklearn's binarized 8×8 digits instead.**"
        )
        log(f"[bold red]WARNING: {note}[/]")
    d = load_dataset("digits", variant="8bit", flatten=True)
    return {"binary": b, "binary_name": bname, "eightbit": d, "eightbit_name": "8-bit digits"}, note


GPU_LINE = (
    "No GPU was lent to this task, so every number here is from the CPU above; the GPU leg "
    "waits for a device. `python -m bench.run --sweep --device cuda` runs the overhead sweep "
    "(section 5) on CUDA — models and batches on the device, timing synchronized, peak memory "
    "from torch's CUDA allocator — and adds its section here. Sections 1–4 measure on CPU "
    "only: running them on a GPU needs the models and batches moved to the device in "
    "`bench/steps.py` and `bench/quality.py`."
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tiny size (about a minute)")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for benchmarks.md and img/ (default: docs/, or a scratch folder with --quick)",
    )
    ap.add_argument(
        "--json",
        type=Path,
        default=None,
        help="raw timings (default: bench/results.json, or OUT/benchmarks.json)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument(
        "--sweep",
        action="store_true",
        help="run the overhead sweep (bench/sweep.py) and add its section to the report",
    )
    ap.add_argument("--device", default="cpu", help="the sweep's device: cpu or cuda")
    ap.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="the sweep's compiled path (auto: on, off with --quick)",
    )
    ap.add_argument(
        "--only",
        default="steps,full,quality",
        help="comma-separated sections to run: steps, full, quality",
    )
    ap.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="measure nothing: redraw the tables, plots and OUT/benchmarks.md from a results "
        "JSON this command wrote (after a change to bench/report.py)",
    )
    ap.add_argument(
        "--compile-widths",
        default=None,
        help="comma-separated widths whose cells get the compiled path (default: all)",
    )
    ap.add_argument("--models", default=None, help="the sweep's models (default: vae,hvae,ddpm)")
    ap.add_argument(
        "--batches", default=None, help="the sweep's batch sizes (default: 1,32,128,512)"
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sweep:
        return run_sweep(args)
    if args.render:
        ctx = json.loads(args.render.read_text(encoding="utf-8"))
        return write_report(Console(), ctx, args.out or ROOT / "docs")
    size_name = "quick" if args.quick else "default"
    size = SIZES[size_name]
    out = args.out or (Path("/tmp/latentkit-bench-quick") if args.quick else ROOT / "docs")
    json_path = args.json or (
        ROOT / "bench" / "results.json" if out == ROOT / "docs" else out / "benchmarks.json"
    )
    only = set(args.only.split(","))
    console = Console()
    log = console.print
    t_start = time.perf_counter()
    load_start = load_average()
    dev = device_string()
    log(f"[bold]latentkit benchmarks[/] ({size_name}) on {dev}; load average {load_start}")
    have = peers.available()
    for name, why in have.items():
        if why:
            log(f"[yellow]{name} does not import: {why}[/]")

    data, data_note = load_data(size["mnist_limit"], log)
    B, E = data["binary"], data["eightbit"]
    binary, eightbit = B.train, E.train

    rows, checks, groups, hs, full, qual, ladder = [], [], [], [], None, None, None
    if "steps" in only:
        log("[bold]Checking that every pairing gives the same loss[/]")
        checks = steps.check_losses(binary, eightbit, size["steps"])
        for c in checks:
            log(f"  {'ok ' if c['ok'] else 'BAD'} {c['pair']}: max |Δ| {c['max_abs_diff']:.1e}")
        log("[bold]Per-step timings (interleaved)[/]")
        groups = steps.build_groups(
            binary,
            eightbit,
            size["steps"],
            binary_name=data["binary_name"],
            eightbit_name=data["eightbit_name"],
        )
        steps.run_groups(groups, size["steps"], log)
        rows = report.ratio_rows(groups)
        hs, ladder = explain_overhead(groups, rows, binary, eightbit, size["steps"], log)
    if "full" in only:
        log("[bold]DDPM full-T ELBO vs plain forward[/]")
        full = full_bound.run(size["full"], log)
    if "quality" in only:
        log("[bold]Quality under a fixed budget[/]")
        qs = size["quality"]
        qual = {
            "vae_data": f"{data['binary_name']} ({B.train.shape[0]} train / "
            f"{B.test.shape[0]} test images, {B.train.shape[1]} dims)",
            "note": data_note,
        }
        qual["vae"] = quality.run_vae(binary, B.test, qs, log)
        qual["ddpm"] = quality.run_ddpm(eightbit, E.test, qs, log)

    wall = time.perf_counter() - t_start
    versions = (
        f"latentkit {__import__('latentkit').__version__}, torch {torch.__version__}, "
        f"pythae {peers.version('pythae')}, diffusers {peers.version('diffusers')}, "
        f"Python {platform.python_version()}"
    )
    ctx = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m bench.run"
        + (" --quick" if args.quick else "")
        + (f" --threads {args.threads}" if args.threads else ""),
        "device": dev,
        "load_start": load_start,
        "load_end": load_average(),
        "versions": versions,
        "wall_s": wall,
        "size": size_name,
        "json": _rel(json_path),
        "gpu": GPU_LINE,
        "block_s": size["steps"].block_seconds,
        "rows": rows,
        "checks": checks,
        "hotspots": hs,
        "ladder": ladder,
        "full": full,
        "quality": qual,
        "peer_versions": {n: peers.version(n) for n in have},
        "peer_missing": {n: w for n, w in have.items() if w},
    }
    write_report(console, ctx, out)
    raw = {k: v for k, v in ctx.items() if k not in ("rows",)}
    raw["rows"] = rows
    raw["timings"] = [
        {
            "model": g.model,
            "task": g.task,
            "data": g.data,
            "calls_per_round": g.inner,
            "per_call_s": {n: list(t.per_call) for n, t in g.timings.items()},
        }
        for g in groups
    ]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    log(
        f"wrote {_rel(out / 'benchmarks.md')}, {_rel(out / 'img')}/bench_*.png, "
        f"{_rel(json_path)} in {wall / 60:.1f} min"
    )
    return 0 if all(c["ok"] for c in checks) else 1


SWEEP_JSON = {"cpu": ROOT / "bench" / "sweep_results.json"}
SWEEP_JSON["cuda"] = ROOT / "bench" / "sweep_results_cuda.json"


def run_sweep(args) -> int:
    """``--sweep``: measure the sweep, save it, draw its plot and re-render the report."""
    console = Console()
    log = console.print
    size = sweep.QUICK if args.quick else sweep.SweepSize()
    if args.compile != "auto":
        size = attrs.evolve(size, compile=args.compile == "on")
    if args.compile_widths:
        size = attrs.evolve(size, compile_widths=tuple(args.compile_widths.split(",")))
    if args.models:
        size = attrs.evolve(size, models=tuple(args.models.split(",")))
    if args.batches:
        size = attrs.evolve(size, batches=tuple(int(b) for b in args.batches.split(",")))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        log("[bold red]--device cuda: no CUDA device on this machine[/]")
        return 2
    t0, load_start, dev = time.perf_counter(), load_average(), device_string()
    if device.type == "cuda":
        dev = f"{torch.cuda.get_device_name(device)}; host {dev}"
    log(f"[bold]latentkit overhead sweep[/] on {dev}; load average {load_start}")
    result = sweep.run(size, log, device=str(device))
    command = "python -m bench.run --sweep" + " ".join(
        ["", *(["--quick"] if args.quick else [])]
        + ([f"--device {args.device}"] if device.type != "cpu" else [])
        + ([f"--compile {args.compile}"] if args.compile != "auto" else [])
        + ([f"--compile-widths {args.compile_widths}"] if args.compile_widths else [])
        + ([f"--models {args.models}"] if args.models else [])
        + ([f"--batches {args.batches}"] if args.batches else [])
        + ([f"--threads {args.threads}"] if args.threads else [])
    )
    result.update(
        when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        command=command,
        device_string=dev,
        load_start=load_start,
        load_end=load_average(),
        wall_s=time.perf_counter() - t0,
    )
    sweep_report.print_sweep(console, result)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    if args.quick or args.out:
        out = args.out or Path("/tmp/latentkit-bench-quick")
        json_path = args.json or out / f"sweep{suffix}.json"
    else:
        out = ROOT / "docs"
        json_path = args.json or SWEEP_JSON[device.type]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    (out / "img").mkdir(parents=True, exist_ok=True)
    sweep_report.plot_overhead(result, out / "img" / f"overhead_sweep{suffix}.png")
    main_json = ROOT / "bench" / "results.json" if out == ROOT / "docs" else out / "benchmarks.json"
    if main_json.exists():
        write_report(console, json.loads(main_json.read_text(encoding="utf-8")), out)
    else:  # no full run to merge with (a scratch folder): the sweep's section alone
        (out / "sweep.md").write_text(_sweep_markdown(result, device.type), encoding="utf-8")
    log(f"wrote {_rel(json_path)} and {_rel(out)} in {result['wall_s'] / 60:.1f} min")
    return 0


def _sweep_markdown(result: dict, kind: str) -> str:
    note = (
        f"load average {result['load_start']} at start, {result['load_end']} at end; "
        f"{result['wall_s'] / 60:.1f} min, of which {result['compile_total_s']:.0f} s compiling"
    )
    md = sweep_report.markdown(
        result, command=result["command"], device=result["device_string"], note=note
    )
    if kind != "cpu":
        md = md.replace("## 5. Overhead across sizes: the sweep", "## 5b. The sweep on CUDA", 1)
    return md


def _saved_sweeps(out: Path) -> dict[str, dict]:
    """The sweeps saved beside this report (docs/: bench/sweep_results*.json)."""
    found = {}
    for kind, path in SWEEP_JSON.items():
        if out != ROOT / "docs":
            path = out / ("sweep.json" if kind == "cpu" else f"sweep_{kind}.json")
        if path.exists():
            found[kind] = json.loads(path.read_text(encoding="utf-8"))
    return found


def write_report(console: Console, ctx: dict, out: Path) -> int:
    """Print the tables; write OUT/benchmarks.md and OUT/img/bench_*.png from ``ctx``
    (with the saved sweeps' sections, when there are any)."""
    sweeps = _saved_sweeps(out)
    for kind, saved in sweeps.items():
        suffix = "" if kind == "cpu" else f"_{kind}"
        (out / "img").mkdir(parents=True, exist_ok=True)
        sweep_report.plot_overhead(saved, out / "img" / f"overhead_sweep{suffix}.png")
    if sweeps:
        ctx = {
            **ctx,
            "gpu": GPU_LINE,
            "sweeps": {k: _sweep_markdown(v, k) for k, v in sweeps.items()},
            "sweep_glance": [line for v in sweeps.values() for line in sweep_report.at_a_glance(v)],
            "sections_older": any(ctx.get("when", "") < v.get("when", "") for v in sweeps.values()),
        }
    report.print_tables(console, ctx["rows"], ctx["checks"], ctx["full"], ctx["quality"])
    (out / "img").mkdir(parents=True, exist_ok=True)
    if ctx["rows"]:
        report.plot_ratios(ctx["rows"], out / "img" / "bench_ratios.png")
    if ctx["full"]:
        report.plot_full_bound(ctx["full"], out / "img" / "bench_full_t.png")
    (out / "benchmarks.md").write_text(report.markdown(ctx), encoding="utf-8")
    return 0 if all(c["ok"] for c in ctx["checks"]) else 1


def explain_overhead(groups, rows, binary, eightbit, size, log) -> tuple[list[dict], dict]:
    """For every latentkit/hand-written pair over its target: the gap at batch 1 against the
    gap at the benchmark batch, operator counts, and cProfile groups; the VAE ladder."""
    missed = [
        (g, r)
        for g in groups
        for r in rows
        if r["model"] == g.model
        and r["task"] == g.task
        and r["b"] == "hand-written"
        and report.verdict(r) != "met"
    ]
    if not missed:
        return [], {}
    tiny = attrs.evolve(size, batch=1, elbo_batch=1, ddpm_elbo_batch=1)
    small = {
        (g.model, g.task): g
        for g in steps.build_groups(binary, eightbit, tiny, binary_name="", eightbit_name="")
    }
    dispatch = hotspots.dispatch_cost_us()
    out = []
    for g, r in missed:
        log(f"  explaining {g.model} {g.task} ({r['ratio']:.3f}×)")
        pair = ("latentkit", "hand-written")
        entry = {
            "model": g.model,
            "task": g.task,
            "ratio": r["ratio"],
            "batch_data": g.data,
            "gap_us": difference(g.timings["latentkit"], g.timings["hand-written"]) * 1e6,
            "ops": [hotspots.op_count(g.contenders[k]) for k in pair],
            "dispatch_us": dispatch,
        }
        if (g.model, g.task) in small:
            s = small[(g.model, g.task)]
            c = {k: s.contenders[k] for k in pair}
            t = interleaved(c, rounds=size.rounds, inner=steps.calibrate(c, 0.1, 2), warmup=1)
            entry["gap_batch1_us"] = difference(t["latentkit"], t["hand-written"]) * 1e6
            entry["batch1_ms"] = [t[k].median * 1e3 for k in pair]
        calls = max(3, g.inner * 3)
        entry["latentkit"] = hotspots.profile_calls(g.contenders["latentkit"], calls)
        entry["hand"] = hotspots.profile_calls(g.contenders["hand-written"], calls)
        out.append(entry)
    ladder = {}
    if any(g.model == "vae" for g, _ in missed):
        log("  the VAE ELBO, from plain tensors to latentkit")
        torch.manual_seed(0)
        vae = steps._vae("vae", binary.shape[1], size).eval()
        hand = baselines.VAE.from_latentkit(vae)
        for b in (1, size.elbo_batch):
            ladder[b] = hotspots.vae_ladder(
                vae, hand, binary[:b], rounds=size.rounds, block_seconds=0.1
            )
    return out, ladder


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


if __name__ == "__main__":
    sys.exit(main())
