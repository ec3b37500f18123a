"""The mutation table of ``docs/checks.md``: how often each check fails each broken model of
:mod:`latentkit.testing.mutants` (per example, every example recorded), and the table
"fault → the check that catches it → its power" written from those rates."""

from __future__ import annotations

import re

import attrs

from latentkit.testing.mutants import Mutant

__all__ = [
    "TABLE_END",
    "TABLE_START",
    "Detection",
    "detections",
    "documented_catches",
    "replace_table",
    "table_markdown",
]


@attrs.frozen
class Detection:
    """How often one check fails one model: ``failed`` of ``ran`` examples (``ran`` excludes
    the examples it did not apply to)."""

    failed: int
    ran: int

    @property
    def rate(self) -> float:
        return self.failed / self.ran if self.ran else 0.0

    def power(self, examples: int = 25) -> float:
        """P(at least one of ``examples`` independent examples fails): verify's budget."""
        return 1.0 - (1.0 - self.rate) ** examples


def _recorder(check, counts: dict[str, int]):
    from hypothesis import reject

    from latentkit.testing.checks import CheckFailure, NotApplicable
    from latentkit.testing.checks.runner import SEARCH_LIMIT

    def prop(case) -> None:
        # As run_check does: ask for cases the check applies to, unless none of the first
        # SEARCH_LIMIT drawn did.
        counts["drawn"] = counts.get("drawn", 0) + 1
        if check.applies is not None and (counts["ran"] or counts["drawn"] <= SEARCH_LIMIT):
            if check.applies(case) is not None:
                reject()
        try:
            check.run(case)
        except NotApplicable:
            return
        except CheckFailure:
            counts["failed"] += 1
        counts["ran"] += 1

    return prop


def detections(
    name: str, checks=None, *, examples: int = 25, seed: int = 0, configs=None
) -> dict[str, Detection]:
    """Run each check (keys; default all that can run here) on ``examples`` cases of model
    ``name`` drawn under Hypothesis ``seed`` (a fixed seed, not ``derandomize``, whose
    examples change with the test function's source), recording every example's outcome
    instead of stopping at the first failure: the per-example detection rate behind the
    table's power, or a correct model's false-alarm rate."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from latentkit.testing.checks import CHECKS, model_cases

    chosen = [c for c in CHECKS if (checks is None or c.key in checks) and not c.skip_reason()]
    out: dict[str, Detection] = {}
    for check in chosen:
        counts = {"failed": 0, "ran": 0}
        prop = _recorder(check, counts)
        test = hypothesis_seed(seed)(given(case=model_cases(name, configs=configs))(prop))
        run = settings(
            max_examples=examples,
            derandomize=False,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(test)
        run()
        out[check.key] = Detection(counts["failed"], counts["ran"])
    return out


TABLE_START = "<!-- mutation table: written by scripts/checks_mutation_table.py -->"
TABLE_END = "<!-- end of mutation table -->"


def table_markdown(rows: list[tuple[Mutant, dict[str, Detection]]], *, examples: int = 25) -> str:
    """The table "fault → the check that catches it → its power" in ``docs/checks.md``.

    ``rows``: each mutant with :func:`detections` of every check on it. Power: the chance
    that ``examples`` (verify's default budget) independent examples include a failing one,
    1 − (1 − rate)^examples, from the per-example rate measured on ``examples`` examples.
    """
    lines = [
        TABLE_START,
        "",
        "| fault | model | caught by | its power at 25 examples | every check that fails it "
        "(examples failed / run) |",
        "|---|---|---|---|---|",
    ]
    for mutant, found in rows:
        failing = ", ".join(f"`{key}` ({d.failed}/{d.ran})" for key, d in found.items() if d.failed)
        if mutant.catches is None:
            named, power = "— passes every check", mutant.why
        else:
            named = f"`{mutant.catches}`"
            d = found[mutant.catches]
            power = f"{100 * d.power(examples):.0f} % ({d.failed}/{d.ran} examples)"
        fault = mutant.fault.replace("|", "\\|")  # a bare "|" would end the cell
        lines.append(
            f"| {fault} (`mutant-{mutant.key}`) | {mutant.base} | {named} | {power} | "
            f"{failing or 'none'} |"
        )
    return "\n".join([*lines, "", TABLE_END])


def replace_table(document: str, table: str) -> str:
    """``document`` with the text between the table's markers replaced by ``table``."""
    start, end = document.index(TABLE_START), document.index(TABLE_END) + len(TABLE_END)
    return document[:start] + table + document[end:]


def documented_catches(document: str) -> dict[str, str | None]:
    """mutant key → the check the documented table names (None: it passes every check)."""
    start, end = document.index(TABLE_START), document.index(TABLE_END)
    out: dict[str, str | None] = {}
    for line in document[start:end].splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) < 3 or "(`mutant-" not in cells[0]:
            continue
        key = cells[0].split("(`mutant-")[1].split("`)")[0]
        out[key] = cells[2].strip("`") if cells[2].startswith("`") else None
    return out
