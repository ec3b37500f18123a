"""The probability-flow ODE never evaluates a drift outside its time span (``latentkit.ode``).

torchdiffeq's adaptive methods choose their first step with a probe f(t0 + h0, y0 + h0 f0),
h0 = 0.01 ‖y0‖/‖f0‖, which leaves the span whenever the drift is small beside the state.
The models here are built so that it does (``test_the_probe_leaves_the_span_without_the_guard``
shows it on the same setups), and their drift is NaN outside the span, as a cosine schedule's
γ is: every t the drift sees is recorded and must lie in the span.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

import latentkit as lk
import latentkit.ode.solver as ode_solver  # where solve looks up within_span
from latentkit.ode import ADAPTIVE, METHODS, check_solver, solve, solver_options

F64 = torch.float64
SPAN = (0.5, 1.5)
EPS_DRIFT, K = 1e-4, 3.0
TOL = 1e-9


def _c(t, tiny_at: float):
    """c(t) = ε + K (t − tiny_at)²: tiny at one end, so a probe from that end overshoots."""
    return EPS_DRIFT + K * (t - tiny_at) ** 2


def _C():
    """∫ c(t) dt over the span (either end tiny): ε Δ + K Δ³/3."""
    d = SPAN[1] - SPAN[0]
    return EPS_DRIFT * d + K * d**3 / 3


class _Flow(nn.Module):
    """dz/dt = c(t) z on SPAN, NaN outside it; records every t it is called with."""

    ode_time_span = SPAN

    def __init__(self, dims: int, tiny_at: float = SPAN[0]):
        super().__init__()
        self.dims, self.tiny_at = dims, tiny_at
        self.seen: list[float] = []

    def probability_flow(self, t, z):
        self.seen.append(float(t))
        if not SPAN[0] <= float(t) <= SPAN[1]:
            return z * math.nan  # NaN, as a schedule undefined there gives
        return _c(t, self.tiny_at) * z

    def prior(self, n):
        zero = torch.zeros(n, self.dims, dtype=F64)
        return Independent(Normal(zero, torch.ones_like(zero)), 1)


class _Toy(nn.Module):
    """A model offering the probability-flow contract (``latentkit.ode``) and nothing else."""

    def __init__(self, dims: int = 3, dtype=F64):
        super().__init__()
        self.generative = _Flow(dims)
        self.anchor = nn.Parameter(torch.zeros(1, dtype=dtype))
        self.data_shape = (dims,)

    def reference(self):
        return self.anchor


def _closed_form(x):
    """log p(x) = log N(x e^C; 0, I) + D C: the linear ODE carries x to x e^C."""
    C = _C()
    z_end = x * math.exp(C)
    return Normal(0.0, 1.0).log_prob(z_end).sum(-1) + x.shape[-1] * C


def _x(n=4, dims=3):
    return torch.randn(n, dims, generator=torch.Generator().manual_seed(0), dtype=F64)


CASES = [(m, None) for m in ADAPTIVE] + [
    ("rk4", {"step_size": 1 / 64}),
    ("implicit_adams", {"step_size": 1 / 64}),
]
if importlib.util.find_spec("scipy") is not None:
    CASES.append(
        pytest.param(
            "scipy_solver",
            {"solver": "RK45"},
            marks=pytest.mark.filterwarnings("ignore:The following arguments have no effect"),
        )
    )


def _in_span(ts, span):
    lo, hi = min(span), max(span)
    return [t for t in ts if not lo <= t <= hi]


@pytest.mark.parametrize(("method", "options"), CASES)
def test_ode_log_prob_never_evaluates_the_drift_outside_its_span(method, options):
    """Every t the drift sees lies in the span and log p(x) is finite, for every method at
    the default tolerances (Rademacher probes are exact on this diagonal Jacobian)."""
    model, x = _Toy(), _x()
    r = lk.ode_log_prob(model, x, method=method, options=options, divergence="hutchinson")
    assert model.generative.seen and not _in_span(model.generative.seen, SPAN)
    assert torch.isfinite(r.log_density).all()


@pytest.mark.parametrize(
    ("method", "options"), [("dopri5", None), ("dopri8", None), ("rk4", {"step_size": 1 / 64})]
)
def test_the_clamped_probe_leaves_log_p_right(method, options):
    """log p(x) is the linear ODE's closed form. Tolerance 1e-5 nats: these solvers' global
    error at a local tolerance of 1e-8 measured ≤ 9e-7 here (rk4 at h = 1/64: O(h⁴) ≈ 2e-7)."""
    model, x = _Toy(), _x()
    r = lk.ode_log_prob(
        model, x, method=method, options=options, divergence="hutchinson", rtol=1e-8, atol=1e-8
    )
    assert not _in_span(model.generative.seen, SPAN)
    assert torch.allclose(r.log_density, _closed_form(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_the_probe_leaves_the_span_without_the_guard(monkeypatch, method):
    """The hostile case is real: with the clamp taken out (step_t alone, as before), the
    first-step probe asks for t far past the end. Keeps the test above able to fail."""
    monkeypatch.setattr(ode_solver, "within_span", lambda func, a, b: func)
    model = _Toy()
    lk.ode_log_prob(model, _x(), method=method, divergence="hutchinson")
    assert max(model.generative.seen) > SPAN[1] + 1.0


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_solve_backwards_stays_in_the_span_too(monkeypatch, method):
    """Time running from t_end to t_start, as the samplers run it, from where the drift is
    tiny: z(t_start) = z(t_end) e^{−C} (tolerance 1e-6: both methods' global error at a
    local tolerance of 1e-8 measured ≤ 1e-8 here)."""
    flow, z_end = _Flow(3, tiny_at=SPAN[1]), _x()
    kw = dict(method=method, rtol=1e-8, atol=1e-8)
    z_start = solve(flow.probability_flow, z_end, SPAN[1], SPAN[0], **kw)
    assert not _in_span(flow.seen, SPAN)
    assert torch.allclose(z_start, z_end * math.exp(-_C()), atol=1e-6, rtol=0)
    monkeypatch.setattr(ode_solver, "within_span", lambda func, a, b: func)
    unguarded = _Flow(3, tiny_at=SPAN[1])  # the same solve without the clamp leaves the span
    solve(unguarded.probability_flow, z_end, SPAN[1], SPAN[0], **kw)
    assert min(unguarded.seen) < SPAN[0] - 1.0


class _NanOutside(nn.Module):
    """The model's own schedule, recording every t it is asked at; NaN outside [0, 1] unless
    ``nan_outside`` is False (the real schedule, only recorded)."""

    def __init__(self, inner: nn.Module, nan_outside: bool):
        super().__init__()
        self.inner, self.nan_outside = inner, nan_outside
        self.low, self.high = math.inf, -math.inf

    def forward(self, t):
        self.low, self.high = min(self.low, float(t.min())), max(self.high, float(t.max()))
        g, dg = self.inner(t)
        if not self.nan_outside:
            return g, dg
        outside = (t < 0) | (t > 1)
        return g.masked_fill(outside, math.nan), dg.masked_fill(outside, math.nan)


def _oracle_vdm(schedule: str, var: float, nan_outside: bool):
    """A 2-d vdm with the optimal ε-network for data N(0, var): for var near 1 the drift at
    t = 1 (and at t = 0) is small beside z, so the probe overshoots the span."""
    from latentkit_vdm.gaussian_oracle import OptimalGaussianEps

    torch.manual_seed(0)
    model = lk.load_model(
        "vdm", data_shape=(2,), num_timesteps=4, hidden=(8,), decoder="gaussian", schedule=schedule
    ).double()
    inner = model.core.log_snr
    model.core.net = OptimalGaussianEps(inner, torch.zeros(2, dtype=F64), torch.full((2,), var))
    recorder = _NanOutside(inner, nan_outside)
    model.core.log_snr = recorder
    return model, recorder


@pytest.mark.parametrize(
    ("schedule", "var", "nan_outside"),
    [("linear", 0.9, True), ("cosine", 0.99, False)],
    ids=["nan-outside-linear", "cosine"],
)
def test_vdm_sample_ode_and_ode_log_prob_stay_in_0_1(schedule, var, nan_outside):
    """sample_ode (t from 1 to 0) and ode_log_prob (0 to 1) on a vdm: the schedule is never
    asked outside [0, 1] and both are finite; the log density is the closed form of
    ``ode_gaussian`` (the exact ODE of Gaussian data; tolerance as in tests/test_vdm.py)."""
    from latentkit_vdm import sample_ode
    from latentkit_vdm.gaussian_oracle import ode_gaussian

    model, rec = _oracle_vdm(schedule, var, nan_outside)
    z = sample_ode(model, 4, generator=torch.Generator().manual_seed(0))
    assert 0.0 <= rec.low and rec.high <= 1.0 and torch.isfinite(z).all()
    rec.low, rec.high = math.inf, -math.inf
    x = _x(4, 2) * math.sqrt(var)
    r = lk.ode_log_prob(model, x, rtol=TOL, atol=TOL)
    assert 0.0 <= rec.low and rec.high <= 1.0
    m, v = ode_gaussian(model.core, torch.zeros(2, dtype=F64), torch.full((2,), var, dtype=F64))
    closed = Normal(m, v.sqrt()).log_prob(x).sum(-1)
    assert torch.allclose(r.log_density, closed, atol=1e-6, rtol=0)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_vdm_probes_leave_0_1_without_the_guard(monkeypatch, schedule):
    """The vdm setups above are hostile: without the clamp both directions probe outside."""
    from latentkit_vdm import sample_ode

    monkeypatch.setattr(ode_solver, "within_span", lambda func, a, b: func)
    model, rec = _oracle_vdm(schedule, 0.99, nan_outside=False)
    sample_ode(model, 4, generator=torch.Generator().manual_seed(0))
    assert rec.low < 0.0
    lk.ode_log_prob(model, _x(4, 2) * math.sqrt(0.99))
    assert rec.high > 1.0


def test_methods_are_torchdiffeqs():
    """METHODS lists exactly the solvers torchdiffeq's odeint takes."""
    from torchdiffeq._impl.odeint import SOLVERS

    assert set(METHODS) == set(SOLVERS)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "rk45"}, r"method must be one of \['dopri8', 'dopri5'"),
        ({"rtol": 0.0}, "rtol must be a finite number > 0"),
        ({"atol": math.inf}, "atol must be a finite number > 0"),
        ({"rtol": True}, "rtol must be a number"),
        ({"rtol": 2e-16}, r"rtol = 2e-16 is below torch.float64's machine epsilon 2.22e-16"),
        ({"atol": 1e-17}, "atol = 1e-17 is below torch.float64's machine epsilon"),
        ({"options": [("step_size", 0.1)]}, "options must be a dict.*got list"),
    ],
)
def test_solver_settings_are_refused_before_any_work(kwargs, match):
    """One-line ConfigErrors naming the setting, raised before the drift is evaluated."""
    model = _Toy()
    with pytest.raises(lk.ConfigError, match=match):
        lk.ode_log_prob(model, _x(), **kwargs)
    assert model.generative.seen == []


def test_the_tolerance_floor_is_the_state_dtypes_epsilon():
    """float32: ε = 1.19e-7 — 1e-7 refused, 1.2e-7 accepted; float64 accepts 1e-12."""
    eps32 = torch.finfo(torch.float32).eps
    with pytest.raises(lk.ConfigError, match="float32's machine epsilon 1.19e-07"):
        check_solver("dopri5", 1e-7, 1e-5, None, torch.float32)
    check_solver("dopri5", eps32, eps32, None, torch.float32)
    check_solver("dopri5", 1e-12, 1e-12, None, torch.float64)
    x32 = _x().float()
    with pytest.raises(lk.ConfigError, match="atol = 1e-08 is below torch.float32"):
        lk.ode_log_prob(_Toy(dtype=torch.float32), x32, atol=1e-8)


def test_sample_ode_checks_its_solver_settings():
    from latentkit_vdm import sample_ode

    model = lk.load_model("vdm", data_shape=(2,), num_timesteps=4, hidden=(8,))
    with pytest.raises(lk.ConfigError, match="method must be one of"):
        sample_ode(model, 2, method="leapfrog")
    with pytest.raises(lk.ConfigError, match="rtol = 1e-09 is below torch.float32"):
        sample_ode(model, 2, rtol=1e-9)


def test_adaptive_methods_step_onto_the_end_whatever_step_t_the_caller_gives():
    times = torch.tensor([0.0, 1.0], dtype=F64)
    assert solver_options("rk4", times, None) is None
    assert solver_options("dopri5", times, None)["step_t"].tolist() == [1.0]
    given = {"step_t": torch.tensor([0.25]), "safety": 0.8}
    out = solver_options("dopri5", times, given)
    assert out["step_t"].tolist() == [0.25, 1.0] and out["safety"] == 0.8
    assert given["step_t"].tolist() == [0.25]  # the caller's dict is left alone
    assert solver_options("dopri5", times, {"step_t": [1.0]})["step_t"] == [1.0]
    assert "step_t" not in solver_options("dopri5", times, {"jump_t": torch.tensor([1.0])})


def test_a_caller_step_t_still_ends_on_the_span():
    """With the caller's own step_t the solve still stops at t_end (no interpolation past it)."""
    model, x = _Toy(), _x()
    r = lk.ode_log_prob(model, x, rtol=TOL, atol=TOL, options={"step_t": torch.tensor([1.0])})
    assert not _in_span(model.generative.seen, SPAN)
    assert torch.allclose(r.log_density, _closed_form(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("span", [(1.5, 0.5), (0.5, 0.5), (0.0, math.inf), ("a", 1.0), (0.0,)])
def test_a_bad_ode_time_span_is_refused(span):
    """ode_time_span must be two finite numbers, the data end first (t_start < t_end)."""
    model = _Toy()
    model.generative.ode_time_span = span
    with pytest.raises(lk.InputError, match="ode_time_span must be"):
        lk.ode_log_prob(model, _x())
    assert model.generative.seen == []


def test_solve_refuses_equal_or_non_finite_times():
    flow = _Flow(3)
    with pytest.raises(lk.InputError, match="two distinct finite times"):
        solve(flow.probability_flow, _x(), 1.0, 1.0)
    with pytest.raises(lk.InputError, match="t_to must be a number"):
        solve(flow.probability_flow, _x(), 0.5, "1")
    assert flow.seen == []
