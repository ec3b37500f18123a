"""The trainer's periodic evaluation of a composed model scores what `latentkit evaluate`
scores: a continuous-time prior at ``EVALUATION_TIMESTEPS`` steps, not its trained T's chain
(a vdm prior at T = 1000 made each evaluation walk a thousand layers per example)."""

from __future__ import annotations

import torch

import latentkit as lk
from latentkit.composition import EVALUATION_TIMESTEPS, compose, evaluation_model
from latentkit.training import TrainConfig, Trainer


def test_periodic_evaluation_scores_the_composed_model_as_evaluate_does():
    torch.manual_seed(0)
    outer = lk.load_model("vae", data_shape=(6,), latent_dim=3, hidden=(8,), likelihood="gaussian")
    prior = lk.load_model("vdm", data_shape=(3,), hidden=(8,), decoder="gaussian")
    model = compose(outer, prior=prior)
    assert model.num_layers > EVALUATION_TIMESTEPS + 10  # the trained chain is long
    data = torch.randn(40, 6)
    config = TrainConfig(
        steps=1,
        batch_size=8,
        eval_every=1,
        eval_examples=8,
        seed=3,
        progress=False,
        checkpoint_every=0,
    )
    trainer = Trainer(model, data[:32], config, test_data=data[32:])
    trainer.fit()
    record = trainer.last_metrics["test"]
    scored = evaluation_model(model)
    assert scored.num_layers == outer.num_layers + EVALUATION_TIMESTEPS + 1
    model.eval()
    want = lk.evaluate(scored, data[32:], seed=config.seed + 1).elbo.mean
    # the same model, data and noise: equal to float32 round-off
    assert abs(record["elbo"] - want) <= 1e-5 * (1 + abs(want))
