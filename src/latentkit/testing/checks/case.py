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

from latentkit.arguments import check_count, check_seed, describe_value
from latentkit.chains import LatentModel
from latentkit.errors import InputError, UnknownModelError
from latentkit.registry import get_model_spec, load_model
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
    ``perturb_parameters(model, seed)``, in float64 on ``device``: a case's model, rebuilt.
    ``seed`` an int in [0, 2**32 - 1], ``config`` a dict of ``load_model``'s keywords."""
    check_seed(seed, "build_model: seed")
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        raise InputError(
            f"build_model: config must be a dict of load_model's keywords, got "
            f"{describe_value(config)}"
        )
    device = _device(device, "build_model")
    with seeded(seed):
        model = load_model(name, **config)
    perturb_parameters(model, seed)
    return given_seeded_condition(model.to(device=device, dtype=torch.float64), seed)


def given_seeded_condition(model: LatentModel, seed: int) -> LatentModel:
    """A conditional model given one condition drawn from ``seed`` (class ``seed % K``, or a
    seeded standard-normal vector), for every example of a case: the member of the family
    the checks then verify like any other latent model. An unconditional model as it is."""
    spec = model.condition_spec
    if spec is None:
        return model
    ref = model.reference()
    if spec.is_class:
        c = torch.tensor([seed % int(spec.num_classes)], device=ref.device)
    else:
        with seeded(seed + 1):
            c = torch.randn(1, *spec.shape, dtype=ref.dtype).to(ref.device)
    return model.given(c)


def _device(device: object, where: str) -> torch.device:
    """``device`` (a str or torch.device) as a torch.device, else an InputError."""
    if isinstance(device, (str, torch.device)):
        try:
            return torch.device(device)
        except (RuntimeError, ValueError):
            pass
    raise InputError(
        f"{where}: device must be a torch device (cpu, cuda), got {describe_value(device)}"
    )


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


MAX_CASE_BATCH = 1024
"""The largest ``max_batch`` of :func:`model_cases`: a case is small by design (4 examples
by default), so a check runs in milliseconds."""


def model_cases(
    name: str,
    *,
    device: str | torch.device = "cpu",
    configs: st.SearchStrategy[dict] | None = None,
    max_batch: int = 4,
) -> st.SearchStrategy[ModelCase]:
    """Cases for model ``name``: a config (from ``configs``, by default the plugin's
    ``test_configs``), a seed, a batch from the model (``model_data``), β ∈ [1, 10] and
    1 ≤ k ≤ 4, k ≤ k' ≤ 8. The arguments are checked here, before any case is drawn: an
    unknown model is an UnknownModelError, a bad device, strategy or ``max_batch`` (1 to
    :data:`MAX_CASE_BATCH`) an InputError."""
    if not isinstance(name, str):
        raise UnknownModelError(f"model name must be a str, got {describe_value(name)}")
    get_model_spec(name)
    _device(device, "model_cases")
    if configs is not None and not isinstance(configs, st.SearchStrategy):
        raise InputError(
            "model_cases: configs must be a Hypothesis strategy of config dicts or None, "
            f"got {describe_value(configs)}"
        )
    check_count(max_batch, "model_cases: max_batch", high=MAX_CASE_BATCH)
    return _model_cases(name, device=device, configs=configs, max_batch=max_batch)


@st.composite
def _model_cases(
    draw,
    name: str,
    *,
    device: str | torch.device,
    configs: st.SearchStrategy[dict] | None,
    max_batch: int,
) -> ModelCase:
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
