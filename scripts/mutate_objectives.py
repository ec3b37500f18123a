"""Apply each mutation of docs/objectives.md's table to the source, run the test that should
catch it, and restore the file: `python scripts/mutate_objectives.py` (about 2 minutes).
Prints one line per mutation, and exits 1 if any survived."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
T = "tests/test_objectives.py::"
MUTANTS = [
    (
        "src/latentkit/estimators.py",
        "kl = layer_term(model, x, l, h=h) * (L - 1)",
        "kl = layer_term(model, x, l, h=h) * (L - 2)",
        T + "test_single_layer_elbo_is_unbiased",
    ),
    (
        "plugins/ddpm/latentkit_ddpm/objectives.py",
        "self.config.weight * model.num_layers * vlb",
        "self.config.weight * (model.num_layers - 1) * vlb",
        T + "test_hybrid_is_simple_plus_lambda_T_times_the_bound_terms",
    ),
    (
        "src/latentkit/objectives/elbo.py",
        "scaled = term / w[l - 2]",
        "scaled = term * w[l - 2]",
        T + "test_importance_sampled_elbo_is_unbiased",
    ),
    (
        "src/latentkit/objectives/elbo.py",
        "rms = past.pow(2).mean(-1).sqrt()",
        "rms = past.mean(-1)",
        T + "test_importance_sampled_elbo_is_unbiased",
    ),
    (
        "src/latentkit/objectives/iwae.py",
        "holder.append(torch.softmax(log_w.detach(), dim=0).reshape(-1))",
        "holder.append(torch.ones_like(log_w).reshape(-1))",
        T + "test_dreg_and_stl_gradients",
    ),
    (
        "src/latentkit/objectives/iwae.py",
        "return -(torch.logsumexp(log_w, dim=0) - math.log(k))",
        "return -(torch.logsumexp(log_w, dim=0) - math.log(max(k - 1, 1)))",
        T + "test_iwae_objective_is_iwae",
    ),
    (
        "src/latentkit/objectives/elbo.py",
        "(1 - math.cos(math.pi * u)) / 2",
        "(1 + math.cos(math.pi * u)) / 2",
        T + "test_warmup_schedule_values",
    ),
    (
        "src/latentkit/objectives/elbo.py",
        "torch.where(term.mean(0) > lam, term,",
        "torch.where(term > lam, term,",
        T + "test_free_bits_per_layer_and_per_dimension",
    ),
    (
        "src/latentkit/objectives/elbo.py",
        "(self.layer_count[sorted_idx] + rank) % h",
        "(self.layer_count[sorted_idx]) % h",
        T + "test_importance_sampler_history_matches_one_at_a_time_pushes",
    ),
]


def main() -> int:
    survived = 0
    for path, old, new, test in MUTANTS:
        file = ROOT / path
        text = file.read_text()
        if text.count(old) != 1:
            print(f"SKIPPED (text not found once): {path}: {old!r}")
            survived += 1
            continue
        file.write_text(text.replace(old, new))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
        finally:
            file.write_text(text)
        caught = done.returncode != 0
        survived += not caught
        print(f"{'caught  ' if caught else 'SURVIVED'} {path}: {old!r} -> {new!r} by {test}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
