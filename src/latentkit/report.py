"""A trained model's report: the evaluation with its progress bar, ``report.json`` and the figures.

Evaluation code, used by ``latentkit report``, ``latentkit train --report`` and from Python
alike."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from latentkit.checkpoint import (
    atomic_write_bytes,
    atomic_write_json,
    latest_checkpoint,
    writable_path,
)
from latentkit.conditional_report import conditional_block, conditional_table
from latentkit.diagnostics import diagnostics_table
from latentkit.errors import LatentkitError
from latentkit.eval_report import examples_digest, progress_bar
from latentkit.evaluation import check_finite_rows
from latentkit.quality.pipeline import check_sample_quality, sample_quality_block
from latentkit.report_plots import MAX_METRICS_BYTES
from latentkit.report_plots import diagnostics_plots as _diagnostics_plots
from latentkit.report_plots import model_plots as _model_plots

__all__ = [
    "DIAGNOSE_EXAMPLES",
    "EVAL_PAIRS",
    "MAX_METRICS_BYTES",
    "PER_EXAMPLE_FILE",
    "check_sample_quality",
    "examples_digest",
    "likelihood_figures",
    "likelihood_figures_table",
    "ode_warnings",
    "per_example_bytes",
    "print_ode_warnings",
    "sample_quality_block",
    "write_report",
]

DIAGNOSE_EXAMPLES = 1000
"""Examples the diagnostics (mutual information, aggregate KL, active units) use by default:
their mixture over the data costs N² density evaluations (docs/diagnostics.md)."""
EVAL_PAIRS = 20000
"""Default evaluation budget in (example, layer) pairs: every test example for short chains,
fewer for long ones (a 1000-step DDPM gets 64), since the ELBO of an example costs L calls."""
PER_EXAMPLE_FILE = "per_example.safetensors"
"""The report's per-example bounds, beside ``report.json`` (:func:`per_example_bytes`)."""


def _eval_budget(model: Any, n: int, options: dict[str, Any]) -> int:
    """How many test examples the evaluation scores: the ``examples`` option, else
    :data:`EVAL_PAIRS` (example, layer) pairs' worth."""
    if options.get("examples"):
        return min(n, int(options["examples"]))
    return min(n, max(64, EVAL_PAIRS // max(1, model.num_layers)))


def _run_evaluation(
    model: Any,
    data: torch.Tensor,
    *,
    options: dict[str, Any],
    discrete: bool,
    seed: int,
    err: Console,
    batch_size: int | None = None,
    labels: torch.Tensor | None = None,
) -> Any:
    """The evaluation of the first examples of ``data`` (with their ``labels``, for a
    conditional model) within the budget, with a progress bar on ``err``."""
    from latentkit.evaluation import evaluate

    n = _eval_budget(model, data.shape[0], options)
    check_finite_rows(data[:n])
    if n < data.shape[0] and not options.get("examples"):
        err.print(
            f"evaluating {n} of {data.shape[0]} examples (a {model.num_layers}-layer chain; "
            "--eval-limit to change)",
            markup=False,
        )
    with progress_bar("evaluate", err, enabled=options.get("progress", True)) as progress:
        task = progress.add_task("evaluate", total=n)
        return evaluate(
            model,
            data[:n],
            batch_size=batch_size or int(options.get("batch_size", 500)),
            iwae_k=options.get("iwae_k"),
            num_samples=int(options.get("num_samples", 1)),
            estimator=str(options.get("estimator", "auto")),
            discrete=discrete,
            seed=seed,
            on_batch=lambda done: progress.update(task, completed=done),
            ode_examples=int(options.get("ode_examples", 0)),
            ode_margin=options.get("ode_margin"),
            conditions=None if labels is None else labels[:n],
        )


def _diagnose(
    model: Any, data: torch.Tensor, options: dict[str, Any], *, seed: int, err: Console,
    labels: torch.Tensor | None = None,
) -> Any:  # fmt: skip
    """The diagnostics on the first ``options['diagnose']`` examples (given their ``labels``,
    for a conditional model), or None (0, or a model they do not apply to: said on stderr,
    the evaluation goes on)."""
    from latentkit.diagnostics import diagnose

    n = options.get("diagnose", DIAGNOSE_EXAMPLES)
    if not n:
        return None
    ref = model.reference()
    n = min(n, data.shape[0])
    subset = data[:n].to(device=ref.device, dtype=ref.dtype)
    given = {} if labels is None else {"conditions": labels[:n].to(ref.device)}
    try:
        return diagnose(model, subset, seed=seed, **given)
    except LatentkitError as exc:
        err.print(f"diagnostics skipped: {exc}", markup=False, highlight=False)
        return None


def write_report(
    run_dir: Path,
    *,
    out: Console,
    err: Console,
    options: dict[str, Any],
    dataset: Any,
    model: Any,
    info: dict[str, Any],
    seed: int = 0,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Evaluate on the test split and write report.json, samples.png, curves.png, layer_kl.png,
    and diagnostics.png and diagnostics_training.png where there are diagnostics to plot.

    ``checkpoint``: the checkpoint evaluated, named in the report (default: the run's newest).
    """
    model.eval()
    check_sample_quality(dataset, options)  # refused now, before the evaluation
    discrete = dataset.kind in ("binary", "symmetric8")
    labels = dataset.test_labels if model.condition_spec is not None else None
    report = _run_evaluation(
        model, dataset.test, options=options, seed=seed, err=err, discrete=discrete, labels=labels
    )
    name = info.get("model", getattr(model, "name", "model"))
    step = info.get("step")
    files = _model_plots(run_dir, model, dataset, report, name=name, step=step, seed=seed)
    diag = _diagnose(model, dataset.test, options, seed=seed, err=err, labels=labels)
    files.update(_diagnostics_plots(run_dir, diag, name=name, data_name=dataset.name))
    figures = likelihood_figures(
        model, dataset.test, options, discrete=discrete, seed=seed, labels=labels
    )
    files.update(_per_t_plot(run_dir, model, figures, name=name, data_name=dataset.name))
    evaluated = checkpoint or latest_checkpoint(run_dir)
    payload = _payload(info, dataset, report, diag, files, evaluated, name=name)
    payload["likelihood_figures"] = figures
    payload["data"].update(_protocol(info, dataset.test[: report.num_examples]))
    payload["per_example"] = _write_per_example(run_dir, report, dataset.test, evaluated)
    payload["sample_quality"] = sample_quality_block(model, dataset, options, seed=seed, err=err)
    payload["conditional"] = conditional_block(model, dataset.test, labels, options, seed=seed)
    atomic_write_json(run_dir / "report.json", payload)
    given = "" if labels is None else " given the labels"
    title = f"{name} at step {step} on {dataset.name} test{given}"
    _print_report(
        out, run_dir, report, figures, diag, files, title=title, data_name=dataset.name,
        quality=payload["sample_quality"],
    )  # fmt: skip
    if payload["conditional"] is not None:
        out.print(conditional_table(payload["conditional"]))
    return payload


def _per_t_plot(
    run_dir: Path, model: Any, figures: dict[str, Any] | None, *, name: str, data_name: str
) -> dict[str, str]:
    """per_t.png, the diffusion term per t, where the model's figures have the breakdown
    and the model plots it (``model.per_t_plot``): the path written, by name."""
    if figures is None or not callable(getattr(model, "per_t_plot", None)):
        return {}
    path = model.per_t_plot(
        figures["per_t"],
        writable_path(run_dir / "per_t.png"),
        title=f"{name}: the diffusion term per t on {data_name} test",
    )
    return {"per_t": str(path)}


def _print_report(
    out: Console,
    run_dir: Path,
    report: Any,
    figures: dict[str, Any] | None,
    diag: Any,
    files: dict[str, str],
    *,
    title: str,
    data_name: str,
    quality: dict[str, Any] | None = None,
) -> None:
    """The evaluation's table, the model's figures, the ODE warnings, the diagnostics, the
    sample quality and where the report and its plots went, on ``out``."""
    from latentkit.evaluation import report_table
    from latentkit.quality.pipeline import sample_quality_table

    out.print(report_table(report, title=title))
    if figures is not None:
        out.print(likelihood_figures_table(figures, title="the model's likelihood figures"))
    print_ode_warnings(out, report, figures)
    if diag is not None:
        out.print(diagnostics_table(diag, title=f"diagnostics ({data_name} test)"))
    if quality is not None:
        out.print(sample_quality_table(quality, title=f"sample quality ({data_name} test)"))
    out.print(
        f"report: {run_dir / 'report.json'}; plots: "
        + ", ".join(Path(p).name for p in files.values()),
        highlight=False,
        markup=False,
    )


def likelihood_figures(
    model: Any,
    data: torch.Tensor,
    options: dict[str, Any],
    *,
    discrete: bool,
    seed: int,
    labels: torch.Tensor | None = None,
) -> dict[str, Any] | None:
    """A model's own likelihood figures beyond the ELBO and IWAE, when it offers them as
    ``model.likelihood_figures(data, discrete=, seed=, ode_examples=)`` (a continuous-time
    diffusion: the continuous bound and the probability-flow ODE likelihood, with the per-t
    breakdown), on the examples the evaluation budget covers, its ODE figures on the first
    ``ode_examples`` of them (``--ode N``; none by default); ``None`` for other models.
    ``labels``: a conditional model's, one per example of ``data``, passed on as
    ``condition=`` (figures given c); ``None`` passes none (an unconditional model)."""
    compute = getattr(model, "likelihood_figures", None)
    if not callable(compute):
        return None
    n = _eval_budget(model, data.shape[0], options)
    margin = {"ode_margin": options["ode_margin"]} if "ode_margin" in options else {}
    # One knob for every ODE figure, slow as they are: `--ode N` ([evaluate] ode_examples,
    # 0 by default) gives the model's own ODE figures on its first N examples too.
    ode = int(options.get("ode_examples") or 0)
    given = {} if labels is None else {"condition": labels[:n]}
    return compute(data[:n], discrete=discrete, seed=seed, ode_examples=ode, **margin, **given)


def ode_warnings(report: Any, figures: dict[str, Any] | None) -> list[str]:
    """The warning lines of every ODE figure that flagged examples: the evaluation's own
    (``report.ode``) and a model's (``figures[key]["warning"]``), each naming its figure."""
    from latentkit.evaluation import ode_warning

    lines = []
    own = ode_warning(report)
    if own:
        lines.append(own)
    for key, f in (figures or {}).items():  # in the order the model wrote them
        if isinstance(f, dict) and f.get("warning"):
            lines.append(f"{key}: {f['warning']}")
    return lines


def print_ode_warnings(console: Console, report: Any, figures: dict[str, Any] | None) -> None:
    """Each line of :func:`ode_warnings`, as a warning."""
    for line in ode_warnings(report, figures):
        console.print(f"warning: {line}", style="yellow", markup=False, highlight=False)


def per_example_bytes(report: Any, data: torch.Tensor, *, source: Any) -> bytes:
    """A safetensors file of each example's figures (``report.per_example``: ``elbo`` and,
    when computed, ``iwae``, nats, float32) with ``index``, the position of each example in
    ``data`` (int64), and in its metadata where they came from (``source``), ``iwae_k``,
    ``seed``, ``num_examples`` and :func:`examples_digest` of the examples scored."""
    from safetensors.torch import save as save_safetensors

    n = report.num_examples
    tensors = {name: t.contiguous() for name, t in report.per_example.items()}
    tensors["index"] = torch.arange(n, dtype=torch.int64)
    meta = {
        "source": str(source),
        "iwae_k": str(report.iwae_k),
        "seed": str(report.seed),
        "num_examples": str(n),
        "examples_sha256": examples_digest(data[:n]),
    }
    return save_safetensors(tensors, metadata=meta)


def _write_per_example(
    run_dir: Path, report: Any, data: torch.Tensor, source: Any
) -> dict[str, Any]:
    """Write ``RUN/per_example.safetensors`` (atomically); what ``report.json`` says of it: its
    name, sha256 (so a reader can tell it belongs to this report) and figures."""
    blob = per_example_bytes(report, data, source=source)
    atomic_write_bytes(writable_path(run_dir / PER_EXAMPLE_FILE), blob)
    return {
        "file": PER_EXAMPLE_FILE,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "figures": sorted(report.per_example),
    }


def _protocol(info: dict[str, Any], examples: torch.Tensor) -> dict[str, Any]:
    """The data protocol a comparison of runs checks: the binarization seed and draw
    (``fixed`` or ``dynamic`` in training), the split limit, the held-out validation
    examples, and the examples scored (count and :func:`examples_digest`)."""
    data = info.get("data") if isinstance(info.get("data"), dict) else {}
    return {
        "seed": data.get("seed"),
        "limit": data.get("limit"),
        "binarization": data.get("binarization", "fixed"),
        "validation": data.get("validation", 0),
        "examples": int(examples.shape[0]),
        "examples_sha256": examples_digest(examples),
    }


def likelihood_figures_table(figures: dict[str, Any], *, title: str) -> Any:
    """The figures of :func:`likelihood_figures` as a table: what each is, in nats and
    bits/dim (± the standard error over examples), and in what sense it bounds −log p."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("figure", "−log p (nats)", "bits/dim", "is"):
        table.add_column(col, overflow="fold")
    for f in figures.values():  # each figure the model reports, in its order
        if not isinstance(f, dict) or "what" not in f:
            continue
        table.add_row(f["what"], *_nats_bpd(f), f.get("bound", ""))
        kept = f.get("without_flagged")
        if kept and kept["num_examples"] < f.get("num_examples", kept["num_examples"] + 1):
            flagged = len(f.get("flagged", []))
            table.add_row(
                f"  without the {flagged} flagged (see the warning)", *_nats_bpd(kept), ""
            )
    return table


def _nats_bpd(f: dict[str, Any]) -> tuple[str, str]:
    """A figure's mean ± s.e. in nats and in bits/dim (blank where there is none)."""

    def fmt(e: Any, digits: int) -> str:
        if not e or e.get("mean") is None:
            return "—" if digits == 2 else ""
        se = "" if e.get("stderr") is None else f" ± {e['stderr']:.{digits}f}"
        return f"{e['mean']:.{digits}f}{se}"

    return fmt(f.get("nll_nats"), 2), fmt(f.get("bits_per_dim"), 4)


def _payload(
    info: dict[str, Any],
    dataset: Any,
    report: Any,
    diag: Any,
    files: dict[str, str],
    checkpoint: Path | None,
    *,
    name: str,
) -> dict[str, Any]:
    """What report.json holds; ``checkpoint`` is the checkpoint evaluated."""
    return {
        "model": name,
        "model_config": info.get("model_config"),
        "step": info.get("step"),
        "train_config": info.get("train_config"),
        "data": {
            "name": dataset.name,
            "variant": dataset.variant,
            "kind": dataset.kind,
            "description": dataset.description,
            "split": "test",
        },
        "evaluation": report.to_json(),
        "diagnostics": None if diag is None else diag.to_json(),
        "last_train_metrics": _last_train_metrics(info),
        "files": files,
        "checkpoint": str(checkpoint),
    }


def _last_train_metrics(info: dict[str, Any]) -> Any:
    """The checkpoint's last training metrics (``metrics.train``), or ``None`` where its
    ``metrics`` is no table (a hand-edited file: the hashes do not stop a forger)."""
    metrics = info.get("metrics")
    return metrics.get("train") if isinstance(metrics, dict) else None
