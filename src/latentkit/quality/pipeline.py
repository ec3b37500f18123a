"""Sample quality in the evaluation pipeline: a trained model's samples scored against the
test split, with the reference values beside them, as ``latentkit evaluate``, ``report``
and ``train --report`` give them (``--sample-quality N``, ``[evaluate] sample_quality``;
docs/quality.md).

    check_readable(data, n)                       # refused before anything is sampled
    block = model_sample_quality(model, data, n)  # report.json's "sample_quality"
    console.print(sample_quality_table(block))

The samples are ``n`` ancestral draws of the model (a diffusion's chain: its T steps, named
in the block); the reference is the first ``min(n, len(test))`` test images; the floor
scores ``n`` training images as samples and the ceiling ``n`` draws of independent pixels
fitted to the training split (:func:`latentkit.quality.reference_values`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

from rich.table import Table
from torch import Tensor

from latentkit.arguments import check_model, check_seed, checked
from latentkit.errors import ConfigError, ShapeError
from latentkit.eval_report import examples_digest, progress_bar
from latentkit.quality.assess import (
    PreparedReference,
    ReferenceValues,
    default_network,
    draw_samples,
    prepare_reference,
    reference_values,
    sample_quality,
)
from latentkit.quality.features import KINDS, FeatureNetwork
from latentkit.validation import check_positive_int

__all__ = [
    "BOOTSTRAP",
    "K",
    "check_readable",
    "check_sample_quality",
    "model_sample_quality",
    "sample_quality_block",
    "sample_quality_table",
    "sampler_of",
]

K = 3
"""Neighbours of the k-NN precision and recall in the pipeline."""
BOOTSTRAP = 50
"""Bootstrap resamplings of the FLD's standard error in the pipeline."""

_MNIST_NAMES = ("mnist", "mnist-sample")
"""Data sets of the digits the shipped network was trained on."""
_CACHE_SIZE = 4
_REFERENCES: OrderedDict[tuple, tuple[Any, PreparedReference, ReferenceValues]] = OrderedDict()
"""Prepared references and reference values by (data set's splits, n, seed, network): a
process scoring several models of one data set computes them once."""


def check_readable(
    dataset: Any, n: int, *, network: FeatureNetwork | None = None
) -> FeatureNetwork:
    """The feature network that will score ``n`` samples of a model of ``dataset`` (None:
    the shipped MNIST LeNet), once the data is checked to be what it reads and large enough
    for the reference values; each refusal one line naming why, before any sampling.

    Raises:
        ShapeError: examples that are not the network's images (the LeNet: 1×28×28, or 784
            values).
        ConfigError: standardized (``real``) data, ``n`` larger than the training split (the
            floor scores ``n`` training images) or not above k.
    """
    check_positive_int(n, "n")
    net = default_network() if network is None else network
    what = f"sample quality of {n} samples"
    name = f"{dataset.name} ({dataset.variant})"
    if dataset.kind not in KINDS:
        raise ConfigError(
            f"{what}: {name} is standardized data (kind {dataset.kind!r}); the feature network "
            f"{net.name!r} reads pixels ({', '.join(KINDS)}): use a run trained on the unit, "
            "binarized or 8bit variant"
        )
    shape, wanted = tuple(dataset.data_shape), tuple(net.input_shape)
    if shape not in (wanted, (math.prod(wanted),)):
        raise ShapeError(
            f"{what}: {name} examples are {'×'.join(map(str, shape))}; the feature network "
            f"{net.name!r} reads {'×'.join(map(str, wanted))} images (or {math.prod(wanted)} "
            "values)" + (" such as MNIST's digits" if net.name == "mnist-lenet" else "")
        )
    if n <= K:
        raise ConfigError(f"{what}: k-NN precision and recall (k = {K}) need more than {K}")
    train, test = dataset.train.shape[0], dataset.test.shape[0]
    if train < n:
        raise ConfigError(
            f"{what}: the floor scores {n} training images as samples, and {name}'s "
            f"training split has {train}: ask for at most {train}"
        )
    if test <= K:
        raise ConfigError(f"{what}: {name}'s test split has {test} examples; k = {K} needs more")
    return net


def sampler_of(model: Any) -> tuple[str, int]:
    """How the samples are drawn, in words, and the steps of the chain: a diffusion's T
    (``config.num_timesteps``), else the latent layers."""
    steps = getattr(
        getattr(check_model(model, "sampler_of"), "config", None), "num_timesteps", None
    )
    if isinstance(steps, int) and not isinstance(steps, bool):
        return f"ancestral, T = {steps} steps", steps
    layers = int(model.num_layers)
    return f"ancestral, {layers} latent layer{'' if layers == 1 else 's'}", layers


def _reference(
    dataset: Any, n: int, *, seed: int, network: FeatureNetwork
) -> tuple[PreparedReference, ReferenceValues]:
    """The prepared first ``min(n, len(test))`` test images and the reference values at
    ``n``, computed once per (splits, their versions, n, seed, network) in this process."""
    train, test = dataset.train, dataset.test
    key = (id(train), train._version, id(test), test._version, n, seed, id(network))
    found = _REFERENCES.get(key)
    if found is not None:
        _REFERENCES.move_to_end(key)
        return found[1], found[2]
    ref = prepare_reference(test[: min(n, test.shape[0])], kind=dataset.kind, network=network, k=K)
    values = reference_values(train, ref, n=n, bootstrap=BOOTSTRAP, seed=seed)
    # the splits held with their figures: while cached, no other tensor can take their ids
    _REFERENCES[key] = ((train, test), ref, values)
    while len(_REFERENCES) > _CACHE_SIZE:
        _REFERENCES.popitem(last=False)
    return ref, values


def _clipped(images: Tensor, kind: str) -> tuple[Tensor, float]:
    """The samples clipped to the data's pixel range (``[-1, 1]`` for ``symmetric8``, else
    ``[0, 1]``: a density's draws, a Gaussian's say, spill over it), and the share of
    their values that lay outside it. NaN stays NaN (and is refused when scored)."""
    lo, hi = (-1.0, 1.0) if kind == "symmetric8" else (0.0, 1.0)
    outside = (images < lo) | (images > hi)
    share = float(outside.double().mean()) if images.numel() else 0.0
    return images.clamp(lo, hi), share


def model_sample_quality(
    model: Any,
    dataset: Any,
    n: int,
    *,
    seed: int = 0,
    batch_size: int = 500,
    console: Any = None,
    progress: bool = True,
    network: FeatureNetwork | None = None,
) -> dict[str, Any]:
    """``n`` samples of ``model`` scored against ``dataset``'s test split, with the reference
    values: report.json's ``sample_quality`` block (plain JSON).

    The block holds :meth:`SampleQuality.to_dict`'s figures (``seconds``: the metrics'
    time), ``sampler`` and ``sampler_steps`` (:func:`sampler_of`), ``sampling_seconds``,
    ``clipped`` (the share of sample values outside the data's pixel range, clipped to it
    before scoring: a density's draws spill over), ``seed``, the ``reference`` (split,
    examples, ``examples_sha256``) and ``reference_values`` (floor and ceiling). A
    progress bar counts the samples on ``console`` (a terminal, ``progress`` on). Data the
    network cannot read is refused first (:func:`check_readable`), a bad seed before it.
    """
    check_seed(seed)
    net = check_readable(dataset, n, network=network)
    if console is not None and net.name == "mnist-lenet" and dataset.name not in _MNIST_NAMES:
        console.print(
            f"note: the feature network {net.name!r} was trained on MNIST's digits; on "
            f"{dataset.name} its figures rank models of that data, not against MNIST's",
            markup=False,
            highlight=False,
        )
    sampler, steps = sampler_of(model)
    with progress_bar("sample", console, enabled=progress) as bar:
        task = bar.add_task("sample", total=n)
        drawn = draw_samples(
            model,
            n,
            batch_size=batch_size,
            seed=seed,
            sampler_name=sampler,
            on_batch=lambda done: bar.update(task, completed=done),
        )
    images, clipped = _clipped(drawn.images, dataset.kind)
    ref, values = _reference(dataset, n, seed=seed, network=net)
    figures = sample_quality(images, ref, bootstrap=BOOTSTRAP, seed=seed)
    return {
        **figures.to_dict(),
        "sampler": drawn.sampler,
        "sampler_steps": steps,
        "sampling_seconds": round(drawn.seconds, 3),
        "clipped": clipped,
        "seed": seed,
        "reference": {
            "split": "test",
            "examples": ref.n,
            "examples_sha256": examples_digest(dataset.test[: ref.n]),
        },
        "reference_values": values.to_dict(),
    }


def check_sample_quality(dataset: Any, options: dict[str, Any]) -> None:
    """Refuse, before anything is evaluated or sampled, data that ``options``'
    ``sample_quality`` samples cannot be scored against (:func:`check_readable`)."""
    if options.get("sample_quality"):
        check_readable(dataset, int(options["sample_quality"]))


def sample_quality_block(
    model: Any, dataset: Any, options: dict[str, Any], *, seed: int, err: Any
) -> dict[str, Any] | None:
    """``options['sample_quality']`` samples of ``model`` scored against the test split with
    the reference values (:func:`model_sample_quality`), a progress bar on ``err``;
    None when not asked for."""
    n = int(options.get("sample_quality") or 0)
    if not n:
        return None
    return model_sample_quality(
        model,
        dataset,
        n,
        seed=seed,
        batch_size=int(options.get("batch_size", 500)),
        console=err,
        progress=options.get("progress", True),
    )


def _number(value: Any, se: Any = None) -> str:
    """A figure (± its s.e., to the same places) to 3 significant digits, "—" where there
    is none."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    places = max(0, 2 - math.floor(math.log10(abs(value)))) if value else 3
    text = f"{value:.{places}f}"
    if isinstance(se, (int, float)) and math.isfinite(se):
        text += f" ± {se:.{places}f}"
    return text


def _table(value: Any) -> dict[str, Any]:
    """A block's sub-table, or an empty one where it is missing or no table."""
    return value if isinstance(value, dict) else {}


def _seconds(value: Any) -> str:
    """A duration to a tenth of a second, "—" where it is no finite number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return f"{value:.1f}" if ok else "—"


def _cells(block: dict[str, Any]) -> list[str]:
    """FLD ± s.e., precision, recall and classifier score of a block (or of its floor or
    ceiling) as text: shares to 3 places, the score to 2, the FLD to 3 digits."""

    def places(value: Any, n: int) -> str:
        return f"{value:.{n}f}" if isinstance(value, (int, float)) else "—"

    score = _table(block.get("classifier")).get("score")
    return [
        _number(block.get("fld"), block.get("fld_se")),
        places(block.get("precision"), 3),
        places(block.get("recall"), 3),
        places(score, 2),
    ]


@checked
def sample_quality_table(block: dict[str, Any], *, title: str = "sample quality") -> Table:
    """A :func:`model_sample_quality` block as a table: the model's FLD ± s.e., precision,
    recall and classifier score, with the floor and the ceiling beside them (a block read
    back from ``report.json``: a figure that is missing or not a number shows as "—")."""
    values = _table(block.get("reference_values"))
    columns = {
        "model": _cells(block),
        "floor": _cells(_table(values.get("floor"))),
        "ceiling": _cells(_table(values.get("ceiling"))),
    }
    table = Table(title=title)
    table.add_column("figure")
    for header in columns:
        table.add_column(header, justify="right")
    names = ("FLD ± s.e.", "precision", "recall", "classifier score")
    for i, name in enumerate(names):
        table.add_row(name, *(cells[i] for cells in columns.values()))
    sha = block.get("network_sha256") or ""
    table.caption = (
        f"{block.get('n_samples')} samples ({block.get('sampler')}; drawn in "
        f"{_seconds(block.get('sampling_seconds'))} s) against {block.get('n_reference')} test "
        f"images; {block.get('network')}"
        + (f" (sha256 {sha[:12]}…)" if sha else "")
        + f", k = {block.get('k')}, {block.get('bootstrap')} bootstrap resamplings; "
        f"metrics {_seconds(block.get('seconds'))} s. Floor: as many training images scored as "
        "samples; ceiling: independent pixels fitted to the training split"
    )
    return table
