"""The ``latentkit`` command line: every subcommand on tiny budgets, --help, config errors,
and a run killed mid-way then resumed (same parameters as the uninterrupted run).

Most tests call ``latentkit.cli.main(argv)`` in this process (a subprocess costs seconds of
imports); the kill test needs a real process to send the signal to.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import latentkit as lk
from latentkit.cli import main, parse_value

TINY = [
    "--data",
    "digits",
    "--limit",
    "256",
    "--batch-size",
    "32",
    "--no-progress",
    "--set",
    "hidden=[32]",
    "--set",
    "latent_dim=4",
]
PNG = b"\x89PNG\r\n\x1a\n"


def weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    tensors = load_file(run / "checkpoints" / f"step-{step:08d}.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model/")}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One small VAE run with a report, shared by the evaluate/sample/report tests."""
    run = tmp_path_factory.mktemp("cli") / "vae"
    code = main(
        [
            "train",
            "--model",
            "vae",
            *TINY,
            "--steps",
            "30",
            "--eval-every",
            "15",
            "--run-dir",
            str(run),
            "--report",
            "--iwae-k",
            "8",
        ]
    )
    assert code == 0
    return run


@pytest.mark.parametrize("command", ["list", "train", "evaluate", "sample", "report", "verify"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: latentkit {command}" in capsys.readouterr().out


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("list", "train", "evaluate", "sample", "report", "verify"):
        assert command in out


def test_list_shows_models_plugins_and_config_fields(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "vae" in out and "latentkit-vae" in out and "latent_dim" in out
    assert "digits" in out  # the data sets table


def test_train_with_report_writes_metrics_checkpoint_json_and_pngs(trained):
    report = json.loads((trained / "report.json").read_text())
    ev = report["evaluation"]
    assert report["model"] == "vae" and report["step"] == 30
    assert report["data"]["name"] == "digits" and report["data"]["kind"] == "binary"
    assert ev["iwae_k"] == 8 and ev["num_examples"] == 256
    assert ev["nll_nats"]["mean"] > 0 and ev["bits_per_dim"]["iwae"]["mean"] > 0
    # ELBO ≤ IWAE_k (DESIGN §7.3), per data set mean; both from one evaluation.
    assert ev["elbo"]["mean"] <= ev["iwae"]["mean"] + 3 * ev["iwae"]["stderr"]
    for name in ("samples.png", "curves.png", "layer_kl.png"):
        assert (trained / name).read_bytes()[:8] == PNG, name
    config = json.loads((trained / "config.json").read_text())
    assert config["model_config"]["likelihood"] == "bernoulli"  # fitted to binarized data
    assert config["model_config"]["data_shape"] == [1, 8, 8]
    splits = [json.loads(l)["split"] for l in (trained / "metrics.jsonl").read_text().splitlines()]
    assert splits.count("test") == 2


def test_evaluate_prints_json(trained, capsys):
    assert (
        main(["evaluate", str(trained), "--json", "-", "--iwae-k", "4", "--eval-limit", "50"]) == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["num_examples"] == 50 and payload["iwae_k"] == 4
    assert payload["model"] == "vae" and payload["split"] == "test"


def test_evaluate_writes_a_table_and_a_json_file(trained, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(trained), "--iwae-k", "0", "--json", str(out)]) == 0
    assert "ELBO" in capsys.readouterr().out
    assert json.loads(out.read_text())["nll_nats"] is None  # IWAE skipped when asked


def test_sample_writes_a_png_and_tensors(trained, tmp_path):
    png, st = tmp_path / "s.png", tmp_path / "s.safetensors"
    assert main(["sample", str(trained), "-n", "9", "--out", str(png), "--tensors", str(st)]) == 0
    assert png.read_bytes()[:8] == PNG
    assert load_file(st)["samples"].shape == (9, 1, 8, 8)


def test_report_command_rewrites_the_report(trained):
    before = (trained / "report.json").stat().st_mtime_ns
    assert main(["report", str(trained), "--iwae-k", "2"]) == 0
    assert (trained / "report.json").stat().st_mtime_ns > before


def test_a_bad_model_field_is_named(tmp_path, capsys):
    code = main(
        ["train", "--model", "vae", *TINY, "--set", "latnt_dim=3", "--run-dir", str(tmp_path / "r")]
    )
    assert code == 2
    assert "latnt_dim" in capsys.readouterr().err


def test_a_bad_model_value_is_named(tmp_path, capsys):
    code = main(
        [
            "train",
            "--model",
            "vae",
            *TINY,
            "--set",
            "latent_dim=-1",
            "--steps",
            "2",
            "--run-dir",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "latent_dim" in err and "-1" in err


def test_a_bad_training_value_is_named(tmp_path, capsys):
    code = main(["train", "--model", "vae", *TINY, "--lr", "-1", "--run-dir", str(tmp_path)])
    assert code == 2
    assert "'lr'" in capsys.readouterr().err


def test_an_unknown_model_lists_the_registered_ones(tmp_path, capsys):
    assert main(["train", "--model", "nope", "--run-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and "vae" in err


def test_toml_config_with_set_overrides(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'model = "vae"\n'
        "[model_config]\nlatent_dim = 2\nhidden = [16]\n"
        "[train]\nsteps = 4\nbatch_size = 16\nprogress = false\n"
        '[data]\nname = "digits"\nlimit = 64\n'
    )
    run = tmp_path / "run"
    assert (
        main(["train", "--config", str(cfg), "--set", "latent_dim=3", "--run-dir", str(run)]) == 0
    )
    info = json.loads((run / "checkpoints" / "step-00000004.json").read_text())
    assert info["model_config"]["latent_dim"] == 3 and info["model_config"]["hidden"] == [16]
    assert info["train_config"]["batch_size"] == 16 and info["data"]["limit"] == 64


def test_a_bad_toml_key_is_named(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('model = "vae"\n[train]\nstepz = 4\n')
    assert main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "r")]) == 2
    assert "stepz" in capsys.readouterr().err


def test_set_values_are_read_as_toml_or_text():
    assert parse_value("3") == 3 and parse_value("1e-3") == 1e-3 and parse_value("true") is True
    assert parse_value("[512, 512]") == [512, 512] and parse_value("bernoulli") == "bernoulli"


def test_an_existing_run_is_not_overwritten_without_asking(trained, capsys):
    assert main(["train", "--model", "vae", *TINY, "--run-dir", str(trained)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_to_more_steps_equals_one_longer_run(tmp_path):
    """Train 10 steps, then `--resume --steps 20`: the weights equal a 20-step run's."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--model", "vae", *TINY, "--steps", "20", "--run-dir", str(a)]) == 0
    assert main(["train", "--model", "vae", *TINY, "--steps", "10", "--run-dir", str(b)]) == 0
    assert main(["train", "--resume", "--steps", "20", "--no-progress", "--run-dir", str(b)]) == 0
    assert_same(weights(b, 20), weights(a, 20))


def test_killed_mid_run_then_resumed_equals_the_uninterrupted_run(tmp_path):
    """SIGTERM a real `latentkit train` process mid-run: it checkpoints the step it reached
    and exits 130; `--resume` to N steps then gives the weights of an uninterrupted N-step run."""
    run = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "latentkit.cli",
        "train",
        "--model",
        "vae",
        *TINY,
        "--steps",
        "100000",
        "--checkpoint-every",
        "0",
        "--set",
        "train.log_every=5",
        "--run-dir",
        str(run),
    ]
    # Same thread count as this process, so float results match the in-process runs.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "training never logged"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-3000:]
    stopped = lk.checkpoint.latest_checkpoint(run)
    step = json.loads(stopped.read_text())["step"]
    assert 10 <= step < 100000
    target = step + 7
    assert main(["train", "--resume", "--steps", str(target), "--run-dir", str(run)]) == 0
    whole = tmp_path / "whole"
    assert (
        main(["train", "--model", "vae", *TINY, "--steps", str(target), "--run-dir", str(whole)])
        == 0
    )
    assert_same(weights(run, target), weights(whole, target))


def test_verify_delegates_to_the_testing_kit(monkeypatch, capsys):
    calls = {}

    def verify_command(name, *, device="cpu", max_examples=25, console=None):
        calls.update(name=name, device=device, max_examples=max_examples)
        return 0

    fake = types.ModuleType("latentkit.testing.verify")
    fake.verify_command = verify_command
    monkeypatch.setitem(sys.modules, "latentkit.testing.verify", fake)
    assert main(["verify", "vae", "--max-examples", "7"]) == 0
    assert calls == {"name": "vae", "device": "cpu", "max_examples": 7}


def test_verify_says_clearly_when_it_is_not_available(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "latentkit.testing.verify", None)  # import fails
    assert main(["verify", "vae"]) == 2
    assert "not available" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("model", "settings"),
    [
        ("hvae", ["--set", "latent_dims=[4, 2]", "--set", "hidden=[32]"]),
        # IWAE is off for the 20-step chain: bottom-up weights over T layers, T calls each.
        (
            "ddpm",
            [
                "--set",
                "num_timesteps=20",
                "--set",
                "network=mlp",
                "--set",
                "hidden=[32]",
                "--iwae-k",
                "0",
            ],
        ),
        ("beta-vae", ["--set", "latent_dim=4", "--set", "hidden=[32]"]),
    ],
)
def test_each_family_trains_and_evaluates_on_embedded_data(model, settings, tmp_path):
    """`latentkit train --model NAME --report` for the other built-in families (skipped, with
    the reason, while a family's plugin is not installed)."""
    if model not in lk.list_models():
        pytest.skip(f"the {model!r} plugin is not installed here")
    run = tmp_path / model
    # The settings come last, so a family's own flags (ddpm: no IWAE) win.
    argv = ["train", "--model", model, "--data", "digits", "--limit", "128", "--batch-size", "32",
            "--steps", "6", "--no-progress", "--run-dir", str(run), "--report",
            "--iwae-k", "4", "--eval-limit", "32", *settings]  # fmt: skip
    code = main(argv)
    assert code == 0
    ev = json.loads((run / "report.json").read_text())["evaluation"]
    assert ev["num_examples"] == 32 and ev["elbo"]["mean"] is not None
    assert len(ev["layer_kl"]) == lk.load_model(model, **_config(run)).num_layers - 1
    assert (run / "layer_kl.png").read_bytes()[:8] == PNG


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["model_config"]


def _without_mnist(monkeypatch) -> None:
    import latentkit.data

    real = latentkit.data.load_dataset

    def load_dataset(name, **kw):
        if name in ("mnist", "mnist-sample"):
            raise lk.errors.DataSourceError(
                f"dataset {name!r} is not available: pip install 'latentkit[{name}]'"
            )
        return real(name, **kw)

    monkeypatch.setattr(latentkit.data, "load_dataset", load_dataset)


def test_without_mnist_the_default_falls_back_to_digits_loudly(monkeypatch, tmp_path, capsys):
    """No --data and no MNIST extra: digits stand in, and the notice says how to get MNIST."""
    _without_mnist(monkeypatch)
    run = tmp_path / "r"
    argv = ["train", "--model", "vae", "--steps", "2", "--batch-size", "16", "--no-progress",
            "--set", "hidden=[16]", "--set", "data.limit=64", "--run-dir", str(run)]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "MNIST is not installed" in err and "latentkit[mnist]" in err and "digits" in err
    assert json.loads((run / "config.json").read_text())["data"]["name"] == "digits"


def test_mnist_asked_for_by_name_is_not_replaced(monkeypatch, tmp_path, capsys):
    _without_mnist(monkeypatch)
    argv = ["train", "--model", "vae", "--data", "mnist", "--run-dir", str(tmp_path)]
    assert main(argv) == 1
    assert "latentkit[mnist]" in capsys.readouterr().err


def test_no_bits_per_dim_for_a_continuous_likelihood(tmp_path, capsys):
    """A Gaussian p(x|z) is a density, not a probability: the report gives nats, no bits/dim."""
    run = tmp_path / "gauss"
    argv = ["train", "--model", "vae", *TINY, "--variant", "unit", "--set", "likelihood=gaussian",
            "--steps", "3", "--run-dir", str(run)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "-", "--iwae-k", "2"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["discrete_likelihood"] is False
    assert payload["bits_per_dim"] == {"elbo": None, "iwae": None}
    assert payload["nll_nats"]["mean"] is not None


# ---- training objectives (docs/objectives.md) --------------------------------------------


def _recorded_objective(run: Path) -> dict:
    step = max(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("step-*.json"))
    info = json.loads((run / "checkpoints" / f"step-{step:08d}.json").read_text())
    return info["objective"]


@pytest.mark.parametrize(
    "flags,expected",
    [
        (["--objective", "iwae", "--set", "objective.k=5"], {"name": "iwae", "k": 5}),
        (
            ["--objective", "iwae", "--set", "objective.k=3", "--set", "objective.gradient=dreg"],
            {"name": "iwae", "gradient": "dreg"},
        ),
        (["--set", "objective.warmup_steps=4"], {"name": "elbo", "warmup_steps": 4}),
        (
            ["--objective", "elbo", "--set", "objective.free_bits=0.5"],
            {"name": "elbo", "free_bits": 0.5},
        ),
    ],
    ids=["iwae", "iwae-dreg", "warmup", "free-bits"],
)
def test_train_with_an_objective_records_it_and_resumes_with_it(flags, expected, tmp_path):
    """`latentkit train --objective NAME --set objective.FIELD=…` trains, reports a finite
    ELBO, records the objective in the checkpoint and config.json, and `--resume` keeps it
    (the weights equal one longer run's)."""
    a, b = tmp_path / "a", tmp_path / "b"
    base = ["train", "--model", "vae", *TINY, *flags]
    assert main([*base, "--steps", "8", "--run-dir", str(a)]) == 0
    assert main([*base, "--steps", "4", "--run-dir", str(b)]) == 0
    assert main(["train", "--resume", "--steps", "8", "--no-progress", "--run-dir", str(b)]) == 0
    assert_same(weights(b, 8), weights(a, 8))
    record = _recorded_objective(b)
    assert record["name"] == expected.pop("name")
    assert {k: record["config"][k] for k in expected} == expected
    assert json.loads((b / "config.json").read_text())["objective"] == record


def test_ddpm_old_loss_key_selects_the_hybrid_objective(tmp_path):
    run = tmp_path / "ddpm"
    argv = ["train", "--model", "ddpm", "--data", "digits", "--limit", "64", "--batch-size",
            "16", "--steps", "3", "--no-progress", "--run-dir", str(run), "--set",
            "num_timesteps=10", "--set", "network=mlp", "--set", "hidden=[16]", "--set",
            "loss=hybrid", "--set", "hybrid_weight=0.01"]  # fmt: skip
    assert main(argv) == 0
    assert _recorded_objective(run) == {"name": "hybrid", "config": {"weight": 0.01}}


@pytest.mark.parametrize(
    "flags,words",
    [
        (["--objective", "iwea"], "no objective named 'iwea'"),
        (["--objective", "iwae", "--set", "objective.kk=2"], "objective 'iwae': unknown"),
        (["--objective", "iwae", "--set", "objective.k=0"], "'k' must be an int ≥ 1"),
        (["--set", "objective.warmup_shape=sigmoid"], "'warmup_shape' must be one of"),
        (["--objective", "hybrid"], "objective 'hybrid' does not apply"),
    ],
)
def test_a_bad_objective_is_one_error_line(flags, words, tmp_path, capsys):
    code = main(["train", "--model", "vae", *TINY, *flags, "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error:") and words in err and len(err.splitlines()) == 1, err


def test_list_shows_the_objectives(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "training objectives" in out
    for name in ("elbo", "iwae", "simple", "hybrid"):
        assert name in out
