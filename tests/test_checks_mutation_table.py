"""The mutation table of ``docs/checks.md``: every deliberately broken model of
``latentkit.testing.mutants`` is caught by the check the table names (or the table says
that it passes every check, and why), the same wrappers without a fault pass every check,
and the table lists every mutant. The full table (every check on every mutant, 25
examples each) is written by ``scripts/checks_mutation_table.py``; its slow test here
checks that a rerun reproduces the documented rows (LATENTKIT_MUTATION_BUDGET seconds).
"""

from __future__ import annotations

import os
import pathlib
import re
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import latentkit as lk
from latentkit.testing import CHECKS, mutants, mutation_table, run_check, run_checks

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "checks.md"
BY_KEY = {c.key: c for c in CHECKS}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def registered():
    with mutants.registered() as available:
        yield {m.key: m for m in available}


def test_the_table_lists_every_mutant_with_its_check():
    documented = mutation_table.documented_catches(DOC.read_text())
    assert documented == {m.key: m.catches for m in mutants.MUTANTS}


def test_every_fault_is_carried_by_an_installed_model_the_table_names(registered):
    """The catalogue names no model: the plugins carry its faults (``ModelSpec.mutants``).
    With the built-in plugins installed, each fault and control is on one, and each row of
    the table names that model."""
    assert set(registered) == {m.key for m in mutants.MUTANTS + mutants.CONTROLS}
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| ")]
    for mutant in mutants.MUTANTS:
        row = next(r for r in rows if f"(`mutant-{mutant.key}`)" in r)
        cells = re.split(r"(?<!\\)\|", row.strip().strip("|"))  # "\|" is a "|" in a cell
        assert cells[1].strip() == registered[mutant.key].base, row


def test_a_fault_is_put_only_on_an_installed_model_and_named_from_the_catalogue():
    """A plugin names the catalogue's faults by key (a key not in it is refused, naming it);
    a fault on a model that is not installed is left out of the registration."""
    with pytest.raises(KeyError, match="no-such-fault"):
        mutants.on_model("vae", ["q-offset", "no-such-fault"])
    elsewhere = mutants.MUTANTS[0].on("no-such-model")
    with mutants.registered([elsewhere]) as available:
        assert available == []


# Five fixed draws per mutant: a structural property of each mutant's config strategy (every
# config it draws is linear-Gaussian), not a statistical one; the table itself draws 25.
@settings(max_examples=5, derandomize=True, deadline=None, database=None)
@given(data=st.data())
def test_every_mutant_is_drawn_where_the_exact_oracle_applies(registered, data):
    """As the table says: each mutant's configs give its model a linear-Gaussian chain (the
    oracle describes the correct model), and the β fault is in the model the checks see."""
    for key, mutant in registered.items():
        cfg = data.draw(lk.get_model_spec(f"mutant-{key}").test_configs(), label=key)
        assert lk.load_model(mutant.base, **cfg).generative.linear_gaussian() is not None
    cfg = data.draw(lk.get_model_spec("mutant-objective-beta").test_configs())
    broken = lk.load_model("mutant-objective-beta", **cfg)
    assert broken.objective_choice == ("elbo", {"beta": 0.5})


@pytest.mark.parametrize("mutant", [m for m in mutants.MUTANTS if m.catches], ids=lambda m: m.key)
def test_each_fault_is_caught_by_the_check_the_table_names(mutant, registered):
    """At most 10 derandomized examples, no shrinking: the first failing example is enough
    (the table's powers, measured on 25 examples, are all 100 % for these)."""
    if mutant.key not in registered:
        pytest.skip(f"no installed model carries {mutant.key!r}")
    result = run_check(
        BY_KEY[mutant.catches],
        f"mutant-{mutant.key}",
        max_examples=10,
        derandomize=True,
        shrink=False,
    )
    assert result.status == "failed", (mutant.key, result.status, result.detail)


@pytest.mark.parametrize(
    "mutant",
    [m for m in mutants.MUTANTS if m.catches is None] + list(mutants.CONTROLS),
    ids=lambda m: m.key,
)
def test_faults_no_check_sees_and_the_unbroken_wrappers_pass_every_check(mutant, registered):
    """The wrappers alone (``Mutated`` with nothing changed, the correctly normalised
    mixture) raise no false alarm; a training objective's β is outside what the checks see,
    as the table says."""
    if mutant.key not in registered:
        pytest.skip(f"no installed model carries {mutant.key!r}")
    results = run_checks(f"mutant-{mutant.key}", max_examples=4, derandomize=True, shrink=False)
    assert [(r.check.key, r.detail) for r in results if r.failed] == []


TABLE_BUDGET = float(os.environ.get("LATENTKIT_MUTATION_BUDGET", "0") or 0)
"""Seconds for the slow rerun of the table (its own variable, as the CLI fuzz has: the full
table takes ~10 min on one core)."""


@pytest.mark.slow
@pytest.mark.skipif(not TABLE_BUDGET, reason="set LATENTKIT_MUTATION_BUDGET=SECONDS to run it")
def test_the_documented_table_is_what_a_run_gives(registered):
    """Every check on each mutant, 25 examples each (Hypothesis seed 0), mutant after
    mutant until the budget is spent: each row is the documented one, number for number."""
    documented = DOC.read_text().splitlines()
    deadline = time.monotonic() + TABLE_BUDGET
    compared = 0
    for fault in mutants.MUTANTS:
        if fault.key not in registered or time.monotonic() > deadline:
            continue
        mutant = registered[fault.key]
        row = mutation_table.table_markdown(
            [(mutant, mutation_table.detections(f"mutant-{mutant.key}"))]
        )
        line = next(x for x in row.splitlines() if f"`mutant-{mutant.key}`" in x)
        assert line in documented, line
        compared += 1
    assert compared >= 1
