"""The trainer's data: its splits, each checked once, and the batch of every step.

A :class:`DataFeed` holds the training examples (placed on the accelerator when small)
and the held-out splits, each checked once (:func:`latentkit.validation.check_dataset`),
and the :class:`~latentkit.training.runtime.DataOrder` that fixes step s's global batch
from (seed, s) alone, so no loader state is needed to resume.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from latentkit.chains import LatentModel
from latentkit.conditions import check_condition
from latentkit.errors import InputError
from latentkit.training.runtime import DataOrder, Runtime
from latentkit.validation import check_dataset

__all__ = ["DataFeed"]

PLACE_BYTES = 2**30
"""Training sets smaller than this live on the accelerator, so a batch is one index."""


class DataFeed:
    """The splits a run uses and the batches of its steps.

    Args:
        model: the model the data are for (their shape and likelihood support).
        runtime: where the batches go (device, dtype) and this rank's share of each.
        train_data: ``[N, *model.data_shape]`` floats; with ``dynamic_binarization``, pixel
            probabilities in [0, 1] drawn afresh as bits at each use
            (:class:`latentkit.data.DynamicBinarizer`, a pure function of (seed, step,
            position in the global batch)).
        batch_size: the global batch (over all ranks).
        seed: seeds the data order (and the binarization).
        test_data, validation_data: held-out splits for the periodic evaluations (the
            validation split, when given, is the one evaluated).
        train_labels, test_labels, validation_labels: a conditional model's conditions,
            one per example of each split (``latentkit.conditions``); class labels may be
            ``MISSING_LABEL`` in the training split when ``missing_labels`` (a
            semi-supervised objective), never in a held-out one.
    """

    def __init__(
        self,
        model: LatentModel,
        runtime: Runtime,
        train_data: Tensor,
        *,
        batch_size: int,
        seed: int,
        test_data: Tensor | None = None,
        validation_data: Tensor | None = None,
        dynamic_binarization: bool = False,
        train_labels: Tensor | None = None,
        test_labels: Tensor | None = None,
        validation_labels: Tensor | None = None,
        missing_labels: bool = False,
    ):
        self.runtime, self.batch_size = runtime, batch_size
        self.binarizer = None
        if dynamic_binarization:
            from latentkit.data import DynamicBinarizer

            self.binarizer = DynamicBinarizer(train_data.to(runtime.dtype), seed=seed)
            self.train_data = self.binarizer.probs
        else:
            train = check_dataset(model, train_data, name="train_data", dtype=runtime.dtype)
            self.train_data = self._place(train)
        self.test_data = self._held_out(model, test_data, "test_data")
        self.validation_data = self._held_out(model, validation_data, "validation_data")
        self.order = DataOrder(train_data.shape[0], batch_size, seed)
        self.train_labels = self._labels(model, train_labels, train_data, "train", missing_labels)
        self.test_labels = self._labels(model, test_labels, test_data, "test", False)
        self.validation_labels = self._labels(
            model, validation_labels, validation_data, "validation", False
        )

    def _labels(
        self, model: LatentModel, labels: Any, data: Any, split: str, missing: bool
    ) -> Tensor | None:
        """A split's conditions, checked once against the model's condition (``None`` for an
        unconditional model, which refuses labels it cannot use)."""
        spec = model.condition_spec
        if spec is None:
            if labels is not None:
                raise InputError(f"{split}_labels given, but the model takes no condition")
            return None
        if data is None:
            return None
        if labels is None:
            raise InputError(
                f"the model is conditional on {spec.describe()}: the {split} split needs its "
                "labels (a data set with labels, or pass them)"
            )
        ref = model.reference()
        like = torch.empty(0, dtype=self.runtime.dtype)
        labels = labels.cpu() if isinstance(labels, Tensor) else labels
        c = check_condition(
            spec, labels, data.shape[0], like=like, name=f"{split}_labels", allow_missing=missing
        )
        device = self.runtime.device if self.train_data.device == ref.device else c.device
        return c.to(device if split == "train" else c.device)

    def labels(self, step: int) -> Tensor | None:
        """The conditions of :meth:`batch` ``(step)``'s examples (``None``: unconditional)."""
        if self.train_labels is None:
            return None
        idx = self.order.indices(step)[self.runtime.share(self.batch_size)]
        labels = self.train_labels[idx.to(self.train_labels.device)]
        return labels.to(self.runtime.device, non_blocking=True)

    def _held_out(self, model: LatentModel, data: Any, name: str) -> Tensor | None:
        return (
            None
            if data is None
            else check_dataset(model, data, name=name, dtype=self.runtime.dtype)
        )

    def _place(self, data: Tensor) -> Tensor:
        data = data.to(dtype=self.runtime.dtype)
        device = self.runtime.device
        if device.type == "cuda" and data.numel() * data.element_size() < PLACE_BYTES:
            data = data.to(device)
        return data

    def batch(self, step: int) -> Tensor:
        """This process's share of step ``step``'s global batch, on the training device."""
        idx = self.order.indices(step)
        rows = self.runtime.share(self.batch_size)
        device, dtype = self.runtime.device, self.runtime.dtype
        if self.binarizer is not None:  # bits of the global batch, so ranks draw apart
            return self.binarizer.batch(idx, step)[rows].to(device, dtype=dtype)
        idx = idx[rows]
        return self.train_data[idx.to(self.train_data.device)].to(device, non_blocking=True)

    @property
    def eval_split(self) -> tuple[Tensor | None, str]:
        """The split the periodic evaluations run on, and its name: the validation split
        when there is one (the test split is then left alone), else the test split."""
        if self.validation_data is not None:
            return self.validation_data, "validation"
        return self.test_data, "test"

    @property
    def eval_labels(self) -> Tensor | None:
        """The conditions of :attr:`eval_split`'s examples (``None``: unconditional)."""
        return self.validation_labels if self.validation_data is not None else self.test_labels

    def record(self, step: int) -> dict[str, int]:
        """The data order at ``step``, as a checkpoint records it."""
        order = self.order
        return {
            "seed": order.seed,
            "num_examples": order.num_examples,
            "batch_size": order.batch_size,
            **order.position(step),
        }
