"""A class-conditional vdm's likelihood figures given the examples' labels: bounds on
−log p(x | c) (``latentkit_vdm.figures.likelihood_figures(..., condition=)``), and
``latentkit evaluate`` / ``report`` on a conditional vdm run, which give the figures the
split's labels (docs/conditional.md).

The figures are recomputed from their definitions with the model's own public methods at
the same seed (``lk.elbo(condition=)``, ``continuous_elbo(condition=)``, the ODE of the view
``model.given(c)``, ``diffusion_integrand(condition=)``), in float64 on a tiny model whose
parameters are all drawn at random (so every class gives another ε̂): the same operations in
the same order, so the tolerance is round-off (1e-12 relative), far below what another
class's labels change. Batches of 2 over 5 examples with labels that differ within a batch:
a label slice or a repetition in the wrong order gives an example another class's figure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli
from latentkit_vdm.figures import ode_decoder_bound, per_t_breakdown

import latentkit as lk
from latentkit.cli.data import _load_recorded_data
from latentkit.ode import ode_log_prob
from latentkit.testing import strategies as lks
from latentkit.trained import load_trained_model

F64 = torch.float64
K, D, N = 3, 3, 5
LABELS = torch.tensor([0, 2, 1, 1, 0])
GRID = {"method": "rk4", "options": {"step_size": 0.125}}
"""A fixed grid (an adaptive solve of a random network takes minutes): the recomputation
solves on the same grid, so the solver's precision does not enter the comparison."""


def _model(*, classes: int = K):
    """A tiny float64 vdm conditional on ``classes`` classes (0: unconditional), every
    parameter drawn at random."""
    model = lk.load_model("vdm", data_shape=(D,), hidden=(8,), num_timesteps=4,
                          decoder="gaussian", classes=classes)  # fmt: skip
    return lks.randomize_parameters(model, 7, 0.5).double().eval()


def _data() -> torch.Tensor:
    return torch.randn(N, D, generator=torch.Generator().manual_seed(2), dtype=F64)


def _close(got: float, want: float) -> bool:
    return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-9)


def _bounds(model, data, c, *, batch: int, k: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Each example's −ELBO_T given its label and its −ELBO_∞ given its label, the mean of
    its ``k`` draws at stratified t, drawn in the figures' order."""
    disc, cont = [], []
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for x, y in zip(data.split(batch), c.split(batch), strict=True):
            disc.append(-lk.elbo(model, x, condition=y).total)
            u = torch.rand(x.shape[0], 1, dtype=F64)
            t = torch.cat([(u[i] + torch.arange(k, dtype=F64)) / k for i in range(x.shape[0])])
            labels = torch.cat([y[i].repeat(k) for i in range(x.shape[0])])
            reps = x.repeat_interleave(k, dim=0)
            draws = -model.continuous_elbo(reps, t=t, condition=labels).total
            cont.append(torch.stack([draws[i * k : (i + 1) * k].mean() for i in range(len(x))]))
    return torch.cat(disc), torch.cat(cont)


def _figures(model, data, c, seed: int = 5, **options):
    return model.likelihood_figures(data, ode_examples=0, batch_size=2, t_draws=3, num_t=4,
                                    seed=seed, condition=c, **options)  # fmt: skip


def test_the_bounds_are_each_examples_own_bound_given_its_label():
    """−ELBO_T and −ELBO_∞ given c: the means of each example's ``lk.elbo(condition=)`` and
    of its own 3 draws of ``continuous_elbo(condition=)``, its label repeated with it."""
    model, data = _model(), _data()
    fig = _figures(model, data, LABELS)
    disc, cont = _bounds(model, data, LABELS, batch=2, k=3, seed=5)
    assert _close(fig["discrete"]["nll_nats"]["mean"], float(disc.mean()))
    assert _close(fig["discrete"]["median_nll_nats"], float(disc.median()))
    assert _close(fig["continuous"]["nll_nats"]["mean"], float(cont.mean()))
    assert _close(fig["continuous"]["median_nll_nats"], float(cont.median()))
    se = float(cont.std()) / math.sqrt(N)
    assert _close(fig["continuous"]["nll_nats"]["stderr"], se)


def test_other_labels_give_other_figures():
    """The same draws given (c + 1) mod K: another ε̂ for every example, so both bounds
    move (by far more than round-off); the recomputation given those labels agrees."""
    model, data = _model(), _data()
    other = (LABELS + 1) % K
    a, b = _figures(model, data, LABELS), _figures(model, data, other)
    for key in ("discrete", "continuous"):
        moved = abs(a[key]["nll_nats"]["mean"] - b[key]["nll_nats"]["mean"])
        assert moved > 1e-6 * abs(a[key]["nll_nats"]["mean"]), key
    _, cont = _bounds(model, data, other, batch=2, k=3, seed=5)
    assert _close(b["continuous"]["nll_nats"]["mean"], float(cont.mean()))


def test_the_per_t_breakdown_reads_each_rows_label():
    """½ γ'(t) ‖ε − ε̂_θ(z_t, t, c)‖² on the grid, ε drawn per (t, example) in the order of
    ``x.repeat(num_t)``, each row with its own example's label."""
    model, data = _model(), _data()
    got = per_t_breakdown(model, data, num_t=4, batch_size=2, seed=3, condition=LABELS)
    core = model.generative.core
    t_grid = (torch.arange(4, dtype=F64) + 0.5) / 4
    sums = torch.zeros(4, dtype=F64)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for x, y in zip(data.split(2), LABELS.split(2), strict=True):
            xs = torch.cat([x] * 4)
            rows = torch.cat([y] * 4)
            ts = torch.cat([t.repeat(x.shape[0]) for t in t_grid])
            vals = core.diffusion_integrand(xs, ts, torch.randn_like(xs), condition=rows)
            sums += vals.reshape(4, -1).sum(-1)
    for g, w in zip(got["integrand"], (sums / N).tolist(), strict=True):
        assert _close(g, w)


def test_the_ode_figures_are_the_flow_given_each_batchs_labels():
    """The two ODE figures on the first 3 examples (batches of 2): −``ode_decoder_bound`` and
    −``ode_log_prob`` of the view ``model.given(c)`` of each batch, the noise from one
    generator seeded with the evaluation's seed, drawn in the evaluation's order."""
    model, data = _model(), _data()
    fig = model.likelihood_figures(data, ode_examples=3, batch_size=2, t_draws=1, num_t=2,
                                   seed=4, condition=LABELS, **GRID)  # fmt: skip
    gen = torch.Generator().manual_seed(4)
    ode, direct = [], []
    with torch.no_grad():
        for x, y in ((data[:2], LABELS[:2]), (data[2:3], LABELS[2:3])):
            view = model.given(y)
            ode.append(-ode_decoder_bound(view, x, generator=gen, **GRID))
            direct.append(-ode_log_prob(view, x, generator=gen, **GRID).log_density)
    ode, direct = torch.cat(ode), torch.cat(direct)
    assert _close(fig["ode"]["nll_nats"]["mean"], float(ode.mean()))
    assert _close(fig["ode_direct"]["nll_nats"]["mean"], float(direct.mean()))
    assert _close(fig["ode_direct"]["median_nll_nats"], float(direct.median()))


@pytest.mark.parametrize(
    "classes, condition, error, message",
    [
        (K, None, lk.InputError, "is conditional on class labels 0..2: pass condition="),
        (0, LABELS, lk.InputError, "takes no condition (it is not a conditional model)"),
        (K, LABELS[:4], lk.ShapeError, "must have shape [5] (one label per example)"),
        (K, LABELS.double(), lk.InputError, "must be integer class labels 0..2"),
        (K, torch.tensor([0, 1, 2, 5, 0]), lk.InputError, "5 is outside the label set 0..2"),
        (K, "0", lk.InputError, "must be class labels (an int or an integer tensor)"),
    ],
)
def test_bad_conditions_are_one_line(classes, condition, error, message):
    model, data = _model(classes=classes), _data()
    for call in (
        lambda: _figures(model, data, condition),
        lambda: per_t_breakdown(model, data, num_t=2, condition=condition),
    ):
        with pytest.raises(error) as info:
            call()
        text = str(info.value)
        assert message in text and "\n" not in text, text
        assert text.startswith(("likelihood_figures: ", "per_t_breakdown: ")), text


def test_a_view_given_a_condition_is_refused():
    """The figures slice the labels batch by batch: they take the model and condition=."""
    model, data = _model(), _data()
    with pytest.raises(lk.InputError, match="give the model itself and condition="):
        _figures(model.given(LABELS), data, None)


# --- the command line --------------------------------------------------------------------

DATA = ["--data", "digits", "--limit", "300", "--batch-size", "32", "--no-progress"]
CVDM = ["--model", "vdm", "--set", "model.classes=10", "--set", "hidden=[16]",
        "--set", "model.num_timesteps=8"]  # fmt: skip
EVAL = ["--no-progress", "--diagnose", "0", "--iwae-k", "1", "--eval-limit", "20"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cvdm") / "run"
    code, _, err = run_cli(["train", *DATA, *CVDM, "--steps", "2", "--run-dir", str(folder)])
    assert code == 0, err
    return folder


def test_evaluate_and_report_give_the_figures_the_test_labels(run):
    """``evaluate --json -`` has finite figures, those of the model given the first 20 test
    examples' own labels (recomputed here: the same call, so the same values; given labels
    shifted by one class they differ), and ``report`` writes the same figures."""
    code, out, err = run_cli(["evaluate", str(run), *EVAL, "--json", "-"])
    assert code == 0, err
    figures = json.loads(out)["likelihood_figures"]
    for key in ("discrete", "continuous"):
        assert math.isfinite(figures[key]["nll_nats"]["mean"]), figures[key]
        assert math.isfinite(figures[key]["bits_per_dim"]["mean"]), figures[key]
    model, info = load_trained_model(run)
    ds = _load_recorded_data(info, {})
    x, y = ds.test[:20], ds.test_labels[:20]
    for labels, same in ((y, True), ((y + 1) % 10, False)):
        fig = model.likelihood_figures(x, discrete=True, seed=0, ode_examples=0, condition=labels)
        for key in ("discrete", "continuous"):
            assert (fig[key]["nll_nats"] == figures[key]["nll_nats"]) is same, key
    code, _, err = run_cli(["report", str(run), *EVAL])
    assert code == 0, err
    written = json.loads((run / "report.json").read_text())["likelihood_figures"]
    for key in ("discrete", "continuous"):
        assert written[key]["nll_nats"] == figures[key]["nll_nats"], key
