"""Write the mutation table of docs/checks.md: every deliberately broken model of
``latentkit.testing.mutants`` run through every check on 25 examples (Hypothesis seed 0),
each example's outcome recorded (not stopping at the first failure).

    nice -n 19 env OMP_NUM_THREADS=1 python scripts/checks_mutation_table.py [--examples 25]

Prints the table and replaces the one between the markers in docs/checks.md.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import torch

from latentkit.testing import mutants, mutation_table

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "checks.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    rows = []
    with mutants.registered(mutants.MUTANTS) as available:
        for mutant in available:
            found = mutation_table.detections(f"mutant-{mutant.key}", examples=args.examples)
            rows.append((mutant, found))
            print(f"{mutant.key}: {time.perf_counter() - started:.0f} s", flush=True)
    table = mutation_table.table_markdown(rows, examples=args.examples)
    print(table)
    DOC.write_text(mutation_table.replace_table(DOC.read_text(), table))
    print(f"written to {DOC} after {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
