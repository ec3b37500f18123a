"""The typed run configuration: recorded whole, read back to train the same run, listed by
``--help`` from the classes, refused field by field; the weight average (EMA) in the loop;
the logger backends, each read back by its own reader.

Mutants these tests kill: a field dropped from ``config.toml`` (the retrained run differs),
an EMA update skipped or applied before the optimizer step (the closed form differs), the
EMA left out of a checkpoint (resume differs), raw weights loaded where the average is asked
for, a metric written to the wrong tag or step (the readers disagree).
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import pytest
import tomllib
import torch

import latentkit as lk
from latentkit.checkpoint import latest_checkpoint, read_checkpoint, subset
from latentkit.cli import main
from latentkit.cli.runconfig import DataConfig, EvalConfig
from latentkit.trained import load_trained_model
from latentkit.training import TrainConfig, Trainer
from latentkit.training.averaging import EMA

TINY = ["--model", "vae", "--data", "digits", "--limit", "300", "--no-progress"]


def _train(tmp_path: Path, name: str, *extra: str) -> Path:
    run = tmp_path / name
    assert main(["train", *TINY, "--steps", "12", "--run-dir", str(run), *extra]) == 0
    return run


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(latest_checkpoint(run))[0]


def test_config_toml_trains_the_same_run_again(tmp_path):
    """``train --config RUN/config.toml`` reproduces the run bit for bit: every field that
    decides the trajectory is recorded (model, objective and its options, schedule, EMA,
    data set and protocol)."""
    run = _train(
        tmp_path,
        "a",
        "--objective",
        "elbo",
        "--set",
        "objective.warmup_steps=5",
        "--set",
        "objective.free_bits=0.1",
        "--set",
        "train.ema_decay=0.5",
        "--set",
        "train.lr_schedule=cosine",
        "--set",
        "latent_dim=3",
    )
    doc = tomllib.loads((run / "config.toml").read_text())
    assert doc["objective_config"]["warmup_steps"] == 5
    assert doc["objective_config"]["free_bits"] == 0.1
    assert doc["model_config"]["latent_dim"] == 3
    assert doc["data"]["name"] == "digits" and doc["data"]["limit"] == 300
    assert set(doc["train"]) == {f.name for f in attrs.fields(TrainConfig)}
    again = tmp_path / "b"
    assert main(["train", "--config", str(run / "config.toml"), "--run-dir", str(again)]) == 0
    a, b = _tensors(run), _tensors(again)
    assert sorted(a) == sorted(b)
    assert any(k.startswith("ema/") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (again / "config.toml").read_text() == (run / "config.toml").read_text()


def test_set_wins_over_a_flag_and_a_flag_over_the_file(tmp_path):
    """Precedence as docs/cli.md states it: the TOML file, then flags, then --set."""
    toml = tmp_path / "run.toml"
    toml.write_text('model = "vae"\n[train]\nlr = 0.01\nseed = 5\n[data]\nname = "digits"\n')
    run = tmp_path / "p"
    argv = ["train", "--config", str(toml), "--limit", "300", "--steps", "2", "--no-progress"]
    argv += ["--lr", "0.02", "--seed", "6", "--set", "train.seed=7", "--run-dir", str(run)]
    assert main(argv) == 0
    doc = tomllib.loads((run / "config.toml").read_text())
    assert doc["train"]["lr"] == 0.02 and doc["train"]["seed"] == 7


def test_iwae_objective_and_its_options_from_the_command_line(tmp_path):
    run = _train(tmp_path, "iwae", "--objective", "iwae", "--set", "objective.k=50")
    doc = tomllib.loads((run / "config.toml").read_text())
    assert doc["objective"] == "iwae" and doc["objective_config"]["k"] == 50
    info = read_checkpoint(latest_checkpoint(run))[1]
    assert info["objective"]["config"]["k"] == 50


@pytest.mark.parametrize("cls", [TrainConfig, DataConfig, EvalConfig])
def test_help_lists_every_field_with_type_default_and_range(cls, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    from latentkit.config import describe_fields

    for f in describe_fields(cls):
        default = "unset" if f["default"] is None else repr(f["default"])
        assert f"  {f['name']} ({f['type']}, default {default}" in text, f["name"]
        assert f["doc"], f"{cls.__name__}.{f['name']} has no description"
        if f["type"] in ("int", "float", "str") and f["name"] != "device":
            assert f["rule"], f"{cls.__name__}.{f['name']} states no allowed values"


def test_help_lists_the_chosen_model_and_objective_fields(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model", "vae", "--objective", "iwae", "--help"])
    text = capsys.readouterr().out
    assert "[model_config] model 'vae'" in text and "  latent_dim (int" in text
    assert "[objective_config] objective 'iwae'" in text and "  gradient (str" in text


BAD = {"int": "-3", "float": "-1.5", "bool": '"yes"', "str": "42"}


def _bad_sets() -> list[tuple[str, str]]:
    out = []
    for prefix, cls in (("train.", TrainConfig), ("data.", DataConfig), ("evaluate.", EvalConfig)):
        for f in attrs.fields(cls):
            kind = str(f.type).split(" ")[0]
            value = BAD.get(kind, "-3")
            out.append((prefix + f.name, value))
    return out


@pytest.mark.parametrize(("field", "value"), _bad_sets())
def test_a_bad_value_of_any_field_is_one_line_naming_it(field, value, tmp_path, capsys):
    # the bad value is set last, so it wins
    base = ["--model", "vae", "--set", "data.name=digits", "--set", "data.limit=300"]
    code = main(["train", *base, "--set", f"{field}={value}", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (field, err)
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert repr(field.split(".")[1]) in err[0] or field.split(".")[1] in err[0], err[0]
    assert not (tmp_path / "r").exists()


# --- the weight average in the loop ------------------------------------------------------


def _vae(seed: int = 0) -> lk.LatentModel:
    torch.manual_seed(seed)
    return lk.load_model("vae", data_shape=[6], latent_dim=2, hidden=[8], likelihood="gaussian")


def _data(n: int = 64) -> torch.Tensor:
    return torch.randn(n, 6, generator=torch.Generator().manual_seed(1))


def test_trainer_ema_is_the_closed_form_average_of_the_weights_it_saw():
    """With decay d, θ̄_n = dⁿ θ_0 + (1 − d) Σ_k d^{n−k} θ_k (θ_k the weights after step k):
    recorded step by step beside the trainer, the formula gives the trainer's average."""
    d = 0.8
    cfg = TrainConfig(steps=1, batch_size=16, ema_decay=d, progress=False, eval_examples=0)
    model = _vae()
    trainer = Trainer(model, _data(), cfg)
    thetas = [{k: p.detach().clone() for k, p in model.named_parameters()}]
    for n in range(1, 8):
        trainer.config = attrs.evolve(cfg, steps=n)
        trainer.fit()
        thetas.append({k: p.detach().clone() for k, p in model.named_parameters()})
    n = len(thetas) - 1
    state = trainer.ema.state_dict()
    for name in thetas[0]:
        want = d**n * thetas[0][name].double()
        for k in range(1, n + 1):
            want = want + (1 - d) * d ** (n - k) * thetas[k][name].double()
        torch.testing.assert_close(state[name].double(), want, rtol=1e-5, atol=1e-6)
    assert int(state[EMA.NUM_UPDATES_KEY]) == n


def test_resume_restores_the_average_exactly(tmp_path):
    cfg = TrainConfig(steps=10, batch_size=16, ema_decay=0.9, progress=False, eval_examples=0)
    straight = Trainer(_vae(), _data(), cfg, run_dir=tmp_path / "a")
    straight.fit()
    first = Trainer(_vae(), _data(), attrs.evolve(cfg, steps=4), run_dir=tmp_path / "b")
    first.fit()
    second = Trainer(_vae(), _data(), cfg, run_dir=tmp_path / "b")
    second.resume(latest_checkpoint(tmp_path / "b"))
    second.fit()
    a, b = straight.ema.state_dict(), second.ema.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_evaluation_loads_the_average_and_can_load_the_raw_weights(tmp_path):
    cfg = TrainConfig(steps=6, batch_size=16, ema_decay=0.5, progress=False, eval_examples=0)
    trainer = Trainer(_vae(), _data(), cfg, run_dir=tmp_path)
    trainer.fit()
    tensors, _ = read_checkpoint(latest_checkpoint(tmp_path))
    avg, info = load_trained_model(tmp_path)
    raw, info_raw = load_trained_model(tmp_path, averaged=False)
    assert info["weights"] == "ema" and info_raw["weights"] == "raw"
    ema, weights = subset(tensors, "ema"), subset(tensors, "model")
    for name, p in avg.named_parameters():
        assert torch.equal(p, ema[name]), name
    for name, p in raw.named_parameters():
        assert torch.equal(p, weights[name]), name
    assert any(not torch.equal(ema[k], weights[k]) for k, _ in raw.named_parameters())


def test_periodic_evaluation_scores_the_average(tmp_path):
    """The validation ELBO logged is the averaged model's, and the best checkpoint holds it."""
    cfg = TrainConfig(steps=6, batch_size=16, ema_decay=0.5, progress=False, eval_examples=0)
    data = _data(96)
    trainer = Trainer(_vae(), data[:64], cfg, validation_data=data[64:], run_dir=tmp_path)
    trainer.fit()
    logged = trainer.last_metrics["validation"]["elbo"]
    best, _ = load_trained_model(tmp_path / "best", averaged=False)
    ema = trainer.ema.state_dict()
    for name, p in best.named_parameters():
        assert torch.equal(p, ema[name]), name
    report = lk.evaluate(best, data[64:], iwae_k=0, seed=cfg.seed + 1)
    assert math.isclose(report.elbo.mean, logged, rel_tol=1e-6)


# --- loggers, each read back by its own reader ---------------------------------------------


def _records(run: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_event_files_hold_every_logged_number(tmp_path):
    pytest.importorskip("tensorboard", reason="the tracking extra (tensorboard) is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _train(tmp_path, "tb", "--set", "train.logger=tensorboard", "--set", "train.log_every=4")
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    train = [r for r in _records(run) if r["split"] == "train"]
    got = {(e.step, e.value) for e in acc.Scalars("train/elbo")}
    want = {(r["step"], r["elbo"]) for r in train}
    assert len(got) == len(want) == 3
    for (s1, v1), (s2, v2) in zip(sorted(got), sorted(want)):
        assert s1 == s2 and math.isclose(v1, v2, rel_tol=1e-6)
    assert "test/elbo" in acc.Tags()["scalars"]
    assert "curves" in acc.Tags()["images"]
    assert "config/text_summary" in acc.Tags()["tensors"]


def test_mlflow_file_store_holds_every_logged_number_and_the_config(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the tracking extra (mlflow-skinny) is not installed")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the logger sets it
    run = _train(tmp_path, "ml", "--set", "train.logger=mlflow", "--set", "train.log_every=4")
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    run_id = (run / "mlruns" / "latentkit_run_id").read_text().strip()
    history = client.get_metric_history(run_id, "train/elbo")
    want = {(r["step"], r["elbo"]) for r in _records(run) if r["split"] == "train"}
    assert {(m.step, round(m.value, 6)) for m in history} == {(s, round(v, 6)) for s, v in want}
    params = client.get_run(run_id).data.params
    assert params["train.steps"] == "12" and params["model"] == "vae"
    artifacts = [a.path for a in client.list_artifacts(run_id, "figures")]
    assert any(p.endswith(".png") for p in artifacts)
    assert client.get_run(run_id).info.status == "FINISHED"


# --- the model ↔ command-line contract -----------------------------------------------------


@attrs.frozen(kw_only=True)
class _NamedConfig:
    """A config whose data-shape and likelihood fields have names of their own."""

    shape: tuple[int, ...] = (64,)
    latent_dim: int = 2
    observation: str = "gaussian"


def _named_plugin(data_shape_field, likelihood_field):
    class Plugin:
        @lk.hookimpl
        def latentkit_models(self):
            def build(cfg: _NamedConfig) -> lk.LatentModel:
                return lk.load_model(
                    "vae",
                    data_shape=list(cfg.shape),
                    latent_dim=cfg.latent_dim,
                    hidden=[8],
                    likelihood=cfg.observation,
                )

            return [
                lk.ModelSpec(
                    "named-fields",
                    _NamedConfig,
                    build,
                    "a VAE whose config names its data fields",
                    data_shape_field=data_shape_field,
                    likelihood_field=likelihood_field,
                )
            ]

    return Plugin()


@pytest.mark.parametrize("declared", [True, False])
def test_the_spec_declares_which_config_fields_the_command_fills(tmp_path, capsys, declared):
    """``ModelSpec.data_shape_field``/``likelihood_field`` name the fields ``train`` fills from
    the data; undeclared, nothing is filled (and a model with other names gets no stray
    ``data_shape`` field, the error a newcomer's model used to hit)."""
    plugin = _named_plugin("shape" if declared else None, "observation" if declared else None)
    lk.register_plugin(plugin, "named-fields test")
    try:
        run = tmp_path / "run"
        argv = ["train", "--model", "named-fields", "--data", "digits", "--limit", "200"]
        code = main([*argv, "--steps", "2", "--no-progress", "--run-dir", str(run)])
        err = capsys.readouterr().err
    finally:
        lk.unregister_plugin(plugin)
    if declared:
        assert code == 0, err
        doc = tomllib.loads((run / "config.toml").read_text())
        assert doc["model_config"]["shape"] == [1, 8, 8]
        assert doc["model_config"]["observation"] == "bernoulli"  # binarized by default
        assert doc["data"]["variant"] == "binarized"
    else:  # the default shape (64,) does not fit 1×8×8 digits: one line, no stray field
        assert code != 0
        last = err.strip().splitlines()[-1]
        assert "error:" in last and "declares no data_shape_field" in " ".join(err.split())
        assert "unknown" not in err and "unexpected" not in err  # no stray data_shape field
