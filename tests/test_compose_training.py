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


def test_a_continuous_prior_is_also_scored_and_selected_on_its_own_bound():
    """Beside the T = 12 chain's bounds, the periodic evaluation records ELBO_∞ (the bound
    training minimises; the chain's is hundreds of nats looser on a wide latent), the value
    ``latentkit evaluate`` shows, and the best checkpoint is chosen on it."""
    from latentkit.composition.figures import continuous_bound

    torch.manual_seed(0)
    outer = lk.load_model("vae", data_shape=(6,), latent_dim=3, hidden=(8,), likelihood="gaussian")
    prior = lk.load_model("vdm", data_shape=(3,), hidden=(8,), decoder="gaussian", eps_skip=True)
    model = compose(outer, prior=prior)
    data = torch.randn(48, 6)
    config = TrainConfig(
        steps=2, batch_size=8, eval_every=1, eval_examples=16, seed=3, progress=False,
        checkpoint_every=0,
    )  # fmt: skip
    trainer = Trainer(model, data[:32], config, validation_data=data[32:])
    trainer.fit()
    record = trainer.last_metrics["validation"]
    want = continuous_bound(model, data[32:48], seed=config.seed + 1)
    assert record["elbo_continuous"] == want  # the same model, data and seed
    assert record["elbo_continuous"] > record["elbo"]  # above the T = 12 chain's bound
    evaluator = trainer.evaluator  # the choice: on ELBO_∞, not on the chain's ELBO
    evaluator.best = None
    assert evaluator.improves({"split": "validation", "elbo": -1e9, "elbo_continuous": -5.0})
    assert not evaluator.improves({"split": "validation", "elbo": 0.0, "elbo_continuous": -6.0})
    plain = Trainer(outer, data[:32], config, validation_data=data[32:])
    plain.fit()
    assert "elbo_continuous" not in plain.last_metrics["validation"]


def test_the_training_step_reaches_the_prior_objective_at_every_call():
    """The composed objective builds its chain once and passes each call's step to the
    prior's objective: with a KL warm-up from β = 0 in the prior's ELBO, step 0 gives the
    loss of a prior objective with β = 0, and a step past the warm-up (or none) that of
    β = 1 — at the same seed, the same draws, so exactly."""
    from latentkit.composition import composed_objective

    torch.manual_seed(0)
    outer = lk.load_model("vae", data_shape=(6,), latent_dim=3, hidden=(8,))
    model = compose(outer, prior=lk.load_model("vae", data_shape=(3,), latent_dim=2, hidden=(8,)))
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    warm = composed_objective(
        model,
        prior_objective="elbo",
        prior_objective_config={"warmup_steps": 10, "warmup_start": 0.0},
    )
    flat = {
        b: composed_objective(model, prior_objective="elbo", prior_objective_config={"beta": b})
        for b in (0.0, 1.0)
    }

    def at(objective, step):
        torch.manual_seed(1)
        return objective(model, x, step)

    for step, beta in [(0, 0.0), (None, 1.0), (10, 1.0), (0, 0.0)]:
        assert torch.equal(at(warm, step), at(flat[beta], None)), step
    assert not torch.equal(at(flat[0.0], None), at(flat[1.0], None))
