"""Reliability: bad input at the trainer, the CLI and the data loaders; NaN/inf faults in
training; untrusted checkpoints, data files and configs (docs/reliability.md).

Every refusal must be a typed ``latentkit`` error with a one-line message that says what
was expected and what was given — never a torch or Python internals error, never a silent
NaN, never code run from a file. Hypothesis walks the bad inputs (``hypothesis.event``
labels each case's kind, so ``--hypothesis-show-statistics`` counts them); the faults are
injected by a model plugin registered in this process (``faulty-vae``), whose loss or one
parameter's gradient turns NaN on the steps whose batch holds a poisoned example.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import itertools
import json
import math
import os
import pickle
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import attrs
import numpy as np
import pytest
import tomllib
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from rich.console import Console
from safetensors.numpy import save_file as save_safetensors_np

import latentkit as lk
from latentkit import checkpoint as ckpt
from latentkit import training
from latentkit.cli import main
from latentkit.data import load_dataset
from latentkit.errors import DataSourceError
from latentkit.evaluation import evaluate
from latentkit.trained import load_trained_model
from latentkit.training import DataOrder, TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
D = 8
N, B = 256, 32
POISON_STEP = 7
"""The poisoned example sits in the batch of step 7 (1-based) of every run seeded 0 here."""


def one_line(exc: pytest.ExceptionInfo | BaseException) -> str:
    msg = str(exc.value if isinstance(exc, pytest.ExceptionInfo) else exc)
    assert "\n" not in msg, msg
    assert msg.strip(), "empty message"
    return msg


# ----------------------------------------------------------------------------- the fault plugin


@attrs.frozen(kw_only=True)
class FaultyConfig:
    """A VAE whose loss (``fault="loss"``) or the gradient of ``target`` (``"grad"``) is NaN
    on every step whose batch holds an example summing to ``poison_sum``; ``"always"``:
    every step's loss is NaN; ``"none"``: the plain VAE."""

    data_shape: tuple[int, ...] = attrs.field(default=(D,), converter=tuple)
    latent_dim: int = 2
    hidden: tuple[int, ...] = attrs.field(default=(16,), converter=tuple)
    likelihood: str = "bernoulli"
    fault: str = attrs.field(
        default="loss", validator=attrs.validators.in_(("none", "loss", "grad", "always"))
    )
    poison_sum: float = float(D)
    target: str = "generative.decoder.2.bias"


def build_faulty(cfg: FaultyConfig) -> lk.LatentModel:
    model = lk.load_model(
        "vae",
        data_shape=cfg.data_shape,
        latent_dim=cfg.latent_dim,
        hidden=cfg.hidden,
        likelihood=cfg.likelihood,
    )
    model.default_objective = ("faulty", {})
    return model


@attrs.frozen
class NoOptions:
    """The fault objective takes its settings from the model's FaultyConfig."""


class FaultyObjective(lk.Objective):
    """The plain ELBO, with the fault the model's FaultyConfig asks for."""

    name = "faulty"

    def __init__(self, config: NoOptions, model: lk.LatentModel):
        super().__init__(config, model)
        self.plain = lk.make_objective("elbo", model)

    def forward(self, model, x, step=None):
        cfg = model.config
        loss = self.plain(model, x, step)
        hit = x.reshape(x.shape[0], -1).sum(-1) == cfg.poison_sum
        if cfg.fault == "always":
            hit = torch.ones_like(hit)
        if cfg.fault in ("loss", "always"):  # a NaN loss, finite gradients
            return torch.where(hit, torch.full_like(loss, math.nan), loss)
        if cfg.fault == "grad":  # a finite loss, a NaN gradient in one parameter only
            p = dict(model.named_parameters())[cfg.target]
            any_hit = hit.any()
            # d/dp sqrt(|p - p|) at 0 is NaN; the inner where keeps clean steps' gradients
            # exactly those of the plain VAE (no 0 · inf anywhere).
            safe = torch.where(any_hit, p - p.detach(), torch.ones_like(p))
            bump = torch.where(any_hit, safe.abs().sqrt().sum(), torch.zeros((), dtype=loss.dtype))
            return loss + bump
        return loss


class FaultPlugin:
    @staticmethod
    @lk.hookimpl
    def latentkit_objectives() -> list[lk.ObjectiveSpec]:
        return [lk.ObjectiveSpec("faulty", NoOptions, FaultyObjective, "test only: NaN faults")]

    @staticmethod
    @lk.hookimpl
    def latentkit_models() -> list[lk.ModelSpec]:
        return [
            lk.ModelSpec(
                name="faulty-vae",
                config_class=FaultyConfig,
                factory=build_faulty,
                description="test only: a VAE with injected NaN faults",
            )
        ]


@pytest.fixture(scope="module", autouse=True)
def fault_plugin():
    plugin = FaultPlugin()
    lk.register_plugin(plugin, "faulty-vae test plugin")
    yield
    lk.unregister_plugin(plugin)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor, int]:
    """Binary [256, 8] train data in which exactly one example, in the batch of step 7 of a
    seed-0 run with batch 32, is all ones (the poison); and 64 test examples."""
    g = torch.Generator().manual_seed(3)
    x = torch.bernoulli(torch.full((N + 64, D), 0.3), generator=g)
    x[:, -1] = torch.where(x[:, :-1].sum(-1) == D - 1, 0.0, x[:, -1])  # no other all-ones row
    train, test = x[:N].clone(), x[N:].clone()
    poison = int(DataOrder(N, B, seed=0).indices(POISON_STEP - 1)[0])
    train[poison] = 1.0
    return train, test, poison


def faulty(**kw) -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model("faulty-vae", **kw)


def clean() -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model("vae", data_shape=(D,), latent_dim=2, hidden=(16,), likelihood="bernoulli")


def config(**kw) -> TrainConfig:
    base = dict(steps=40, batch_size=B, log_every=50, checkpoint_every=2, progress=False)
    return TrainConfig(**{**base, "keep_checkpoints": 100, **kw})


def poisoned_steps(poison: int, steps: int) -> list[int]:
    order = DataOrder(N, B, seed=0)
    return [s + 1 for s in range(steps) if poison in order.indices(s).tolist()]


# ----------------------------------------------------------------------------- 1. the trainer


@st.composite
def bad_train_data(draw, kind: str):
    """(data, error type, words the message must hold) for a Bernoulli model of [N, 8]."""
    n = draw(st.integers(1, 6))
    if kind == "nonfinite":
        x = torch.zeros(n, D)
        cells = draw(st.sets(st.integers(0, n * D - 1), min_size=1, max_size=n * D))
        vals = [draw(st.sampled_from([math.nan, math.inf, -math.inf])) for _ in cells]
        x.view(-1)[sorted(cells)] = torch.tensor(vals)
        nan = sum(math.isnan(v) for v in vals)
        return x, lk.NonFiniteError, [f"{len(cells)} non-finite", f"{nan} NaN"]
    if kind == "overflow":  # finite in float64, inf once cast to the model's float32
        x = torch.zeros(n, D, dtype=torch.float64)
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, D - 1))] = draw(
            st.floats(1e39, 1e300)
        ) * draw(st.sampled_from([1, -1]))
        return x, lk.NonFiniteError, ["1 non-finite", "0 NaN, 1 inf"]
    if kind == "shape":
        d = draw(st.integers(1, 12).filter(lambda d: d != D))
        return torch.zeros(n, d), lk.ShapeError, ["[batch, 8]", str((n, d))]
    if kind == "rank":
        shape = draw(st.sampled_from([(), (D,), (n, 1, D), (n, D, 1), (n, 2, 4)]))
        return torch.zeros(shape), lk.ShapeError, ["[batch, 8]"]
    if kind == "empty":
        return torch.zeros(0, D), lk.ShapeError, ["empty batch"]
    if kind == "integer":
        dtype = draw(
            st.sampled_from([torch.uint8, torch.int8, torch.int32, torch.int64, torch.bool])
        )
        return torch.zeros(n, D, dtype=dtype), lk.DTypeError, ["floating-point", str(dtype)]
    if kind == "nonbinary":
        x = torch.bernoulli(torch.full((n, D), 0.5), generator=torch.Generator().manual_seed(n))
        cells = draw(st.sets(st.integers(0, n * D - 1), min_size=1))
        value = st.floats(-1e6, 1e6, allow_subnormal=False).filter(lambda v: v not in (0.0, 1.0))
        vals = [draw(value) for _ in cells]
        x.view(-1)[sorted(cells)] = torch.tensor(vals, dtype=torch.float32)
        bad = int(((x != 0) & (x != 1)).sum())  # float32 rounding may land a value on 0 or 1
        if bad == 0:
            return x, None, []
        return x, lk.SupportError, ["Bernoulli", "{0, 1}", f"{bad} of {n * D} values", "binarize"]
    obj = draw(st.sampled_from([np.zeros((n, D), np.float32), [[0.0] * D] * n, None, "x"]))
    return obj, lk.InputError, ["torch.Tensor", type(obj).__name__]


@pytest.fixture(scope="module")
def bernoulli_model() -> lk.LatentModel:
    return clean()


TRAIN_DATA_KINDS = [
    "nonfinite",
    "overflow",
    "shape",
    "rank",
    "empty",
    "integer",
    "nonbinary",
    "object",
]


@pytest.mark.parametrize("kind", TRAIN_DATA_KINDS)
@given(data_=st.data(), which=st.sampled_from(["train_data", "test_data"]))
def test_bad_training_data_is_refused_with_one_typed_line(
    bernoulli_model, data, kind, data_, which
):
    """Whatever is wrong with the data, the trainer refuses it when built, before any step:
    the error type and the words say what was expected and what was given."""
    x, error, words = data_.draw(bad_train_data(kind))
    assume(not (which == "test_data" and x is None))  # no test data at all is allowed
    good = data[0]
    args = (x, None) if which == "train_data" else (good, x)
    assume(error is not None)  # not when every drawn value rounded onto {0, 1} (valid data)
    with pytest.raises(error) as exc:
        Trainer(bernoulli_model, args[0], config(batch_size=1), test_data=args[1])
    msg = one_line(exc)
    assert which in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_binary_data_in_any_float_dtype_is_accepted(bernoulli_model, data):
    """The other side of the Bernoulli check: {0, 1} data in float16/32/64 trains."""
    train, test, _ = data
    for dtype in (torch.float16, torch.float64):
        t = Trainer(bernoulli_model, train.to(dtype), config(steps=1), test_data=test.to(dtype))
        assert t.train_data.dtype == torch.float32


def test_evaluate_and_the_cli_refuse_grey_levels_for_a_bernoulli_model(tmp_path):
    """`evaluate` refuses non-binary data for a Bernoulli likelihood (it would report a
    number that is no log-likelihood); so does `latentkit train --variant unit` with it."""
    model = clean()
    x = torch.full((4, D), 0.5)
    with pytest.raises(lk.SupportError, match=r"32 of 32 values.*the first, 0\.5"):
        evaluate(model, x, iwae_k=0)
    code, err = run_cli(
        [
            "train",
            "--model",
            "vae",
            "--data",
            "digits",
            "--limit",
            "64",
            "--variant",
            "unit",
            "--set",
            "likelihood=bernoulli",
            "--steps",
            "1",
            "--run-dir",
            str(tmp_path / "r"),
        ]
    )
    assert code == 1
    line = only_error_line(err)
    assert "train_data" in line and "Bernoulli" in line and "variant 'binarized'" in line


_BAD_FIELD_VALUES = {
    "int": st.one_of(st.floats(), st.text(max_size=4), st.booleans(), st.none()),
    "float": st.one_of(st.text(max_size=4), st.booleans(), st.none(), st.lists(st.integers())),
    "bool": st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.none()),
    "str": st.one_of(st.integers(), st.floats(), st.booleans(), st.none()),
}
_OUT_OF_RANGE = {
    "steps": st.integers(max_value=0),
    "batch_size": st.integers(max_value=0),
    "log_every": st.integers(max_value=0),
    "keep_checkpoints": st.integers(max_value=0),
    "max_skips": st.integers(max_value=0),
    "seed": st.integers(max_value=-1),
    "eval_every": st.integers(max_value=-1),
    "eval_examples": st.integers(max_value=-1),
    "checkpoint_every": st.integers(max_value=-1),
    "lr": st.one_of(st.floats(max_value=0.0), st.sampled_from([math.inf, math.nan])),
    "weight_decay": st.one_of(st.floats(max_value=-1e-300), st.sampled_from([math.inf, math.nan])),
    "grad_clip": st.one_of(st.floats(max_value=-1e-300), st.sampled_from([math.inf, math.nan])),
    "eval_estimator": st.text(max_size=8).filter(
        lambda s: s != "auto" and s not in lk.list_estimators()
    ),
    "on_nonfinite": st.text(max_size=6).filter(lambda s: s not in ("stop", "skip")),
}
TRAIN_FIELDS = {f.name: f.type for f in attrs.fields(TrainConfig)}


@st.composite
def bad_train_config(draw, how: str):
    if how == "range":
        field = draw(st.sampled_from(sorted(_OUT_OF_RANGE)))
        return field, draw(_OUT_OF_RANGE[field])
    field = draw(st.sampled_from(sorted(TRAIN_FIELDS)))
    kind = TRAIN_FIELDS[field]
    value = draw(_BAD_FIELD_VALUES[kind])
    if kind == "float" and isinstance(value, list) and not value:
        value = [1]
    return field, value


@pytest.mark.parametrize("how", ["type", "range"])
@given(data_=st.data(), structured=st.booleans())
def test_bad_train_config_values_name_the_field(how, data_, structured):
    """Built directly or from TOML-like values, a bad TrainConfig value is a ConfigError that
    names the field (no silent coercion: "false" is not True, 3.7 is not 3)."""
    field, value = data_.draw(bad_train_config(how))
    with pytest.raises(lk.ConfigError) as exc:
        if structured:
            lk.structure_config(TrainConfig, {field: value})
        else:
            TrainConfig(**{field: value})
    assert field in one_line(exc)


@given(name=st.text(max_size=10))
def test_any_device_string_is_a_device_or_a_config_error(bernoulli_model, data, name):
    """The trainer runs on cpu (and cuda when present): any other text is a ConfigError."""
    train, _, _ = data
    try:
        t = Trainer(bernoulli_model, train, config(device=name, steps=1))
    except lk.ConfigError as exc:
        assert "device" in one_line(exc)
    else:
        assert t.device.type in ("cpu", "cuda")
        bernoulli_model.to("cpu")


# ----------------------------------------------------------------------------- 2. NaN/inf faults


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def stored_weights(json_path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = ckpt.read_checkpoint(json_path)
    return ckpt.subset(tensors, "model")


def assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_a_nan_loss_stops_at_its_step_and_the_last_good_checkpoint_is_intact(data, tmp_path):
    """The loss turns NaN at step 7; the run stops when it next reads the device (the
    checkpoint of step 8 is refused), names step 7 and the loss, and leaves the checkpoint
    of step 6 as the newest: it loads, and equals a clean run's step 6 bit for bit."""
    train, test, poison = data
    assert poisoned_steps(poison, 40)[0] == POISON_STEP
    t = Trainer(faulty(fault="loss"), train, config(), test_data=test, run_dir=tmp_path)
    with pytest.raises(lk.NonFiniteTrainingError) as exc:
        t.fit()
    msg = one_line(exc)
    last = ckpt.latest_checkpoint(tmp_path)
    assert msg.startswith("step 7: the training loss is nan (detected by step 8)"), msg
    assert f"last good checkpoint is {last}" in msg and "--on-nonfinite skip" in msg
    assert last.name == "step-00000006.json"
    steps = [int(p.stem.split("-")[1]) for p in ckpt.list_checkpoints(tmp_path / "checkpoints")]
    assert steps == [2, 4, 6]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    model, info = load_trained_model(last)
    assert info["step"] == 6
    reference = Trainer(clean(), train, config())
    reference.fit(until=6)
    assert_equal(params(model), params(reference.model))


def test_a_nan_gradient_names_its_parameter(data, tmp_path):
    """A finite loss with a NaN gradient in one parameter: the message names that
    parameter (and no other) and the step; detected at the next log line here."""
    train, _, _ = data
    cfg = config(log_every=10, checkpoint_every=0)
    t = Trainer(faulty(fault="grad"), train, cfg, run_dir=tmp_path)
    with pytest.raises(lk.NonFiniteTrainingError) as exc:
        t.fit()
    msg = one_line(exc)
    assert msg.startswith(
        "step 7: the gradient of generative.decoder.2.bias is not finite (the loss was "
    ), msg
    assert "(detected by step 10)" in msg and "none written" in msg
    assert ckpt.latest_checkpoint(tmp_path) is None


def test_a_fault_is_read_back_within_check_every_steps(data, monkeypatch):
    """With no log line, evaluation or checkpoint for a long while, stop mode still reads the
    kept flags every CHECK_EVERY steps (here 5: the fault of step 7 is found at step 10)."""
    monkeypatch.setattr(training.health, "CHECK_EVERY", 5)
    train, _, _ = data
    t = Trainer(faulty(fault="loss"), train, config(log_every=10**6, checkpoint_every=0))
    with pytest.raises(lk.NonFiniteTrainingError, match=r"^step 7: .*\(detected by step 9\)"):
        t.fit()
    assert t.step == 9  # the check ran inside step 10, before its update


def test_skip_mode_skips_exactly_the_faulty_steps_and_resumes_exactly(data, tmp_path):
    """--on-nonfinite skip: each step whose batch holds the poison is skipped (no update:
    Adam's step count is the number of clean steps), each is announced, the run finishes
    finite; stopped at step 20 and resumed, it ends bit for bit where one run ends."""
    train, _, poison = data
    expected = poisoned_steps(poison, 40)
    assert len(expected) == 5  # once per epoch of 8 steps
    out = io.StringIO()
    cfg = config(on_nonfinite="skip", checkpoint_every=0)
    whole = Trainer(faulty(fault="loss"), train, cfg, console=Console(file=out, width=200))
    whole.fit()
    assert whole.skipped_steps == len(expected)
    adam_steps = {float(s["step"]) for s in whole.optimizer.state_dict()["state"].values()}
    assert adam_steps == {40.0 - len(expected)}
    for k in expected:
        assert f"skipped step {k}: the training loss is nan" in out.getvalue()
    assert all(torch.isfinite(v).all() for v in params(whole.model).values())

    first = Trainer(faulty(fault="loss"), train, cfg, run_dir=tmp_path, console=Console(file=out))
    assert first.fit(until=20).interrupted
    second = Trainer(faulty(fault="loss"), train, cfg, run_dir=tmp_path, console=Console(file=out))
    second.resume(tmp_path)
    second.fit()
    assert second.skipped_steps == whole.skipped_steps
    assert_equal(params(second.model), params(whole.model))


def test_too_many_skips_in_a_row_stop_the_run(data):
    train, _, _ = data
    cfg = config(on_nonfinite="skip", max_skips=3, checkpoint_every=0)
    t = Trainer(faulty(fault="always"), train, cfg, console=Console(file=io.StringIO()))
    with pytest.raises(lk.NonFiniteTrainingError) as exc:
        t.fit()
    msg = one_line(exc)
    assert msg.startswith("step 4: the training loss is nan;") and "4 steps in a row" in msg


def test_the_cli_stops_or_skips_on_a_nan_as_asked(tmp_path):
    """`latentkit train --on-nonfinite stop|skip` on the fault plugin: stop exits 1 with one
    error line naming the step; skip finishes and logs how many steps it skipped."""
    ds = load_dataset("digits", variant="binarized", seed=0, limit=128)
    sums = ds.train.reshape(ds.train.shape[0], -1).sum(-1)
    values, counts = sums.unique(return_counts=True)
    target = float(values[counts == 1][0])  # a sum exactly one training example has
    poison = int((sums == target).nonzero()[0])
    order = DataOrder(ds.train.shape[0], 16, seed=0)
    expected = [s + 1 for s in range(24) if poison in order.indices(s).tolist()]
    argv = [
        "train",
        "--model",
        "faulty-vae",
        "--data",
        "digits",
        "--limit",
        "128",
        "--batch-size",
        "16",
        "--steps",
        "24",
        "--no-progress",
        "--set",
        "hidden=[8]",
        "--set",
        f"poison_sum={target}",
        "--checkpoint-every",
        "4",
    ]
    code, err = run_cli([*argv, "--run-dir", str(tmp_path / "stop")])
    assert code == 1
    assert only_error_line(err).startswith(f"error: step {expected[0]}: the training loss is nan")
    code, err = run_cli([*argv, "--on-nonfinite", "skip", "--run-dir", str(tmp_path / "skip")])
    assert code == 0, err
    assert f"skipped step {expected[0]}:" in err and "Traceback" not in err
    lines = (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()
    train_lines = [json.loads(l) for l in lines if json.loads(l)["split"] == "train"]
    assert train_lines[-1]["skipped_steps"] == len(expected)


# ----------------------------------------------------------------------------- 1. the CLI


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``latentkit.cli.main(argv)`` in this process: (exit status, stderr)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own exits
            code = exc.code
    return int(code), err.getvalue()


def only_error_line(err: str) -> str:
    """The one ``error:`` line of stderr (there must be exactly one, and no traceback)."""
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, str):
        body = "".join(c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}" for c in v)
        return f'"{body}"'
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


_CLI_SCRATCH = itertools.count()
_TOML_BREAKERS = [
    "[train",
    "x = ",
    "= 3",
    'a = "open',
    "k = [1, 2",
    "a = 1\na = 2",
    "d = 1979-13-01",
    "t = tru",
    "[train]\n[train]",
    "x = 0x",
    "'",
]
_ident = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
_VAE_FIELDS = [f.name for f in attrs.fields(lk.get_model_spec("vae").config_class)]
_KNOWN = {
    "": ["model", "model_config", "train", "data", "evaluate"],
    "model_config": _VAE_FIELDS,
    "train": list(TRAIN_FIELDS),
    "data": ["name", "variant", "seed", "limit"],
    "evaluate": ["iwae_k", "examples", "batch_size", "num_samples", "estimator", "seed"],
}
_WRONG = {
    ("data", "name"): st.one_of(st.integers(), st.booleans(), st.just("")),
    ("data", "seed"): st.one_of(st.text(max_size=3), st.floats(), st.integers(max_value=-1)),
    ("data", "limit"): st.one_of(st.text(max_size=3), st.floats(), st.integers(max_value=0)),
    ("evaluate", "iwae_k"): st.one_of(st.text(max_size=3), st.floats(), st.integers(max_value=-1)),
    ("evaluate", "batch_size"): st.one_of(st.booleans(), st.floats(), st.integers(max_value=0)),
    ("evaluate", "estimator"): st.one_of(st.integers(), st.floats(), st.booleans()),
    ("model_config", "latent_dim"): st.one_of(
        st.text(max_size=3), st.floats(), st.booleans(), st.integers(max_value=0)
    ),
    ("model_config", "hidden"): st.one_of(
        st.integers(), st.lists(st.floats(), min_size=1, max_size=2), st.just([0])
    ),
}


@st.composite
def bad_cli_input(draw, scratch: Path, kind: str):
    """(argv, exit status, words of the error line) for a `latentkit train` that must fail
    before any data are loaded: the file, its syntax, its keys, its values, the flags."""
    path = scratch / f"c{next(_CLI_SCRATCH)}.toml"
    argv = ["train", "--config", str(path), "--run-dir", str(scratch / "never")]
    if kind == "syntax":
        text = 'model = "vae"\n' + draw(
            st.tuples(st.sampled_from(_TOML_BREAKERS), st.sampled_from(["", "\n", " 1", "]"]))
            .map("".join)
            .filter(lambda t: not _is_toml('model = "vae"\n' + t))
        )
        path.write_text(text)
        return argv, 2, ["not valid TOML", path.name]
    if kind == "unknown":
        section = draw(st.sampled_from(sorted(_KNOWN)))
        key = draw(_ident.filter(lambda k: k not in _KNOWN[section]))
        head = f"[{section}]\n" if section else ""
        path.write_text(f'model = "vae"\n{head}{key} = 1\n')
        return argv, 2, [key]
    if kind in ("type", "range"):
        if kind == "type" and draw(st.booleans()):
            section, key = draw(st.sampled_from(sorted(_WRONG)))
            value = draw(_WRONG[section, key])
        else:
            section = "train"
            key = draw(st.sampled_from(sorted(_OUT_OF_RANGE if kind == "range" else TRAIN_FIELDS)))
            strat = _OUT_OF_RANGE[key] if kind == "range" else _BAD_FIELD_VALUES[TRAIN_FIELDS[key]]
            value = draw(strat.filter(lambda v: v is not None))
            if isinstance(value, list) and not value:
                value = [1]
        path.write_text(f'model = "vae"\n[{section}]\n{key} = {toml_value(value)}\n')
        return argv, 2, [key]
    if kind == "missing":
        return argv, 2, ["--config", path.name]
    if kind == "set":
        text = draw(st.text(max_size=12).filter(lambda s: "=" not in s))
        return ["train", "--model", "vae", f"--set={text}"], 2, ["expected FIELD=VALUE"]
    if kind == "flag":
        flag = draw(st.sampled_from(["--steps", "--batch-size", "--lr", "--seed", "--limit"]))
        value = draw(st.text(max_size=5)) + draw(st.sampled_from(["!", "x", "1.5.", "e"]))
        if _parses(value, flag):  # e.g. "1e" + ... never parses; this is a guard
            value += "!"
        return ["train", "--model", "vae", f"{flag}={value}"], 2, [flag, "invalid"]
    value = draw(st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=2)))
    path.write_text(f"model = {toml_value(value)}\n")
    return argv, 2, ["model must be a name"]


def _is_toml(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def _parses(text: str, flag: str) -> bool:
    try:
        (float if flag == "--lr" else int)(text)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-fuzz")


CLI_KINDS = ["syntax", "unknown", "type", "range", "missing", "set", "flag", "model"]


@pytest.mark.parametrize("kind", CLI_KINDS)
@given(data=st.data())
def test_bad_cli_input_exits_nonzero_with_one_error_line(scratch, kind, data):
    """Bad TOML syntax, unknown keys, wrong types and ranges, a missing file, a --set without
    '=', a bad flag value, a model that is not a name: exit status 2 and one ``error:`` line
    on stderr naming the culprit, nothing else, no traceback."""
    argv, code, words = data.draw(bad_cli_input(scratch, kind))
    got, err = run_cli(argv)
    assert got == code, (argv, err)
    line = only_error_line(err)
    assert len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in line, (w, line)
    assert not (scratch / "never").exists()


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["train", "--model", "vae", "--set", "latent_dim"], 2, ["expected FIELD=VALUE"]),
        (
            [
                "train",
                "--model",
                "vae",
                "--data",
                "digits",
                "--limit",
                "64",
                "--variant",
                "unit",
                "--set",
                "likelihood=bernoulli",
                "--steps",
                "1",
            ],
            1,
            ["Bernoulli", "binarize"],
        ),
    ],
    ids=["set-without-equals", "grey-levels-for-bernoulli"],
)
def test_the_real_command_prints_one_line_and_no_traceback(tmp_path, argv, code, words):
    """The same, from a real `latentkit` process (the console script's entry point)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "60"}  # narrow: no wrapping
    proc = subprocess.run(
        [sys.executable, "-m", "latentkit.cli", *argv, "--run-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == code, proc.stderr
    line = only_error_line(proc.stderr)
    for w in words:
        assert w in line


# ----------------------------------------------------------------------------- 1. data loaders


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, tuple[Path, torch.Tensor, torch.Tensor]]:
    """One good file per format (and an image folder), with what it loads to."""
    root = tmp_path_factory.mktemp("pristine")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 1, 4, 4), dtype=np.uint8)
    np.save(root / "a.npy", x)
    np.savez(root / "a.npz", train=x[:16], test=x[16:])
    torch.save({"train": torch.from_numpy(x[:16]), "test": torch.from_numpy(x[16:])}, root / "a.pt")
    save_safetensors_np({"train": x[:16], "test": x[16:]}, str(root / "a.safetensors"))
    from PIL import Image

    folder = root / "images"
    folder.mkdir()
    for i in range(10):
        Image.fromarray(x[i, 0]).save(folder / f"{i:02d}.png")
    out = {}
    for name in ("a.npy", "a.npz", "a.pt", "a.safetensors"):
        ds = load_dataset(f"file:{root / name}", variant="unit")
        out[name] = (root / name, ds.train, ds.test)
    ds = load_dataset(f"folder:{folder}", variant="unit")
    out["images"] = (folder, ds.train, ds.test)
    return out


_DATA_SCRATCH = itertools.count()


@pytest.mark.parametrize("fmt", ["a.npy", "a.npz", "a.pt", "a.safetensors"])
@given(where=st.floats(0, 1))
def test_a_truncated_data_file_is_refused_or_loads_unchanged(pristine, scratch, fmt, where):
    """A file cut anywhere is a one-line DataSourceError naming it — or, if what was cut was
    not needed, the very same tensors; never different data."""
    path, train, test = pristine[fmt]
    blob = path.read_bytes()
    cut = min(int(where * len(blob)), len(blob) - 1)
    bad = scratch / f"t{next(_DATA_SCRATCH)}{path.suffix}"
    bad.write_bytes(blob[:cut])
    try:
        ds = load_dataset(f"file:{bad}", variant="unit")
    except DataSourceError as exc:
        assert str(bad) in one_line(exc)
    else:
        assert torch.equal(ds.train, train) and torch.equal(ds.test, test)


@pytest.mark.parametrize("junk", [False, True], ids=["truncated", "junk"])
@given(where=st.floats(0, 1), garbage=st.binary(min_size=1, max_size=64), which=st.integers(0, 9))
def test_a_truncated_or_corrupt_image_is_refused_or_loads_unchanged(
    pristine, scratch, junk, where, garbage, which
):
    """One image of the folder cut short, or replaced by junk bytes: DataSourceError naming
    that file, or (a cut after the pixel data) the same tensors."""
    folder, train, test = pristine["images"]
    copy = scratch / f"img{next(_DATA_SCRATCH)}"
    shutil.copytree(folder, copy)
    victim = copy / f"{which:02d}.png"
    blob = victim.read_bytes()
    garbage = garbage if garbage[:1] != b"\x89" else b"?" + garbage  # never a PNG signature
    victim.write_bytes(garbage if junk else blob[: min(int(where * len(blob)), len(blob) - 1)])
    try:
        ds = load_dataset(f"folder:{copy}", variant="unit")
    except DataSourceError as exc:
        assert victim.name in one_line(exc)
    else:
        assert not junk
        assert torch.equal(ds.train, train) and torch.equal(ds.test, test)


def _png(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height grey pixels (the pixel data is a stub)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8))


def test_an_image_bomb_is_refused_before_it_is_decoded(tmp_path):
    """A 60000 × 60000 header (3.6 gigapixels) in a 60-byte file: refused, not allocated."""
    (tmp_path / "bomb").mkdir()
    (tmp_path / "bomb" / "a.png").write_bytes(_png(60000, 60000))
    (tmp_path / "bomb" / "b.png").write_bytes(_png(4, 4))
    with pytest.raises(DataSourceError) as exc:
        load_dataset(f"folder:{tmp_path / 'bomb'}")
    assert "a.png" in one_line(exc) and "decompression bomb" in str(exc.value)


# ----------------------------------------------------------------------------- 4. untrusted files


class _Bomb:
    """Unpickling this runs ``Path(marker).touch()``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_bomb_is_never_unpickled(tmp_path):
    """A .pt whose pickle would run code: `file:` data refuses it (torch.load with
    weights_only=True), and as a checkpoint it is not even JSON; the code never runs."""
    marker = tmp_path / "PWNED"
    bomb = tmp_path / "bomb.pt"
    torch.save({"train": _Bomb(marker)}, bomb)
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(_Bomb(marker), f)
    with pytest.raises(DataSourceError) as exc:
        load_dataset(f"file:{bomb}")
    assert "weights_only=True" in one_line(exc) and "Unsupported global" in str(exc.value)
    for path in (bomb, tmp_path / "plain.pkl"):
        with pytest.raises(lk.CheckpointError):
            load_trained_model(path)
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = (
                f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            )
            yield node, owner, name


def test_no_code_in_the_package_unpickles_or_evaluates():
    """Static proof over src/ and plugins/: every torch.load passes weights_only=True,
    np.load never allow_pickle=True, and there is no pickle/marshal/yaml load, eval or exec."""
    found, loads = [], 0
    for path in sorted(
        [*ROOT.joinpath("src").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")]
    ):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, owner, name in _calls(tree):
            kw = {k.arg: k.value for k in node.keywords}
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if owner == "torch" and name == "load":
                loads += 1
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value
                if not ok:
                    found.append(f"{where}: torch.load without weights_only=True")
            if name == "load" and owner in ("np", "numpy"):
                flag = kw.get("allow_pickle")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    found.append(f"{where}: np.load without allow_pickle=False")
            if owner in ("pickle", "marshal", "yaml", "dill", "cloudpickle") and "load" in name:
                found.append(f"{where}: {owner}.{name}")
            if isinstance(node.func, ast.Name) and name in ("eval", "exec", "__import__"):
                found.append(f"{where}: {name}(...)")
    assert not found, found
    assert loads >= 1  # the check saw the one torch.load there is (data/files.py)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data) -> Path:
    train, _, _ = data
    run = tmp_path_factory.mktemp("ckpt") / "run"
    torch.manual_seed(0)
    model = lk.load_model(
        "vae", data_shape=(D,), latent_dim=2, hidden=(16,), likelihood="bernoulli"
    )
    Trainer(model, train, config(steps=4, checkpoint_every=0), run_dir=run).fit()
    return run


def _paths(obj, prefix=()):
    """Every (path, value) inside a JSON value, dicts and lists included."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _set(obj, path, value):
    if not path:
        return value
    obj[path[0]] = _set(obj[path[0]], path[1:], value) if len(path) > 1 else value
    return obj


@st.composite
def tampering(draw, kind: str, record: dict, tensor_len: int, json_len: int):
    if kind == "tensor-flip":
        return kind, (draw(st.integers(0, tensor_len - 1)), draw(st.integers(1, 255)))
    if kind == "tensor-cut":
        return kind, draw(st.integers(0, tensor_len - 1))
    if kind == "json-cut":
        return kind, draw(st.integers(0, json_len - 1))
    paths = [p for p, _ in _paths(record) if p and p[0] != "info_sha256"]
    path = draw(st.sampled_from(paths))
    delete = isinstance(path[-1], str) and draw(st.booleans())
    return kind, (path, None if delete else draw(_json_values), delete)


def _apply(run: Path, kind: str, how) -> dict | None:
    """Tamper with the run's checkpoint; return the JSON record as the loader will see it."""
    json_path = ckpt.latest_checkpoint(run)
    tensor_path = json_path.with_suffix(".safetensors")
    if kind == "tensor-flip":
        blob = bytearray(tensor_path.read_bytes())
        blob[how[0]] ^= how[1]
        tensor_path.write_bytes(bytes(blob))
        return None
    if kind == "tensor-cut":
        tensor_path.write_bytes(tensor_path.read_bytes()[:how])
        return None
    if kind == "json-cut":
        json_path.write_bytes(json_path.read_bytes()[:how])
        return None
    path, value, delete = how
    record = json.loads(json_path.read_text())
    if delete:
        parent = record
        for p in path[:-1]:
            parent = parent[p]
        del parent[path[-1]]
    else:
        record = _set(record, path, value)
    if kind == "forged":  # a forger who knows to recompute the content hash
        record["info_sha256"] = ckpt._info_digest(json.loads(json.dumps(record)))
    json_path.write_text(json.dumps(record))
    return record


TAMPER_KINDS = ["tensor-flip", "tensor-cut", "json-cut", "json-edit", "forged"]


@pytest.mark.parametrize("kind", TAMPER_KINDS)
@given(data=st.data())
def test_a_tampered_checkpoint_is_refused_with_a_checkpoint_error(trained_run, data, scratch, kind):
    """Flipped or cut tensor bytes, a cut or edited JSON: CheckpointError, one line. A forger
    who recomputes the JSON's hash gets a CheckpointError or a model whose weights are the
    stored ones — never another exception, from load_trained_model or Trainer.resume."""
    json_path = ckpt.latest_checkpoint(trained_run)
    record = json.loads(json_path.read_text())
    original, _ = ckpt.read_checkpoint(json_path)
    tensor_len = json_path.with_suffix(".safetensors").stat().st_size
    _, how = data.draw(tampering(kind, record, tensor_len, json_path.stat().st_size))
    run = scratch / f"ckpt{next(_DATA_SCRATCH)}"
    shutil.copytree(trained_run, run)
    edited = _apply(run, kind, how)
    unchanged = edited is not None and json.loads(json.dumps(edited)) == record
    for load in (lambda r: load_trained_model(r)[0], _resume):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = load(run)
        except lk.CheckpointError as exc:
            one_line(exc)
            continue
        assert kind in ("forged", "json-cut") or unchanged, (kind, how)
        if kind == "json-cut":  # only trailing whitespace went
            assert json.loads(ckpt.latest_checkpoint(run).read_text()) == record
        assert_equal(params(model), ckpt.subset(original, "model"))


def _resume(run: Path) -> lk.LatentModel:
    train = torch.zeros(N, D)
    torch.manual_seed(1)
    model = lk.load_model(
        "vae", data_shape=(D,), latent_dim=2, hidden=(16,), likelihood="bernoulli"
    )
    Trainer(model, train, config(steps=4)).resume(run)
    return model


CODE_STRINGS = [
    "__import__('os').system('touch {m}')",
    "$(touch {m})",
    "`touch {m}`",
    "{{{{ ''.__class__.__mro__[1].__subclasses__() }}}}",
    "!!python/object/apply:os.system ['touch {m}']",
    "eval(compile('open(\"{m}\", \"w\")', 'x', 'exec'))",
]


@pytest.mark.parametrize("template", CODE_STRINGS, ids=range(len(CODE_STRINGS)))
@pytest.mark.parametrize("place", ["model", "model_config", "train", "data", "set"])
def test_code_in_a_config_file_stays_text(tmp_path, template, place):
    """A TOML file (or --set) whose values look like code: parsed, never evaluated — the
    value is refused as the text it is (quoted back in the error), and no file appears."""
    marker = tmp_path / "MARKER"
    code = template.format(m=marker)
    value = toml_value(code)
    lines = {
        "model": f"model = {value}\n",
        "model_config": f'model = "vae"\n[model_config]\nlikelihood = {value}\n',
        "train": f'model = "vae"\n[train]\neval_estimator = {value}\n',
        "data": f'model = "vae"\n[data]\nname = {value}\nlimit = 64\n',
        "set": 'model = "vae"\n',
    }
    cfg = tmp_path / "run.toml"
    cfg.write_text(lines[place])
    extra = ["--set", f"latent_dim={code}"] if place == "set" else []
    got, err = run_cli(["train", "--config", str(cfg), *extra, "--run-dir", str(tmp_path / "r")])
    assert got in (1, 2)
    line = only_error_line(err)
    assert repr(code)[1:-1][:20] in line or code[:20] in line, line
    assert not marker.exists()


def test_code_in_a_checkpoint_json_stays_text(trained_run, tmp_path):
    """A checkpoint JSON (hash recomputed) whose model name and config values are code: a
    CheckpointError quoting them; nothing runs."""
    marker = tmp_path / "MARKER"
    for field in ("model", ("model_config", "likelihood"), ("model_config", "activation")):
        run = tmp_path / f"run-{hashlib.md5(str(field).encode()).hexdigest()[:6]}"
        shutil.copytree(trained_run, run)
        path = field if isinstance(field, tuple) else (field,)
        _apply(run, "forged", (path, f"__import__('os').system('touch {marker}')", False))
        with pytest.raises(lk.CheckpointError) as exc:
            load_trained_model(run)
        assert "__import__" in one_line(exc)
    assert not marker.exists()


def test_a_checkpoint_cannot_point_outside_its_folder(trained_run, tmp_path):
    """'tensors' naming a path (../, absolute) is refused before any file is opened."""
    for name in ("../secret.safetensors", "/etc/passwd", "step-1.json", ".step-1.safetensors"):
        run = tmp_path / f"r{abs(hash(name))}"
        shutil.copytree(trained_run, run)
        _apply(run, "forged", (("tensors",), name, False))
        with pytest.raises(lk.CheckpointError, match="'tensors' must name"):
            ckpt.read_checkpoint(run)


def test_a_forged_config_asking_for_a_huge_model_allocates_nothing(trained_run, tmp_path):
    """hidden = [10**9] with the hash recomputed: refused on the meta device by its shapes,
    before any real allocation (a real one would need 32 GB)."""
    run = tmp_path / "huge"
    shutil.copytree(trained_run, run)
    _apply(run, "forged", (("model_config", "hidden"), [10**9], False))
    with pytest.raises(lk.CheckpointError, match="has shape"):
        load_trained_model(run)


def test_non_finite_weights_in_a_checkpoint_are_refused(trained_run, tmp_path):
    run = tmp_path / "nan"
    shutil.copytree(trained_run, run)
    json_path = ckpt.latest_checkpoint(run)
    tensors, info = ckpt.read_checkpoint(json_path)
    tensors["model/generative.decoder.0.bias"][0] = math.nan
    keep = {
        k: v
        for k, v in info.items()
        if k not in ("format", "format_version", "step", "tensors", "tensors_sha256", "info_sha256")
    }
    ckpt.write_checkpoint(run / "checkpoints", info["step"] + 1, tensors, keep)
    with pytest.raises(lk.CheckpointError, match=r"generative\.decoder\.0\.bias.*NaN or inf"):
        load_trained_model(run)


def test_a_kill_mid_prune_leaves_every_committed_checkpoint_whole(tmp_path, monkeypatch):
    """Pruning unlinks an old checkpoint's JSON before its tensors: a crash in between leaves
    stray tensors (cleared by the next write), never a JSON without its tensors."""
    d = tmp_path / "checkpoints"
    for step in (1, 2):
        ckpt.write_checkpoint(d, step, {"w": torch.full((2,), float(step))}, {}, keep_last=2)
    real_unlink = Path.unlink

    def crash_on_tensors(self, *a, **k):
        if self.suffix == ".safetensors":
            raise KeyboardInterrupt  # as a kill would, between the two unlinks
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(Path, "unlink", crash_on_tensors)
    with pytest.raises(KeyboardInterrupt):
        ckpt.write_checkpoint(d, 3, {"w": torch.full((2,), 3.0)}, {}, keep_last=2)
    monkeypatch.undo()
    for p in ckpt.list_checkpoints(d):
        ckpt.read_checkpoint(p)  # every committed one is whole
    assert [p.name for p in ckpt.list_checkpoints(d)] == [
        "step-00000002.json",
        "step-00000003.json",
    ]
    assert (d / "step-00000001.safetensors").exists()  # the stray
    ckpt.write_checkpoint(d, 4, {"w": torch.full((2,), 4.0)}, {}, keep_last=2)
    assert sorted(p.name for p in d.iterdir()) == [
        "step-00000003.json",
        "step-00000003.safetensors",
        "step-00000004.json",
        "step-00000004.safetensors",
    ]


@pytest.mark.parametrize("command", ["evaluate", "sample", "report"])
def test_the_cli_refuses_a_tampered_checkpoint_in_one_line(trained_run, tmp_path, command):
    """`latentkit evaluate|sample|report RUN` on a run whose newest checkpoint lost a byte:
    exit status 1, one error line naming the file and the sha256, no traceback."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    _apply(
        run,
        "tensor-cut",
        ckpt.latest_checkpoint(run).with_suffix(".safetensors").stat().st_size - 1,
    )
    code, err = run_cli([command, str(run)])
    assert code == 1
    line = only_error_line(err)
    assert "step-00000004.safetensors" in line and "sha256" in line


def test_a_run_folder_the_os_refuses_is_one_line(tmp_path):
    """--run-dir inside a regular file: the OSError is one error line, exit status 1."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, err = run_cli(
        ["train", "--model", "vae", "--data", "digits", "--limit", "64", "--steps", "1",
         "--batch-size", "16", "--no-progress", "--run-dir", str(blocker / "run")]
    )  # fmt: skip
    assert code == 1
    assert "file/run" in only_error_line(err)
