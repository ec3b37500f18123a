"""The benchmark's hand-written baselines (``bench/baselines.py``) compute latentkit's losses.

The overhead ratios in ``docs/benchmarks.md`` compare latentkit with these baselines, so
they must stay the *same* computation as the code changes: on latentkit's weights and under
one seed, the per-example loss (and, for the training step, the gradient) agrees to float32
round-off, |Δ| ≤ 1e-5 · max |loss|. The peers' wrappers (``bench/peers.py``) are checked
the same way when pythae or diffusers is installed (the optional ``bench`` extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import latentkit as lk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not installed

from bench import baselines

RTOL = 1e-5  # float32: ~100 terms summed, each within a few ulps


def agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() <= RTOL * a.abs().max())


def same_seed(f, g, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    a = f()
    torch.manual_seed(seed)
    return a, g()


@pytest.fixture
def binary() -> torch.Tensor:
    return (torch.rand(16, 20, generator=torch.Generator().manual_seed(1)) < 0.4).float()


@pytest.fixture
def eightbit() -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return torch.randint(0, 256, (8, 12), generator=g).float() * 2 / 255 - 1


def _vae(name: str, **extra):
    torch.manual_seed(0)
    return lk.load_model(
        name, data_shape=(20,), latent_dim=3, hidden=(16, 8), likelihood="bernoulli", **extra
    )


@pytest.mark.parametrize("name, extra", [("vae", {}), ("beta-vae", {"beta": 4.0})])
def test_vae_baseline_gives_latentkits_loss_and_gradient(name, extra, binary):
    model = _vae(name, **extra)
    base = baselines.VAE.from_latentkit(model)
    a, b = same_seed(lambda: lk.training_loss(model, binary), lambda: base.loss(binary))
    assert a.shape == b.shape == (16,)
    assert agree(a, b)
    a.mean().backward()
    b.mean().backward()
    assert agree(model.posterior.net[0].weight.grad, base.enc[0].weight.grad)
    assert agree(model.generative.decoder[-1].bias.grad, base.dec[-1].bias.grad)


def test_vae_baseline_negated_is_latentkits_elbo(binary):
    model = _vae("vae")
    base = baselines.VAE.from_latentkit(model)
    a, b = same_seed(lambda: lk.elbo(model, binary).total, lambda: -base.loss(binary))
    assert agree(a, b)


@pytest.mark.parametrize("latent_dims", [(4, 2), (5, 3, 2)])
def test_hvae_baseline_gives_latentkits_loss_and_gradient(latent_dims, binary):
    torch.manual_seed(0)
    model = lk.load_model(
        "hvae", data_shape=(20,), latent_dims=latent_dims, hidden=(16, 8), likelihood="bernoulli"
    )
    base = baselines.HVAE.from_latentkit(model)
    a, b = same_seed(lambda: lk.training_loss(model, binary), lambda: base.loss(binary))
    assert agree(a, b)
    a.mean().backward()
    b.mean().backward()
    assert agree(model.posterior.blocks[0][0].weight.grad, base.blocks[0][0].weight.grad)
    assert agree(model.generative.transitions[0][0][0].weight.grad, base.p_down[0][0].weight.grad)


def _ddpm(T: int = 20):
    torch.manual_seed(0)
    model = lk.load_model("ddpm", data_shape=(12,), num_timesteps=T, network="mlp", hidden=(16, 16))
    # ε-network's last layer starts at zero; give it weights so the check sees the network.
    torch.nn.init.normal_(model.generative.net.out.weight, std=0.1)
    return model


def test_ddpm_baseline_gives_latentkits_one_timestep_loss(eightbit):
    model = _ddpm()
    base = baselines.DDPM.from_latentkit(model)
    a, b = same_seed(
        lambda: lk.training_loss(model, eightbit),
        lambda: base.loss(eightbit),
    )
    assert agree(a, b)
    a.mean().backward()
    b.mean().backward()
    assert agree(model.generative.net.out.weight.grad, base.net.out.weight.grad)


@pytest.mark.parametrize("pairs_per_call", [8192, 40])
def test_ddpm_baseline_gives_latentkits_full_T_elbo(pairs_per_call, eightbit):
    """Every timestep's KL, in one chunk or several (40 rows: 5 timesteps per call)."""
    model = _ddpm()
    base = baselines.DDPM.from_latentkit(model)
    with torch.no_grad():
        a, b = same_seed(
            lambda: lk.elbo(model, eightbit, pairs_per_call=pairs_per_call).total,
            lambda: base.elbo(eightbit, pairs_per_call=pairs_per_call),
        )
    assert agree(a, b)


def test_ddpm_baseline_schedule_is_latentkits():
    model = _ddpm(T=50)
    s, mine = model.schedule, baselines.linear_schedule(50)
    for ours, theirs in [
        ("alpha_bar", "alpha_bar"),
        ("beta_bar", "beta_bar"),
        ("coef_x0", "posterior_coef_x0"),
        ("coef_xt", "posterior_coef_xt"),
        ("beta_tilde", "beta_tilde"),
    ]:
        want = s._master[theirs][1:]
        assert torch.allclose(mine[ours][1:], want, rtol=1e-12, atol=1e-15), ours


def test_pythae_wrappers_give_latentkits_loss(binary):
    pytest.importorskip("pythae", reason="pythae is an optional benchmark dependency")
    from bench import peers

    for name, extra, beta in [("vae", {}, None), ("beta-vae", {"beta": 4.0}, 4.0)]:
        model = _vae(name, **extra)
        pv = peers.pythae_vae(model, beta=beta)
        a, b = same_seed(
            lambda m=model: lk.training_loss(m, binary).mean(),
            lambda p=pv: p({"data": binary}).loss,
        )
        assert agree(a, b), name


def test_diffusers_step_is_latentkits_simple_loss_over_D(eightbit):
    pytest.importorskip("diffusers", reason="diffusers is an optional benchmark dependency")
    from bench import peers

    torch.manual_seed(0)
    model = lk.load_model(
        "ddpm", data_shape=(12,), num_timesteps=20, network="mlp", hidden=(16, 16), loss="simple"
    )
    torch.nn.init.normal_(model.generative.net.out.weight, std=0.1)
    net = model.generative.net
    sched = peers.diffusers_scheduler(20)
    a, b = same_seed(
        lambda: lk.training_loss(model, eightbit).mean(),
        lambda: 12 * peers.diffusers_step_loss(lambda x, t: net(x, t)[:, 0], sched, eightbit),
    )
    assert agree(a, b)


# -- the overhead sweep (bench/sweep.py) ------------------------------------------------------


def test_peak_bytes_counts_what_is_live_at_once():
    """CPU peak memory of one call: two 4 MB tensors alive together peak at 8 MB, one freed
    before the next is allocated peaks at 4 MB (frees are netted in time order)."""
    from bench.sweep import peak_bytes

    mb4 = 1_000_000 * 4

    def together():
        a = torch.ones(1_000_000)
        b = torch.ones(1_000_000)
        return a, b

    def one_after_another():
        a = torch.ones(1_000_000)
        del a
        b = torch.ones(1_000_000)
        return b

    cpu = torch.device("cpu")
    assert 2 * mb4 <= peak_bytes(together, cpu) < 2 * mb4 + 65_536
    assert mb4 <= peak_bytes(one_after_another, cpu) < mb4 + 65_536


def test_sweep_smoke(tmp_path, monkeypatch):
    """``python -m bench.run --sweep --quick`` at a tiny size: every cell measured (ratio,
    overhead, memory), the full-T point, the JSON, the plot and the Markdown section."""
    import json

    import attrs

    from bench import run, sweep, sweep_report

    tiny = attrs.evolve(
        sweep.QUICK,
        models=("vae", "ddpm"),
        batches=(2,),
        widths=(("small", (8,)),),
        rounds=2,
        full_t=((4, 2),),
        full_t_rounds=1,
    )
    monkeypatch.setattr(sweep, "QUICK", tiny)
    assert run.main(["--sweep", "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "sweep.json").read_text())
    cells = result["cells"]
    assert {(c["model"], c["task"]) for c in cells} == {
        (m, t) for m in ("vae", "ddpm") for t in ("train step", "ELBO eval")
    }
    for c in cells:
        med, lo, hi = c["ratio"]
        assert 0 < lo <= med <= hi
        assert c["memory"]["latentkit"] > 0 and c["memory"]["hand-written"] > 0
        assert len(c["per_call_s"]["latentkit"]) == 2
    assert 0 < result["full_t"][0]["efficiency"]
    assert (tmp_path / "img" / "overhead_sweep.png").stat().st_size > 0
    md = (tmp_path / "sweep.md").read_text()
    assert "### train step: goal ≤ 1.05" in md and "### ELBO eval: goal ≤ 1.1" in md
    row = sweep._explain("vae", "ELBO eval", "small", (8,), tiny, torch.device("cpu"))
    assert row["ops"][0] > 0 and row["ops"][1] > 0 and row["top"]
    assert "aten ops" in sweep_report._where(row)


@pytest.mark.parametrize(
    ("load_end", "device_string", "loaded"),
    [
        ("1.00 1.20 1.58", "torch 2.13.0+cpu with 1 threads", False),  # its own thread
        ("1.60 1.20 1.58", "torch 2.13.0+cpu with 1 threads", True),  # another job at the end
        ("1.00 1.70 1.58", "torch 2.13.0+cpu with 1 threads", True),  # ... in the last 5 min
        ("2.40 2.30 2.00", "torch 2.13.0+cpu with 2 threads", False),  # 2 threads, 2 cores
        ("3.85 3.14 2.58", "torch 2.13.0+cpu with 2 threads", True),
    ],
)
def test_sweep_is_judged_loaded_by_the_load_at_its_end(load_end, device_string, loaded):
    """The load at the start averages the minutes before the sweep: a job that ended as it
    began shows there and must not mark a quiet sweep as shared (nor hide a shared one)."""
    from bench import sweep_report

    sweep = {
        "device": "cpu",
        "load_start": "1.84 1.97 1.99",
        "load_end": load_end,
        "device_string": device_string,
    }
    assert sweep_report._loaded(sweep) is loaded
    assert sweep_report._loaded({**sweep, "device": "cuda"}) is False


@pytest.mark.parametrize(
    "load_end, threads, shared",
    [("1.00 1.01 1.11", 1, False), ("2.10 1.40 1.10", 1, True), ("1.90 1.80 1.00", 2, False)],
)
def test_report_says_shared_only_when_the_end_load_exceeds_its_threads(load_end, threads, shared):
    from bench.report import load_line

    ctx = {
        "load_start": "3.00 3.00 3.00",  # before the command: decides nothing
        "load_end": load_end,
        "device": f"AMD EPYC, torch 2.13.0+cpu with {threads} threads",
    }
    line = load_line(ctx)
    assert ("shared with other jobs" in line) is shared
    assert ("no other job shared the CPU" in line) is not shared
    assert load_end in line
