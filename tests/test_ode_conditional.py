"""The probability-flow ODE figure of a conditional model (``lk.evaluate(..., conditions=,
ode_examples=)``, ``latentkit.ode.ode_figure(conditions=)``): each example's figure is the
flow of the model given its own condition, −log p_ODE(x | c).

Recomputed from its definition (``ode_log_prob`` of the view ``model.given(c)``, one example
at a time) in float64 on a tiny class-conditional ``vdm`` whose parameters are all drawn at
random, so every class gives another flow. The recomputation solves the same batches on the
same fixed grid with the exact divergence: the same operations in the same order, so the
tolerance is round-off (1e-10 relative). (Solved alone, an example would not agree to
round-off: this random flow is chaotic, and the last-bit differences of a matrix product
over another batch size grow to whole nats along the path.) Batches of 2 over 5 examples
whose labels differ within a batch: a label sliced or repeated in the wrong order gives an
example another class's figure, which differs by far more."""

from __future__ import annotations

import math

import pytest
import torch

import latentkit as lk
from latentkit.ode import ode_figure, ode_log_prob
from latentkit.testing import strategies as lks

F64 = torch.float64
K, D, N = 3, 3, 5
LABELS = torch.tensor([0, 2, 1, 1, 0])
GRID = {"method": "rk4", "options": {"step_size": 0.125}, "divergence": "exact"}


def _model(classes: int = K):
    model = lk.load_model("vdm", data_shape=(D,), hidden=(8,), num_timesteps=4,
                          decoder="gaussian", classes=classes)  # fmt: skip
    return lks.randomize_parameters(model, 7, 0.5).double().eval()


def _data() -> torch.Tensor:
    return torch.randn(N, D, generator=torch.Generator().manual_seed(2), dtype=F64)


def _one_by_one(model, data: torch.Tensor, labels: torch.Tensor, batch: int = 2) -> list[float]:
    """−log p_ODE(x_i | c_i), batch by batch, each batch solved in the view given its labels."""
    out: list[float] = []
    with torch.no_grad():
        for i in range(0, data.shape[0], batch):
            view = model.given(labels[i : i + batch])
            out += (-ode_log_prob(view, data[i : i + batch], **GRID).log_density).tolist()
    return out


def test_each_example_gets_the_flow_given_its_own_label():
    model, data = _model(), _data()
    with torch.no_grad():
        fig = ode_figure(model, data, torch.zeros(N, dtype=F64), discrete=False,
                         batch_size=2, conditions=LABELS, **GRID)  # fmt: skip
    want = _one_by_one(model, data, LABELS)
    got = fig.ode.tolist()
    assert all(math.isclose(g, w, rel_tol=1e-10) for g, w in zip(got, want, strict=True))
    other = _one_by_one(model, data, (LABELS + 1) % K)
    assert all(abs(g - o) > 1e-6 for g, o in zip(got, other, strict=True))


def test_evaluate_gives_the_ode_figure_its_conditions():
    model, data = _model(), _data()
    report = lk.evaluate(model, data, conditions=LABELS, iwae_k=0, batch_size=2,
                         ode_examples=4, ode_options=GRID)  # fmt: skip
    want = _one_by_one(model, data[:4], LABELS[:4])
    got = report.ode.ode.tolist()
    assert len(got) == 4
    assert all(math.isclose(g, w, rel_tol=1e-10) for g, w in zip(got, want, strict=True))


def test_a_view_given_one_label_per_example_is_sliced_per_batch():
    model, data = _model(), _data()
    with torch.no_grad():
        fig = ode_figure(model.given(LABELS), data, torch.zeros(N, dtype=F64),
                         discrete=False, batch_size=2, **GRID)  # fmt: skip
    want = _one_by_one(model, data, LABELS)
    got = fig.ode.tolist()
    assert all(math.isclose(g, w, rel_tol=1e-10) for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize(
    ("make", "conditions", "match"),
    [
        (lambda: _model(), None, "conditional on class labels 0..2: pass conditions="),
        (lambda: _model(0), LABELS, "takes no condition"),
        (lambda: _model(), torch.tensor([0, 1, 2, 3, 0]), r"0\.\.2"),
        (lambda: _model(), LABELS[:3], "5"),
        (lambda: _model().given(LABELS), LABELS, "already given a condition"),
        (lambda: _model().given(LABELS[:2]), None, "5 examples, the model's condition 2"),
    ],
    ids=["missing", "unconditional", "out-of-range", "wrong-count", "twice", "view-rows"],
)
def test_bad_conditions_are_refused_before_any_solve(make, conditions, match):
    model, data = make(), _data()
    with pytest.raises(lk.LatentkitError, match=match):
        ode_figure(model, data, torch.zeros(N, dtype=F64), discrete=False,
                   conditions=conditions, **GRID)  # fmt: skip
