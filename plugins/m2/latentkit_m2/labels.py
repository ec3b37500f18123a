"""The labels of a semi-supervised training set: a few per class kept, the rest missing."""

from __future__ import annotations

import torch
from torch import Tensor

import latentkit as lk
from latentkit.arguments import check_count, check_seed, describe_value

__all__ = ["mask_labels"]


def mask_labels(
    labels: Tensor, per_class: int, seed: int, *, num_classes: int | None = None
) -> Tensor:
    """``labels`` (``[N]`` integers 0..K−1) with ``per_class`` of each class kept, drawn
    uniformly without replacement by ``seed``, and every other one ``lk.MISSING_LABEL``:
    the training labels of a semi-supervised run (``lk.Trainer(..., train_labels=...)``).

    K is ``num_classes``, else the largest label + 1. An ``InputError`` when a class of
    0..K−1 has fewer than ``per_class`` examples (none included: it would have no label).
    """
    where = "mask_labels"
    if not isinstance(labels, Tensor) or labels.ndim != 1:
        raise lk.InputError(f"{where}: labels must be a 1-d tensor, got {describe_value(labels)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise lk.InputError(f"{where}: labels must be integers 0..K−1, got dtype {labels.dtype}")
    check_count(per_class, f"{where}: per_class")
    check_seed(seed, f"{where}: seed")
    if not len(labels):
        raise lk.InputError(f"{where}: labels is empty")
    labels = labels.long().cpu()
    if int(labels.min()) < 0:
        raise lk.InputError(f"{where}: labels must be 0..K−1 (all known), got {int(labels.min())}")
    k = int(labels.max()) + 1
    if num_classes is not None:
        check_count(num_classes, f"{where}: num_classes", low=2)
        if k > num_classes:
            raise lk.InputError(f"{where}: label {k - 1} is outside 0..{num_classes - 1}")
        k = num_classes
    counts = torch.bincount(labels, minlength=k)
    short = [c for c in range(k) if counts[c] < per_class]
    if short:
        c = short[0]
        raise lk.InputError(
            f"{where}: class {c} has {int(counts[c])} examples, fewer than per_class="
            f"{per_class} ({len(short)} such classes); lower per_class"
        )
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(k):
        rows = torch.nonzero(labels == c).squeeze(1)
        keep.append(rows[torch.randperm(len(rows), generator=g)[:per_class]])
    out = torch.full_like(labels, lk.MISSING_LABEL)
    kept = torch.cat(keep)
    out[kept] = labels[kept]
    return out
