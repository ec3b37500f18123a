"""Diagnostics given the condition: a class-conditional model's ELBO surgery, class by class.

E_data KL(q(z|x,c) ‖ p(z|c)) = I_q(x; z | c) + Σ_k π_k KL(q(z|c=k) ‖ p(z|c=k)), π_k = N_k / N
(latentkit.diagnostics' docstring): the figures are the π-weighted combination of each
class's walk of ``model.given(k)``, the activity pooled over every example; the refusals;
``latentkit evaluate`` and ``report`` on a conditional run (docs/conditional.md).

Mutants of latentkit/diagnostics/conditional.py tried by hand, and what caught each: a
weight π_k dropped from the means (``test_the_figures_are_the_weighted_combination...``),
the standard errors combined linearly, Σ π_k se_k (the same), the condition not passed,
every class walked as ``model.given(0)`` (the same, and
``test_the_activity_is_pooled_over_every_example``), the activity averaged within classes
without the spread of the class means (``test_the_activity_is_pooled...``), the
per-dimension KL unweighted (``test_the_figures_are_the_weighted_combination...``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_runner import run_cli

import latentkit as lk
from latentkit import diagnostics as dg

K = 3
LABELS = torch.tensor([0, 2, 0, 1, 0, 2, 0, 1, 0, 1, 0, 2, 1])  # N_k = 6, 4, 3
ESTIMATES = ("mutual_information", "aggregate_kl", "expected_kl", "reconstruction", "elbo")
LAYER_ESTIMATES = ("mutual_information", "aggregate_kl", "expected_kl", "kl_term")


def _model(name: str = "vae") -> lk.LatentModel:
    torch.manual_seed(0)
    if name == "hvae":
        model = lk.load_model("hvae", data_shape=(4,), latent_dims=(2, 2), hidden=(8,), classes=K)
    else:
        model = lk.load_model(name, data_shape=(4,), latent_dim=2, hidden=(8,), classes=K)
    return model.double()


def _data() -> torch.Tensor:
    return torch.randn(LABELS.numel(), 4, generator=torch.Generator().manual_seed(1)).double()


def _combined(parts, weights, field, layer=None):
    """The π-weighted combination of the classes' Estimates ``field`` (of ``layer``)."""
    es = [getattr(p if layer is None else p.layers[layer], field) for p in parts]
    if any(e is None for e in es):
        return None
    mean = sum(w * e.mean for w, e in zip(weights, es))
    se = math.sqrt(sum(w * w * e.stderr**2 for w, e in zip(weights, es)))
    return mean, se


def _same(estimate, expected) -> bool:
    if estimate is None or expected is None:
        return estimate is None and expected is None
    return all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-14)
               for a, b in zip((estimate.mean, estimate.stderr), expected))  # fmt: skip


@pytest.mark.parametrize("name", ["vae", "hvae"])
def test_the_figures_are_the_weighted_combination_of_each_class(name):
    """(a) every Estimate is Σ π_k of diagnose(model.given(k), class k's data, seed) with
    the standard error sqrt(Σ π_k² se_k²); the per-dimension KL π-weighted likewise."""
    model, x = _model(name), _data()
    d = dg.diagnose(model, x, conditions=LABELS, seed=5)
    parts = [dg.diagnose(model.given(k), x[LABELS == k], seed=5) for k in range(K)]
    weights = [int((LABELS == k).sum()) / LABELS.numel() for k in range(K)]
    assert d.num_examples == 13 and d.class_counts == {0: 6, 1: 4, 2: 3}
    assert d.condition == "class labels 0..2" and d.notes[0].startswith("given the condition")
    for field in ESTIMATES:
        assert _same(getattr(d, field), _combined(parts, weights, field))
    assert d.mutual_information is not None and d.expected_kl is not None
    for i, layer in enumerate(d.layers):
        for field in LAYER_ESTIMATES:
            expected = _combined(parts, weights, field, layer=i)
            assert _same(getattr(layer, field), expected), (layer.name, field)
        per_dim = sum(w * p.layers[i].per_dimension_kl for w, p in zip(weights, parts))
        torch.testing.assert_close(layer.per_dimension_kl, per_dim, rtol=1e-12, atol=1e-14)
    # each class's per-draw values and log-likelihoods back in their examples' rows
    for k, p in enumerate(parts):
        torch.testing.assert_close(d.log_likelihood[LABELS == k], p.log_likelihood)
        torch.testing.assert_close(d.joint.log_q_aggregate[LABELS == k], p.joint.log_q_aggregate)


def test_the_identity_holds_per_draw_and_the_information_is_bounded_per_class():
    """(b) expected_kl = I_q(x; z | c) + Σ_k π_k KL(q(z|c=k) ‖ p(z|c=k)) per draw, to
    round-off; I_q(x; z | c) ≤ Σ_k π_k log N_k, each draw's value ≤ log N_k of its class."""
    model, x = _model("hvae"), _data()
    d = dg.diagnose(model, x, conditions=LABELS, num_draws=3)
    draws = d.joint
    torch.testing.assert_close(
        draws.expected_kl(), draws.mutual_information() + draws.aggregate_kl(), rtol=0, atol=1e-10
    )
    total = d.mutual_information.mean + d.aggregate_kl.mean
    assert abs(d.expected_kl.mean - total) <= 1e-10 * (1 + abs(total))
    counts = torch.bincount(LABELS).double()
    bound = float((counts / 13 * counts.log()).sum())
    assert math.isclose(d.information_bound, bound, rel_tol=1e-12)
    assert 0 <= d.mutual_information.mean <= bound < d.log_n
    per_row = counts.log()[LABELS].unsqueeze(1)
    assert bool((draws.mutual_information() <= per_row + 1e-9).all())
    assert d.to_json()["class_counts"] == {"0": 6, "1": 4, "2": 3}


def test_the_activity_is_pooled_over_every_example():
    """(c) A_d = Cov_x(E_q[z_d | x, c]) over all N examples (the unconditional formula, N − 1,
    on the pooled posterior means), not the classes' within-class activities averaged."""
    model, x = _model(), _data()
    d = dg.diagnose(model, x, conditions=LABELS, num_draws=2, active_threshold=1e-4)
    q = model.given(LABELS).posterior
    means = q.first(q.encode(x)).mean  # one Gaussian layer: E_q[z | x, c] exactly
    torch.testing.assert_close(d.activity, means.var(0), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(d.layers[0].active, means.var(0) > 1e-4)
    within = sum(
        (LABELS == k).double().mean() * means[LABELS == k].var(0) for k in range(K)
    )  # without the spread of the class means: another figure
    assert not torch.allclose(d.activity, within, rtol=1e-3)


BAD_IDS = ["missing", "shape", "dtype", "range", "negative", "list", "unconditional", "vector",
           "member-and-conditions", "per-example-member"]  # fmt: skip


def _unconditional() -> lk.LatentModel:
    return lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,)).double()


def _vector_model() -> lk.LatentModel:
    """A model whose spec says a float vector condition (refused before any work)."""
    model = _model()
    model.generative.condition_spec = lk.ConditionSpec(shape=(2,))
    return model


@pytest.mark.parametrize(
    "make, conditions, error, message",
    [
        (_model, None, lk.InputError, "pass conditions="),
        (_model, LABELS[:5], lk.ShapeError, r"conditions must have shape \[13\]"),
        (_model, LABELS.double(), lk.InputError, "conditions must be integer class labels"),
        (_model, LABELS + 1, lk.InputError, "conditions 3 is outside the label set 0..2"),
        (_model, LABELS - 1, lk.InputError, "conditions -1 is outside the label set"),
        (_model, LABELS.tolist(), lk.InputError, "conditions must be class labels"),
        (_unconditional, LABELS, lk.InputError, "takes no conditions"),
        (_vector_model, None, lk.InputError, "no aggregate posterior q\\(z \\| c\\) per"),
        (lambda: _model().given(1), LABELS, lk.InputError, "already given a condition"),
        (lambda: _model().given(LABELS), None, lk.InputError, "given 13 conditions"),
    ],
    ids=BAD_IDS,
)
def test_bad_conditions_are_one_error(monkeypatch, make, conditions, error, message):
    """(d) each bad input is one error naming it, raised before a draw is made."""

    def no_walk(*args, **kwargs):
        raise AssertionError("diagnose walked a chain before refusing its arguments")

    monkeypatch.setattr("latentkit.diagnostics.surgery._walk", no_walk)
    monkeypatch.setattr("latentkit.diagnostics.conditional._walk", no_walk)
    with pytest.raises(error, match=message) as caught:
        dg.diagnose(make(), _data(), conditions=conditions)
    assert "\n" not in str(caught.value)


def test_one_int_is_every_example_class_and_a_member_is_diagnosed_as_before():
    model, x = _model(), _data()
    d = dg.diagnose(model, x, conditions=2, seed=3)
    plain = dg.diagnose(model.given(2), x, seed=3)
    assert d.class_counts == {2: 13} and plain.condition == "" and not plain.class_counts
    assert _same(d.mutual_information, (plain.mutual_information.mean,
                                        plain.mutual_information.stderr))  # fmt: skip
    torch.testing.assert_close(d.activity, plain.activity)


# ---- in the pipeline: `latentkit evaluate` and `report` on a conditional run ----------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cvae-diag") / "run"
    argv = ["train", "--model", "vae", "--set", "classes=10", "--data", "digits", "--limit",
            "256", "--steps", "10", "--batch-size", "32", "--no-progress", "--set",
            "hidden=[16]", "--set", "latent_dim=3", "--eval-every", "10", "--set",
            "train.diagnose_examples=40", "--run-dir", str(folder)]  # fmt: skip
    code, _, err = run_cli(argv)
    assert code == 0, err
    return folder


EVAL = ["--no-progress", "--iwae-k", "0", "--eval-limit", "40", "--diagnose", "40"]


def test_evaluate_reports_the_diagnostics_given_the_labels(run):
    """(e) `latentkit evaluate` diagnoses a conditional run given its examples' labels."""
    code, out, err = run_cli(["evaluate", str(run), *EVAL, "--json", "-"])
    assert code == 0, err
    assert "diagnostics skipped" not in err
    d = json.loads(out)["diagnostics"]
    assert d is not None and d["condition"] == "class labels 0..9"
    assert d["num_examples"] == 40 and sum(d["class_counts"].values()) == 40
    mi, agg, total = (d[k]["mean"] for k in ("mutual_information", "aggregate_kl", "expected_kl"))
    assert abs(mi + agg - total) <= 1e-6 * (1 + abs(total))
    assert 0 <= mi <= d["information_bound"] + 1e-9
    code, out, err = run_cli(["evaluate", str(run), *EVAL])
    assert code == 0, err
    assert "I_q(x; z | c)" in out and "given class labels 0..9, by class" in out


def test_report_and_the_trainer_diagnose_a_conditional_run(run):
    """`latentkit report` writes the diagnostics; the trainer logged its diagnostics line."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["split"] == "diagnostics"] == [10]
    code, _, err = run_cli(["report", str(run), *EVAL])
    assert code == 0, err
    report = json.loads((run / "report.json").read_text())
    assert report["diagnostics"]["condition"] == "class labels 0..9"
    assert "diagnostics" in report["files"]
