"""Compare finished runs: one likelihood table for every family, under one data protocol.

Each run folder (``latentkit train ... --report``, or ``latentkit report RUN``) holds
``report.json`` and ``per_example.safetensors``, each test example's bounds. A row per run
gives its headline figure, an upper bound on −log p(x) in nats per example (−IWAE_k where
the run computed IWAE, else −ELBO; a diffusion's −ELBO_T; the figures a model adds, such as
a continuous-time diffusion's −ELBO_∞ and ODE likelihoods, by ``figure=``), in bits/dim
where the data and the likelihood are discrete (bits/dim = nats / (D · ln 2)), with the
training budget and the data protocol.

**Paired differences.** Two runs scored on the same examples compare by the mean over
examples of d_i = NLL_run(x_i) − NLL_ref(x_i) with the standard error sd(d) / √N: the
examples' own spread, shared by both runs, cancels (:func:`latentkit.paired_difference`).
The examples are the same when the reports' digests of them (``examples_sha256``) and the
saved example indices agree.

**One protocol.** Runs whose data set, variant, split, binarization (its draw in training
and its seed) or test examples differ do not measure the same thing: refused with
:class:`ProtocolMismatchError` naming what differs, unless ``allow_mixed`` (each row then
names what differs from the reference, and runs on other examples get no paired
difference).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor

from latentkit.checkpoint import _read_info, latest_checkpoint, read_regular_file
from latentkit.errors import CheckpointError, ConfigError, LatentkitError
from latentkit.evaluation import Estimate, paired_difference

__all__ = [
    "Comparison",
    "Figure",
    "ProtocolMismatchError",
    "Row",
    "RunFolderError",
    "RunRecord",
    "compare_runs",
    "load_run",
]

REPORT_FILE = "report.json"
MAX_REPORT_BYTES = 64 * 2**20
"""A ``report.json`` larger than this is refused before it is read (they are a few kB)."""
MAX_PER_EXAMPLE_BYTES = 2**30
"""A per-example file larger than this is not read (1e8 examples' bounds)."""

PROTOCOL_FIELDS = ("data set", "variant", "split", "binarization", "test examples")
"""What two runs must share to be compared (and what :class:`ProtocolMismatchError` names)."""

_TERMS = frozenset({"elbo", "iwae", "nll_nats", "reconstruction", "prior_matching", "kl"})
"""Figures of ``report.json``'s ``evaluation`` read by name. Any other object in it is an
extra figure when it is {mean, stderr} (a log-likelihood bound, as ``elbo`` and ``iwae`` are,
or an NLL when its name says ``nll``) or holds ``nll_nats`` {mean, stderr} (an NLL, with
``what`` it is and the examples it ``flagged``: the ODE figure)."""

_MODEL_FIGURES = {"discrete": "−ELBO_T", "continuous": "−ELBO_∞", "ode": "ODE (decoder)",
                  "ode_direct": "ODE (at x)"}  # fmt: skip
"""Short names of the figures a model adds (``report.json``'s ``likelihood_figures``); one
whose name an evaluation figure already has is ``model:NAME``."""
_EVALUATION_FIGURES = {"ode": "ODE"}
"""Short names of the NLL figures an evaluation adds (``evaluation.ode``: the
probability-flow ODE figure of ``evaluate(..., ode_examples=N)``)."""

_BOUNDS = {
    "upper bound": "≥ −log p(x)",
    "upper bound in expectation": "≥ −log p(x) in expectation",
    "exact up to solver tolerance": "= −log p(x) up to solver tolerance",
}
"""What a figure bounds, in the words of a model's ``likelihood_figures`` ``bound``. −ELBO
and −IWAE_k are upper bounds in expectation: E[ELBO] ≤ E[IWAE_k] ≤ log p(x)."""


class RunFolderError(LatentkitError):
    """A folder that is missing, is not a run, is unfinished, or holds no usable report."""


class ProtocolMismatchError(LatentkitError, ValueError):
    """Runs that differ in data set, variant, split, binarization or test examples."""

    def __init__(self, message: str, differences: dict[str, dict[str, str]]):
        super().__init__(message)
        self.differences = differences


@attrs.frozen
class Figure:
    """One figure of a run: an upper bound on −log p(x) in nats per example."""

    key: str
    """``elbo``, ``iwae``, or the name a model or evaluation gives it (``continuous``, ...)."""
    label: str
    """What it is, e.g. ``−IWAE_k (k=5000)``."""
    bounds: str
    """What it bounds and how."""
    nll: Estimate
    """Mean over examples of the figure in nats, and its standard error."""
    num_examples: int
    bits_per_dim: Estimate | None
    """nll / (D · ln 2) for discrete data and likelihood, else None."""

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "bounds": self.bounds,
            "nll_nats": self.nll.to_json(),
            "bits_per_dim": None if self.bits_per_dim is None else self.bits_per_dim.to_json(),
            "num_examples": self.num_examples,
        }


@attrs.frozen
class RunRecord:
    """What a finished run folder says of itself (:func:`load_run`)."""

    path: Path
    name: str
    model: str
    objective: str
    figures: dict[str, Figure]
    """Every figure, the headline default (``iwae``, else ``elbo``) first."""
    protocol: dict[str, str]
    """The :data:`PROTOCOL_FIELDS`, as text."""
    examples_sha256: str | None
    per_example: dict[str, Tensor] = attrs.field(eq=False, repr=False)
    """Each example's log-likelihood bound by figure key (float64), and ``index``; empty when
    the run kept none (:attr:`per_example_note` says why)."""
    per_example_note: str
    training: dict[str, Any]
    data: dict[str, Any]
    data_dims: int
    discrete: bool

    def figure(self, key: str) -> Figure | None:
        """The figure ``key``; ``best``: ``iwae`` where the run has it, else ``elbo``."""
        if key == "best":
            return self.figures.get("iwae") or self.figures.get("elbo")
        return self.figures.get(key)


@attrs.frozen
class Row:
    """One row of a :class:`Comparison`."""

    run: RunRecord
    figure: Figure | None
    difference: Estimate | None
    """Paired mean of (this run's NLL − the reference's) over the shared examples, nats."""
    note: str
    """Why there is no paired difference (or ``reference``)."""
    differs: tuple[str, ...]
    """Protocol fields in which this run differs from the reference (``allow_mixed``)."""

    def _bpd(self, e: Estimate | None) -> Estimate | None:
        if e is None or not self.run.discrete:
            return None
        scale = self.run.data_dims * math.log(2.0)
        return Estimate(e.mean / scale, e.stderr / scale)

    def to_json(self, reference: str) -> dict[str, Any]:
        r = self.run
        return {
            "run": r.name,
            "path": str(r.path),
            "model": r.model,
            "objective": r.objective,
            "figure": None if self.figure is None else self.figure.to_json(),
            "paired_difference": None
            if self.difference is None
            else {
                "reference": reference,
                "nats": self.difference.to_json(),
                "bits_per_dim": _json_or_none(self._bpd(self.difference)),
                "num_examples": int(r.per_example["index"].numel()),
            },
            "paired_note": self.note,
            "other_figures": [f.to_json() for f in r.figures.values() if f is not self.figure],
            "training": r.training,
            "data": r.data,
            "protocol": r.protocol,
            "differs_from_reference": list(self.differs),
        }


def _json_or_none(e: Estimate | None) -> dict[str, float | None] | None:
    return None if e is None else e.to_json()


# ---------------------------------------------------------------- reading a run


def _fail(path: Path, why: str) -> RunFolderError:
    return RunFolderError(f"{path}: {why}")


def _read_json(path: Path, run: Path) -> dict[str, Any]:
    try:
        value = json.loads(read_regular_file(path, limit=MAX_REPORT_BYTES, what="report"))
    except (OSError, ValueError, RecursionError) as exc:
        raise _fail(run, f"cannot read {path.name} ({exc})") from None
    if not isinstance(value, dict):
        raise _fail(run, f"{path.name} is not a report (a JSON {type(value).__name__})")
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _estimate(value: Any) -> Estimate | None:
    """An {mean, stderr} object as an Estimate (a null stderr: nan), else None."""
    value = _dict(value)
    mean, se = value.get("mean"), value.get("stderr")
    if not _is_number(mean) or not (se is None or _is_number(se)):
        return None
    return Estimate(float(mean), math.nan if se is None else float(se))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _latest(run: Path) -> tuple[int, dict[str, Any]]:
    """The newest checkpoint's step and info; a folder that is no run is refused."""
    if not run.is_dir():
        why = "no such run folder" if not os.path.lexists(run) else "not a folder"
        raise _fail(run, why)
    found = latest_checkpoint(run)
    if found is None:
        raise _fail(run, "not a run folder (no checkpoints/step-*.json)")
    try:
        info = _read_info(found)
    except CheckpointError as exc:
        raise _fail(run, f"its newest checkpoint cannot be read ({exc})") from None
    return info["step"], info


def _check_finished(run: Path, step: int, info: dict[str, Any]) -> None:
    """Training reached its configured steps."""
    steps = _dict(info.get("train_config")).get("steps")
    if _is_count(steps) and step < steps:
        raise _fail(
            run,
            f"unfinished: trained {step} of {steps} steps (continue with latentkit train "
            f"--resume --run-dir {run})",
        )


def _check_current(run: Path, step: int, report: dict[str, Any]) -> None:
    """The report is of the newest checkpoint (or of the best one on validation)."""
    evaluated = report.get("checkpoint")
    of_best = isinstance(evaluated, str) and Path(evaluated).parent.name == "best"
    if not of_best and report.get("step") != step:
        raise _fail(
            run,
            f"report.json is of step {report.get('step')!r}, the run has trained to step "
            f"{step}; run `latentkit report {run}`",
        )


def _figures(report: dict[str, Any], ev: dict[str, Any]) -> dict[str, Figure]:
    """Every figure of a report as an NLL (nats), headline default first."""
    n = ev.get("num_examples") if _is_count(ev.get("num_examples")) else 0
    dims = ev.get("data_dims") if _is_count(ev.get("data_dims")) else 0
    discrete = ev.get("discrete_likelihood") is True and dims > 0

    def figure(key: str, label: str, bounds: str, nll: Estimate, count: Any) -> Figure:
        count = count if _is_count(count) else n
        bpd = None
        if discrete:
            scale = dims * math.log(2.0)
            bpd = Estimate(nll.mean / scale, nll.stderr / scale)
        return Figure(key, label, bounds, nll, count, bpd)

    out: dict[str, Figure] = {}
    above = _BOUNDS["upper bound in expectation"]
    iwae, elbo = _estimate(ev.get("iwae")), _estimate(ev.get("elbo"))
    if iwae is not None:
        k = ev.get("iwae_k")
        out["iwae"] = figure("iwae", f"−IWAE_k (k={k})", above, _neg(iwae), n)
    if elbo is not None:
        T = _dict(report.get("model_config")).get("num_timesteps")
        label = f"−ELBO_T (T={T})" if _is_count(T) else "−ELBO"
        out["elbo"] = figure("elbo", label, above, _neg(elbo), n)
    for key, value in ev.items():  # an extra figure an evaluation adds (the ODE's)
        value = _dict(value)
        if key in _TERMS or not value:
            continue
        e, nll = _estimate(value), _estimate(value.get("nll_nats"))
        if e is not None:
            out[key] = figure(
                key, key, above, e if "nll" in key else _neg(e), value.get("num_examples")
            )
        elif nll is not None:
            label = _flagged(_EVALUATION_FIGURES.get(key, key), value)
            what = value.get("what")
            out[key] = figure(
                key, label, what if isinstance(what, str) else above, nll, value.get("num_examples")
            )
    for key, f in _dict(report.get("likelihood_figures")).items():  # a model's own figures
        f = _dict(f)
        e = _estimate(f.get("nll_nats"))
        if e is None:
            continue
        label = _MODEL_FIGURES.get(key, key)
        if key == "discrete" and _is_count(f.get("num_timesteps")):
            label = f"−ELBO_T (T={f['num_timesteps']})"
        bound = f.get("bound")
        bounds = _BOUNDS.get(bound, f"−log p(x): {bound}") if isinstance(bound, str) else above
        name = key if key not in out else f"model:{key}"  # the evaluation's has the name
        out[name] = figure(name, _flagged(label, f), bounds, e, f.get("num_examples"))
    return out


def _flagged(label: str, figure: dict[str, Any]) -> str:
    """``label``, with the number of examples the figure flagged (an ODE figure's examples
    far above their own bound, listed in the report's warning) when there are any."""
    flagged = figure.get("flagged")
    return f"{label} ({len(flagged)} flagged)" if isinstance(flagged, list) and flagged else label


def _neg(e: Estimate) -> Estimate:
    return Estimate(-e.mean, e.stderr)


def _protocol(data: dict[str, Any], info_data: dict[str, Any], ev: dict[str, Any]) -> dict:
    """The :data:`PROTOCOL_FIELDS` of a run as text: the report's record, else (a report
    written before it recorded them) the checkpoint's."""

    def field(key: str, default: Any = None) -> Any:
        return data.get(key, info_data.get(key, default))

    variant = str(data.get("variant"))
    binarization = "none"
    if variant == "binarized":
        binarization = f"{field('binarization', 'fixed')} (seed {field('seed', 0)})"
    examples = data.get("examples", ev.get("num_examples"))
    return {
        "data set": str(data.get("name")),
        "variant": variant,
        "split": str(data.get("split", "test")),
        "binarization": binarization,
        "test examples": str(examples),
    }


def _per_example(run: Path, report: dict[str, Any]) -> tuple[dict[str, Tensor], str]:
    """The saved per-example bounds (float64, by figure key, with ``index``), or ``{}`` and
    why there are none."""
    record = report.get("per_example")
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        return {}, "no per-example values kept (run `latentkit report` again)"
    path = run / Path(record["file"]).name
    if not os.path.lexists(path):
        return {}, f"no {path.name}"
    try:
        blob = read_regular_file(path, limit=MAX_PER_EXAMPLE_BYTES, what="per-example file")
    except OSError as exc:
        return {}, f"{path.name} unreadable ({exc.__class__.__name__})"
    if hashlib.sha256(blob).hexdigest() != record.get("sha256"):
        return {}, f"{path.name} is not the one report.json wrote (sha256 differs)"
    from safetensors.torch import load

    try:
        tensors = load(blob)
    except Exception as exc:  # safetensors' own errors: the file is not one
        return {}, f"{path.name} is not a safetensors file ({type(exc).__name__})"
    index = tensors.get("index")
    if index is None or index.ndim != 1:
        return {}, f"{path.name} holds no example indices"
    values = {k: t.double() for k, t in tensors.items() if k != "index" and t.shape == index.shape}
    return {**values, "index": index.long()}, ""


def _objective(info: dict[str, Any]) -> str:
    """The training objective's name and the options it was given away from their defaults."""
    record = _dict(info.get("objective"))
    name = record.get("name")
    if not isinstance(name, str):
        return "?"
    config = _dict(record.get("config"))
    try:
        from latentkit.config import unstructure_config
        from latentkit.registry import get_objective_spec

        defaults = unstructure_config(get_objective_spec(name).config_class())
    except Exception:  # an objective this installation does not know: its name alone
        return name
    changed = [f"{k}={v}" for k, v in config.items() if k in defaults and defaults[k] != v]
    return f"{name} ({', '.join(changed)})" if changed else name


def _training(step: int, info: dict[str, Any]) -> dict[str, Any]:
    """Steps, wall time and where it ran, from the newest checkpoint's ``budget``."""
    budget = _dict(info.get("budget"))
    seconds = budget.get("train_seconds")
    train = _dict(info.get("train_config"))
    return {
        "steps": step,
        "batch_size": train.get("batch_size"),
        "train_seconds": seconds if _is_number(seconds) else None,
        "seconds_since_step": budget.get("since_step"),
        "device": budget.get("device", train.get("device")),
        "device_name": budget.get("device_name"),
        "threads": budget.get("threads"),
        "world_size": budget.get("world_size", info.get("world_size")),
    }


def load_run(path: str | os.PathLike) -> RunRecord:
    """Read a finished, reported run folder; :class:`RunFolderError` (one line) otherwise."""
    run = Path(path)
    step, info = _latest(run)
    _check_finished(run, step, info)
    report_path = run / REPORT_FILE
    if not report_path.is_file():
        raise _fail(run, f"no {REPORT_FILE} (not evaluated): run `latentkit report {run}`")
    report = _read_json(report_path, run)
    _check_current(run, step, report)
    ev = _dict(report.get("evaluation"))
    figures = _figures(report, ev)
    if not figures:
        raise _fail(run, f"{REPORT_FILE} holds no likelihood figure")
    data = _dict(report.get("data"))
    per_example, note = _per_example(run, report)
    dims = ev.get("data_dims") if _is_count(ev.get("data_dims")) else 0
    return RunRecord(
        path=run,
        name=run.name or str(run),
        model=str(report.get("model") or info.get("model")),
        objective=_objective(info),
        figures=figures,
        protocol=_protocol(data, _dict(info.get("data")), ev),
        examples_sha256=data.get("examples_sha256") if isinstance(data, dict) else None,
        per_example=per_example,
        per_example_note=note,
        training=_training(step, info),
        data={k: data.get(k) for k in ("name", "variant", "kind", "split")},
        data_dims=dims,
        discrete=ev.get("discrete_likelihood") is True and dims > 0,
    )


# ---------------------------------------------------------------- the comparison


def _differences(runs: Sequence[RunRecord]) -> dict[str, dict[str, str]]:
    """Each protocol field on which the runs disagree, with every run's value; else, where
    the runs recorded digests of the examples scored and these differ, the examples."""
    out: dict[str, dict[str, str]] = {}
    for field in PROTOCOL_FIELDS:
        values = {r.name: r.protocol[field] for r in runs}
        if len(set(values.values())) > 1:
            out[field] = values
    digests = {r.name: r.examples_sha256 for r in runs if r.examples_sha256}
    if len(set(digests.values())) > 1 and not out:  # alone: nothing above explains it
        out["test examples"] = {k: f"sha256 {v[:12]}" for k, v in digests.items()}
    return out


def _same_examples(a: RunRecord, b: RunRecord) -> bool:
    if a.examples_sha256 and b.examples_sha256:
        return a.examples_sha256 == b.examples_sha256
    return all(a.protocol[f] == b.protocol[f] for f in PROTOCOL_FIELDS)


def _pair(run: RunRecord, ref: RunRecord, fig: Figure | None, ref_fig: Figure | None):
    """(paired difference of NLLs, run − reference, or None; why not)."""
    if run is ref:
        return None, "reference"
    if fig is None or ref_fig is None:
        return None, "no figure to pair"
    for r, f in ((run, fig), (ref, ref_fig)):
        if not r.per_example:
            return None, f"{r.name}: {r.per_example_note}"
        if f.key not in r.per_example:
            return None, f"{r.name}: no per-example values of {f.label}"
    if not _same_examples(run, ref):
        return None, "other test examples than the reference's"
    a, b = run.per_example, ref.per_example
    if not torch.equal(a["index"], b["index"]):
        return None, "other example indices than the reference's"
    return paired_difference(-a[fig.key], -b[ref_fig.key]), ""


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """Each run's folder name; where two share one, the path as given."""
    names = [p.name or str(p) for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names)]


def compare_runs(
    paths: Iterable[str | os.PathLike],
    *,
    reference: str | os.PathLike | None = None,
    figure: str = "best",
    allow_mixed: bool = False,
) -> Comparison:
    """Compare finished run folders' test figures (module docstring).

    Args:
        paths: run folders, each with ``report.json`` (``latentkit report RUN``).
        reference: the run every paired difference is taken against (its folder name or
            path); default the first.
        figure: the figure compared: ``best`` (−IWAE_k where a run computed it, else −ELBO),
            ``elbo``, ``iwae``, or a figure a model adds (``continuous``, ``ode``, ...).
        allow_mixed: compare runs of different protocols anyway, each row naming what
            differs; otherwise they are refused with :class:`ProtocolMismatchError`.

    Raises:
        RunFolderError: a folder that is missing, no run, unfinished or not reported.
        ConfigError: no runs, the same run twice, or a reference not among them.
        ProtocolMismatchError: runs of different protocols, without ``allow_mixed``.
    """
    given = [Path(p) for p in paths]
    if not given:
        raise ConfigError("compare: no run folders given")
    real = [os.path.realpath(p) for p in given]
    twice = sorted({str(p) for p, r in zip(given, real) if real.count(r) > 1})
    if twice:
        raise ConfigError(f"compare: the same run given twice: {', '.join(twice)}")
    if not isinstance(figure, str) or not figure:
        raise ConfigError(f"figure: a figure name (best, elbo, iwae, ...), got {figure!r}")
    runs = [attrs.evolve(load_run(p), name=name) for p, name in zip(given, _unique_names(given))]
    ref = runs[0] if reference is None else _find(runs, reference)
    differences = _differences(runs)
    if differences and not allow_mixed:
        words = "; ".join(
            f"{field} — {', '.join(f'{run}: {v}' for run, v in values.items())}"
            for field, values in differences.items()
        )
        raise ProtocolMismatchError(
            f"the runs differ in {words}; compare runs of one protocol, or pass --allow-mixed",
            differences,
        )
    ref_fig = ref.figure(figure)
    rows = []
    for run in runs:
        fig = run.figure(figure)
        difference, note = _pair(run, ref, fig, ref_fig)
        differs = tuple(f for f in PROTOCOL_FIELDS if run.protocol[f] != ref.protocol[f])
        if run is not ref and not differs and not _same_examples(run, ref):
            differs = ("test examples",)
        rows.append(Row(run, fig, difference, note, differs))
    if all(r.figure is None for r in rows):
        known = sorted({k for r in runs for k in r.figures})
        raise ConfigError(f"figure: no run reports {figure!r}; the runs report {known}")
    rows.sort(key=lambda r: math.inf if r.figure is None else r.figure.nll.mean)
    return Comparison(rows=rows, reference=ref.name, figure=figure, differences=differences)


def _find(runs: Sequence[RunRecord], reference: str | os.PathLike) -> RunRecord:
    text = str(reference)
    real = os.path.realpath(reference)
    for r in runs:
        if text == r.name or real == os.path.realpath(r.path):
            return r
    raise ConfigError(
        f"--reference {text}: not among the runs compared ({', '.join(r.name for r in runs)})"
    )


# ---------------------------------------------------------------- presenting it


def _fmt(e: Estimate | None, digits: int, *, sign: bool = False) -> str:
    if e is None or not math.isfinite(e.mean):
        return "—"
    mean = f"{e.mean:+.{digits}f}" if sign else f"{e.mean:.{digits}f}"
    return mean if not math.isfinite(e.stderr) else f"{mean} ± {e.stderr:.{digits}f}"


def _duration(seconds: Any) -> str:
    if not _is_number(seconds):
        return "time not recorded"
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _training_text(t: dict[str, Any]) -> str:
    words = [f"{t['steps']} steps", _duration(t["train_seconds"])]
    since = t.get("seconds_since_step")
    if _is_count(since) and since > 0 and _is_number(t["train_seconds"]):
        words[-1] += f" (from step {since})"
    if t.get("device"):
        where = str(t["device"])
        if t.get("device_name"):
            where += f" {t['device_name']}"
        if _is_count(t.get("threads")) and str(t["device"]).startswith("cpu"):
            where += f", {t['threads']} thread" + ("s" if t["threads"] != 1 else "")
        if _is_count(t.get("world_size")) and t["world_size"] > 1:
            where += f", × {t['world_size']} processes"
        words.append(where)
    return ", ".join(words)


_NUMBERS = ("nats", "bits/dim")


@attrs.frozen
class Comparison:
    """The rows of :func:`compare_runs`, best figure first, and how to show them."""

    rows: list[Row]
    reference: str
    figure: str
    differences: dict[str, dict[str, str]]
    """Protocol fields on which the runs differ (empty unless ``allow_mixed``)."""

    @property
    def mixed(self) -> bool:
        return bool(self.differences)

    def _cells(self) -> list[tuple[str, list[str]]]:
        """(header, one cell per row) of every column."""
        rows = self.rows
        cols = [
            ("run", [r.run.name for r in rows]),
            ("model", [r.run.model for r in rows]),
            ("objective", [r.run.objective for r in rows]),
            ("bound", [r.figure.label if r.figure else f"no {self.figure}" for r in rows]),
            ("bounds", [r.figure.bounds if r.figure else "" for r in rows]),
            ("nats", [_fmt(r.figure.nll if r.figure else None, 2) for r in rows]),
            ("bits/dim", [_fmt(r.figure.bits_per_dim if r.figure else None, 4) for r in rows]),
            (
                f"Δ vs {self.reference} (nats, paired)",
                [
                    _fmt(r.difference, 3, sign=True)
                    if r.difference is not None
                    else (r.note if r.note == "reference" else f"— ({r.note})")
                    for r in rows
                ],
            ),
            ("test examples", [str(r.figure.num_examples) if r.figure else "" for r in rows]),
            ("training", [_training_text(r.run.training) for r in rows]),
            (
                "data",
                [
                    " ".join(str(r.run.data.get(k)) for k in ("name", "variant", "split"))
                    for r in rows
                ],
            ),
            (
                "other figures",
                [
                    "; ".join(
                        f"{f.label} {_fmt(f.nll, 2)}"
                        for f in r.run.figures.values()
                        if f is not r.figure
                    )
                    for r in rows
                ],
            ),
        ]
        if self.mixed:
            cols.append(("differs from reference", [", ".join(r.differs) or "" for r in rows]))
        return cols

    @property
    def best(self) -> Row | None:
        """The row of the lowest figure (the tightest bound)."""
        return self.rows[0] if self.rows and self.rows[0].figure is not None else None

    def warning(self) -> str | None:
        """One line naming what differs between the runs, when they were compared anyway."""
        if not self.mixed:
            return None
        return (
            "warning: the runs differ in "
            + ", ".join(self.differences)
            + "; their figures do not measure the same thing"
        )

    def table(self, title: str | None = None) -> Any:
        """A rich table of the rows, the best figure in bold: the Markdown's columns, with the
        model and its objective in one cell, the bound and what it bounds in another, and the
        data and the test examples in the title where every row shares them."""
        from rich.table import Table
        from rich.text import Text

        cells = dict(self._cells())
        cells["model"] = [f"{m}\n{o}" for m, o in zip(cells["model"], cells.pop("objective"))]
        cells["bound"] = [f"{b}\n{w}".strip() for b, w in zip(cells["bound"], cells.pop("bounds"))]
        shared = []
        for name in ("data", "test examples"):
            if len(set(cells[name])) == 1:
                value = cells.pop(name)[0]
                shared.append(f"{value} examples" if name == "test examples" else value)
        words = f"test figures, the {self.figure} bound in nats per example"
        table = Table(title=title or ", ".join([words, *shared]))
        for header in cells:  # numbers are never broken across lines
            table.add_column(header, overflow="fold", no_wrap=header in _NUMBERS)
        for i, row in enumerate(self.rows):
            bold = "bold" if row is self.best else ""
            styles = [bold if header == "nats" else "" for header in cells]
            table.add_row(*(Text(v[i], style=st) for v, st in zip(cells.values(), styles)))
        return table

    def to_markdown(self) -> str:
        """The rows as a Markdown table, the best figure in bold, and a note on the pairing."""
        cells = self._cells()

        def esc(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        lines = [
            "| " + " | ".join(esc(h) for h, _ in cells) + " |",
            "|" + "|".join("---" for _ in cells) + "|",
        ]
        for i, row in enumerate(self.rows):
            values = [esc(c[i]) for _, c in cells]
            if row is self.best:
                at = [h for h, _ in cells].index("nats")
                values[at] = f"**{values[at]}**"
            lines.append("| " + " | ".join(values) + " |")
        notes = [
            "",
            f"Figures in nats per example (± the standard error over examples); Δ is the mean "
            f"over shared test examples of (run − {self.reference}), ± its paired standard "
            "error.",
        ]
        if self.mixed:
            notes.append(f"**{self.warning()}**")
        return "\n".join(lines + notes) + "\n"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values: the rows, best first, with every figure and the protocol."""
        return {
            "figure": self.figure,
            "reference": self.reference,
            "best": None if self.best is None else self.best.run.name,
            "units": "nats per example (bits_per_dim: bits per data dimension)",
            "protocol_differences": self.differences,
            "rows": [r.to_json(self.reference) for r in self.rows],
        }
