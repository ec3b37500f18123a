"""Reading a finished run folder (:func:`load_run`): its newest checkpoint, ``report.json`` and
``per_example.safetensors``, each checked, into a :class:`RunRecord` of its figures, its data
protocol and its training budget."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import attrs
from torch import Tensor

from latentkit.checkpoint import _read_info, latest_checkpoint, read_regular_file
from latentkit.compare.conditional import MARGINAL, conditional_figures
from latentkit.compare.quality import SampleFigures, read_sample_quality
from latentkit.errors import CheckpointError, LatentkitError
from latentkit.estimates import Estimate

__all__ = [
    "MAX_PER_EXAMPLE_BYTES",
    "MAX_REPORT_BYTES",
    "PROTOCOL_FIELDS",
    "REPORT_FILE",
    "Figure",
    "ProtocolMismatchError",
    "RunFolderError",
    "RunRecord",
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
        """Plain JSON values of the figure."""
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
    sample_quality: SampleFigures | None = None
    """The run's sample-quality figures, where its report has them (``--sample-quality``)."""

    def figure(self, key: str) -> Figure | None:
        """``key``; ``best``: a conditional run's marginal NLL, else ``iwae``, else ``elbo``."""
        if key == "best":
            return (
                self.figures.get(MARGINAL) or self.figures.get("iwae") or self.figures.get("elbo")
            )
        return self.figures.get(key)


# ---------------------------------------------------------------- reading a run


def _fail(path: Path, why: str) -> RunFolderError:
    """A RunFolderError naming the run folder and why."""
    return RunFolderError(f"{path}: {why}")


def _read_json(path: Path, run: Path) -> dict[str, Any]:
    """A JSON object read from a run folder's file; a RunFolderError otherwise."""
    try:
        value = json.loads(read_regular_file(path, limit=MAX_REPORT_BYTES, what="report"))
    except (OSError, ValueError, RecursionError) as exc:
        raise _fail(run, f"cannot read {path.name} ({exc})") from None
    if not isinstance(value, dict):
        raise _fail(run, f"{path.name} is not a report (a JSON {type(value).__name__})")
    return value


def _dict(value: Any) -> dict[str, Any]:
    """``value`` where it is a dict, else an empty one."""
    return value if isinstance(value, dict) else {}


def _estimate(value: Any) -> Estimate | None:
    """An {mean, stderr} object as an Estimate (a null stderr: nan), else None."""
    value = _dict(value)
    mean, se = value.get("mean"), value.get("stderr")
    if not _is_number(mean) or not (se is None or _is_number(se)):
        return None
    return Estimate(float(mean), math.nan if se is None else float(se))


def _is_number(value: Any) -> bool:
    """A real number (an int or float, not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    """An int ≥ 0 (not a bool)."""
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
        # Each figure names itself (its ``label``); a report written before the figures
        # carried one shows the figure by its key. One whose key an evaluation figure
        # already has is ``model:KEY``.
        label = f.get("label") if isinstance(f.get("label"), str) else key
        bound = f.get("bound")
        bounds = _BOUNDS.get(bound, f"−log p(x): {bound}") if isinstance(bound, str) else above
        name = key if key not in out else f"model:{key}"  # the evaluation's has the name
        out[name] = figure(name, _flagged(label, f), bounds, e, f.get("num_examples"))
    return conditional_figures(report, out, figure)  # a conditional run: given c, marginal


def _flagged(label: str, figure: dict[str, Any]) -> str:
    """``label``, with the number of examples the figure flagged (an ODE figure's examples
    far above their own bound, listed in the report's warning) when there are any."""
    flagged = figure.get("flagged")
    return f"{label} ({len(flagged)} flagged)" if isinstance(flagged, list) and flagged else label


def _neg(e: Estimate) -> Estimate:
    """−e: a log-likelihood bound as an NLL, the same standard error."""
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
        sample_quality=read_sample_quality(report),
    )
