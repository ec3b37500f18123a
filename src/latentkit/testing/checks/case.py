"""The case a check runs on: a model built from a drawn config and seed, data, β and k.

:class:`ModelCase` prints as the Python call that rebuilds it, so a counterexample from a
failure report pastes back: ``ModelCase(name='vae', config={...}, seed=3, x=[[0.5]], ...)``.
"""

from __future__ import annotations

import attrs
import torch
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException
from torch import Tensor

from latentkit.chains import LatentModel
from latentkit.registry import load_model
from latentkit.testing.strategies import (
    model_configs,
    model_data,
    perturb_parameters,
    seeded,
    seeds,
)

__all__ = ["CaseError", "CheckFailure", "ModelCase", "NotApplicable", "build_model", "model_cases"]


class CheckFailure(AssertionError):
    """A property check found a violation; the message says which values, by how much."""


class CaseError(CheckFailure):
    """No case could be made: the model failed to build, or to give finite samples.

    ``drawn`` is what was drawn before it failed, as a call that rebuilds the model.
    """

    def __init__(self, message: str, drawn: str = ""):
        super().__init__(message)
        self.drawn = drawn


class NotApplicable(Exception):
    """The model does not admit this check (the message says why)."""


def build_model(
    name: str, config: dict, seed: int, *, device: str | torch.device = "cpu"
) -> LatentModel:
    """``load_model(name, **config)`` initialised under ``seed``, parameters perturbed by
    ``perturb_parameters(model, seed)``, in float64 on ``device``: a case's model, rebuilt."""
    with seeded(seed):
        model = load_model(name, **config)
    perturb_parameters(model, seed)
    return model.to(device=device, dtype=torch.float64)


def _as_data(value, device: str) -> Tensor:
    """A config's data as a float64 tensor on ``device``."""
    if isinstance(value, Tensor):
        return value.to(device=device, dtype=torch.float64)
    return torch.tensor(value, dtype=torch.float64, device=device)


@attrs.frozen(eq=False, repr=False)
class ModelCase:
    """One example for the checks; its repr is the call that rebuilds it.

    ``x`` is ``[b, *data_shape]``; ``x_swap`` one more example ``[1, *data_shape]`` that the
    batch-independence check puts at position ``swap_index % b``; ``seed`` built the model
    and seeds every draw a check makes. ``x`` and ``x_swap`` may be given as nested lists
    (they become float64 tensors on ``device``); ``model`` defaults to
    ``build_model(name, config, seed, device=device)``.
    """

    name: str
    config: dict
    seed: int
    x: Tensor
    x_swap: Tensor
    swap_index: int
    beta: float
    k: int
    k_max: int
    device: str = attrs.field(default="cpu", converter=str)
    model: LatentModel = attrs.field(
        default=attrs.Factory(
            lambda self: build_model(self.name, self.config, self.seed, device=self.device),
            takes_self=True,
        )
    )

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "x", _as_data(self.x, self.device))
        object.__setattr__(self, "x_swap", _as_data(self.x_swap, self.device))

    def draws(self, stream: int = 0):
        """Context in which torch's draws come from this case's seed (``stream`` separates
        independent sets of draws within one check)."""
        return seeded(self.seed + 7919 * stream, self.device)

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # how Hypothesis prints a case
        printer.text(repr(self))

    def __repr__(self) -> str:
        return (
            f"ModelCase(name={self.name!r}, config={self.config!r}, seed={self.seed}, "
            f"x={self.x.tolist()!r}, x_swap={self.x_swap.tolist()!r}, "
            f"swap_index={self.swap_index}, beta={self.beta!r}, k={self.k}, "
            f"k_max={self.k_max}, device={self.device!r})"
        )


@st.composite
def model_cases(
    draw,
    name: str,
    *,
    device: str | torch.device = "cpu",
    configs: st.SearchStrategy[dict] | None = None,
    max_batch: int = 4,
) -> ModelCase:
    """Cases for model ``name``: a config (from ``configs``, by default the plugin's
    ``test_configs``), a seed, a batch from the model (``model_data``), β ∈ [1, 10] and
    1 ≤ k ≤ 4, k ≤ k' ≤ 8."""
    config = draw(configs if configs is not None else model_configs(name))
    seed = draw(seeds())
    try:  # Hypothesis prints no example when drawing it fails: say what was drawn
        model = build_model(name, config, seed, device=device)
        data = model_data(model, max_batch=max_batch)
        x = draw(data)
        x_swap = draw(data)[:1]
    except HypothesisException:
        raise
    except Exception as exc:
        raise CaseError(
            f"building model {name!r} or sampling data from it failed for "
            f"config={config!r}, seed={seed}: {type(exc).__name__}: {exc}",
            drawn=f"latentkit.testing.build_model({name!r}, {config!r}, {seed})",
        ) from exc
    k = draw(st.integers(1, 4))
    return ModelCase(
        name=name,
        config=config,
        seed=seed,
        x=x,
        x_swap=x_swap,
        swap_index=draw(st.integers(0, max_batch)),
        beta=draw(st.floats(1.0, 10.0)),
        k=k,
        k_max=draw(st.integers(k, 8)),
        device=str(torch.device(device)),
        model=model,
    )
