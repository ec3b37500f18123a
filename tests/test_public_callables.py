"""Every public callable of the core refuses bad input with a typed error in one line.

The public callables are the names in ``latentkit.__all__`` and in the ``__all__`` of the
public modules in :data:`MODULES` (issue 28's definition: no ``_`` component), less
exceptions, modules and constants. Each must have at least one hostile call in the tables
(``tests/bad_calls_*.py``) that raises a subclass of ``lk.LatentkitError`` with a one-line
message naming what is wrong, or be listed in :data:`EXEMPT` with the reason. A new public
function without a bad-input case fails :func:`test_every_public_callable_has_a_bad_input_case`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import signal
import warnings

import pytest
from bad_calls_conditions import CONDITIONS
from bad_calls_core import CORE  # tests/ is on sys.path
from bad_calls_kit import Bad, Kit, exported_callables, one_line
from bad_calls_more import MORE
from bad_calls_others import OTHERS
from bad_calls_plugins import PLUGIN_EXEMPT, PLUGINS, plugin_callables, resolve_plugin

import latentkit as lk

MODULES = (
    "latentkit",
    "latentkit.blocks",
    "latentkit.bound_terms",
    "latentkit.bounds",
    "latentkit.config",
    "latentkit.data",
    "latentkit.diagnostics",
    "latentkit.diffusion",
    "latentkit.distributions",
    "latentkit.estimators",
    "latentkit.likelihoods",
    "latentkit.networks",
    "latentkit.ode",
    "latentkit.oracles",
    "latentkit.plots",
    "latentkit.quality",
    "latentkit.sampling",
    "latentkit.testing",
    "latentkit.trained",
    "latentkit.training",
    "latentkit.validation",
    "latentkit.arguments",
)
"""The modules whose ``__all__`` is enumerated: the package, the public packages users and
plugin authors import from, and the core's own modules of entry points."""

EXEMPT = {
    # Take no arguments: there is no input to refuse.
    "latentkit.list_estimators": "no arguments",
    "latentkit.list_models": "no arguments",
    "latentkit.list_objectives": "no arguments",
    "latentkit.model_specs": "no arguments",
    "latentkit.objective_specs": "no arguments",
    "latentkit.plugin_faults": "no arguments",
    "latentkit.reload_plugins": "no arguments",
    "latentkit.data.dataset_sources": "no arguments",
    "latentkit.data.resolve_mnist": "no arguments (reads the installed packages)",
    "latentkit.quality.shipped_weights_path": "no arguments",
    "latentkit.training.distributed_env": "no arguments (its input, the environment "
    "variables, is tried by tests/test_hostile.py's distributed cases)",
    "latentkit.training.shutdown_distributed": "no arguments",
    "latentkit.training.Logger": "no arguments: the base class a logger subclasses",
    # Formats any value for an error line: it has no bad input (a failing repr is shown as
    # the type).
    "latentkit.arguments.describe_value": "total: formats any value",
    # pluggy's own object, re-exported so that plugins import it from latentkit.
    "latentkit.hookimpl": "pluggy's HookimplMarker, re-exported",
    # Abstract bases: a subclass is what is built; their methods are the plugin contract
    # (latentkit verify and the pytest plugin check it).
    "latentkit.PosteriorChain": "abstract base (no own arguments: *args, **kwargs)",
    "latentkit.SingleLayerPosterior": "abstract base (no own arguments: *args, **kwargs)",
    # torch's Independent under a type of latentkit's own (the closed-form KL table keys on
    # it): built by diag_normal and standard_normal, which check their arguments; the
    # constructor is torch's Independent(base_distribution, reinterpreted_batch_ndims).
    "latentkit.distributions.DiagNormal": "torch's Independent, built by diag_normal",
    "latentkit.distributions.StandardNormal": "torch's Independent, built by standard_normal",
    # Records the library builds and returns: a NamedTuple or frozen attrs class whose fields
    # a user reads. ElboResult and Draw are built on every training step (no checks there).
    "latentkit.ElboResult": "result record, built per step by elbo",
    "latentkit.Draw": "result record, built per step by every estimator",
    "latentkit.ode.OdeLogProb": "result record of ode_log_prob",
    "latentkit.ode.FlaggedExample": "result record of OdeFigure.flagged",
    "latentkit.data.SourceStatus": "result record of dataset_sources",
    "latentkit.diagnostics.InformationDraws": "result record of the diagnostics' walk",
    "latentkit.diagnostics.LayerDiagnostics": "result record of diagnose",
    "latentkit.Diagnostics": "result record of diagnose",
    "latentkit.EvalReport": "result record of evaluate",
    "latentkit.Comparison": "result record of compare_runs",
    "latentkit.PluginFault": "result record of plugin_faults",
    "latentkit.training.TrainResult": "result record of Trainer.fit",
    "latentkit.testing.CheckResult": "result record of run_check",
    "latentkit.quality.ClassifierScore": "result record of classifier_score",
    "latentkit.quality.FrechetEstimate": "result record of frechet_estimate",
    "latentkit.quality.DrawnSamples": "result record of draw_samples",
    "latentkit.quality.SampleQuality": "result record of sample_quality",
    "latentkit.quality.ReferenceValues": "result record of reference_values",
}
"""Public callables with no bad-input case, each with the reason."""

TABLE: dict[str, tuple[Bad, ...]] = {**CORE, **MORE, **OTHERS, **CONDITIONS}


def _resolve(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def public_callables() -> dict[int, list[str]]:
    """id(object) → its public dotted names, for every public callable of :data:`MODULES`."""
    found: dict[int, list[str]] = {}
    for module_name in MODULES:
        for dotted, obj in exported_callables(module_name):
            found.setdefault(id(obj), []).append(dotted)
    return found


def test_every_public_callable_has_a_bad_input_case():
    """A public callable is in the table (under any of its public names) or exempted."""
    covered = {id(_resolve(k)) for k in TABLE} | {id(_resolve(k)) for k in EXEMPT}
    missing = sorted(names[0] for key, names in public_callables().items() if key not in covered)
    assert not missing, f"public callables without a bad-input case: {missing}"


def test_the_tables_name_only_public_callables():
    """Every key of the tables and of EXEMPT is a public name, and none is in both."""
    public = {n for names in public_callables().values() for n in names}
    stale = sorted(k for k in (*TABLE, *EXEMPT) if k not in public)
    assert not stale, f"not a public callable: {stale}"
    both = sorted(set(TABLE) & set(EXEMPT))
    assert not both, f"in the table and exempted: {both}"
    assert all(TABLE.values()), "a table entry without a case"


def test_every_plugin_callable_has_a_bad_input_case():
    """The plugins' callables (``tests/bad_calls_plugins.py``: each plugin package's
    ``__all__`` and its classes' own public methods) are in its table or exempted."""
    covered = {id(resolve_plugin(k)) for k in (*PLUGINS, *PLUGIN_EXEMPT)}
    missing = sorted(names[0] for key, names in plugin_callables().items() if key not in covered)
    assert not missing, f"plugin callables without a bad-input case: {missing}"


def test_the_plugin_table_names_only_plugin_callables():
    """Every key of the plugins' table and exemptions is an enumerated name, in one of them."""
    public = {n for names in plugin_callables().values() for n in names}
    stale = sorted(k for k in (*PLUGINS, *PLUGIN_EXEMPT) if k not in public)
    assert not stale, f"not a plugin callable: {stale}"
    both = sorted(set(PLUGINS) & set(PLUGIN_EXEMPT))
    assert not both, f"in the table and exempted: {both}"
    assert all(PLUGINS.values()), "a table entry without a case"


@pytest.fixture(scope="module")
def kit() -> Kit:
    return Kit()


CASES = [
    pytest.param(
        name,
        case,
        id=f"{name.removeprefix('latentkit.')}-{i}-{case.what}",
        marks=[pytest.mark.xfail(strict=True, reason=f"gap: {case.gap}")] if case.gap else [],
    )
    for name, cases in {**TABLE, **PLUGINS}.items()
    for i, case in enumerate(cases)
]


SECONDS_PER_CASE = 30
"""A hostile call refused at entry takes milliseconds; one that gets through may run for
ever (a count of 2**70 looping over batches): the case fails after this long instead."""


@contextlib.contextmanager
def _deadline(seconds: int):
    def expired(signum, frame):
        raise AssertionError(f"the hostile call ran for more than {seconds} s: not refused")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(("name", "case"), CASES)
def test_a_hostile_call_is_one_typed_line(kit, name, case):
    """The hostile call raises the table's error, a latentkit error, in one line naming
    what is wrong (the table's words), within :data:`SECONDS_PER_CASE`."""
    assert issubclass(case.error, lk.LatentkitError)
    with warnings.catch_warnings(), _deadline(SECONDS_PER_CASE):
        warnings.simplefilter("ignore")
        with pytest.raises(lk.LatentkitError) as exc:
            case.call(kit)
    assert isinstance(exc.value, case.error), f"{type(exc.value).__name__}: {exc.value}"
    msg = one_line(exc.value)
    for word in case.words:
        assert word in msg, msg


def _contract(obj: object):
    target = obj.__init__ if inspect.isclass(obj) else obj
    return getattr(target, "__contract__", None)


def test_every_checked_annotation_names_something_findable():
    """Each public callable under ``@checked`` resolves every annotation it has: a name
    typeguard cannot find would leave its argument unchecked without a word."""
    seen = 0
    for names in public_callables().values():
        contract = _contract(_resolve(names[0]))
        if contract is None:
            continue
        seen += 1
        contract.rules()
        assert not contract.unresolved, f"{names[0]}: unresolved {contract.unresolved}"
    assert seen >= 10, f"only {seen} public callables are @checked"


@pytest.mark.parametrize(
    "name",
    [
        "latentkit.elbo",
        "latentkit.iwae",
        "latentkit.sample",
        "latentkit.distributions.diag_normal",
        "latentkit.distributions.closed_form_kl",
        "latentkit.estimators.kl_or_log_ratio",
        "latentkit.estimators.layer_term",
        "latentkit.estimators.end_terms",
        "latentkit.networks.timestep_embedding",
        "latentkit.networks.fourier_features",
        "latentkit.likelihoods.split_params",
    ],
)
def test_the_annotation_checks_stay_off_the_per_step_paths(name):
    """What a training step calls (the bounds, their building blocks, a network's forward
    helpers) is not under ``@checked``: their own checks are isinstance tests and
    comparisons (bench/typecheck_cost.py measures what the decorator costs)."""
    assert _contract(_resolve(name)) is None
