"""The marginal likelihood of a class-conditional model: log p(x) = log Σ_c p(c) p(x | c).

For a finite label set the condition is summed out exactly: each class's log p(x | c)
(exact where the chain is tractable, else IWAE_k) plus log p(c), log-sum-exp'd. With IWAE the
result is still a lower bound in expectation: each class's (1/k) Σ_i w_i is an unbiased
estimate of p(x | c), so Σ_c p(c) · (1/k) Σ_i w_i is an unbiased estimate of p(x) and, by
Jensen's inequality, its log is below log p(x) on average (and rises with k).

p(c) is the generative chain's ``label_log_prior()`` when it defines one (a model with a
learned or fixed p(y), such as M2's), else uniform over the K classes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from latentkit.arguments import check_count, check_flag, check_model
from latentkit.bounds import iwae
from latentkit.chains import LatentModel
from latentkit.errors import InputError
from latentkit.oracles import exact_log_prob
from latentkit.validation import check_model_input

__all__ = ["class_log_prior", "class_log_probs", "marginal_log_prob"]


def class_log_prior(model: LatentModel) -> Tensor:
    """log p(c) for c = 0..K−1, ``[K]``: the chain's ``label_log_prior()`` or uniform."""
    spec = model.condition_spec
    if spec is None or not spec.is_class:
        name = model.name or type(model.generative).__name__
        raise InputError(f"{name} is not conditional on class labels: there is no p(c) to sum")
    ref = model.reference()
    own = getattr(model.generative, "label_log_prior", None)
    if own is not None:
        return own()
    k = int(spec.num_classes)
    return torch.full((k,), -math.log(k), dtype=ref.dtype, device=ref.device)


def class_log_probs(
    model: LatentModel, x: Tensor, *, k: int = 100, exact: bool = False, validate: bool = True
) -> Tensor:
    """log p(c) + log p(x | c) for every class c, ``[batch, K]``: exact, or IWAE_k (k draws
    per example and class). Softmax over the last axis is the model's generative classifier
    p(c | x) (exactly so when ``exact``)."""
    check_model(model)
    check_count(k, "k")
    if check_flag(validate, "validate"):
        check_model_input(model, x, name="x")
    prior = class_log_prior(model)
    columns = []
    for c in range(prior.shape[0]):
        if check_flag(exact, "exact"):
            columns.append(exact_log_prob(model, x, condition=c, validate=False))
        else:
            columns.append(iwae(model, x, k, condition=c, validate=False))
    return torch.stack(columns, dim=-1) + prior


def marginal_log_prob(
    model: LatentModel, x: Tensor, *, k: int = 100, exact: bool = False, validate: bool = True
) -> Tensor:
    """log p(x) = log Σ_c p(c) p(x | c), ``[batch]``: exact when ``exact`` (the chain must be
    tractable given each c), else the IWAE_k estimate (a lower bound in expectation; see the
    module's documentation)."""
    return torch.logsumexp(class_log_probs(model, x, k=k, exact=exact, validate=validate), -1)
