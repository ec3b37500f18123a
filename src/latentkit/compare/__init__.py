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

The package: :mod:`latentkit.compare.runs` reads one run folder,
:mod:`latentkit.compare.comparison` compares runs, :mod:`latentkit.compare.table` shows the
comparison; every public name is importable from ``latentkit.compare``.
"""

# ``NAME as NAME``: the constants, importable from here as before but not in __all__.
from latentkit.compare.comparison import compare_runs
from latentkit.compare.runs import MAX_PER_EXAMPLE_BYTES as MAX_PER_EXAMPLE_BYTES
from latentkit.compare.runs import MAX_REPORT_BYTES as MAX_REPORT_BYTES
from latentkit.compare.runs import PROTOCOL_FIELDS as PROTOCOL_FIELDS
from latentkit.compare.runs import REPORT_FILE as REPORT_FILE
from latentkit.compare.runs import (
    Figure,
    ProtocolMismatchError,
    RunFolderError,
    RunRecord,
    load_run,
)
from latentkit.compare.table import Comparison, Row

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
