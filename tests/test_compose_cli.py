"""`latentkit train --model A --prior B`: the composed model from the command line — its
record, rerun and resume, the evaluation commands on it, and its refusals (docs/compose.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib
from cli_runner import digest, error_line, run_cli

from latentkit.trained import load_trained_model

DATA = ["--data", "digits", "--limit", "300", "--batch-size", "32", "--no-progress"]
OUTER = ["--model", "vae", "--set", "hidden=[16]", "--set", "latent_dim=4"]
VAE_PRIOR = ["--prior", "vae", "--set", "prior.latent_dim=2", "--set", "prior.hidden=[8]"]
# a continuous-time prior at its default T (1000 steps): trained by its own continuous bound;
# its decoder made Gaussian by the plugin's declared continuous_data (z is continuous)
VDM_PRIOR = ["--prior", "vdm", "--set", "prior.hidden=[8]", "--set", "prior.fourier_exponents=[]"]
EVAL = ["--no-progress", "--diagnose", "0", "--iwae-k", "8", "--eval-limit", "64"]


def _train(run: Path, *extra: str, steps: int = 3) -> str:
    code, _, err = run_cli(["train", *DATA, "--steps", str(steps), "--run-dir", str(run), *extra])
    assert code == 0, err
    return err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A VAE over a VAE, a VAE over a vdm, and the plain VAE, each 3 steps on digits."""
    root = tmp_path_factory.mktemp("composed")
    _train(root / "vae-vae", *OUTER, *VAE_PRIOR)
    _train(root / "vae-vdm", *OUTER, *VDM_PRIOR)
    _train(root / "vae", *OUTER)
    return root


def _toml(run: Path) -> dict:
    return tomllib.loads((run / "config.toml").read_text())


def test_prior_trains_the_composed_model_and_records_both_parts(runs):
    model, info = load_trained_model(runs / "vae-vae")
    assert info["model"] == "composed" and model.name == "composed"
    assert (model.outer.name, model.prior.name) == ("vae", "vae")
    assert model.outer.config.latent_dim == 4 and model.outer.config.hidden == (16,)
    # the prior's data shape is the outer model's top latent shape, filled in
    assert tuple(model.prior.data_shape) == (4,) and model.prior.config.latent_dim == 2
    assert info["objective"]["name"] == "composed"  # the composed model's own objective
    doc = _toml(runs / "vae-vae")
    assert (doc["model"], doc["prior"], doc["objective"]) == ("vae", "vae", "composed")
    assert doc["model_config"]["data_shape"] == [1, 8, 8] and doc["model_config"]["latent_dim"] == 4
    assert doc["prior_config"]["data_shape"] == [4] and doc["prior_config"]["hidden"] == [8]
    assert "prior" not in _toml(runs / "vae") and "prior_config" not in _toml(runs / "vae")


def test_config_toml_trains_the_same_run_again(runs, tmp_path):
    again = tmp_path / "again"
    _train(again, "--config", str(runs / "vae-vae" / "config.toml"))
    assert _toml(again) == _toml(runs / "vae-vae")
    a, _ = load_trained_model(runs / "vae-vae")
    b, _ = load_trained_model(again)
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert (p == q).all(), name  # same seed, same data, same steps: the same weights


def test_resume_continues_a_composed_run(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "vae-vae", run)
    err = _train(run, "--resume", steps=5)
    assert "resumed from" in err and "at step 3" in err
    model, info = load_trained_model(run)
    assert info["step"] == 5 and (model.outer.name, model.prior.name) == ("vae", "vae")
    assert _toml(run)["prior"] == "vae"
    # a different prior given now is refused, naming the recorded one
    code, _, err = run_cli(["train", "--resume", "--run-dir", str(run), "--prior", "vdm",
                            "--steps", "9"])  # fmt: skip
    assert code != 0 and "'vae'" in error_line(err) and "'vdm'" in error_line(err)


def test_evaluate_scores_a_continuous_time_prior_at_a_short_chain(runs):
    model, _ = load_trained_model(runs / "vae-vdm")
    assert model.num_layers > 1000  # as trained: T = 1000
    code, out, err = run_cli(["evaluate", str(runs / "vae-vdm"), *EVAL, "--json", "-"])
    assert code == 0, err
    assert "at T = 12 steps" in err
    report = json.loads(out)
    # the outer z_1 and the prior's 13 layers at T = 12 (14 in all; layer_kl lists the
    # transitions' terms, the top one is prior_matching): not the 1002 of the trained chain
    assert len(report["layer_kl"]) == 13 and report["iwae_k"] == 8
    assert report["iwae"]["mean"] >= report["elbo"]["mean"] - 4 * report["elbo"]["stderr"]
    # beside it, the continuous-time bound training minimises: ELBO_T rises with T to ELBO_∞
    # (VDM §4), so −ELBO_∞ lies below the T = 12 chain's −ELBO (4.5 s.e. of each, summed)
    cont = report["likelihood_figures"]["continuous"]
    assert cont["label"] == "−ELBO_∞" and cont["num_examples"] == 64
    slack = 4.5 * (cont["nll_nats"]["stderr"] + report["elbo"]["stderr"])
    assert cont["nll_nats"]["mean"] <= -report["elbo"]["mean"] + slack
    assert "−ELBO_∞" in err  # the T = 12 line names it
    code, out, err = run_cli(["evaluate", str(runs / "vae-vae"), *EVAL, "--json", "-"])
    assert code == 0 and "at T =" not in err  # a discrete prior is scored as trained
    assert json.loads(out)["likelihood_figures"] is None


def test_report_and_sample_work_on_a_composed_run(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "vae-vdm", run)
    code, _, err = run_cli(["report", str(run), *EVAL])
    assert code == 0, err
    assert (run / "report.json").is_file()
    code, _, err = run_cli(["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")])
    assert code == 0, err
    assert (tmp_path / "s.png").stat().st_size > 0


def test_compare_lists_a_composed_run_beside_the_plain_vae(runs, tmp_path):
    import shutil

    for name in ("vae-vae", "vae"):
        shutil.copytree(runs / name, tmp_path / name)
        code, _, err = run_cli(["report", str(tmp_path / name), *EVAL])
        assert code == 0, err
    code, _, err = run_cli(["compare", str(tmp_path / "vae"), str(tmp_path / "vae-vae"),
                              "--json", str(tmp_path / "c.json")])  # fmt: skip
    assert code == 0, err
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert [(r["run"], r["model"]) for r in rows] == [("vae", "vae"), ("vae-vae", "composed")]
    assert all(r["figure"]["key"] == "iwae" and r["figure"]["num_examples"] == 64 for r in rows)
    assert rows[1]["paired_difference"] is not None  # paired on the same test examples


def test_a_prior_of_the_wrong_shape_is_refused_before_anything_is_written(tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli(["train", *DATA, "--steps", "3", "--run-dir", str(run), *OUTER,
                            *VAE_PRIOR, "--set", "prior.data_shape=[3]"])  # fmt: skip
    line = error_line(err)
    assert code != 0 and "[3]" in line and "[4]" in line and "top latent" in line
    assert not run.exists()
    # and over an existing run, the run is left as it was
    base = tmp_path / "base"
    _train(base, *OUTER)
    before = digest(base)
    wrong = [*VAE_PRIOR, "--set", "prior.data_shape=[3]", "--overwrite"]
    code, _, err = run_cli(["train", *DATA, "--steps", "3", "--run-dir", str(base), *OUTER, *wrong])
    assert code != 0 and "top latent" in error_line(err)
    assert digest(base) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]  # nothing moved aside


def test_prior_fields_without_a_prior_and_unknown_prior_fields_are_refused(tmp_path):
    run = tmp_path / "run"
    base = ["train", *DATA, "--steps", "3", "--run-dir", str(run), *OUTER]
    code, _, err = run_cli([*base, "--set", "prior.latent_dim=2"])
    assert code != 0 and "--prior" in error_line(err) and "latent_dim" in error_line(err)
    code, _, err = run_cli([*base, "--prior", "vae", "--set", "prior.latnt_dim=2"])
    assert code != 0 and "latnt_dim" in error_line(err) and "prior 'vae'" in error_line(err)
    assert not run.exists()


def test_the_data_variant_fits_the_outer_model(tmp_path):
    # a DDPM's discretized decoder reads 8-bit data: the composed run loads that variant, not
    # the binarized default of a model with a `likelihood` field (ComposedConfig has one)
    run = tmp_path / "run"
    _train(run, "--model", "ddpm", "--set", "num_timesteps=2", "--set", "hidden=[8]",
           *VAE_PRIOR, "--limit", "64", steps=1)  # fmt: skip
    _, info = load_trained_model(run)
    assert info["data"]["variant"] == "8bit" and _toml(run)["data"]["variant"] == "8bit"


def test_prior_fields_are_checked_with_the_values_z_fills_in(tmp_path):
    # prior.normal_part=exact needs the gaussian decoder that z's continuity gives a vdm
    # prior: the early check of the prior's fields refused it against the default decoder
    run = tmp_path / "run"
    exact = ["--set", "prior.eps_skip=true", "--set", "prior.normal_part=exact"]
    _train(run, *OUTER, *VDM_PRIOR, *exact)
    assert _toml(run)["prior_config"]["normal_part"] == "exact"
    code, _, err = run_cli(["train", *DATA, "--steps", "3", "--run-dir", str(tmp_path / "b"),
                            *OUTER, *VDM_PRIOR, "--set", "prior.normal_part=exact"])  # fmt: skip
    assert code != 0 and "eps_skip=True" in error_line(err)


def test_an_engine_objective_over_a_long_joined_chain_is_refused(tmp_path):
    # `--recipe iwae-paper-vae --prior vdm` took the recipe's `objective = "elbo"`: the joined
    # chain's 1,000-odd layers walked at every step (a stall); refused in one line, naming
    # the composed objective, before the run folder is touched. A short chain still trains.
    run = tmp_path / "run"
    base = ["train", *DATA, "--steps", "3", "--run-dir", str(run), *OUTER]
    code, _, err = run_cli([*base, *VDM_PRIOR, "--objective", "elbo"])
    line = error_line(err)
    assert code != 0 and "'elbo'" in line and "1,002 layers" in line and "composed" in line
    assert not run.exists()
    code, _, err = run_cli([*base, *VDM_PRIOR, "--set", "prior.num_timesteps=10",
                            "--objective", "elbo"])  # fmt: skip
    assert code == 0, err
