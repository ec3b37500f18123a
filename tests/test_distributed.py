"""Two CPU processes under torchrun (gloo) train like one process on the same global batch.

The launcher is PyTorch's own (``python -m torch.distributed.run``, i.e. ``torchrun``).

Why a deterministic loss in the comparison: a VAE's −ELBO draws z with noise, and two
processes draw their halves of the batch's noise from two generators, so a stochastic run
matches a single process in distribution only. The comparison therefore swaps in the ELBO
at the posterior mean (no draw), which still exercises everything DDP does — sharding the
global batch, averaging gradients, broadcasting rank 0's initial weights, rank 0 alone
writing — so any mistake there shows as a parameter difference.

Tolerance: the single process averages the 64 per-example gradients in one float32
reduction, the two ranks average 32 each and all-reduce the halves; only the summation
order differs, a relative error of a few float32 ulps (~1e-7) per step. Adam's update is
lr · m̂/(√v̂ + ε), insensitive to such relative changes, so after 8 steps of lr 1e-3 the
parameters agree to ~1e-9; ``atol = 1e-6`` (a thousandth of one step) leaves wide margin
while any real error (a wrong shard, a missing all-reduce, a sum instead of a mean) moves
parameters by ~lr = 1e-3.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = """
import sys
import torch
from torch.distributions import kl_divergence
from safetensors.torch import save_file

import latentkit as lk
from latentkit.training import TrainConfig, Trainer


def run(out_path, run_dir=None):
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(4, 16, generator=g)
    x = torch.bernoulli(probs[torch.randint(0, 4, (256,), generator=g)], generator=g)
    torch.manual_seed(0)
    model = lk.load_model("vae", data_shape=(16,), latent_dim=3, hidden=(32,),
                          likelihood="bernoulli")

    def elbo_at_the_posterior_mean(model, batch, step):
        q = model.posterior.top(batch)
        recon = model.generative.likelihood(q.mean).log_prob(batch)
        return kl_divergence(q, model.generative.prior(batch.shape[0])) - recon

    cfg = TrainConfig(steps=8, batch_size=64, log_every=2, checkpoint_every=4, progress=False)
    objective = lk.FunctionObjective(elbo_at_the_posterior_mean)
    trainer = Trainer(model, x, cfg, run_dir=run_dir, objective=objective)
    trainer.fit()
    if trainer.dist.is_main:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out_path)
    return trainer.dist.world_size


if __name__ == "__main__":
    world = run(sys.argv[1], sys.argv[2])
    assert world == 2, world
    # Then the user's path, in the same process group: `latentkit train` under torchrun.
    from latentkit.cli import main

    sys.exit(main(["train", *sys.argv[3:]]))
"""

CLI_ARGS = ["--model", "vae", "--data", "digits", "--limit", "256", "--steps", "6",
            "--batch-size", "32", "--no-progress", "--set", "hidden=[32]",
            "--set", "train.log_every=3"]  # fmt: skip


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           *args]  # fmt: skip
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    """One torchrun of 2 CPU processes: the comparison run, then `latentkit train` in the same
    process group (one launch for both: starting processes costs more than these runs)."""
    tmp = tmp_path_factory.mktemp("ddp")
    worker = tmp / "worker.py"
    worker.write_text(WORKER)
    torchrun([str(worker), str(tmp / "ddp.safetensors"), str(tmp / "run"), *CLI_ARGS,
              "--run-dir", str(tmp / "cli")], tmp)  # fmt: skip
    return tmp


def test_two_processes_match_one_process_on_the_same_global_batch(ran):
    """DDP over 2 gloo ranks (32 examples each) ends where 1 process (64 examples) does."""
    single = runpy.run_path(str(ran / "worker.py"))["run"](str(ran / "one.safetensors"))
    assert single == 1
    ddp, one = load_file(ran / "ddp.safetensors"), load_file(ran / "one.safetensors")
    assert ddp.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=0, atol=1e-6, msg=name)
    # Rank 0 alone wrote: one metrics line per logged step, and the checkpoints.
    lines = (ran / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [2, 4, 6, 8]
    info = json.loads((ran / "run" / "checkpoints" / "step-00000008.json").read_text())
    assert info["world_size"] == 2


def test_the_cli_trains_under_torchrun(ran):
    """`latentkit train` under torchrun trains on embedded data with 2 processes, writes one
    run folder, and the checkpoint keeps each rank's RNG state for an exact resume."""
    run = ran / "cli"
    info = json.loads((run / "checkpoints" / "step-00000006.json").read_text())
    assert info["world_size"] == 2 and info["model"] == "vae"
    tensors = load_file(run / "checkpoints" / "step-00000006.safetensors")
    assert {"rng/rank0/cpu", "rng/rank1/cpu"} <= tensors.keys()
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6, 6]  # train lines at 3 and 6, one test line at the end


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs two CUDA devices")
def test_two_gpu_processes_with_nccl(tmp_path):
    run = tmp_path / "run"
    torchrun(["-m", "latentkit.cli", "train", *CLI_ARGS, "--device", "cuda",
              "--run-dir", str(run)], tmp_path)  # fmt: skip
    assert json.loads((run / "checkpoints" / "step-00000006.json").read_text())["world_size"] == 2
