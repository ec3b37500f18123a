"""Learning-rate schedules and the weight EMA (``latentkit.training.lr_schedules`` and
``latentkit.training.averaging``; ``latentkit.schedules`` is their old name).

The schedule tests pin f(n) of the module docstring at chosen steps (n = step + 1); the EMA
tests compare with a closed form derived below, in float64, and check that a saved and
restored EMA continues bit for bit (``torch.equal``). The mutants these tests kill are
listed in the modules' docstrings.
"""

from __future__ import annotations

import itertools
import math
import re

import attrs
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from latentkit.config import structure_config
from latentkit.errors import CheckpointError, ConfigError, InputError
from latentkit.training.averaging import EMA
from latentkit.training.lr_schedules import LR_KINDS, LRSchedule, apply_lr, lr_factor


def test_the_old_module_name_gives_the_same_objects():
    """``latentkit.schedules`` (the old home, which users may import) re-exports each old
    name as the very object of its new module, and lists none as public."""
    import latentkit.schedules as old
    from latentkit.training import averaging, lr_schedules

    names = {"EMA": averaging, "LR_KINDS": lr_schedules, "LRSchedule": lr_schedules}
    names |= {"apply_lr": lr_schedules, "lr_factor": lr_schedules}
    for name, module in names.items():
        assert getattr(old, name) is getattr(module, name), name
    assert old.__all__ == []


# --- learning-rate schedules ---------------------------------------------------------------


@pytest.mark.parametrize("kind", LR_KINDS)
def test_warmup_ramps_linearly_from_zero_to_one(kind):
    """f(n) = n/W for n ≤ W: update n = step + 1 uses n/W of the base rate, for every kind."""
    schedule = LRSchedule(kind=kind, warmup_steps=4)
    assert [lr_factor(schedule, s, total_steps=100) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_constant_is_one_after_warmup():
    schedule = LRSchedule(kind="constant", warmup_steps=3)
    assert [lr_factor(schedule, s, 10) for s in (3, 9, 50)] == [1.0, 1.0, 1.0]
    assert lr_factor(LRSchedule(), 0, 1) == 1.0


@pytest.mark.parametrize("min_factor", [0.0, 0.25, 0.5, 1.0])
def test_cosine_midpoint_is_the_mean_of_its_ends(min_factor):
    """At n − W = (T − W)/2 the half cosine is exactly (1 + m)/2 (cos(π/2) is below half an
    ulp of the sum, and these m make (1 + m)/2 and m + (1 − m)/2 the same float)."""
    schedule = LRSchedule(kind="cosine", warmup_steps=10, min_factor=min_factor)
    middle_step = 10 + (110 - 10) // 2 - 1  # update n = 60
    assert lr_factor(schedule, middle_step, total_steps=110) == (1 + min_factor) / 2


def test_cosine_midpoint_for_a_non_dyadic_floor():
    schedule = LRSchedule(kind="cosine", warmup_steps=10, min_factor=0.1)
    assert lr_factor(schedule, 59, 110) == pytest.approx(0.55, rel=0, abs=1e-15)


@pytest.mark.parametrize("min_factor", [0.0, 0.1, 0.3])
def test_cosine_ends_at_min_factor_and_stays(min_factor):
    """f(W) = 1 (the last warm-up update), f(T) = m (the last update, step T − 1), and
    every step past the end keeps m; a quarter of the way, m + (1 − m)(2 + √2)/4."""
    schedule = LRSchedule(kind="cosine", warmup_steps=8, min_factor=min_factor)
    total = 108
    assert lr_factor(schedule, 7, total) == 1.0
    assert lr_factor(schedule, total - 1, total) == min_factor
    assert lr_factor(schedule, total, total) == min_factor
    assert lr_factor(schedule, total + 50, total) == min_factor
    quarter = lr_factor(schedule, 8 + 25 - 1, total)  # n − W = 25 = (T − W)/4
    expected = min_factor + (1 - min_factor) * (2 + math.sqrt(2)) / 4
    assert quarter == pytest.approx(expected, rel=1e-15)


def test_cosine_without_warmup_starts_just_below_one():
    schedule = LRSchedule(kind="cosine", min_factor=0.0)
    assert lr_factor(schedule, 0, 4) == pytest.approx((1 + math.cos(math.pi / 4)) / 2, rel=1e-15)
    assert lr_factor(schedule, 3, 4) == 0.0


def test_step_decay_multiplies_by_gamma_every_step_every_updates_after_warmup():
    """f(n) = γ^⌊(n − W − 1)/K⌋: K = 3 updates at each level after a W = 2 warm-up."""
    schedule = LRSchedule(kind="step", warmup_steps=2, step_every=3, step_gamma=0.5)
    factors = [lr_factor(schedule, s, total_steps=1) for s in range(12)]
    assert factors == [0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]


@st.composite
def schedules(draw: st.DrawFn) -> LRSchedule:
    return LRSchedule(
        kind=draw(st.sampled_from(LR_KINDS)),
        warmup_steps=draw(st.integers(0, 50)),
        min_factor=draw(st.floats(0, 1)),
        step_every=draw(st.integers(1, 50)),
        step_gamma=draw(st.floats(0, 1, exclude_min=True)),
    )


@given(schedules(), st.integers(1, 400), st.data())
def test_factor_rises_through_warmup_then_never_rises(schedule, extra, data):
    """0 ≤ f ≤ 1 at every step; f is increasing during the warm-up and non-increasing after."""
    total = schedule.warmup_steps + extra
    factors = [lr_factor(schedule, s, total) for s in range(total + 5)]
    assert all(0.0 <= f <= 1.0 for f in factors)
    warm = factors[: schedule.warmup_steps]
    assert all(a < b for a, b in itertools.pairwise(warm))
    after = factors[schedule.warmup_steps :]
    assert all(b <= a for a, b in itertools.pairwise(after))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "linear"),
        ("kind", 3),
        ("warmup_steps", -1),
        ("warmup_steps", 2.0),
        ("warmup_steps", True),
        ("min_factor", -0.1),
        ("min_factor", 1.5),
        ("min_factor", math.nan),
        ("min_factor", "0.1"),
        ("step_every", 0),
        ("step_gamma", 0.0),
        ("step_gamma", 1.01),
        ("step_gamma", math.inf),
    ],
)
def test_bad_config_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        LRSchedule(**{field: value})
    with pytest.raises(ConfigError, match=field):  # the same words through TOML/JSON values
        structure_config(LRSchedule, {field: value})


def test_schedule_round_trips_through_plain_values():
    schedule = LRSchedule(kind="cosine", warmup_steps=5, min_factor=0.1)
    assert structure_config(LRSchedule, attrs.asdict(schedule)) == schedule


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((LRSchedule(), -1, 10), "'step'"),
        ((LRSchedule(), 1.0, 10), "'step'"),
        ((LRSchedule(), 0, 0), "'total_steps'"),
        ((LRSchedule(kind="cosine", warmup_steps=10), 0, 10), "'total_steps'"),
    ],
)
def test_bad_steps_are_refused_naming_the_argument(args, name):
    with pytest.raises(ConfigError, match=name):
        lr_factor(*args)


def test_apply_lr_sets_every_group():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 5.0}], lr=1.0)
    assert apply_lr(optimizer, 0.5, 0.25) == 0.125
    assert [g["lr"] for g in optimizer.param_groups] == [0.125, 0.125]
    lr = torch.tensor(1.0)
    optimizer.param_groups[0]["lr"] = lr
    apply_lr(optimizer, 2.0, 0.5)
    assert optimizer.param_groups[0]["lr"] is lr and float(lr) == 1.0
    with pytest.raises(ConfigError, match="'lr'"):
        apply_lr(optimizer, 1.0, math.nan)


# --- EMA -----------------------------------------------------------------------------------


class Toy(nn.Module):
    """A parameter, a linear layer, a float buffer and an integer buffer (all dyadic values)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
        self.inner = nn.Linear(2, 2, dtype=torch.float64)
        with torch.no_grad():  # dyadic values, so that θ_0 − t c is exact in binary
            self.inner.weight.copy_(torch.tensor([[0.75, -1.5], [2.0, 0.125]]))
            self.inner.bias.copy_(torch.tensor([-0.25, 3.0]))
        self.register_buffer("running", torch.zeros(2, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))


def constant_gradient_steps(module: Toy, ema: EMA, n: int, lr: float, grad: float) -> None:
    """n SGD steps on a loss whose gradient is ``grad`` everywhere, each followed by an EMA
    update; the buffers move too (they must be copied, not averaged)."""
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    for _ in range(n):
        optimizer.zero_grad()
        loss = sum(grad * p.sum() for p in module.parameters())
        loss.backward()
        optimizer.step()
        module.running += 1.0
        module.count += 1
        ema.update(module)


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999])
def test_ema_matches_the_closed_form_under_a_constant_gradient(decay):
    """SGD with a constant gradient g and rate η moves θ_t = θ_0 − t c, c = η g. With
    θ̄_0 = θ_0 and θ̄_t = d θ̄_{t−1} + (1 − d) θ_t, the lag e_t = θ̄_t − θ_t obeys
        e_t = d θ̄_{t−1} + (1 − d) θ_t − θ_t = d (θ̄_{t−1} − θ_t) = d (e_{t−1} + c),
    so from e_0 = 0, e_n = c (d + d² + … + dⁿ) = c d (1 − dⁿ)/(1 − d), and
        θ̄_n = θ_0 − n c + c d (1 − dⁿ)/(1 − d).
    η g = 1/8 keeps θ_t exact in binary; the tolerance is float64 rounding of the sum."""
    module = Toy()
    start = {name: p.detach().clone() for name, p in module.named_parameters()}
    ema = EMA(module, decay=decay)
    n, lr, grad = 30, 0.25, 0.5
    c = lr * grad
    constant_gradient_steps(module, ema, n, lr, grad)
    lag = c * decay * (1 - decay**n) / (1 - decay)
    state = ema.state_dict()
    for name, theta0 in start.items():
        assert torch.equal(dict(module.named_parameters())[name], theta0 - n * c)
        torch.testing.assert_close(state[name], theta0 - n * c + lag, rtol=0, atol=1e-13)
    # buffers: the values of the last update, not an average of them
    assert torch.equal(state["running"], torch.full((2,), float(n), dtype=torch.float64))
    assert int(state["count"]) == n and int(state[EMA.NUM_UPDATES_KEY]) == n


def test_ema_warmup_uses_the_tensorflow_decay():
    """With warm-up, update k + 1 (k = 0, 1, …) uses d_k = min(d, (1 + k)/(10 + k)); the lag
    obeys e_{k+1} = d_k (e_k + c) as above with a varying d."""
    module = Toy()
    theta0 = module.w.detach().clone()
    ema = EMA(module, decay=0.9, warmup=True)
    n, c = 100, 0.125  # (1 + k)/(10 + k) reaches 0.9 at k = 80
    constant_gradient_steps(module, ema, n, 0.25, 0.5)
    lag = 0.0
    for k in range(n):
        lag = min(0.9, (1 + k) / (10 + k)) * (lag + c)
    torch.testing.assert_close(ema.state_dict()["w"], theta0 - n * c + lag, rtol=0, atol=1e-13)
    assert ema.current_decay() == 0.9


def test_copy_to_puts_the_averages_and_the_buffers_into_the_module():
    module = Toy()
    ema = EMA(module, decay=0.5)
    constant_gradient_steps(module, ema, 3, 0.25, 0.5)
    other = Toy()
    ema.copy_to(other)
    got = other.state_dict()
    state = ema.state_dict()
    assert state.pop(EMA.NUM_UPDATES_KEY) == 3
    assert state.keys() == got.keys()
    assert all(torch.equal(got[k], v) for k, v in state.items())


def test_swapped_holds_the_ema_weights_and_restores_the_originals_even_on_error():
    module = Toy()
    ema = EMA(module, decay=0.5)
    constant_gradient_steps(module, ema, 4, 0.25, 0.5)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    averaged = {k: v.clone() for k, v in ema.state_dict().items()}
    with ema.swapped(module) as inside:
        assert inside is module
        assert torch.equal(module.w, averaged["w"])
        assert not torch.equal(module.w, before["w"])
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())

    with pytest.raises(RuntimeError, match="boom"), ema.swapped(module):
        with torch.no_grad():
            module.w.add_(100.0)  # the body's own changes are discarded too
        raise RuntimeError("boom")
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())
    assert module.w.requires_grad


@pytest.mark.parametrize("warmup", [False, True])
def test_state_dict_round_trip_continues_bit_for_bit(warmup):
    """Update 5 times, save (through safetensors bytes, as a checkpoint does), load into a
    fresh EMA of a freshly initialised module, update both 5 more times: equal tensors."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    ema = EMA(module, decay=0.9, warmup=warmup)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)

    def step() -> None:
        optimizer.zero_grad()
        module(torch.randn(16, 4)).pow(2).sum().backward()
        optimizer.step()

    for _ in range(5):
        step()
        ema.update(module)
    blob = save_safetensors_bytes(ema.state_dict())
    torch.manual_seed(123)
    restored = EMA(
        nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)), 0.9, warmup=warmup
    )
    restored.load_state_dict(load_safetensors_bytes(blob))
    for _ in range(5):
        step()
        ema.update(module)
        restored.update(module)
    a, b = ema.state_dict(), restored.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert restored.num_updates == 10


def mutated(state: dict, **changes) -> dict:
    out = {k: v.clone() for k, v in state.items()}
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            del out[key]
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        ({"inner__weight": None}, "inner.weight"),
        ({"inner__bias2": torch.zeros(2)}, "inner.bias2"),
        ({"w": torch.zeros(4, dtype=torch.float64)}, "'w' has shape"),
        ({"w": torch.tensor([1.0, math.nan, 0.0])}, "'w' holds NaN"),
        ({"running": None}, "running"),
        ({"count": torch.zeros(1, dtype=torch.int64)}, "'count' has shape"),
        ({"@num_updates": None}, "@num_updates"),
        ({"@num_updates": torch.tensor(3.0)}, "@num_updates"),
        ({"@num_updates": torch.tensor(-1)}, "@num_updates"),
    ],
)
def test_a_state_dict_that_does_not_fit_is_refused_naming_the_tensor(edit, names):
    module = Toy()
    ema = EMA(module, decay=0.5)
    constant_gradient_steps(module, ema, 2, 0.25, 0.5)
    fresh = EMA(Toy(), decay=0.5)
    kept = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointError, match=re.escape(names)):
        fresh.load_state_dict(mutated(ema.state_dict(), **edit))
    # refused before anything changed
    assert all(torch.equal(v, kept[k]) for k, v in fresh.state_dict().items())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"decay": 1.0}, "decay"),
        ({"decay": -0.1}, "decay"),
        ({"decay": True}, "decay"),
        ({"warmup": 1}, "warmup"),
    ],
)
def test_bad_ema_arguments_are_refused_naming_them(kwargs, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        EMA(Toy(), **kwargs)


def test_a_different_module_is_refused_naming_the_parameter():
    ema = EMA(Toy(), decay=0.5)
    with pytest.raises(InputError, match="inner.weight"):
        ema.update(nn.Linear(2, 2))
    wider = Toy()
    wider.w = nn.Parameter(torch.zeros(5, dtype=torch.float64))
    with pytest.raises(InputError, match="'w' has shape"):
        ema.copy_to(wider)


def test_shadows_follow_the_module_dtype():
    module = nn.Linear(3, 2)
    ema = EMA(module, decay=0.5)
    assert ema.state_dict()["weight"].dtype == torch.float32
    module.double()
    ema.update(module)
    assert ema.state_dict()["weight"].dtype == torch.float64
    torch.testing.assert_close(ema.state_dict()["weight"], module.weight.detach())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_update_on_cuda_reads_nothing_back():
    """On CUDA an update is a few kernels and no host synchronisation."""
    module = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64)).cuda()
    ema = EMA(module, decay=0.99, warmup=True)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            ema.update(module)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert ema.state_dict()["0.weight"].device.type == "cuda"
