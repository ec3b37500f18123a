"""Edge sizes and discrete latents in the evaluation's report, the diagnostics and compare.

* One example: a variance over x does not exist, so a unit's activity A_d = Cov_x(E_q[z_d|x])
  is not defined; it is reported as such (NaN in the tensors, null in JSON, "not defined" in
  the table and the verdict), never as 0 and never as "collapsed". A standard error over
  one example does not exist either: null in JSON, said in the table's caption.
* A categorical latent: its index is a label, not a number (torch's ``Categorical.mean`` is
  NaN), so its activity is that of its one-hot code, A = Σ_k Var_x(q(z = k | x)): exactly
  computable here from q's probabilities, whatever the draws (q(z | x) of a one-layer model
  does not depend on them). Three well-separated components with equal weights give
  A = 1 − 1/3 in the large-N limit and I_q = log 3; a q that ignores x gives A = 0 exactly,
  which is collapse.
* A mixed chain (a categorical z_2 over a Gaussian z_1) gets both layers' activities.
* A q without a finite mean (a Cauchy): activity not defined, not collapsed.
* The commands on one example (``evaluate``, ``report``, ``compare``) finish, their JSON is
  strict (no NaN) and says "not defined" where it is.

Mutants tried by hand (each reverted; the tests that failed are named):

* ``_Activity.result`` returning zeros for one example (the old code):
  ``test_activity_over_one_example_is_not_defined``, ``test_commands_on_one_example``;
  its guard as ``< 1`` (torch's variance of one row is NaN too, with a warning):
  ``test_activity_over_one_example_is_not_defined`` (warnings as errors).
* ``_unit_means`` without its categorical branch (``factor.mean``: NaN):
  ``test_categorical_activity_is_the_variance_of_the_one_hot``,
  ``test_a_mixed_chain_gets_both_activities``; without unwrapping ``Independent``:
  ``test_a_vector_of_categoricals_gets_an_activity_per_scalar``.
* ``_unit_means``' categorical branch on ``logits`` instead of ``probs``, and
  ``_Activity.result`` reducing the one-hot with ``mean(-1)`` instead of ``sum(-1)``:
  ``test_categorical_activity_is_the_variance_of_the_one_hot``.
* ``_layer_result`` without the finiteness check (NaN > threshold is False: "collapsed"):
  ``test_activity_over_one_example_is_not_defined``, ``test_a_q_without_a_mean``.
* ``LayerDiagnostics.to_json`` writing NaN (``t.tolist()``), the verdict without its "not
  defined" line, ``_undefined_why``'s ``< 2`` as ``< 1``, either table row showing a count,
  the caption's "1 examples": ``test_activity_over_one_example_is_not_defined``.
* the verdict's "its unit active" as "all 1 units active":
  ``test_categorical_activity_is_the_variance_of_the_one_hot``.
* ``_unit_axes`` without its "not defined" text, without its x limits, or without its
  integer tick locator: ``test_the_plots_of_one_unit_on_one_example``.
* ``eval_report._caption`` without its one-example clause:
  ``test_one_example_report_says_it_has_no_standard_error``.
* the compare title's one-example clause: ``test_commands_on_one_example``.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from cli_runner import TINY, run_cli
from rich.console import Console
from torch.distributions import Categorical, Cauchy, Independent, Normal

import latentkit as lk
from latentkit import diagnostics as dg
from latentkit.evaluation import report_table

K, D = 3, 2
MEANS = torch.tensor([[-10.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)


def _strict_json(value) -> str:
    """``value`` as JSON, refusing NaN and ±inf (what a strict reader would refuse)."""
    return json.dumps(value, allow_nan=False)


def _render(table) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(table)
    return out.getvalue()


# --------------------------------------------------------------------------- small models


class _MixtureGenerative(lk.GenerativeChain):
    """z ~ Categorical(uniform over K); x | z = k ~ N(MEANS[k], I)."""

    def __init__(self):
        super().__init__((D,), [()])
        self.means = torch.nn.Parameter(MEANS.clone())

    def prior(self, n):
        return Categorical(logits=self.means.new_zeros(n, K))

    def likelihood(self, z1):
        return Independent(Normal(self.means[z1], 1.0), 1)


class _Responsibilities(lk.SingleLayerPosterior):
    """q(z | x) = p(z | x), or with ``blind`` a q that ignores x (uniform)."""

    def __init__(self, generative, blind=False):
        super().__init__()
        object.__setattr__(self, "_p", generative)
        self.blind = blind

    def forward(self, x):
        if self.blind:
            return Categorical(logits=x.new_zeros(x.shape[0], K))
        log_lik = Normal(self._p.means, 1.0).log_prob(x[:, None, :]).sum(-1)
        return Categorical(logits=log_lik)


def _mixture(blind=False) -> lk.LatentModel:
    p = _MixtureGenerative().double()
    q = _Responsibilities(p, blind)
    return lk.LatentModel(p, q, objective_config={"estimator": "enumerated"})


def _mixture_data(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return MEANS[torch.arange(n) % K] + torch.randn(n, D, generator=g, dtype=torch.float64)


class _TwoLayerGenerative(lk.GenerativeChain):
    """z_2 ~ Categorical(K); z_1 | z_2 = k ~ N(MEANS[k], I); x | z_1 ~ N(z_1, I)."""

    def __init__(self):
        super().__init__((D,), [(D,), ()])
        self.means = torch.nn.Parameter(MEANS.clone())

    def prior(self, n):
        return Categorical(logits=self.means.new_zeros(n, K))

    def transition(self, l, z):
        return Independent(Normal(self.means[z], 1.0), 1)

    def likelihood(self, z1):
        return Independent(Normal(z1, 1.0), 1)


class _TwoLayerPosterior(lk.PosteriorChain):
    """q(z_2 | x): the nearest-mean responsibilities; q(z_1 | z_2, x) = N((x + MEANS[z_2]) / 2,
    ½ I)."""

    top_down = True

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def top(self, x):
        return Categorical(logits=-0.25 * self.scale * ((x[:, None, :] - MEANS) ** 2).sum(-1))

    def down(self, l, z, x):
        return Independent(Normal((x + MEANS[z]) / 2, math.sqrt(0.5)), 1)


class _CauchyPosterior(lk.SingleLayerPosterior):
    """q(z | x) = Cauchy(x, 1): no mean (torch's ``Cauchy.mean`` is NaN)."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(D, dtype=torch.float64))

    def forward(self, x):
        return Independent(Cauchy(x + self.loc, 1.0), 1)


class _GaussianGenerative(lk.GenerativeChain):
    def __init__(self):
        super().__init__((D,), [(D,)])
        self.shift = torch.nn.Parameter(torch.zeros(D, dtype=torch.float64))

    def prior(self, n):
        return Independent(Normal(self.shift.expand(n, D), 1.0), 1)

    def likelihood(self, z1):
        return Independent(Normal(z1 + self.shift, 1.0), 1)


class _Digits(lk.GenerativeChain):
    """Two categorical scalars z_j ∈ {0, 1, 2}, uniform; x_j | z_j ~ N(10 z_j, 1)."""

    def __init__(self):
        super().__init__((D,), [(D,)])
        self.spacing = torch.nn.Parameter(torch.tensor(10.0, dtype=torch.float64))

    def prior(self, n):
        return Independent(Categorical(logits=self.spacing.new_zeros(n, D, K)), 1)

    def likelihood(self, z1):
        return Independent(Normal(self.spacing * z1, 1.0), 1)


class _DigitsPosterior(lk.SingleLayerPosterior):
    """q(z_j | x) ∝ exp(−(x_j − 10 k)² / 2), each scalar on its own: Independent(Categorical)."""

    def __init__(self):
        super().__init__()
        self.spacing = torch.nn.Parameter(torch.tensor(10.0, dtype=torch.float64))

    def forward(self, x):
        levels = self.spacing * torch.arange(K, dtype=x.dtype)
        return Independent(Categorical(logits=-0.5 * (x[..., None] - levels) ** 2), 1)


# --------------------------------------------------------------------------- the diagnostics


def test_activity_over_one_example_is_not_defined():
    """N = 1: activity NaN, ``active`` None, no unit counted active or collapsed; the
    verdict, the table and the JSON (strict, null) say "not defined"."""
    torch.manual_seed(0)
    model = lk.load_model("vae", data_shape=(5,), latent_dim=4, architecture="linear").double()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no variance of one example taken (torch warns)
        d = dg.diagnose(model, torch.randn(1, 5, dtype=torch.float64), num_draws=3)
    (layer,) = d.layers
    assert layer.activity.shape == (4,) and layer.activity.isnan().all()
    assert layer.active is None and layer.activity_undefined
    assert d.active_units is None and d.collapsed == ()
    assert "collapsed" not in d.verdict and "activity not defined (N = 1" in d.verdict
    table = _render(dg.diagnostics_table(d))
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in table.splitlines()
            if line.count("│") == 5}  # fmt: skip
    assert rows["active units (Cov_x E[z|x] > 0.01)"] == "not defined"
    assert rows["active units of z1"] == "not defined"
    assert "N = 1 example ×" in table
    body = json.loads(_strict_json(d.to_json()))
    assert body["layers"][0]["activity"] == [None] * 4
    assert body["layers"][0]["active"] is None and body["collapsed"] == []
    assert d.mutual_information.mean == pytest.approx(0.0, abs=1e-12)  # I_q ≤ log 1 = 0
    two = dg.diagnose(model, torch.randn(2, 5, dtype=torch.float64), num_draws=3)
    assert two.layers[0].activity.isfinite().all() and two.active_units is not None


def test_categorical_activity_is_the_variance_of_the_one_hot():
    """A one-layer categorical q: A = Σ_k Var_x(q(z = k | x)) (unbiased variance over the N
    examples), to float64 round-off; well-separated components: I_q = log 3 and the unit
    active; a q ignoring x: A = 0 exactly, and the unit collapsed."""
    n = 90
    x = _mixture_data(n)
    model = _mixture()
    d = dg.diagnose(model, x, num_draws=2)
    probs = model.posterior(x).probs.detach()
    expected = probs.var(0).sum()
    (layer,) = d.layers
    assert float(layer.activity[0]) == pytest.approx(float(expected), rel=1e-12)
    # separated by 10 standard deviations: q is one-hot to 1e-20, A = (2/3)·N/(N − 1)
    assert float(layer.activity[0]) == pytest.approx(2 / 3 * n / (n - 1), rel=1e-9)
    assert d.mutual_information.mean == pytest.approx(math.log(K), abs=1e-9)
    assert layer.active.tolist() == [True] and d.collapsed == ()
    assert "z1: its unit active" in d.verdict
    blind = dg.diagnose(_mixture(blind=True), x, num_draws=2)
    assert float(blind.layers[0].activity[0]) == 0.0
    assert blind.collapsed == ("z1",) and "collapsed" in blind.verdict


def test_a_vector_of_categoricals_gets_an_activity_per_scalar():
    """q(z | x) = Independent(Categorical) over two scalars: each scalar's activity is its
    one-hot's, Σ_k Var_x(q(z_j = k | x)), to round-off."""
    g = torch.Generator().manual_seed(3)
    x = 10.0 * torch.randint(0, K, (40, D), generator=g) + torch.randn(40, D, generator=g)
    model = lk.LatentModel(_Digits(), _DigitsPosterior())
    d = dg.diagnose(model, x.double(), num_draws=2)
    expected = model.posterior(x.double()).base_dist.probs.detach().var(0).sum(-1)
    torch.testing.assert_close(d.layers[0].activity, expected, rtol=1e-12, atol=0.0)
    assert d.active_units == D


def test_a_mixed_chain_gets_both_activities():
    """A categorical z_2 over a Gaussian z_1: z_2's activity is its one-hot's (exact, from
    q(z_2 | x)'s probabilities), z_1's the usual Cov_x(E_q[z_1 | x]), finite and large (the
    examples lie 10 apart); no layer undefined, no unit collapsed."""
    x = _mixture_data(60, seed=1)
    model = lk.LatentModel(_TwoLayerGenerative().double(), _TwoLayerPosterior())
    d = dg.diagnose(model, x, num_draws=4, joint=False)
    z1, z2 = d.layers
    expected = model.posterior.top(x).probs.detach().var(0).sum()
    assert float(z2.activity[0]) == pytest.approx(float(expected), rel=1e-12)
    assert z1.activity.shape == (D,) and z1.activity.isfinite().all()
    assert bool((z1.activity > 1.0).all())
    assert d.active_units == D + 1 and d.collapsed == ()
    assert "not defined" not in d.verdict


def test_a_q_without_a_mean():
    """q(z | x) a Cauchy: E_q[z | x] does not exist, so neither does the activity; it is
    said, and the units are not called collapsed."""
    model = lk.LatentModel(_GaussianGenerative(), _CauchyPosterior())
    d = dg.diagnose(model, _mixture_data(12), num_draws=2)
    assert d.layers[0].activity_undefined and d.collapsed == ()
    assert "E_q[z | x] is not finite" in d.verdict and "collapsed" not in d.verdict
    _strict_json(d.to_json())


def test_the_plots_of_one_unit_on_one_example(monkeypatch, tmp_path):
    """diagnostics_plot and comparison_plot of one unit on one example: no activity bar,
    the reason written on the panel, and the x axis one whole-numbered slot per unit
    (ticks at integers only, limits −0.5..0.5), not a continuous axis around a lone bar."""
    from latentkit.diagnostics import figures

    torch.manual_seed(0)
    model = lk.load_model("vae", data_shape=(5,), latent_dim=1, architecture="linear").double()
    d = dg.diagnose(model, torch.randn(1, 5, dtype=torch.float64), num_draws=2)
    seen = []
    real_save = figures._save
    monkeypatch.setattr(
        figures, "_save", lambda fig, path: (seen.append(fig), real_save(fig, path))[1]
    )
    figures.diagnostics_plot(d, tmp_path / "d.png")
    figures.comparison_plot({"one": d}, tmp_path / "c.png")
    for fig in seen:
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert any(t.startswith("activity not defined:\nN = 1") for t in texts), texts
        for ax in fig.axes:
            assert ax.get_xlim() == (-0.5, 0.5)
            ticks = [t for t in ax.get_xticks() if -0.5 <= t <= 0.5]
            assert ticks == [0.0], ticks


# --------------------------------------------------------------------------- evaluation report


def test_one_example_report_says_it_has_no_standard_error():
    """evaluate on one example: every standard error null in JSON (not 0), the table's
    caption says there is none, and the stderr cells are empty."""
    torch.manual_seed(0)
    model = lk.load_model("vae", data_shape=(5,), latent_dim=2, architecture="linear")
    r = lk.evaluate(model, torch.randn(1, 5), iwae_k=1)
    body = json.loads(_strict_json(r.to_json()))
    for key in ("elbo", "reconstruction", "prior_matching", "kl", "iwae", "nll_nats"):
        assert body[key]["stderr"] is None, key
    text = _render(report_table(r))
    assert "1 example (no standard error: it needs two)" in text
    assert "±" not in text


# --------------------------------------------------------------------------- the commands


def test_commands_on_one_example(tmp_path):
    """A tiny run: its report (``train --report``) and ``evaluate --json -`` on one example
    with IWAE k = 1 and the diagnostics on one example finish, their JSON is strict, the
    activity not defined and nothing collapsed; ``compare`` of that one run says it has no
    standard errors."""
    run = tmp_path / "run"
    one = ["--eval-limit", "1", "--diagnose", "1", "--iwae-k", "1", "--no-progress"]
    argv = ["train", *TINY, "--steps", "2", "--run-dir", str(run), "--report", *one]
    code, out, err = run_cli(argv)
    assert code == 0 and "Traceback" not in err, err
    words = " ".join(out.split())  # the captions wrap where the terminal width says
    assert "N = 1 example ×" in words and "z1: activity not defined (N = 1" in words
    report = json.loads(Path(run / "report.json").read_text(), parse_constant=_no_constant)
    assert report["evaluation"]["elbo"]["stderr"] is None
    diagnostics = report["diagnostics"]
    assert diagnostics["collapsed"] == [] and diagnostics["active_units"] is None
    code, out, err = run_cli(["evaluate", str(run), *one, "--json", "-"])
    assert code == 0, err
    body = json.loads(out, parse_constant=_no_constant)
    assert body["num_examples"] == 1 and body["iwae"]["stderr"] is None
    assert body["diagnostics"]["layers"][0]["activity"] == [None, None]
    code, out, err = run_cli(["compare", str(run)])
    assert code == 0, err
    assert "1 example (no standard errors)" in " ".join(out.split())


def _no_constant(name: str):
    raise AssertionError(f"JSON holds {name}")
