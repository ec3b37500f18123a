"""Recipes and the data protocol of docs/reproduction.md: every shipped recipe runs at a tiny
budget, dynamic binarization and the validation split reach the trainer, the best checkpoint
on validation is the one evaluated, and the learning-rate schedule is applied."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import attrs
import pytest
import torch
from safetensors.torch import load_file

import latentkit as lk
from latentkit.checkpoint import latest_checkpoint
from latentkit.cli import main, training_splits
from latentkit.recipes import list_recipes, recipe_info
from latentkit.trained import load_trained_model
from latentkit.training.lr_schedules import LRSchedule, lr_factor

TINY_DATA = ["--set", "data.limit=600", "--set", "data.validation=100", "--no-progress"]


def test_recipes_are_listed_with_their_sources(capsys):
    names = list_recipes()
    expected = {"iwae-paper-vae", "iwae-paper-iwae", "iwae-paper-iwae-k5", "iwae-paper-2layer"}
    diffusion = {"ddpm-mnist", "vdm-binarized-mnist", "vdm-mnist-8bit"}
    assert expected | diffusion <= set(names)
    for name in names:
        info = recipe_info(name)
        for key in ("description", "source", "architecture", "optimiser", "budget_cpu"):
            assert info.get(key), (name, key)
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in names) and "Burda" in out


@pytest.mark.parametrize(
    "recipe,extra",
    [
        ("iwae-paper-vae", []),
        ("iwae-paper-iwae", ["--set", "objective.k=3"]),
        ("iwae-paper-iwae-k5", []),
        ("iwae-paper-2layer", []),
        ("ddpm-mnist", ["--set", "channels=8", "--set", "num_timesteps=20"]),
        ("vdm-binarized-mnist", ["--set", "hidden=[16]", "--set", "num_timesteps=20"]),
        ("vdm-mnist-8bit", ["--set", "channels=8", "--set", "num_timesteps=20"]),
        ("iwae-paper-vae-vdm-prior", ["--set", "prior.hidden=[16]"]),
        (
            "m2-100-labels",
            [
                "--set",
                "data.labels=1",
                "--set",
                "data.repeat_labelled=2",
                "--set",
                "hidden=[16]",
                "--set",
                "classifier_hidden=[16]",
            ],
        ),
    ],
)
def test_every_recipe_runs_at_a_tiny_budget(recipe, extra, tmp_path, capsys):
    if "mnist" not in lk.data.list_datasets(available_only=True):
        pytest.skip("the embedded MNIST (extra 'mnist') is not installed here")
    run = tmp_path / recipe
    argv = ["train", "--recipe", recipe, "--set", "steps=4", "--set", "batch_size=8",
            "--set", "train.eval_examples=16", *TINY_DATA, *extra,
            "--run-dir", str(run)]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    # A recipe that compiles its objective must trace: the trainer's eager fallback would
    # warn, and the recipe's budget (measured compiled) would no longer hold.
    fallbacks = [str(w.message) for w in caught if "could not trace" in str(w.message)]
    assert not fallbacks, fallbacks
    assert config["data"]["validation"] == 100
    err = " ".join(capsys.readouterr().err.split())  # the console wraps its lines
    kept = config["data"]["limit"] - 100
    fresh = (
        ", binarized afresh at each use" if config["data"].get("binarization") == "dynamic" else ""
    )
    repeats = config["data"].get("repeat_labelled", 1)
    copies = f", the 10 labelled ones each {repeats} times ({kept + 10 * (repeats - 1):,} rows)"
    copies = copies if repeats > 1 else ""  # the m2 recipe's: 1 label per class here
    assert f"protocol: {kept:,} training examples{fresh}{copies}; 100 held out for" in err
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {m["split"] for m in metrics} == {"train", "validation"}  # the test split untouched
    assert latest_best(run) is not None


def latest_best(run: Path) -> Path | None:
    return latest_checkpoint(run / "best")


def test_config_and_recipe_are_exclusive(capsys):
    assert main(["train", "--recipe", "iwae-paper-vae", "--config", "x.toml"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["train", "--recipe", "no-such-recipe"]) == 2
    assert "no recipe named 'no-such-recipe'" in capsys.readouterr().err


def _digits(**data):
    ds = lk.load_dataset("digits", variant="binarized", seed=0)
    return ds, training_splits(ds, {"name": "digits", "seed": 0, **data})


def test_validation_split_is_held_out_of_training_and_apart_from_test():
    ds, splits = _digits(validation=300)
    train, valid = splits["train_data"], splits["validation_data"]
    assert train.shape[0] + valid.shape[0] == ds.train.shape[0] and valid.shape[0] == 300
    assert torch.equal(valid, ds.train[-300:]) and torch.equal(train, ds.train[:-300])
    assert splits["test_data"] is None  # the trainer never sees the test split


def test_dynamic_binarization_gives_probabilities_and_fixed_validation_bits():
    _, splits = _digits(validation=300, binarization="dynamic")
    unit = lk.load_dataset("digits", variant="unit", seed=0).train
    assert splits["dynamic_binarization"]
    assert torch.equal(splits["train_data"], unit[:-300])
    valid = splits["validation_data"]
    assert set(valid.unique().tolist()) <= {0.0, 1.0}
    _, again = _digits(validation=300, binarization="dynamic")
    assert torch.equal(again["validation_data"], valid)  # one fixed, seeded draw
    with pytest.raises(lk.ConfigError, match="binarized"):
        training_splits(lk.load_dataset("digits", variant="unit"), {"binarization": "dynamic"})


def test_the_trainer_draws_fresh_bits_at_each_step_and_resumes_exactly(tmp_path):
    _, splits = _digits(validation=300, binarization="dynamic")
    cfg = lk.TrainConfig(steps=6, batch_size=16, checkpoint_every=3, progress=False,
                         lr_schedule="cosine", lr_warmup_steps=2)  # fmt: skip

    def trainer(run):
        torch.manual_seed(0)
        model = lk.load_model("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,),
                              likelihood="bernoulli")  # fmt: skip
        return lk.Trainer(model, splits["train_data"], cfg, run_dir=run,
                          validation_data=splits["validation_data"],
                          dynamic_binarization=True)  # fmt: skip

    t = trainer(tmp_path / "a")
    x0, x1 = t.batch(0), t.batch(1)
    assert set(x0.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(t.batch(0), x0)  # a pure function of (seed, step)
    same = t.order.indices(0) == t.order.indices(1)
    assert not torch.equal(x0, x1) or not bool(same.all())
    t.fit()
    expected = 1e-3 * lr_factor(LRSchedule(kind="cosine", warmup_steps=2), 5, 6)
    assert math.isclose(t.optimizer.param_groups[0]["lr"], expected, rel_tol=1e-12)
    half = trainer(tmp_path / "b")
    half.fit(until=3)
    rest = trainer(tmp_path / "b")
    rest.resume(tmp_path / "b")
    rest.fit()
    a = load_file(tmp_path / "a" / "checkpoints" / "step-00000006.safetensors")
    b = load_file(tmp_path / "b" / "checkpoints" / "step-00000006.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("model/"))


def test_the_best_validation_checkpoint_is_kept(tmp_path):
    _, splits = _digits(validation=300)
    cfg = lk.TrainConfig(steps=40, batch_size=32, eval_every=10, progress=False,
                         eval_examples=0, lr=3e-3)  # fmt: skip
    torch.manual_seed(0)
    model = lk.load_model("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,),
                          likelihood="bernoulli")  # fmt: skip
    run = tmp_path / "run"
    lk.Trainer(model, splits["train_data"], cfg, run_dir=run,
               validation_data=splits["validation_data"]).fit()  # fmt: skip
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [m for m in lines if m["split"] == "validation"]
    assert [m["step"] for m in valid] == [10, 20, 30, 40]
    best = max(valid, key=lambda m: m["elbo"])
    path = latest_best(run)
    info = json.loads(path.read_text())
    assert info["step"] == best["step"]
    assert info["best_validation_elbo"] == pytest.approx(best["elbo"], rel=1e-12)
    reloaded, _ = load_trained_model(run / "best")
    assert isinstance(reloaded, lk.LatentModel)


@pytest.mark.parametrize(
    ("objective", "select_k", "expected_k"),
    [("iwae", 0, 4), ("iwae", 1, 1), ("elbo", 3, 3), ("elbo", 0, 1)],
    ids=["iwae-own-k", "iwae-on-elbo", "elbo-on-iwae-3", "elbo-own"],
)
def test_the_best_checkpoint_is_kept_by_the_selection_bound(
    tmp_path, objective, select_k, expected_k
):
    """``select_k`` (0: the objective's own k) says which bound picks the best checkpoint:
    with k > 1 every validation line carries IWAE-k and the best is its maximum; the
    checkpoint records the value and k, and a resume under another k starts afresh."""
    _, splits = _digits(validation=200)
    cfg = lk.TrainConfig(steps=30, batch_size=32, eval_every=10, progress=False,
                         eval_examples=0, lr=3e-3, select_k=select_k)  # fmt: skip
    torch.manual_seed(0)
    model = lk.load_model("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,),
                          likelihood="bernoulli")  # fmt: skip
    options = {"k": 4} if objective == "iwae" else {}
    run = tmp_path / "run"

    def trainer_for(config: lk.TrainConfig) -> lk.Trainer:
        return lk.Trainer(
            model,
            splits["train_data"],
            config,
            run_dir=run,
            objective=objective,
            objective_config=options,
            validation_data=splits["validation_data"],
        )

    trainer = trainer_for(cfg)
    assert trainer.selection_k == expected_k
    trainer.fit()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [m for m in lines if m["split"] == "validation"]
    key = "iwae" if expected_k > 1 else "elbo"
    assert all(("iwae" in m) == (expected_k > 1) for m in valid)
    assert all(m.get("iwae_k", 1) == expected_k for m in valid)
    best = max(valid, key=lambda m: m[key])
    info = json.loads(latest_best(run).read_text())
    assert info["step"] == best["step"] and info["best_validation_k"] == expected_k
    assert info["best_validation_elbo"] == pytest.approx(best[key], rel=1e-12)
    other = trainer_for(attrs.evolve(cfg, select_k=expected_k + 1))
    other.resume(run)
    assert other.best_validation is None  # another bound's best is no yardstick
    same = trainer_for(cfg)
    same.resume(run)
    assert same.best_validation == pytest.approx(best[key], rel=1e-12)


def test_resuming_a_cosine_schedule_with_other_steps_warns(tmp_path):
    """The cosine rate is a function of (step, steps): a resume with another ``steps``
    changes it from there on, which the trainer says."""
    _, splits = _digits()
    cfg = lk.TrainConfig(steps=6, batch_size=16, progress=False, lr_schedule="cosine")
    model = lk.load_model("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,),
                          likelihood="bernoulli")  # fmt: skip
    lk.Trainer(model, splits["train_data"], cfg, run_dir=tmp_path).fit(until=3)
    longer = lk.TrainConfig(steps=9, batch_size=16, progress=False, lr_schedule="cosine")
    again = lk.Trainer(model, splits["train_data"], longer, run_dir=tmp_path)
    with pytest.warns(UserWarning, match="cosine learning-rate schedule"):
        again.resume(tmp_path)
