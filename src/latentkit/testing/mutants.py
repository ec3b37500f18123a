"""Deliberately broken models: the kit's checks are tested on them, and the table in
``docs/checks.md`` ("fault → the check that catches it → its power") is generated from them.

:data:`MUTANTS` is the catalogue of faults, each one thing broken in a correct model: a
density off by a constant or by a function of x or z, a sign flip, draws that do not follow
``log_prob``, a mixture without its normaliser, a wrong closed-form KL, a statistic across
the batch, a training objective with a wrong β; :data:`CONTROLS` are the same wrappers with
nothing broken. A fault names no model: a plugin carries the faults that fit its model
(``ModelSpec.mutants``, usually :func:`on_model` with configs on which the exact oracle
applies, so that it describes the *correct* model, as an oracle for the true model would).
:func:`registered` registers each fault on the installed model that carries it, as a model
named ``mutant-KEY``, for the length of a ``with`` block;
:mod:`latentkit.testing.mutation_table` measures which check catches each. The wrappers are
in :mod:`latentkit.testing.mutated`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
from torch.distributions import Distribution

from latentkit.chains import LatentModel, ObjectiveChoice
from latentkit.hookspecs import hookimpl
from latentkit.registry import (
    ModelSpec,
    get_model_spec,
    model_specs,
    register_plugin,
    unregister_plugin,
)
from latentkit.testing.mutated import (
    ForgetfulNormal,
    Mutated,
    MutatedGenerative,
    MutatedPosterior,
    TwoBumps,
    constant_offset,
    forgetful,
    mutate_p,
    mutate_q,
    sum_event,
)

__all__ = [
    "CONTROLS",
    "MUTANTS",
    "ForgetfulNormal",
    "Mutant",
    "Mutated",
    "MutatedGenerative",
    "MutatedPosterior",
    "TwoBumps",
    "carried",
    "on_model",
    "registered",
]

# The old private names of the builders, which tests outside the kit used.
_offset, _q, _p, _sum_event = constant_offset, mutate_q, mutate_p, sum_event


@attrs.frozen
class Mutant:
    """One deliberate fault: ``key`` (the model is ``mutant-KEY``), what it breaks, how it
    changes a built model, and the check expected to catch it (``None``: no check can, and
    ``why`` says why). In the catalogue a fault is on no model; :meth:`on` puts it on one:
    ``base``, the registered model it breaks, and ``configs``, a zero-argument callable
    returning a Hypothesis strategy of that model's configs (default: its test configs)."""

    key: str
    fault: str
    mutate: Callable[[LatentModel], LatentModel]
    catches: str | None
    why: str = ""
    base: str = attrs.field(default="", kw_only=True)
    configs: Callable[[], Any] | None = attrs.field(default=None, kw_only=True)

    def on(self, base: str, configs: Callable[[], Any] | None = None) -> Mutant:
        """This fault on the registered model ``base``, drawn from ``configs``."""
        return attrs.evolve(self, base=base, configs=configs)


def _x_offset(d: Distribution, x) -> Distribution:
    return Mutated(d, offset=lambda z: 0.3 * x.flatten(1).sum(1).expand(z.shape[:-1]))


def _objective_beta(m: LatentModel) -> LatentModel:
    m.objective_choice = ObjectiveChoice("elbo", {"beta": 0.5})
    return m


MUTANTS: tuple[Mutant, ...] = (
    Mutant("q-offset", "log q(z|x) + 1 (a constant)", mutate_q(constant_offset(1.0)), "normalised"),
    Mutant(
        "q-x-offset", "log q(z|x) + 0.3·Σx (a function of x)", mutate_q(_x_offset), "normalised"
    ),
    Mutant(
        "q-sign",
        "log q(z|x) → −log q(z|x)",
        mutate_q(lambda d, x: Mutated(d, sign=-1.0)),
        "normalised",
    ),
    Mutant(
        "q-draws-shifted",
        "q's draws + 0.5, its log_prob unchanged",
        mutate_q(lambda d, x: Mutated(d, move=lambda z, b: z + 0.5)),
        "normalised",
    ),
    Mutant(
        "q-draws-spread",
        "q's draws 1.5× as far from the mean, log_prob unchanged",
        mutate_q(lambda d, x: Mutated(d, move=lambda z, b: b.mean + 1.5 * (z - b.mean))),
        "normalised",
    ),
    Mutant(
        "q-closed-form-kl",
        "a registered closed-form KL(q ‖ p) without log(σ_p/σ_q)",
        mutate_q(lambda d, x: forgetful(d)),
        "kl-nonnegative",
    ),
    Mutant(
        "q-batch-coupled",
        "q(z|x) sees x minus the batch mean",
        mutate_q(transform=lambda x: x - x.mean(0, keepdim=True)),
        "batch-independence",
    ),
    Mutant("prior-offset", "log p(z) + 1", mutate_p(prior=constant_offset(1.0)), "normalised"),
    Mutant(
        "prior-z-offset",
        "log p(z) + 0.3·Σz (a function of z)",
        mutate_p(prior=lambda d, c: Mutated(d, offset=lambda z: 0.3 * sum_event(z, d))),
        "normalised",
    ),
    Mutant(
        "prior-mixture-normaliser",
        "a two-component mixture prior without its −log 2",
        mutate_p(exact=False, prior=lambda d, c: TwoBumps(d, normalised=False)),
        "normalised",
    ),
    Mutant(
        "transition-offset",
        "log p(z_{l−1}|z_l) + 1",
        mutate_p(transition=constant_offset(1.0)),
        "normalised",
    ),
    Mutant(
        "likelihood-offset-up",
        "log p(x|z) + 1",
        mutate_p(likelihood=constant_offset(1.0)),
        "normalised",
    ),
    Mutant(
        "likelihood-offset-down",
        "log p(x|z) − 1: every bound still holds",
        mutate_p(likelihood=constant_offset(-1.0)),
        "exact-log-p",
    ),
    Mutant(
        "likelihood-x-offset",
        "log p(x|z) − 0.1·Σx² (a function of x)",
        mutate_p(likelihood=lambda d, c: Mutated(d, offset=lambda x: -0.1 * sum_event(x**2, d))),
        "normalised",
    ),
    Mutant(
        "objective-beta",
        "the model's training objective weighs the KL by β = 0.5",
        _objective_beta,
        None,
        "the checks test the model's densities and the bounds computed from them; a "
        "training objective's weights are the objective's (tests/test_objectives.py)",
    ),
)
"""Every fault the kit is tested against (``docs/checks.md``, "What each fault is caught by")."""

CONTROLS: tuple[Mutant, ...] = (
    Mutant(
        "control-q",
        "every factor of q wrapped, nothing changed",
        mutate_q(lambda d, x: Mutated(d)),
        None,
    ),
    Mutant(
        "control-p",
        "every factor of p wrapped, nothing changed",
        mutate_p(
            prior=lambda d, c: Mutated(d),
            transition=lambda d, c: Mutated(d),
            likelihood=lambda d, c: Mutated(d),
        ),
        None,
    ),
    Mutant(
        "control-mixture",
        "the two-component mixture prior with its −log 2",
        mutate_p(exact=False, prior=lambda d, c: TwoBumps(d, normalised=True)),
        None,
    ),
)
"""The same wrappers with no fault: every check passes on them (no false alarm from the
wrapping itself)."""


def on_model(
    base: str, keys: Iterable[str], configs: Callable[[], Any] | None = None
) -> list[Mutant]:
    """The faults of :data:`MUTANTS` and :data:`CONTROLS` named by ``keys``, on the model
    ``base`` drawn from ``configs``: what a plugin returns from ``ModelSpec.mutants``."""
    keys = set(keys)
    unknown = keys - {m.key for m in MUTANTS + CONTROLS}
    if unknown:
        raise KeyError(f"no fault named {sorted(unknown)} in latentkit.testing.mutants")
    return [m.on(base, configs) for m in MUTANTS + CONTROLS if m.key in keys]


def carried() -> dict[str, Mutant]:
    """Every fault an installed model carries (``ModelSpec.mutants``), on that model, by
    key; a fault two models carry is on the first by name."""
    out: dict[str, Mutant] = {}
    for spec in model_specs().values():
        for mutant in spec.mutants() if spec.mutants is not None else ():
            out.setdefault(mutant.key, mutant)
    return out


def _spec(mutant: Mutant) -> ModelSpec:
    base = get_model_spec(mutant.base)
    return ModelSpec(
        f"mutant-{mutant.key}",
        base.config_class,
        lambda cfg: mutant.mutate(base.factory(cfg)),
        description=mutant.fault,
        test_configs=mutant.configs or base.test_configs,
    )


@contextlib.contextmanager
def registered(mutants: Iterable[Mutant] = MUTANTS + CONTROLS) -> Iterator[list[Mutant]]:
    """Register each of ``mutants`` that is on an installed model as ``mutant-KEY``; yields
    those, on their models. A fault on no model (the catalogue's) is put on the installed
    model that carries it (:func:`carried`), and left out if none does."""
    on, installed = carried(), set(model_specs())
    placed = (m if m.base else on.get(m.key) for m in mutants)
    available = [m for m in placed if m is not None and m.base in installed]

    class Plugin:
        @staticmethod
        @hookimpl
        def latentkit_models():
            return [_spec(m) for m in available]

    register_plugin(Plugin, name="latentkit-mutants")
    try:
        yield available
    finally:
        unregister_plugin(Plugin)
