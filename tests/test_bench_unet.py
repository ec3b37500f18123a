"""The U-Net throughput benchmark (``bench/unet_throughput.py``) times equal work.

Its hand-written steps must compute latentkit's training loss: on the same (perturbed)
float64 weights and the same seed, per-example values and the gradient of the batch mean
agree to float64 round-off (``CHECK_RTOL``, justified there). The ``--quick`` command runs
on a 1×8×8 U-Net of width 8 and writes its table; its images/s and images/hour are the
batch over the median step time and that times 3600.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import latentkit as lk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is not installed

from bench import unet_throughput as ut
from bench.timing import Timing


@pytest.mark.parametrize("leg", list(ut.LEGS))
def test_hand_written_loss_is_latentkits_on_the_same_draws(leg):
    """Same weights (moved off the zero-initialised last layer), same seed, float64: the
    per-example loss and the gradient of its mean agree to round-off, and the loss is not
    degenerate (finite, differing between examples)."""
    size = ut.QUICK
    seeds = (0, 2)
    if leg == "vdm":  # one seed's low-discrepancy times t_i = (u + i/n) mod 1 wrap past 1
        n = size.check_batch
        wraps = []
        for seed in seeds:
            torch.manual_seed(seed + 3)  # check_leg's seed of the draws
            wraps.append(torch.rand((), dtype=torch.float64).item() + (n - 1) / n >= 1)
        assert any(wraps) and not all(wraps)
    for seed in seeds:
        c = ut.check_leg(leg, size, seed)
        assert c["ok"], c
        mine, theirs = torch.tensor(c["latentkit"]), torch.tensor(c["hand"])
        assert mine.shape == (size.check_batch,) and torch.isfinite(mine).all()
        assert mine.std() > 0
        assert (mine - theirs).abs().max() <= ut.CHECK_RTOL * mine.abs().max()


def test_the_check_sees_the_network():
    """The check's weights make ε̂ depend on the input: with the U-Net's last layer still
    zero (ε̂ ≡ 0) a hand-written step that never called the network would pass."""
    torch.manual_seed(0)
    model = ut._perturbed(ut.build_model("vdm", ut.QUICK), 1)
    x = ut.images(2, ut.QUICK.image, 2, torch.float64)
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    assert model.core.eps(x, t).abs().max() > 1e-3


def test_hand_written_steps_refuse_what_they_do_not_write():
    """A model field the plain loss does not implement is a ConfigError naming it."""
    size = ut.QUICK
    shape = {"data_shape": size.image, "network": "unet", "channels": size.channels}
    vdm = lk.load_model("vdm", t_sampler="uniform", **shape)
    with pytest.raises(lk.ConfigError, match="t_sampler"):
        ut.hand_written(vdm)
    ddpm = lk.load_model("ddpm", reverse_variance="posterior", **shape)
    with pytest.raises(lk.ConfigError, match="reverse_variance"):
        ut.hand_written(ddpm)


def test_summary_is_batch_over_median_step_time():
    """images/s = batch ÷ per-step seconds (median over rounds); the ratio is the median of
    the paired per-round step-time ratios; cores used = CPU seconds ÷ wall seconds."""
    t = {
        "latentkit eager": Timing("latentkit eager", (0.5, 0.25, 1.0)),
        "hand-written eager": Timing("hand-written eager", (1.0, 0.5, 1.0)),
    }
    cpu = {"latentkit eager": [1.0, 0.5, 2.0, 2.0, 0.5, 0.5], "hand-written eager": [1.0] * 6}
    out = ut.summarise(t, cpu, batch=8, inner=2)
    lk_ = out["contenders"]["latentkit eager"]
    assert lk_["images_per_s"] == 16.0  # 8 / 0.5
    assert lk_["cpu_per_call_s"] == [0.75, 2.0, 0.5]
    assert lk_["cores_used"] == 1.5  # median of 0.75/0.5, 2.0/0.25, 0.5/1.0
    assert out["ratio"]["eager"][0] == 0.5  # median of 0.5, 0.5, 1.0
    assert out["rounds"] == 3 and out["steps_per_round"] == 2


def test_quick_command_writes_the_table(tmp_path):
    """``--quick`` measures every leg, prints and writes the table with images/hour =
    images/s × 3600, and exits 0 (every check agreed); ``--render`` redraws the same page
    from the JSON."""
    assert ut.main(["--quick", "--threads", "1", "--rounds", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "unet.json").read_text())
    md = (tmp_path / "benchmarks_unet.md").read_text()
    assert [c["leg"] for c in result["cells"]] == list(ut.QUICK.legs)
    for cell in result["cells"]:
        assert set(cell["contenders"]) == {"latentkit eager", "hand-written eager"}
        for c in cell["contenders"].values():
            assert len(c["per_call_s"]) == 2
            lo, hi = c["ci"]
            assert lo <= c["images_per_s"] <= hi
    for cell in result["cells"]:
        prefix = f"| {cell['leg']} | {cell['batch']} | eager |"
        cols = next(x for x in md.splitlines() if x.startswith(prefix)).split(" | ")
        for side, col in (("latentkit", 6), ("hand-written", 7)):
            ips = cell["contenders"][f"{side} eager"]["images_per_s"]
            assert abs(float(cols[col].replace(",", "")) - ips * 3600) <= 0.5
    assert "images per hour" in md and "✓" in md
    again = tmp_path / "rendered"
    assert ut.main(["--render", str(tmp_path / "unet.json"), "--out", str(again)]) == 0
    assert (again / "benchmarks_unet.md").read_text() == md


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        ut.main(["--quick", "--legs", "vdm,gan"])
    with pytest.raises(SystemExit):
        ut.main(["--quick", "--batches", "0"])
