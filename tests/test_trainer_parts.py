"""The trainer's parts, each built alone from its explicit inputs and checked alone.

The whole loop is tested in tests/test_training.py (exact resume, signals, pruning); here
each part is given what it needs — no trainer — and held to its contract: the runtime's
shares and forked noise, the data feed's batches, the loss module, the health watch's
clipping and verdicts, one optimizer step, the metric lines and the evaluation's choice
of the best, the budget and the checks a resume makes.

Exact comparisons (``==``, ``torch.equal``) are used where the part copies or indexes
values; the clipped gradient's norm is compared at float32 round-off (rtol 1e-6).
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import warnings
from pathlib import Path

import pytest
import torch
from rich.console import Console

import latentkit as lk
from latentkit.errors import CheckpointError, ConfigError, NonFiniteTrainingError, TrainingError
from latentkit.training import restore
from latentkit.training.averaging import EMA
from latentkit.training.feed import DataFeed
from latentkit.training.health import HealthWatch
from latentkit.training.loggers import Logger
from latentkit.training.loss import TrainingLoss, build_objective, importance_samples
from latentkit.training.lr_schedules import LRSchedule
from latentkit.training.optimization import Optimization
from latentkit.training.reporting import Evaluator, Metrics, TrainLine
from latentkit.training.runtime import DistInfo, Runtime, StopRequest
from latentkit.training.state import Budget

D = 6
CPU = Runtime(DistInfo(), torch.device("cpu"))
ESTIMATOR = "analytic"  # the vae's own (training_estimator), closed-form KL


def vae(seed: int = 0) -> lk.LatentModel:
    torch.manual_seed(seed)
    return lk.load_model("vae", data_shape=(D,), latent_dim=2, hidden=(8,), likelihood="bernoulli")


def bits(n: int, seed: int = 1) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, D), 0.5), generator=torch.Generator().manual_seed(seed))


def squares() -> lk.FunctionObjective:
    """A loss with a known gradient: Σ θ² per example, so ∂/∂θ of the mean is 2θ."""
    return lk.FunctionObjective(
        lambda m, x, step: sum(p.pow(2).sum() for p in m.parameters()) + 0 * x.sum(1)
    )


class Recording(Logger):
    def __init__(self) -> None:
        self.records: list[dict] = []
        self.closed = False

    def log_metrics(self, record: dict) -> None:
        self.records.append(record)

    def close(self) -> None:
        self.closed = True


# --- runtime ---------------------------------------------------------------------------------


def test_each_rank_takes_its_contiguous_share_of_the_global_batch():
    shares = [Runtime(DistInfo(r, 3), torch.device("cpu")).share(12) for r in range(3)]
    assert shares == [slice(0, 4), slice(4, 8), slice(8, 12)]


def test_forked_noise_is_seeded_and_leaves_the_training_noise_where_it_was():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    with CPU.fork_rng(11):
        inside = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(11)
    assert torch.equal(inside, torch.rand(3))


def test_a_stop_request_stops_after_one_signal_and_aborts_on_the_second():
    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        assert not stop.agreed(CPU)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT and stop.agreed(CPU)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


# --- data feed -------------------------------------------------------------------------------


def test_the_feed_gives_each_rank_its_rows_of_the_steps_global_batch():
    data = ((torch.arange(40).unsqueeze(1) >> torch.arange(D)) & 1).float()  # 40 distinct rows
    whole = DataFeed(vae(), CPU, data, batch_size=8, seed=3)
    for rank in range(2):
        runtime = Runtime(DistInfo(rank, 2), torch.device("cpu"))
        part = DataFeed(vae(), runtime, data, batch_size=8, seed=3)
        for step in (0, 7):
            rows = whole.order.indices(step)[rank * 4 : (rank + 1) * 4]
            assert torch.equal(part.batch(step), data[rows])
    assert whole.record(7) == {
        "seed": 3,
        "num_examples": 40,
        "batch_size": 8,
        "epoch": 1,
        "batch": 2,
    }


def test_the_feed_evaluates_on_validation_when_there_is_one():
    x = bits(20)
    only_test = DataFeed(vae(), CPU, x, batch_size=4, seed=0, test_data=x[:3])
    both = DataFeed(vae(), CPU, x, batch_size=4, seed=0, test_data=x[:3], validation_data=x[:5])
    assert only_test.eval_split[1] == "test" and torch.equal(only_test.eval_split[0], x[:3])
    assert both.eval_split[1] == "validation" and torch.equal(both.eval_split[0], x[:5])


def test_the_feed_refuses_a_bad_split_naming_it():
    x = bits(20)
    with pytest.raises(lk.LatentkitError, match="validation_data"):
        DataFeed(vae(), CPU, x, batch_size=4, seed=0, validation_data=x[:, :3])
    grey = x.clone()
    grey[2, 1] = 0.5  # outside a Bernoulli likelihood's support
    with pytest.raises(lk.LatentkitError, match="train_data"):
        DataFeed(vae(), CPU, grey, batch_size=4, seed=0)


# --- the loss --------------------------------------------------------------------------------


def test_the_loss_is_the_objectives_mean_at_the_step_given():
    seen = []

    def fn(m, x, step):
        seen.append(int(step))
        return x.sum(1) * (1 + step)

    model = vae()
    loss = TrainingLoss(model, lk.FunctionObjective(fn), CPU, sample=bits(4), seed=0)
    x = bits(5)
    assert torch.equal(loss.mean(x, 3), (x.sum(1) * 4).mean())
    assert seen == [3]
    assert loss.record == {"name": "function", "config": None}


def test_objectives_are_built_by_name_or_default_and_misuse_is_refused():
    model, cpu = vae(), torch.device("cpu")
    assert build_objective(model, None, None, cpu).name == model.objective_choice.name
    assert build_objective(model, "iwae", {"k": 3}, cpu).config.k == 3
    with pytest.raises(ConfigError, match="only read with an objective name"):
        build_objective(model, squares(), {"k": 3}, cpu)
    with pytest.raises(ConfigError, match="needs an objective name"):
        build_objective(model, None, {"k": 3}, cpu)
    with pytest.raises(ConfigError, match="registered name"):
        build_objective(model, 3, None, cpu)


def test_the_selection_bound_is_the_one_the_objective_declares():
    model = vae()
    cpu = torch.device("cpu")
    assert importance_samples(build_objective(model, "elbo", None, cpu)) == 1
    assert importance_samples(build_objective(model, "iwae", {"k": 4}, cpu)) == 4
    declared = squares()
    declared.importance_samples = 7
    assert importance_samples(declared) == 7


def test_a_model_compile_cannot_trace_falls_back_to_the_eager_loss(monkeypatch):
    """The warm-up calls raise inside the compiled module: warned, the eager module kept, and
    the objective's state (here a counter buffer it bumps) as it was before the trials."""

    class Counting(lk.FunctionObjective):
        def __init__(self):
            super().__init__(lambda m, x, step: x.sum(1))
            self.register_buffer("calls", torch.zeros((), dtype=torch.long))

        def forward(self, model, x, step=None):
            self.calls += 1
            return super().forward(model, x, step)

    def broken(module):
        def call(*args):
            raise RuntimeError("cannot trace this\nsecond line")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    objective = Counting()
    with pytest.warns(UserWarning, match="could not trace this model \\(cannot trace this\\)"):
        loss = TrainingLoss(vae(), objective, CPU, sample=bits(4), seed=0, compile=True)
    assert isinstance(loss.module, torch.nn.Module) and int(objective.calls) == 0


# --- health ----------------------------------------------------------------------------------


def named(*grads: torch.Tensor) -> list[tuple[str, torch.nn.Parameter]]:
    params = []
    for i, g in enumerate(grads):
        p = torch.nn.Parameter(torch.zeros_like(g))
        p.grad = g.clone()
        params.append((f"w{i}", p))
    return params


def test_clipping_brings_a_large_gradient_to_the_bound_and_leaves_a_small_one():
    big = named(torch.tensor([3.0, 4.0]), torch.tensor([12.0]))  # total norm 13
    HealthWatch(big, grad_clip=1.0).observe(torch.tensor(0.5), step=0)
    total = torch.linalg.vector_norm(torch.cat([p.grad for _, p in big]))
    assert math.isclose(float(total), 13 / (13 + 1e-6), rel_tol=1e-6)
    small = named(torch.tensor([0.3, 0.4]))  # norm 0.5 < 1: untouched
    HealthWatch(small, grad_clip=1.0).observe(torch.tensor(0.5), step=0)
    assert torch.equal(small[0][1].grad, torch.tensor([0.3, 0.4]))


def test_stop_mode_names_the_first_faulty_step_its_parameter_and_the_last_checkpoint():
    params = named(torch.ones(2), torch.ones(1))
    watch = HealthWatch(params, last_good=lambda: Path("run/step-3.json"))
    assert bool(watch.observe(torch.tensor(1.0), step=4))
    watch.check(5)  # a healthy step: nothing raised, nothing pending
    params[1][1].grad = torch.tensor([math.inf])
    watch.observe(torch.tensor(1.0), step=5)
    watch.observe(torch.tensor(math.nan), step=6)
    with pytest.raises(NonFiniteTrainingError) as exc:
        watch.check(7)
    msg = str(exc.value)
    assert msg.startswith("step 6: the gradient of w1 is not finite (the loss was 1)"), msg
    assert "(detected by step 7)" in msg and "last good checkpoint is run/step-3.json" in msg


def test_skip_mode_skips_faulty_steps_and_stops_past_max_skips():
    params = named(torch.ones(2))
    out = io.StringIO()
    watch = HealthWatch(params, policy="skip", max_skips=2, console=Console(file=out, width=200))
    assert watch.decide(watch.observe(torch.tensor(1.0), 0), 0)
    for step in (1, 2):
        assert not watch.decide(watch.observe(torch.tensor(math.nan), step), step)
    assert watch.counts() == {"skipped_steps": 2, "skips_in_a_row": 2}
    said = [line.split(":")[0] for line in out.getvalue().splitlines()]
    assert said == ["skipped step 2", "skipped step 3"]  # steps counted from 1, as logged
    with pytest.raises(NonFiniteTrainingError, match="3 steps in a row"):
        watch.decide(watch.observe(torch.tensor(math.nan), 3), 3)


# --- one optimizer step ----------------------------------------------------------------------


def optimization(model, objective, *, policy="stop", warmup=0, ema=None) -> Optimization:
    loss = TrainingLoss(model, objective, CPU, sample=bits(4), seed=0)
    params = [(n, p) for n, p in model.named_parameters()]
    health = HealthWatch(params, policy=policy)
    schedule = LRSchedule(warmup_steps=warmup)
    return Optimization(model, loss, health, lr=0.1, schedule=schedule, total_steps=10, ema=ema)


def test_a_step_is_adams_update_at_the_scheduled_rate():
    """Warm-up over 4 updates: update 1 (step 0) runs at lr/4. Adam's first update moves each
    parameter by lr_t · g/(|g| + ε) — the same as torch's Adam at that rate."""
    model, twin = vae(), vae()
    step = optimization(model, squares(), warmup=4)
    loss = step.step(bits(4), 0)
    assert step.current_lr == 0.1 / 4
    reference = torch.optim.Adam(twin.parameters(), lr=0.1 / 4)
    sum(p.pow(2).sum() for p in twin.parameters()).backward()
    reference.step()
    assert loss is not None
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_a_skipped_step_changes_nothing_and_an_update_moves_the_average():
    model = vae()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    nan = lk.FunctionObjective(lambda m, x, step: squares()(m, x, step) * math.nan)
    skipping = optimization(model, nan, policy="skip")
    assert skipping.step(bits(4), 0) is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    ema = EMA(model, 0.5)
    stepping = optimization(model, squares(), ema=ema)
    assert stepping.step(bits(4), 0) is not None and ema.num_updates == 1
    after = {k: v.clone() for k, v in model.state_dict().items()}
    with stepping.averaged():  # the average of d = 1/2: halfway from the old to the new
        for name, p in model.named_parameters():
            assert not torch.equal(after[name], before[name])
            assert torch.equal(p, 0.5 * before[name] + 0.5 * after[name]), name
    assert all(torch.equal(after[k], v) for k, v in model.state_dict().items())


# --- metrics, the train line, the evaluation -------------------------------------------------


def test_metrics_keep_the_last_record_of_each_split_and_rank_0_alone_writes():
    logger = Recording()
    metrics = Metrics(logger, is_main=True)
    for record in ({"step": 1, "split": "train"}, {"step": 2, "split": "train"}):
        metrics.write(record)
    metrics.write({"step": 2, "split": "test"})
    assert metrics.last == {
        "train": {"step": 2, "split": "train"},
        "test": {"step": 2, "split": "test"},
    }
    assert len(logger.records) == 3
    quiet = Recording()
    Metrics(quiet, is_main=False).write({"step": 1, "split": "train"})
    assert quiet.records == []


def test_metrics_past_a_checkpoint_are_cut_back_on_resume(tmp_path):
    lines = [{"step": s, "split": "train"} for s in (4, 8, 12)]
    text = "\n".join(json.dumps(r) for r in lines) + '\n{"step": 1'  # a line cut by a kill
    (tmp_path / "metrics.jsonl").write_text(text)
    Metrics(Recording(), run_dir=tmp_path).truncate(8)
    kept = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert kept == [4, 8]


def test_the_train_line_reports_the_bound_without_touching_the_training_noise():
    model, metrics = vae(), Metrics(Recording())
    line = TrainLine(model, CPU, metrics, seed=0, estimator=ESTIMATOR, count_skips=True)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    words = line.write(5, bits(8), torch.tensor(2.0), 100.0, lr=0.1, skipped=2)
    assert torch.equal(torch.get_rng_state(), before)
    record = metrics.last["train"]
    assert record["step"] == 5 and record["loss"] == 2.0 and record["skipped_steps"] == 2
    assert record["lr"] == 0.1 and words.startswith("loss 2.00")
    with pytest.raises(TrainingError, match="became nan by step 6.*checkpoint is x.json"):
        TrainLine(
            model, CPU, metrics, seed=0, estimator=ESTIMATOR, last_good=lambda: "x.json"
        ).write(6, bits(8), torch.tensor(math.nan), 1.0, lr=0.1, skipped=0)


def test_the_best_is_the_highest_finite_validation_bound_of_the_selection_k():
    records = Metrics(Recording())
    evaluator = Evaluator(vae(), CPU, records, bits(4), "validation", selection_k=3)
    line = {"split": "validation", "elbo": 9.0}
    assert evaluator.improves({**line, "iwae": -5.0})
    assert not evaluator.improves({**line, "iwae": -6.0})  # lower IWAE, higher ELBO
    assert not evaluator.improves({**line, "iwae": -5.0})  # a tie keeps the earlier best
    assert not evaluator.improves({**line, "iwae": math.nan})
    assert evaluator.improves({**line, "iwae": -4.0}) and evaluator.best == -4.0
    assert not evaluator.improves({"split": "test", "elbo": 0.0, "iwae": 0.0})
    elbo_picked = Evaluator(vae(), CPU, records, bits(4), "validation")
    assert elbo_picked.improves({**line, "iwae": -100.0}) and elbo_picked.best == 9.0


def test_an_evaluation_writes_its_split_line_and_no_diagnostics_unless_asked():
    logger = Recording()
    evaluator = Evaluator(vae(), CPU, Metrics(logger), bits(10), "test", examples=4)
    record = evaluator.evaluate(step=3)
    assert record["split"] == "test" and record["step"] == 3 and record["examples"] == 4
    assert "iwae" not in record and math.isfinite(record["elbo"])
    evaluator.diagnose(3)
    assert [r["split"] for r in logger.records] == ["test"]


# --- the budget and what a resume reads ------------------------------------------------------


def test_the_budget_adds_session_time_and_reads_back_checked(tmp_path):
    budget = Budget()
    budget.start()
    budget.stop()
    assert budget.train_seconds > 0 and budget.record(CPU)["world_size"] == 1
    budget.load({"step": 7}, tmp_path)  # written before budgets were recorded
    assert (budget.train_seconds, budget.since_step) == (0.0, 7)
    budget.load({"step": 7, "budget": {"train_seconds": 2.5, "since_step": 7}}, tmp_path)
    assert (budget.train_seconds, budget.since_step) == (2.5, 7)
    for bad in ({"train_seconds": -1, "since_step": 0}, {"train_seconds": 1, "since_step": 8}):
        with pytest.raises(CheckpointError, match="'budget'"):
            budget.load({"step": 7, "budget": bad}, tmp_path)


def test_a_resume_warns_of_changed_fields_and_refuses_another_data_size(tmp_path):
    config = lk.TrainConfig(lr=1e-3)
    saved = {"train_config": {"lr": 2e-3, "seed": 0}, "data_order": {"num_examples": 10}}
    with pytest.warns(UserWarning, match=r"changed \['lr'\]"):
        restore.compare_config(saved, tmp_path, config, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="trained on 10 examples"):
            restore.compare_config(saved, tmp_path, config, 11)


def test_a_resume_reads_counts_and_best_values_checked(tmp_path):
    assert restore.fault_counts({}, tmp_path) == (0, 0)
    assert restore.fault_counts({"nonfinite": {"skipped_steps": 3}}, tmp_path) == (3, 0)
    with pytest.raises(CheckpointError, match="'nonfinite'"):
        restore.fault_counts({"nonfinite": {"skipped_steps": -1}}, tmp_path)
    info = {"best_validation_elbo": -3.5, "best_validation_k": 4}
    assert restore.best_validation(info, tmp_path, 4) == -3.5
    assert restore.best_validation(info, tmp_path, 1) is None  # another bound: not comparable
    with pytest.raises(CheckpointError, match="best_validation_elbo"):
        restore.best_validation({"best_validation_elbo": "x"}, tmp_path, 1)


def test_a_resume_refuses_adam_state_that_does_not_fit_the_parameters(tmp_path):
    model = vae()
    optimizer = torch.optim.Adam(model.parameters())
    params = list(model.parameters())
    info = {"optimizer": {"state_scalars": {}}}
    wrong = {"optimizer/0/exp_avg": torch.zeros(3, 3)}
    with pytest.raises(CheckpointError, match="'exp_avg' of parameter 0"):
        restore.optimizer_state(optimizer, params, wrong, info, tmp_path)
    beyond = {f"optimizer/{len(params)}/exp_avg": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=f"parameter {len(params)}; the model has"):
        restore.optimizer_state(optimizer, params, beyond, info, tmp_path)
    with pytest.raises(CheckpointError, match="optimizer state is malformed"):
        restore.optimizer_state(optimizer, params, {}, {}, tmp_path)  # no 'optimizer' record
    good = {"optimizer/0/exp_avg": torch.zeros_like(params[0])}
    state = restore.optimizer_state(optimizer, params, good, info, tmp_path)
    assert torch.equal(state["state"][0]["exp_avg"], torch.zeros_like(params[0]))
