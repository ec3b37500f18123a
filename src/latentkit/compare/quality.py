"""A run's sample quality in a comparison: report.json's ``sample_quality`` block (written by
``--sample-quality N``; docs/quality.md) read and checked into :class:`SampleFigures`, and
the protocol two runs' figures must share to be compared.

The FLD is biased upwards by O(1/N) and its value depends on the feature network, so two
runs' figures compare only when they were measured alike: the same numbers of samples and
reference images, pixel kind, k, feature weights (sha256) and reference images (their
digest): :data:`QUALITY_FIELDS`. The difference of two runs' FLDs has the standard error
√(se₁² + se₂²): conservative, since both share the reference images, whose resampling is
in each bootstrap s.e.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

from latentkit.estimates import Estimate

__all__ = [
    "QUALITY_FIELDS",
    "QUALITY_FIGURES",
    "SampleFigures",
    "fld_difference",
    "quality_differences",
    "read_sample_quality",
]

QUALITY_FIELDS = ("samples", "reference images", "kind", "k", "feature network")
"""What two runs' sample-quality figures must share to be compared."""

QUALITY_FIGURES = ("fld",)
"""``compare --figure`` names that sort the runs by a sample-quality figure (lowest first)
instead of by a likelihood bound; the bound shown is then the ``best``."""


def _number(value: Any) -> float | None:
    """A finite real number as a float (not a bool), else None."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@attrs.frozen
class SampleFigures:
    """A run's sample-quality figures against the test split (report.json's block).

    Attributes:
        fld: the FLD and its bootstrap s.e. (nan where not recorded).
        precision, recall, score: k-NN precision and recall, the classifier score.
        floor, ceiling: the FLD of the reference values (training images as samples;
            independent pixels), None where not recorded.
        sampler: how the samples were drawn (a diffusion's steps included).
        protocol: the :data:`QUALITY_FIELDS`, as text.
    """

    fld: Estimate
    precision: float | None
    recall: float | None
    score: float | None
    floor: float | None
    ceiling: float | None
    sampler: str
    protocol: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "fld": self.fld.to_json(),
            "precision": self.precision,
            "recall": self.recall,
            "classifier_score": self.score,
            "floor_fld": self.floor,
            "ceiling_fld": self.ceiling,
            "sampler": self.sampler,
            "protocol": self.protocol,
        }


def read_sample_quality(report: dict[str, Any]) -> SampleFigures | None:
    """The ``sample_quality`` block of a report as :class:`SampleFigures`; None where there
    is none or it holds no FLD (a report written without ``--sample-quality``)."""
    block = _dict(report.get("sample_quality"))
    fld = _number(block.get("fld"))
    if fld is None:
        return None
    se = _number(block.get("fld_se"))
    values = _dict(block.get("reference_values"))
    sha = block.get("network_sha256")
    reference = _dict(block.get("reference")).get("examples_sha256")
    protocol = {
        "samples": str(block.get("n_samples")),
        "reference images": f"{block.get('n_reference')}"
        + (f" (sha256 {reference[:12]})" if isinstance(reference, str) else ""),
        "kind": str(block.get("kind")),
        "k": str(block.get("k")),
        "feature network": f"{block.get('network')}"
        + (f" (sha256 {sha[:12]})" if isinstance(sha, str) else ""),
    }
    return SampleFigures(
        fld=Estimate(fld, math.nan if se is None else se),
        precision=_number(block.get("precision")),
        recall=_number(block.get("recall")),
        score=_number(_dict(block.get("classifier")).get("score")),
        floor=_number(_dict(values.get("floor")).get("fld")),
        ceiling=_number(_dict(values.get("ceiling")).get("fld")),
        sampler=str(block.get("sampler", "?")),
        protocol=protocol,
    )


def quality_differences(runs: Iterable[Any]) -> dict[str, dict[str, str]]:
    """Each :data:`QUALITY_FIELDS` entry on which the runs with sample-quality figures
    disagree, with every such run's value (runs without figures are left out)."""
    measured = [r for r in runs if r.sample_quality is not None]
    out: dict[str, dict[str, str]] = {}
    for field in QUALITY_FIELDS:
        values = {r.name: r.sample_quality.protocol[field] for r in measured}
        if len(set(values.values())) > 1:
            out[field] = values
    return out


def fld_difference(run: SampleFigures | None, ref: SampleFigures | None) -> Estimate | None:
    """FLD(run) − FLD(reference) with the s.e. √(se₁² + se₂²), where both runs have figures
    of one protocol; else None."""
    if run is None or ref is None or run.protocol != ref.protocol:
        return None
    return Estimate(run.fld.mean - ref.fld.mean, math.hypot(run.fld.stderr, ref.fld.stderr))
