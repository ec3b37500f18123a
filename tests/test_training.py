"""The trainer: seeded determinism, exact resume after an interruption, atomic checkpoints.

Exactness here is bit-for-bit (``torch.equal``), not a tolerance: on CPU, a run resumed
from a checkpoint at step k performs the same float operations in the same order as the
uninterrupted run, from the same weights, Adam moments, RNG state and data order.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import latentkit as lk
from latentkit import checkpoint as ckpt
from latentkit.trained import load_trained_model
from latentkit.training import DataOrder, TrainConfig, Trainer, TrainingError

D = 16


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(4, D, generator=g)
    which = torch.randint(0, 4, (320,), generator=g)
    x = torch.bernoulli(probs[which], generator=g)
    return x[:256], x[256:]


def new_model(seed: int = 0) -> lk.LatentModel:
    torch.manual_seed(seed)
    return lk.load_model("vae", data_shape=(D,), latent_dim=3, hidden=(32,), likelihood="bernoulli")


def config(**kw) -> TrainConfig:
    base = dict(steps=24, batch_size=32, log_every=5, checkpoint_every=0, progress=False)
    return TrainConfig(**{**base, **kw})


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different}"


def adam_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    tensors, _ = ckpt.flatten_optimizer_state(trainer.optimizer.state_dict())
    return tensors


def test_same_seed_gives_the_same_parameters(data):
    """Two runs with one seed end bit-for-bit equal; another seed ends elsewhere."""
    train, _ = data
    runs = []
    for seed in (0, 0, 1):
        t = Trainer(new_model(), train, config(seed=seed))
        t.fit()
        runs.append(params(t.model))
    assert_bitwise_equal(runs[0], runs[1])
    assert not torch.equal(runs[0]["posterior.net.0.weight"], runs[2]["posterior.net.0.weight"])


def test_resume_after_a_stop_equals_the_uninterrupted_run(data, tmp_path):
    """Stop at step 11 (checkpoint), rebuild everything from the files, go on to 24: the
    final weights and Adam moments equal those of one run to 24, bit for bit — and how
    often each run logs or evaluates does not matter (those draw from a forked RNG)."""
    train, test = data
    whole = Trainer(new_model(), train, config(eval_every=4), test_data=test)
    whole.fit()

    first = Trainer(new_model(), train, config(log_every=3), test_data=test, run_dir=tmp_path)
    stopped = first.fit(until=11)
    assert stopped.interrupted and stopped.step == 11
    assert stopped.checkpoint == tmp_path / "checkpoints" / "step-00000011.json"

    # A fresh process would start from other random weights: the checkpoint must replace them.
    second = Trainer(
        new_model(seed=123), train, config(log_every=7), test_data=test, run_dir=tmp_path
    )
    assert second.resume(stopped.checkpoint) == 11
    done = second.fit()
    assert not done.interrupted and done.step == 24
    assert_bitwise_equal(params(second.model), params(whole.model))
    assert_bitwise_equal(adam_state(second), adam_state(whole))


def test_resume_after_a_signal_mid_run_equals_the_uninterrupted_run(data, tmp_path):
    """SIGINT while training: the step in flight finishes, a checkpoint is written, fit
    returns interrupted; resuming from it reaches the uninterrupted run's weights exactly."""
    train, _ = data
    cfg = config(steps=40)
    whole = Trainer(new_model(), train, cfg)
    whole.fit()

    first = Trainer(new_model(), train, cfg, run_dir=tmp_path)
    first.objective.register_forward_hook(_interrupt_once_at(first, step=15))
    stopped = first.fit()
    assert stopped.interrupted and 15 <= stopped.step < 40
    second = Trainer(new_model(seed=5), train, cfg, run_dir=tmp_path)
    second.resume(tmp_path)
    second.fit()
    assert_bitwise_equal(params(second.model), params(whole.model))


def _interrupt_once_at(trainer: Trainer, step: int):
    fired = threading.Event()

    def hook(module, inputs, output):
        if trainer.step == step and not fired.is_set():
            fired.set()
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would, mid-step

    return hook


def test_metrics_past_the_checkpoint_are_dropped_on_resume(data, tmp_path):
    """A crash after the last checkpoint leaves metric lines from steps that will be redone;
    resuming removes them, so each step is logged once."""
    train, _ = data
    t = Trainer(new_model(), train, config(checkpoint_every=10), run_dir=tmp_path)
    t.fit(until=20)
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in lines) == 20
    # As if killed at step 20 before its checkpoint: only step 10's survives.
    for p in ckpt.checkpoint_paths(tmp_path / "checkpoints", 20):
        p.unlink()
    r = Trainer(new_model(), train, config(checkpoint_every=10), run_dir=tmp_path)
    r.resume(tmp_path)
    r.fit()
    steps = [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) and steps[-1] == 24


def test_checkpoint_holds_weights_optimizer_rng_and_config_without_pickle(data, tmp_path):
    """The tensor file is plain safetensors (model/, optimizer/, rng/), the JSON rebuilds
    the model by name, and load_trained_model gives back the same weights."""
    train, _ = data
    t = Trainer(new_model(), train, config(), run_dir=tmp_path, data_info={"name": "synthetic"})
    path = t.fit().checkpoint
    info = json.loads(path.read_text())
    assert info["model"] == "vae" and info["model_config"]["latent_dim"] == 3
    assert info["step"] == 24 and info["train_config"]["batch_size"] == 32
    assert info["data_order"] == {
        "seed": 0,
        "num_examples": 256,
        "batch_size": 32,
        "epoch": 3,
        "batch": 0,
    }
    tensors = load_file(path.with_suffix(".safetensors"))
    prefixes = {k.split("/")[0] for k in tensors}
    assert prefixes == {"model", "optimizer", "rng"}
    assert "rng/rank0/cpu" in tensors
    model, _ = load_trained_model(tmp_path)
    assert_bitwise_equal(params(model), params(t.model))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint whole and no partial file."""
    d = tmp_path / "checkpoints"
    ckpt.write_checkpoint(d, 1, {"w": torch.ones(3)}, {"note": "first"})

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.write_checkpoint(d, 2, {"w": torch.zeros(3)}, {"note": "second"})
    monkeypatch.undo()
    assert sorted(p.name for p in d.iterdir()) == [
        "step-00000001.json",
        "step-00000001.safetensors",
    ]
    tensors, info = ckpt.read_checkpoint(d)
    assert info["note"] == "first" and torch.equal(tensors["w"], torch.ones(3))


def test_a_checkpoint_without_its_json_is_not_used(tmp_path):
    """Killed between the tensor write and the JSON write: the newest *committed* one wins."""
    d = tmp_path / "checkpoints"
    ckpt.write_checkpoint(d, 5, {"w": torch.ones(2)}, {})
    ckpt.write_checkpoint(d, 9, {"w": torch.zeros(2)}, {})
    (d / "step-00000009.json").unlink()
    assert ckpt.latest_checkpoint(tmp_path) == d / "step-00000005.json"


def test_a_tampered_tensor_file_is_refused(tmp_path):
    d = tmp_path / "checkpoints"
    path = ckpt.write_checkpoint(d, 3, {"w": torch.ones(4)}, {})
    blob = bytearray(path.with_suffix(".safetensors").read_bytes())
    blob[-1] ^= 0xFF
    path.with_suffix(".safetensors").write_bytes(bytes(blob))
    with pytest.raises(ckpt.CheckpointError, match="sha256"):
        ckpt.read_checkpoint(path)


def test_old_checkpoints_are_pruned(data, tmp_path):
    train, _ = data
    Trainer(
        new_model(), train, config(checkpoint_every=4, keep_checkpoints=2), run_dir=tmp_path
    ).fit()
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step-00000020.json", "step-00000024.json"]


def test_data_order_is_a_seeded_permutation_per_epoch():
    order = DataOrder(100, 32, seed=3)
    assert order.steps_per_epoch == 3
    epoch0 = torch.cat([order.indices(s) for s in range(3)])
    assert epoch0.unique().numel() == 96  # no repeats within an epoch
    again = DataOrder(100, 32, seed=3)
    assert torch.equal(again.indices(4), order.indices(4))  # any step, straight away
    assert not torch.equal(DataOrder(100, 32, seed=4).indices(0), order.indices(0))
    assert not torch.equal(order.indices(3), order.indices(0))  # a new permutation


def test_a_nan_loss_stops_training_with_the_step(data):
    train, _ = data
    model = new_model()
    nan = lk.FunctionObjective(
        lambda m, x, step: torch.full((x.shape[0],), float("nan"), requires_grad=True)
    )
    with pytest.raises(TrainingError, match="by step 5"):
        Trainer(model, train, config(), objective=nan).fit()


def test_batch_larger_than_the_data_is_a_config_error(data):
    train, _ = data
    with pytest.raises(lk.ConfigError, match="batch_size"):
        Trainer(new_model(), train[:10], config())


def test_train_config_errors_name_the_field():
    with pytest.raises(lk.ConfigError, match="'lr'"):
        lk.structure_config(TrainConfig, {"lr": -1.0})
    with pytest.raises(lk.ConfigError, match="stepz"):
        lk.structure_config(TrainConfig, {"stepz": 3})


def test_amp_on_cpu_warns_and_trains_in_float32(data):
    train, _ = data
    with pytest.warns(UserWarning, match="CUDA only"):
        t = Trainer(new_model(), train, config(amp=True, steps=2))
    t.fit()
    assert t.model.reference().dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_amp_and_resume_on_cuda(data, tmp_path):
    """On CUDA: bf16 autocast trains, and a resumed run continues from the checkpoint."""
    train, _ = data
    cfg = config(device="cuda", amp=True)
    t = Trainer(new_model(), train, cfg, run_dir=tmp_path)
    r = t.fit(until=10)
    assert r.interrupted and Path(r.checkpoint).exists()
    t2 = Trainer(new_model(), train, cfg, run_dir=tmp_path)
    t2.resume(tmp_path)
    assert t2.fit().step == 24


def test_the_trainer_is_its_parts_under_the_names_it_has_always_had(data):
    """The coordinator's attributes are its parts' own objects (no copies that could drift)."""
    train, test = data
    t = Trainer(new_model(), train, config(ema_decay=0.5), test_data=test)
    same = {
        "dist": t.runtime.dist,
        "device": t.runtime.device,
        "train_data": t.feed.train_data,
        "test_data": t.feed.test_data,
        "order": t.feed.order,
        "objective": t.loss.module,
        "loss_objective": t.loss.objective,
        "optimizer": t.optimization.optimizer,
        "ema": t.optimization.ema,
        "logger": t.metrics.logger,
        "last_metrics": t.metrics.last,
    }
    for name, part in same.items():
        assert getattr(t, name) is part, name
    assert torch.equal(t.batch(3), t.feed.batch(3))
    assert t.selection_k == 1 and t.best_validation is None and t.skipped_steps == 0
    assert t.validation_data is None and t.binarizer is None and t.last_checkpoint is None


def test_between_fits_only_the_loops_own_fields_may_change(data):
    """``steps`` and the cadences are read as the loop runs; the rest is built into the parts,
    so a change to it is refused rather than silently ignored."""
    train, _ = data
    t = Trainer(new_model(), train, config(steps=4))
    t.fit()
    t.config = config(steps=6, log_every=2)
    assert t.fit().step == 6 and t.optimization.total_steps == 6
    with pytest.raises(lk.ConfigError, match=r"\['lr'\] are fixed"):
        t.config = config(steps=8, lr=0.5)
    assert t.config.steps == 6
