"""Measure the checks' false-alarm rate: correct built-in models through every check, many
Hypothesis seeds, every example's outcome recorded (not stopping at the first failure).

    nice -n 19 env OMP_NUM_THREADS=1 python scripts/checks_false_alarms.py \\
        [--models vae hvae ddpm] [--seeds 4] [--first-seed 1000] [--examples 50] \\
        [--checks KEY ...] [--single-stage] [--randomize SCALE]
    nice -n 19 env OMP_NUM_THREADS=1 python scripts/checks_false_alarms.py --hvae-terms 500

A failure on a correct model is a false alarm. Prints, per model and check, the failing
examples of those run, and the one-sided 95 % upper bound on the per-example false-alarm
rate (Clopper–Pearson; 3/n when none of n fails). ``--single-stage`` judges at the first
stage alone (64 replicates, 1,024 draws for ``normalised``): the one-stage z-test the
sequential one replaced, for comparison. ``--randomize SCALE`` draws every parameter from
N(0, SCALE²) instead of perturbing the initialisation (as ``tests/test_hvae.py`` does):
log weights with far heavier tails, where a one-stage test raises false alarms.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from latentkit_vae.strategies import vae_configs

from latentkit.registry import list_models
from latentkit.testing import mutation_table
from latentkit.testing.checks import case, normalisation, stats
from latentkit.testing.strategies import randomize_parameters


def upper_bound(failed: int, ran: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson upper bound on a rate with ``failed`` of ``ran``: the p at
    which P(Binomial(ran, p) ≤ failed) = 1 − confidence (bisection)."""
    if ran == 0 or failed == ran:
        return 1.0

    def cdf(p: float) -> float:
        return sum(
            math.exp(
                math.lgamma(ran + 1)
                - math.lgamma(k + 1)
                - math.lgamma(ran - k + 1)
                + k * math.log(p)
                + (ran - k) * math.log1p(-p)
            )
            for k in range(failed + 1)
        )

    lo, hi = failed / ran, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > 1 - confidence else (lo, mid)
    return hi


def hvae_terms(examples: int, seed: int) -> None:
    """``tests/test_hvae.py``'s analytic-vs-Monte-Carlo comparison on its own strategy
    (randomized parameters, N(0, 0.7²)), every example recorded: failures on these correct
    models with the two estimators' draws independent or paired (same seed), judged at one
    stage (64 draws) or sequentially (64, 512, 4,096)."""
    import pathlib
    import sys

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    import latentkit as lk
    from latentkit.testing import strategies as lks
    from latentkit.testing.checks import CheckFailure, assert_in_expectation

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
    from test_hvae import hvaes, linear_hvae_configs, mlp_hvae_configs, per_draw, replicate

    counts: dict[tuple[str, str], list[int]] = {}

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data(), s=lks.seeds())
    def run(data, s):
        configs = st.one_of(linear_hvae_configs("top-down"), mlp_hvae_configs("top-down"))
        model, x = data.draw(hvaes(configs, torch.device("cpu")))
        for paired in (False, True):
            for stages in (stats.STAGES[:1], stats.STAGES):
                drawn: dict[int, tuple[dict, dict]] = {}

                def terms(r: int, stage: int, paired=paired, drawn=drawn):
                    if stage not in drawn:
                        xr, base = replicate(x, r), s + 7919 * stage
                        with lks.seeded(base):
                            a = lk.elbo(model, xr, estimator="analytic").terms
                        with lks.seeded(base if paired else base + 1):
                            m = lk.elbo(model, xr, estimator="top-down-mc").terms
                        drawn[stage] = tuple(
                            {t: per_draw(v, r) for t, v in side.items()} for side in (a, m)
                        )
                    return drawn[stage]

                failed = False
                for term in terms(stats.STAGES[0], 0)[0]:
                    try:
                        assert_in_expectation(
                            lambda r, stage, term=term, terms=terms: tuple(
                                side[term] for side in terms(r, stage)
                            ),
                            term,
                            relation="=",
                            paired=paired,
                            stages=stages,
                        )
                    except CheckFailure:
                        failed = True
                key = (
                    "paired" if paired else "independent",
                    "sequential" if len(stages) > 1 else "one stage",
                )
                c = counts.setdefault(key, [0, 0])
                c[0] += failed
                c[1] += 1

    run()
    print("| draws | test | examples failed | 95 % upper bound |")
    print("|---|---|---|---|")
    for (draws, test), (failed, ran) in counts.items():
        print(f"| {draws} | {test} | {failed} / {ran} | {upper_bound(failed, ran):.2g} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vae", "hvae", "ddpm"])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=1000, help="Hypothesis seeds from here")
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--checks", nargs="+", default=None, help="check keys (default: all)")
    parser.add_argument("--single-stage", action="store_true")
    parser.add_argument(
        "--randomize",
        type=float,
        default=None,
        metavar="SCALE",
        help="parameters N(0, SCALE²) (randomize_parameters) instead of the checks' "
        "perturbation: far heavier-tailed log weights",
    )
    parser.add_argument(
        "--hvae-terms",
        type=int,
        default=None,
        metavar="EXAMPLES",
        help="instead: tests/test_hvae.py's analytic-vs-Monte-Carlo comparison (see hvae_terms)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.hvae_terms:
        hvae_terms(args.hvae_terms, args.first_seed)
        return
    if args.single_stage:
        stats.STAGES = stats.STAGES[:1]
        normalisation.NORMALISATION_STAGES = normalisation.NORMALISATION_STAGES[:1]
    if args.randomize is not None:
        scale = args.randomize
        case.perturb_parameters = lambda model, seed: randomize_parameters(model, seed, scale)
    started = time.perf_counter()
    stages = (stats.STAGES, normalisation.NORMALISATION_STAGES)
    print(f"randomize {args.randomize}; stages {stages[0]}, normalised {stages[1]}")
    print("| model | check | failed / examples | 95 % upper bound per example |")
    print("|---|---|---|---|")
    for name in args.models:
        if name not in list_models():
            print(f"| {name} | (not installed) | | |")
            continue
        configs = vae_configs() if name == "vae" else None
        totals: dict[str, list[int]] = {}
        for seed in range(args.seeds):
            found = mutation_table.detections(
                name,
                args.checks,
                examples=args.examples,
                seed=args.first_seed + seed,
                configs=configs,
            )
            for key, d in found.items():
                t = totals.setdefault(key, [0, 0])
                t[0] += d.failed
                t[1] += d.ran
        for key, (failed, ran) in totals.items():
            print(f"| {name} | `{key}` | {failed} / {ran} | {upper_bound(failed, ran):.2g} |")
        print(f"<!-- {name}: {time.perf_counter() - started:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
