"""M2's bounds and its semi-supervised training objective (Kingma et al. 2014, §3.1.2).

With ELBO(x | y) the labelled model's bound (``lk.elbo(model, x, condition=y)``) and
b_y(x) = ELBO(x | y) + log p(y) (so −b_y is the paper's L(x, y), its eq. 6):

* labelled example:    log p(x, y) ≥ b_y(x)
* unlabelled example:  log p(x) ≥ U(x) = Σ_y q(y | x) b_y(x) + H[q(y | x)]   (eq. 7)
                                       = Σ_y q(y | x) (b_y(x) − log q(y | x))

U(x) ≤ log Σ_y exp b_y(x) for any q(y | x), with equality at q(y | x) ∝ exp b_y(x); and
U(x) = log p(x) when q(y | x) = p(y | x) and every q(z | x, y) is exact.
:func:`class_bounds` computes every b_y(x) in one batched call over batch × K rows.

The training loss (the ``m2`` objective), per example, with w = α / N_l (eq. 9: the
paper's J^α = Σ_labelled L + Σ_unlabelled U + α·E_labelled[−log q(y|x)], its last term
spread over the N_l labelled examples, so the loss summed over the training set is J^α):

* labelled (y ≥ 0):           −b_y(x) − w · log q(y | x)
* unlabelled (y = −1):        −U(x)
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

import latentkit as lk
from latentkit.arguments import check_choice, check_count, check_flag, check_model
from latentkit.conditions import base_chain, check_condition
from latentkit.config import int_at_least, one_of, ruled
from latentkit.validation import check_model_input
from latentkit_m2.model import M2Config

__all__ = [
    "M2Objective",
    "M2ObjectiveConfig",
    "class_bounds",
    "classification_error",
    "enumerated",
    "m2_loss",
    "unlabelled_bound",
    "unlabelled_elbo",
]


def not_m2(model: Any) -> str | None:
    """``None`` for a model with M2's parts (a classifier ``posterior.classify``, class
    labels as the condition), else what it lacks."""
    spec = getattr(model, "condition_spec", None)
    if spec is None or not spec.is_class:
        return "it is not conditional on class labels (M2's y)"
    if not callable(getattr(model.posterior, "class_logits", None)):
        return "its posterior chain has no classifier q(y | x) (posterior.class_logits)"
    return None


def _check_m2(model: Any, where: str) -> lk.LatentModel:
    check_model(model, where)
    reason = not_m2(model)
    if reason is not None:
        raise lk.InputError(f"{where}: the model is not an M2 model: {reason}")
    return model


def enumerated(model: lk.LatentModel) -> lk.LatentModel:
    """``model``'s chains given the K labels 0..K−1 (views: the same parameters), whether or
    not ``model`` is bound already (the trainer hands the objective a bound view). The
    engine tiles the K conditions over a batch of n·K rows, row b·K + k given label k: the
    batch is x repeated "b ... -> (b k) ...". Made once per model by :class:`M2Objective`
    (a module made inside a loss is what ``torch.compile`` cannot trace)."""
    k = _check_m2(model, "enumerated").condition_spec.num_classes
    ys = torch.arange(k, device=model.reference().device)
    return lk.LatentModel(model.generative.given(ys), model.posterior.given(ys))


def class_bounds(
    model: lk.LatentModel,
    x: Tensor,
    *,
    estimator: str = "auto",
    num_samples: int = 1,
    member: lk.LatentModel | None = None,
) -> Tensor:
    """b_y(x) = ELBO(x | y) + log p(y) for every y, ``[batch, K]``, from one batched call
    of the engine over batch × K rows (each x repeated K times in a row, y = 0..K−1 along
    them). ``member``: ``enumerated(model)``, when the caller keeps it."""
    k, n = model.condition_spec.num_classes, x.shape[0]
    member = enumerated(model) if member is None else member
    xs = x.repeat_interleave(k, dim=0)  # "b ... -> (b k) ..."
    bound = lk.elbo(member, xs, estimator=estimator, num_samples=num_samples, validate=False)
    log_py = model.generative.label_log_prior().to(bound.total.dtype)
    return bound.total.unflatten(0, (n, k)) + log_py  # "(b k) -> b k"


def unlabelled_bound(class_log_q: Tensor, bounds: Tensor) -> Tensor:
    """U = Σ_y q(y|x) (b_y − log q(y|x)) = E_q[b_y] + H[q], ``[batch]``, from the
    classifier's log-probabilities and the class bounds (both ``[batch, K]``)."""
    return (class_log_q.exp() * (bounds - class_log_q)).sum(-1)


def m2_loss(
    model: lk.LatentModel,
    x: Tensor,
    labels: Tensor,
    weight: float,
    *,
    estimator: str = "auto",
    member: lk.LatentModel | None = None,
) -> Tensor:
    """The per-example loss ``[batch]`` (module docstring): −b_y − w·log q(y|x) where the
    label is known, −U(x) where it is ``lk.MISSING_LABEL``. Every row is enumerated over
    the K labels (one call of batch × K rows); a labelled row reads its own column.
    ``member``: ``enumerated(model)``, when the caller keeps it."""
    bounds = class_bounds(model, x, estimator=estimator, member=member)
    log_q = model.posterior.class_logits(x).log_softmax(-1)
    known = labels >= 0
    y = labels.clamp_min(0).unsqueeze(-1)
    labelled = -(bounds.gather(-1, y) + weight * log_q.gather(-1, y)).squeeze(-1)
    return torch.where(known, labelled, -unlabelled_bound(log_q, bounds))


def unlabelled_elbo(
    model: lk.LatentModel,
    x: Tensor,
    *,
    num_samples: int = 1,
    estimator: str = "auto",
    validate: bool = True,
) -> Tensor:
    """U(x) ≤ log p(x), ``[batch]``: the bound on an unlabelled example with y summed out
    by enumeration (module docstring); each ELBO(x | y) averaged over ``num_samples``
    draws of z (an unbiased estimate of U(x) whatever ``num_samples``)."""
    where = "unlabelled_elbo"
    _check_m2(model, where)
    check_count(num_samples, f"{where}: num_samples")
    check_choice(estimator, f"{where}: estimator", ("auto", *lk.list_estimators()))
    if check_flag(validate, f"{where}: validate"):
        check_model_input(model, x, name="x")
    bounds = class_bounds(model, x, estimator=estimator, num_samples=num_samples)
    return unlabelled_bound(model.posterior.class_logits(x).log_softmax(-1), bounds)


@torch.no_grad()
def classification_error(model: lk.LatentModel, x: Tensor, labels: Tensor) -> float:
    """The share of examples whose argmax_y q(y | x) is not their label (in [0, 1]):
    ``x`` ``[batch, *data_shape]``, ``labels`` ``[batch]`` integers 0..K−1."""
    where = "classification_error"
    _check_m2(model, where)
    check_model_input(model, x, name=f"{where}: x")
    y = check_condition(model.condition_spec, labels, x.shape[0], like=x, name=f"{where}: labels")
    wrong = sum(
        int((model.posterior.class_logits(xs).argmax(-1) != ys).sum())
        for xs, ys in zip(x.split(1024), y.split(1024), strict=True)
    )
    return wrong / len(y)


@ruled("finite float ≥ 0 or None")
def _optional_weight(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e300:
        raise lk.ConfigError(f"{attribute.name!r} must be a finite number ≥ 0, got {value!r}")


@attrs.frozen(kw_only=True)
class M2ObjectiveConfig:
    """Options of the ``m2`` objective (formulas: ``latentkit_m2.objective``).

    Attributes:
        alpha: the paper's α (``None``: the model's own, from its ``objective_choice``,
            else 0.1 × 50,000).
        labelled: N_l, the labelled training examples: each carries −(α / N_l)·log q(y|x)
            (``None``: the model's own, else 100).
        estimator: the engine's estimator of each ELBO(x | y) (``auto``: the best the
            chains allow).
    """

    alpha: float | None = attrs.field(default=None, validator=_optional_weight)
    labelled: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(int_at_least(1))
    )
    estimator: str = attrs.field(default="auto", validator=one_of("auto", *lk.list_estimators()))


class M2Objective(lk.Objective):
    """−(the paper's J^α per example) (module docstring). Reads the labels from the bound
    view (``model.condition``), where ``lk.MISSING_LABEL`` marks an unlabelled example."""

    name = "m2"
    missing_labels = True

    def __init__(self, config: M2ObjectiveConfig, model: lk.LatentModel):
        super().__init__(config, model)
        own = model.objective_choice.options if model.objective_choice.name == "m2" else {}
        default = M2Config()
        alpha = own.get("alpha", default.alpha) if config.alpha is None else config.alpha
        labelled = (
            own.get("labelled", default.labelled) if config.labelled is None else config.labelled
        )
        self.weight = float(alpha) / int(labelled)
        """w = α / N_l, the weight of −log q(y | x) in a labelled example's loss."""
        self._member = enumerated(model)
        self._chains = (base_chain(model.generative), base_chain(model.posterior))

    def _enumerated(self, model: lk.LatentModel) -> lk.LatentModel:
        """The kept ``enumerated`` view when ``model`` is a view of the chains it was made
        from (made again, and kept, after the model moved to another device), else a new
        one (another model handed to this objective: an EMA copy)."""
        chains = (base_chain(model.generative), base_chain(model.posterior))
        if chains[0] is not self._chains[0] or chains[1] is not self._chains[1]:
            return enumerated(model)
        if self._member.condition.device != model.reference().device:  # the model was moved
            self._member = enumerated(model)
        return self._member

    @classmethod
    def supports(cls, model: lk.LatentModel) -> str | None:
        return not_m2(model)

    def forward(self, model: lk.LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
        labels = model.condition
        if labels is None:
            raise lk.InputError(
                "the m2 objective reads the labels from the model's bound condition: pass "
                "model.given(labels, allow_missing=True), lk.MISSING_LABEL where unlabelled "
                "(the trainer does so with train_labels)"
            )
        member = self._enumerated(model)
        return m2_loss(
            model, x, labels, self.weight, estimator=self.config.estimator, member=member
        )
