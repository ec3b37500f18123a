"""Running the checks: the registry of checks (:data:`CHECKS`), one check over
Hypothesis's examples (:func:`run_check`), all of them (:func:`run_checks`), the report."""

from __future__ import annotations

import pathlib
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import torch
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis.internal.conjecture import engine as hypothesis_engine

from latentkit.registry import get_model_spec
from latentkit.testing.checks.agreement import (
    device_agreement,
    estimator_agreement,
    kl_analytic_vs_monte_carlo,
)
from latentkit.testing.checks.basic import (
    batch_independence,
    finite_values_and_gradients,
    samples,
)
from latentkit.testing.checks.case import (
    CaseError,
    CheckFailure,
    ModelCase,
    NotApplicable,
    model_cases,
)
from latentkit.testing.checks.normalisation import normalised
from latentkit.testing.checks.orderings import (
    beta_ordering,
    exact_log_p_applies,
    exact_log_p_bounds,
    iwae_ordering,
    kl_nonnegative,
)

__all__ = [
    "CHECKS",
    "SEARCH_LIMIT",
    "SHRINK_SECONDS",
    "Check",
    "CheckResult",
    "check_model",
    "format_report",
    "run_check",
    "run_checks",
]

SHRINK_SECONDS = 30.0
SEARCH_LIMIT = 20
"""A check that asks for cases it applies to stops asking after this many drawn cases of
which none applied (it then runs on what is drawn and reports "not applicable")."""


@attrs.frozen
class Check:
    """A named property check. ``skip_reason()`` is None when it can run on this machine.

    ``applies(case)``, when given, is None for a case the check applies to and the reason
    otherwise; :func:`run_check` then asks Hypothesis for cases it applies to (rejecting
    the others) so that a check that covers a fraction of a plugin's configs still runs
    on its full number of examples, and reports how many cases it drew for them.
    """

    key: str
    title: str
    run: Callable[[ModelCase], None]
    skip_reason: Callable[[], str | None] = lambda: None
    applies: Callable[[ModelCase], str | None] | None = None

    @property
    def proves(self) -> str:
        """The check's docstring: what it proves."""
        return " ".join((self.run.__doc__ or "").split())


def _no_cuda() -> str | None:
    return None if torch.cuda.is_available() else "no CUDA device on this machine"


CHECKS: tuple[Check, ...] = (
    Check("samples", "builds and samples", samples),
    Check("finite", "finite values and gradients", finite_values_and_gradients),
    Check("beta-ordering", "ELBO_β ≤ ELBO (β ≥ 1)", beta_ordering),
    Check("kl-nonnegative", "KL terms ≥ 0", kl_nonnegative),
    Check("iwae-ordering", "ELBO ≤ IWAE_k ≤ IWAE_k'", iwae_ordering),
    Check("batch-independence", "batch independence", batch_independence),
    Check("normalised", "densities normalised, draws follow them", normalised),
    Check(
        "exact-log-p",
        "log p ≥ ELBO, IWAE; IWAE → log p (exact oracle)",
        exact_log_p_bounds,
        applies=exact_log_p_applies,
    ),
    Check("kl-analytic-vs-mc", "analytic KL = Monte Carlo KL", kl_analytic_vs_monte_carlo),
    Check("estimator-agreement", "top-down = bottom-up ELBO", estimator_agreement),
    Check("device-agreement", "CPU/CUDA agreement", device_agreement, _no_cuda),
)


@attrs.frozen
class CheckResult:
    """The outcome of one check on one model.

    ``status`` is ``passed``, ``failed``, ``not applicable`` or ``skipped``; ``examples`` the
    number of examples the check ran on before passing or first failing (of which
    ``not_applicable`` did not admit it); ``drawn`` the number of cases drawn for them,
    more than ``examples`` when the check asked for cases it applies to
    (:attr:`Check.applies`); ``detail`` the failure message or the reason;
    ``counterexample`` Hypothesis's shrunk failing case, as the call that rebuilds it.
    """

    check: Check
    status: str
    examples: int = 0
    not_applicable: int = 0
    detail: str = ""
    counterexample: str = ""
    no_case: bool = False
    """The failure came from drawing the case (see :class:`CaseError`), not the check."""
    drawn: int = 0

    @property
    def coverage(self) -> str:
        """ "12 of 25 examples (40 drawn)": how many examples the check ran on."""
        ran = self.examples - self.not_applicable
        text = f"{ran} of {self.examples} examples"
        return text + (f" ({self.drawn} drawn)" if self.drawn > self.examples else "")

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def _settings(max_examples: int | None, derandomize: bool | None, shrink: bool) -> settings:
    base = settings.default
    # The explain phase annotates Hypothesis's own print of the case, which we replace
    # with ModelCase's repr; it costs more than the shrinking itself.
    dropped = {Phase.explain} if shrink else {Phase.explain, Phase.shrink}
    return settings(
        base,
        phases=[p for p in base.phases if p not in dropped],
        max_examples=max_examples if max_examples is not None else base.max_examples,
        derandomize=derandomize if derandomize is not None else base.derandomize,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


def run_check(
    check: Check,
    name: str,
    *,
    device: str = "cpu",
    max_examples: int | None = None,
    derandomize: bool | None = None,
    configs: st.SearchStrategy[dict] | None = None,
    shrink_seconds: float = SHRINK_SECONDS,
    shrink: bool = True,
) -> CheckResult:
    """Run one check on model ``name`` over up to ``max_examples`` Hypothesis examples.

    ``max_examples``/``derandomize`` default to the active Hypothesis profile's;
    ``configs`` overrides the plugin's ``test_configs``; ``shrink_seconds`` bounds the
    time Hypothesis spends shrinking a failure (the case is then partly shrunk);
    ``shrink=False`` reports the first failing case as drawn.
    """
    reason = check.skip_reason()
    if reason is not None:
        return CheckResult(check, "skipped", detail=reason)
    seen: dict[str, Any] = {
        "examples": 0,
        "not_applicable": 0,
        "first_failure": None,
        "drawn": 0,
        "applied": 0,
    }
    reasons: list[str] = []

    def prop(case: ModelCase) -> None:
        seen["drawn"] += 1
        if check.applies is not None and (seen["applied"] or seen["drawn"] <= SEARCH_LIMIT):
            why = check.applies(case)
            if why is not None:
                reasons.append(why)
                reject()
            seen["applied"] += 1
        seen["examples"] += 1
        try:
            check.run(case)
        except NotApplicable as exc:
            seen["not_applicable"] += 1
            reasons.append(str(exc))
        except BaseException:
            if seen["first_failure"] is None:
                seen["first_failure"] = seen["examples"]
                seen["drawn_at_failure"] = seen["drawn"]
            seen["case"] = case  # the last failure Hypothesis replays is the shrunk one
            raise

    @st.composite
    def cases(draw) -> ModelCase:
        try:
            return draw(model_cases(name, device=device, configs=configs))
        except CaseError:
            if seen["first_failure"] is None:
                seen["first_failure"] = seen["examples"]
            raise

    prop.__name__ = prop.__qualname__ = check.run.__name__
    test = _settings(max_examples, derandomize, shrink)(given(case=cases())(prop))
    shrink_limit = hypothesis_engine.MAX_SHRINKING_SECONDS
    # Hypothesis documents this constant as monkeypatchable; its default is 300 s.
    hypothesis_engine.MAX_SHRINKING_SECONDS = shrink_seconds
    try:
        test()
    except Unsatisfiable:  # every case drawn was rejected: the check applies to none
        return CheckResult(
            check, "not applicable", 0, 0, reasons[-1] if reasons else "", drawn=seen["drawn"]
        )
    except (Exception, Flaky) as exc:  # the property's failure, after shrinking
        notes = "\n".join(getattr(exc, "__notes__", ()))
        if "case" in seen:  # Hypothesis's own print of it varies with its version and phase
            notes = f"Falsifying example: {seen['case']!r}"
        elif isinstance(exc, CaseError) and exc.drawn:
            notes = f"Falsifying example: {exc.drawn}"
        return CheckResult(
            check,
            "failed",
            examples=seen["examples"] if seen["first_failure"] is None else seen["first_failure"],
            not_applicable=seen["not_applicable"],
            detail=_describe(exc),
            counterexample=notes,
            no_case=isinstance(exc, CaseError),
            drawn=seen.get("drawn_at_failure", seen["drawn"]),
        )
    finally:
        hypothesis_engine.MAX_SHRINKING_SECONDS = shrink_limit
    if seen["not_applicable"] == seen["examples"]:
        return CheckResult(
            check,
            "not applicable",
            seen["examples"],
            seen["not_applicable"],
            reasons[-1] if reasons else "",
            drawn=seen["drawn"],
        )
    return CheckResult(
        check, "passed", seen["examples"], seen["not_applicable"], drawn=seen["drawn"]
    )


def _describe(exc: BaseException) -> str:
    """A check's own failure message; for anything else its type, message and where."""
    if isinstance(exc, CheckFailure):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = "; ".join(f"{pathlib.Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames)
    return f"{type(exc).__name__}: {exc} (at {where})"


def model_checks(name: str) -> list[Check]:
    """The model's own checks (``ModelSpec.checks``), checked: ``Check`` objects whose keys
    differ from the generic checks' and from each other."""
    declared = get_model_spec(name).checks
    if declared is None:
        return []
    own = list(declared())
    keys = [c.key for c in CHECKS]
    for c in own:
        if not isinstance(c, Check):
            raise TypeError(f"model {name!r}: its checks must be latentkit.testing.Check: {c!r}")
        if c.key in keys:
            raise ValueError(f"model {name!r}: its check key {c.key!r} is taken")
        keys.append(c.key)
    return own


def _select(checks: Iterable[str] | None, own: Sequence[Check] = ()) -> list[Check]:
    every = [*CHECKS, *own]
    if checks is None:
        return every
    by_key = {c.key: c for c in every}
    unknown = sorted(set(checks) - set(by_key))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; known checks: {list(by_key)}")
    return [by_key[k] for k in checks]


def run_checks(
    name: str,
    *,
    device: str = "cpu",
    max_examples: int | None = None,
    derandomize: bool | None = None,
    checks: Iterable[str] | None = None,
    configs: st.SearchStrategy[dict] | None = None,
    shrink_seconds: float = SHRINK_SECONDS,
    shrink: bool = True,
    on_result: Callable[[CheckResult], Any] | None = None,
) -> list[CheckResult]:
    """Run the checks (all of :data:`CHECKS` and the model's own, ``ModelSpec.checks``, or
    those keyed in ``checks``) on model ``name``.

    Raises ``UnknownModelError`` for an unregistered name and ``ValueError`` for an unknown
    check or a CUDA device on a machine without one. ``on_result`` is called as each check
    finishes (progress display). When no case can be drawn at all (the model does not
    build or sample), the checks after the one that found it are skipped.
    """
    get_model_spec(name)
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but there is no CUDA device")
    results: list[CheckResult] = []
    for check in _select(checks, model_checks(name)):
        broken = next((r for r in results if r.no_case), None)
        if broken is not None:
            reason = f"no case could be drawn (see {broken.check.key!r})"
            result = CheckResult(check, "skipped", detail=reason)
        else:
            result = run_check(
                check,
                name,
                device=device,
                max_examples=max_examples,
                derandomize=derandomize,
                configs=configs,
                shrink_seconds=shrink_seconds,
                shrink=shrink,
            )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def format_report(name: str, results: Sequence[CheckResult]) -> str:
    """Plain-text report: one line per check, then each failure's counterexample."""
    lines = [f"latentkit checks of {name!r}:"]
    for r in results:
        status = r.status if not r.detail or r.failed else f"{r.status}: {r.detail}"
        lines.append(f"  {r.check.key:<20} {r.coverage:<28} {status}")
    for r in results:
        if r.failed:
            lines += ["", f"FAILED {r.check.key} ({r.check.title}): {r.detail}", r.counterexample]
    return "\n".join(lines)


def check_model(name: str, **options) -> list[CheckResult]:
    """Run the checks (options as :func:`run_checks`); raise :class:`CheckFailure` with the
    report, counterexamples included, if any fails. Returns the results otherwise."""
    results = run_checks(name, **options)
    if any(r.failed for r in results):
        raise CheckFailure(format_report(name, results))
    return results
