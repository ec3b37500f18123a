"""What a report adds for a model conditional on class labels: the marginal NLL
−log p(x) = −log Σ_c p(c) p(x | c) and the classification error of the model's classifier.

The classifier is the posterior chain's own ``classify(x)`` (a distribution over classes,
e.g. M2's q(y | x)) when it has one, else the generative classifier argmax_c p(c) p(x | c)
from the same per-class bounds as the marginal (``latentkit.class_log_probs``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from rich.table import Table
from torch import Tensor

from latentkit.estimates import Estimate
from latentkit.evaluation import default_iwae_k, seeded_eval
from latentkit.marginals import class_log_probs

__all__ = ["MARGINAL_EXAMPLES", "conditional_block", "conditional_table"]

MARGINAL_EXAMPLES = 1000
"""Test examples the marginal NLL uses by default: it costs K IWAE evaluations per example."""


@torch.no_grad()
def conditional_block(
    model: Any,
    data: Tensor,
    labels: Tensor | None,
    options: dict[str, Any],
    *,
    seed: int,
    batch_size: int = 250,
) -> dict[str, Any] | None:
    """The marginal NLL (IWAE_k per class: the evaluation's ``iwae_k``; when unset, the
    evaluation's own default, 100 for a chain of at most 16 layers; when 0 or unset beyond
    that, k = 1, one importance weight per class, still a lower bound in expectation, where
    k = 100 would walk a diffusion's chain 100 times per class) and the classification error
    on the first ``examples`` of ``data`` (the evaluation's ``examples``, at most
    :data:`MARGINAL_EXAMPLES`; the error of the model's own classifier q(y | x), cheap, on
    every evaluated example: ``classification_examples``), as report.json's ``conditional``
    block; ``None`` for a model
    not conditional on class labels."""
    spec = model.condition_spec
    if spec is None or not spec.is_class or labels is None:
        return None
    n = min(options.get("examples") or MARGINAL_EXAMPLES, MARGINAL_EXAMPLES, data.shape[0])
    ref = model.reference()
    given = options.get("iwae_k")
    k = max(1, default_iwae_k(model) if given is None else int(given))
    marginals, wrong = [], []
    own = getattr(model.posterior, "classify", None)
    with seeded_eval(model, seed):
        for i in range(0, n, batch_size):
            x = data[i : min(i + batch_size, n)].to(ref.device, ref.dtype)
            y = labels[i : min(i + batch_size, n)].to(ref.device)
            scores = class_log_probs(model, x, k=k)
            marginals.append(torch.logsumexp(scores, -1).double().cpu())
            guess = own(x).probs.argmax(-1) if own is not None else scores.argmax(-1)
            wrong.append((guess != y).double().cpu())
        m = n
        if own is not None:  # its own classifier is cheap: every evaluated example
            m = min(options.get("examples") or data.shape[0], data.shape[0])
            wrong += _misses(own, data[n:m], labels[n:m], batch_size, ref)
    nll = Estimate.of(-torch.cat(marginals))
    error = float(torch.cat(wrong).mean())
    return {
        "examples": n,
        "iwae_k": k,
        "marginal_nll": nll.mean,
        "marginal_nll_stderr": nll.stderr,
        "classifier": "q(y|x)" if own is not None else "argmax_c p(c) p(x|c)",
        "classification_examples": m,
        "classification_error": error,
        "classification_error_stderr": math.sqrt(error * (1 - error) / m) if m > 1 else None,
    }


def _misses(classify: Any, data: Tensor, labels: Tensor, batch_size: int, ref: Tensor) -> list:
    """Whether ``classify``'s most probable class misses each label, batch by batch."""
    out = []
    for i in range(0, data.shape[0], batch_size):
        x = data[i : i + batch_size].to(ref.device, ref.dtype)
        y = labels[i : i + batch_size].to(ref.device)
        out.append((classify(x).probs.argmax(-1) != y).double().cpu())
    return out


def conditional_table(block: dict[str, Any]) -> Table:
    """The block in a table for the terminal."""
    table = Table(title=f"conditional model, first {block['examples']} test examples")
    table.add_column("figure")
    table.add_column("value", justify="right")
    se = block["marginal_nll_stderr"]
    se_words = "" if se is None or not math.isfinite(se) else f" ± {se:.2f}"
    table.add_row(
        f"−log p(x) = −log Σ_c p(c) p(x|c) (IWAE_{block['iwae_k']} per class)",
        f"{block['marginal_nll']:.2f}{se_words}",
    )
    table.add_row(
        f"classification error ({block['classifier']}, {block['classification_examples']:,} "
        "examples)",
        f"{100 * block['classification_error']:.2f}%",
    )
    return table
