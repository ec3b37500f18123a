"""Running the checks: one check over Hypothesis's examples (:func:`run_check`), all of them
(:func:`run_checks`), the report. The checks themselves are listed in
:mod:`latentkit.testing.checks.registry` (:data:`CHECKS`, importable from here too)."""

from __future__ import annotations

import pathlib
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import torch
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis.internal.conjecture import engine as hypothesis_engine

from latentkit.arguments import check_count, check_number, checked, describe_value
from latentkit.errors import ConfigError, InputError, UnknownModelError
from latentkit.registry import get_model_spec
from latentkit.testing.checks.case import (
    CaseError,
    CheckFailure,
    ModelCase,
    NotApplicable,
    model_cases,
)
from latentkit.testing.checks.registry import CHECKS, Check, _select, model_checks

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
        """Whether the check failed."""
        return self.status == "failed"


def _settings(max_examples: int | None, derandomize: bool | None, shrink: bool) -> settings:
    """The Hypothesis settings of a check run: the profile's, with no deadline or database,
    the shrink phase only when asked, and every health check off."""
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


@attrs.define
class _Tally:
    """What one check saw while Hypothesis drew its cases: the counts a
    :class:`CheckResult` reports, the reasons it did not apply, and the failing case."""

    examples: int = 0
    not_applicable: int = 0
    drawn: int = 0
    applied: int = 0
    first_failure: int | None = None
    drawn_at_failure: int | None = None
    case: ModelCase | None = None
    reasons: list[str] = attrs.Factory(list)

    @property
    def last_reason(self) -> str:
        """The latest reason the check did not apply ("" when there is none)."""
        return self.reasons[-1] if self.reasons else ""


@checked
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
    ``shrink=False`` reports the first failing case as drawn. Arguments are checked against
    their annotations, counts and the time for range (an InputError naming the argument).
    """
    _check_run_options(max_examples, shrink_seconds, "run_check")
    reason = check.skip_reason()
    if reason is not None:
        return CheckResult(check, "skipped", detail=reason)
    tally = _Tally()
    cases = _cases(name, device, configs, tally)
    test = _settings(max_examples, derandomize, shrink)(given(case=cases)(_property(check, tally)))
    try:
        with _shrinking_limit(shrink_seconds):
            test()
    except Unsatisfiable:  # every case drawn was rejected: the check applies to none
        return CheckResult(check, "not applicable", 0, 0, tally.last_reason, drawn=tally.drawn)
    except (Exception, Flaky) as exc:  # the property's failure, after shrinking
        return _failed(check, tally, exc)
    if tally.not_applicable == tally.examples:
        return CheckResult(
            check,
            "not applicable",
            tally.examples,
            tally.not_applicable,
            tally.last_reason,
            drawn=tally.drawn,
        )
    return CheckResult(check, "passed", tally.examples, tally.not_applicable, drawn=tally.drawn)


def _check_run_options(max_examples: Any, shrink_seconds: Any, where: str) -> None:
    if max_examples is not None:
        check_count(max_examples, f"{where}: max_examples")
    check_number(shrink_seconds, f"{where}: shrink_seconds", low=0.0)


def _property(check: Check, tally: _Tally) -> Callable[[ModelCase], None]:
    """The property Hypothesis runs: the check on one case, counted in ``tally``. While it
    searches (:data:`SEARCH_LIMIT`), a case the check does not apply to is rejected."""

    def prop(case: ModelCase) -> None:
        tally.drawn += 1
        if check.applies is not None and (tally.applied or tally.drawn <= SEARCH_LIMIT):
            why = check.applies(case)
            if why is not None:
                tally.reasons.append(why)
                reject()
            tally.applied += 1
        tally.examples += 1
        try:
            check.run(case)
        except NotApplicable as exc:
            tally.not_applicable += 1
            tally.reasons.append(str(exc))
        except BaseException:
            if tally.first_failure is None:
                tally.first_failure = tally.examples
                tally.drawn_at_failure = tally.drawn
            tally.case = case  # the last failure Hypothesis replays is the shrunk one
            raise

    prop.__name__ = prop.__qualname__ = check.run.__name__
    return prop


def _cases(
    name: str, device: str, configs: st.SearchStrategy[dict] | None, tally: _Tally
) -> st.SearchStrategy[ModelCase]:
    """The model's cases; a case that cannot be drawn counts as the failure's example."""

    @st.composite
    def cases(draw) -> ModelCase:
        try:
            return draw(model_cases(name, device=device, configs=configs))
        except CaseError:
            if tally.first_failure is None:
                tally.first_failure = tally.examples
            raise

    return cases()


@contextmanager
def _shrinking_limit(seconds: float) -> Iterator[None]:
    """Hypothesis's shrinking bounded by ``seconds`` for the block (its default is 300 s)."""
    limit = hypothesis_engine.MAX_SHRINKING_SECONDS
    # Hypothesis documents this constant as monkeypatchable.
    hypothesis_engine.MAX_SHRINKING_SECONDS = seconds
    try:
        yield
    finally:
        hypothesis_engine.MAX_SHRINKING_SECONDS = limit


def _failed(check: Check, tally: _Tally, exc: BaseException) -> CheckResult:
    """The failed result: where it first failed, the message, and the shrunk case."""
    notes = "\n".join(getattr(exc, "__notes__", ()))
    if tally.case is not None:  # Hypothesis's own print of it varies with its version and phase
        notes = f"Falsifying example: {tally.case!r}"
    elif isinstance(exc, CaseError) and exc.drawn:
        notes = f"Falsifying example: {exc.drawn}"
    return CheckResult(
        check,
        "failed",
        examples=tally.examples if tally.first_failure is None else tally.first_failure,
        not_applicable=tally.not_applicable,
        detail=_describe(exc),
        counterexample=notes,
        no_case=isinstance(exc, CaseError),
        drawn=tally.drawn if tally.drawn_at_failure is None else tally.drawn_at_failure,
    )


def _describe(exc: BaseException) -> str:
    """A check's own failure message; for anything else its type, message and where."""
    if isinstance(exc, CheckFailure):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = "; ".join(f"{pathlib.Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames)
    return f"{type(exc).__name__}: {exc} (at {where})"


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

    Raises ``UnknownModelError`` for an unregistered name and ``ConfigError`` (a
    ``ValueError``) for an unknown check or device, or a CUDA device on a machine without
    one; a bad option is an InputError naming it. ``on_result`` is called as each check
    finishes (progress display). When no case can be drawn at all (the model does not
    build or sample), the checks after the one that found it are skipped.
    """
    if not isinstance(name, str):
        raise UnknownModelError(f"model name must be a str, got {describe_value(name)}")
    get_model_spec(name)
    _check_run_options(max_examples, shrink_seconds, "run_checks")
    if on_result is not None and not callable(on_result):
        raise InputError(
            f"run_checks: on_result must be a callable or None, got {describe_value(on_result)}"
        )
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"run_checks: device {device!r} is not a torch device") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but there is no CUDA device")
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


@checked
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
