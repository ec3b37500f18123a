"""bench/composed_prior.py's paired column: a run's −bound less the first run's, on the same
images, ± the standard error of the per-image differences (not of either run's figure)."""

from __future__ import annotations

import math

import pytest
import torch

bench = pytest.importorskip("bench.composed_prior")


def test_the_paired_column_is_this_runs_nll_less_the_firsts():
    g = torch.Generator().manual_seed(0)
    first = -100.0 + 10.0 * torch.randn(400, generator=g, dtype=torch.float64)
    better = first + 0.5 + 0.1 * torch.randn(400, generator=g, dtype=torch.float64)
    text = bench.paired(better, first)
    mean, se = (float(part) for part in text.split(" ± "))
    d = (-better) - (-first)  # −bound of this run less the first's
    assert mean == pytest.approx(float(d.mean()), abs=0.005)
    assert mean < 0  # a higher bound is a lower −bound
    assert se == pytest.approx(float(d.std()) / math.sqrt(400), abs=0.005)
    assert se < 0.1  # the pairing removes the images' spread (10 nats each)
