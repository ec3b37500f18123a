"""The fourth hostile pass (docs/reliability.md, "Fourth pass"): each case is an input a new
user tried that gave a traceback, a silent wrong result, a hang or a lost file, and must
now be one typed refusal (from the command line: exit 2 or 1 and one ``error:`` line) that
leaves every file as it was.

The command-line cases call ``latentkit.cli.main`` in this process (``cli_runner``); the
Python cases call the public functions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from cli_runner import TINY, digest, error_line, run_cli, tiny_run  # tests/ is on sys.path
from latentkit_vdm import sample_ode, sample_sde

import latentkit as lk
from latentkit import checkpoint as ckpt

QUICK = ["--eval-limit", "4", "--iwae-k", "2", "--diagnose", "0", "--no-progress"]


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    """A finished 4-step run with its report (report.json, per_example.safetensors)."""
    run = tiny_run(tmp_path_factory.mktemp("pass4"))
    code, _, err = run_cli(["report", str(run), *QUICK])
    assert code == 0, err
    assert (run / "report.json").is_file() and (run / "per_example.safetensors").is_file()
    return run


@pytest.fixture
def run(reported, tmp_path) -> Path:
    """A copy of the reported run, for a case that might change it."""
    copy = tmp_path / "run"
    shutil.copytree(reported, copy)
    return copy


# --------------------------------------------------- the command line: refused, nothing lost

# (argv with RUN for the run folder and OUT for a scratch folder; exit status; words the
# error line must hold). Each lost or silently mis-wrote a file before its fix.
CLI_CASES = {
    # --overwrite was ignored: the run was resumed
    "resume-and-overwrite": (
        ["train", *TINY, "--steps", "8", "--resume", "--overwrite", "--run-dir", "RUN"],
        2,
        "--resume (continue the run) or --overwrite (start over), not both",
    ),
    # the per-example tensors replaced the JSON report just written, both "wrote"
    "json-and-per-example-one-file": (
        ["evaluate", "RUN", *QUICK, "--json", "OUT/e.json", "--per-example", "OUT/e.json"],
        2,
        "--json and --per-example both name",
    ),
    # `-` meant stdout for --json but a file named `-` for --per-example
    "per-example-to-stdout": (
        ["evaluate", "RUN", *QUICK, "--json", "-", "--per-example", "-"],
        2,
        "--per-example writes a .safetensors file",
    ),
    # the run's report replaced by a Markdown table, a JSON of another shape, samples
    "compare-markdown-over-the-report": (
        ["compare", "RUN", "--markdown", "RUN/report.json"],
        2,
        "the run's report",
    ),
    "compare-json-over-the-report": (
        ["compare", "RUN", "--json", "RUN/report.json"],
        2,
        "the run's report",
    ),
    "evaluate-json-over-the-report": (
        ["evaluate", "RUN", *QUICK, "--json", "RUN/report.json"],
        2,
        "the run's report",
    ),
    "evaluate-per-example-into-the-run": (  # a folder: RUN/per_example.safetensors
        ["evaluate", "RUN", *QUICK, "--per-example", "RUN"],
        2,
        "per_example.safetensors, the run's report",
    ),
    "sample-tensors-over-the-per-example-file": (
        ["sample", "RUN", "-n", "2", "--tensors", "RUN/per_example.safetensors"],
        2,
        "the run's report",
    ),
}


@pytest.mark.parametrize("argv, status, words", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_a_hostile_command_is_one_line_and_changes_no_file(run, tmp_path, monkeypatch, argv,
                                                           status, words):  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)  # a file named `-` would land here
    before = digest(run)
    argv = [a.replace("RUN", str(run)).replace("OUT", str(out)) for a in argv]
    code, stdout, err = run_cli(argv)
    assert code == status, err
    assert words in error_line(err), err
    assert digest(run) == before
    assert sorted(out.iterdir()) == [] and stdout == ""


def test_evaluate_still_writes_its_outputs_beside_the_report(run, tmp_path):
    """What the refusals above leave allowed: --json and --per-example to two other files,
    in the run folder too."""
    js, per = run / "mine.json", tmp_path / "mine.safetensors"
    code, _, err = run_cli(["evaluate", str(run), *QUICK, "--json", str(js),
                            "--per-example", str(per)])  # fmt: skip
    assert code == 0, err
    assert json.loads(js.read_text())["num_examples"] == 4 and per.stat().st_size > 0


def test_a_warning_is_one_line(run):
    """A warning the command raises (a resume with another objective) is one ``warning:``
    line, not Python's file:line and source line."""
    code, _, err = run_cli(["train", "--resume", "--run-dir", str(run), "--objective", "iwae",
                            "--steps", "5", "--no-progress"])  # fmt: skip
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "objective 'iwae'" in ln and "resuming" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: resuming with objective"), err
    assert "UserWarning" not in err and ".py:" not in err


def test_a_checkpoint_whose_metrics_are_no_table_reports_without_them(run):
    """A forged (hash recomputed) checkpoint whose ``metrics`` is a list: `report` raised
    AttributeError with a traceback; now the report is written, with no training metrics."""
    path = ckpt.latest_checkpoint(run)
    record = json.loads(path.read_text())
    assert isinstance(record["metrics"], dict)  # what a real run writes
    record["metrics"] = [1, 2]
    record["info_sha256"] = ckpt._info_digest(record)
    path.write_text(json.dumps(record))
    code, _, err = run_cli(["report", str(run), *QUICK])
    assert code == 0 and "Traceback" not in err, err
    assert json.loads((run / "report.json").read_text())["last_train_metrics"] is None


# ------------------------------------------------------------ composed models: refused at once

COMPOSE_CASES = {
    # the composed objective walked the DDPM's 1000 layers (a U-Net call each) at every step:
    # 20 steps ran for minutes, the default 2000 for hours (a hang to the user)
    "ddpm-outer": (["--model", "ddpm", "--prior", "vae"], "'ddpm' is a diffusion of 1000 layers"),
    "vdm-outer": (["--model", "vdm", "--prior", "vdm"], "'vdm' is a diffusion of 1001 layers"),
    # an internal "called without a condition", blamed on train.eval_estimator
    "conditional-outer": (
        ["--model", "vae", "--prior", "vae", "--set", "classes=10"],
        "outer model 'vae' is conditional on class labels 0..9",
    ),
    "conditional-prior": (
        ["--model", "vae", "--prior", "vae", "--set", "prior.classes=10"],
        "prior model 'vae' is conditional on class labels 0..9",
    ),
}


@pytest.mark.parametrize("flags, words", COMPOSE_CASES.values(), ids=COMPOSE_CASES.keys())
def test_a_composition_that_cannot_train_is_refused_before_training(tmp_path, flags, words):
    run = tmp_path / "run"
    code, _, err = run_cli(["train", *flags, "--data", "digits", "--limit", "64", "--batch-size",
                            "16", "--steps", "2", "--no-progress", "--run-dir", str(run)],
                           timeout=60)  # fmt: skip
    assert code == 2 and words in error_line(err), err
    assert not run.exists()


def test_the_composed_objective_refuses_a_long_diffusion_outer_and_compose_a_conditional_part():
    from latentkit.composition import composed_objective
    from latentkit.evaluation import LONG_CHAIN

    def outer(T):
        return lk.load_model("ddpm", data_shape=(4,), hidden=(8,), num_timesteps=T)

    def prior():
        return lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,))

    long = lk.compose(outer(LONG_CHAIN + 1), prior=prior())  # composed, scored: allowed
    with pytest.raises(lk.ConfigError, match=f"diffusion of {LONG_CHAIN + 1} layers"):
        composed_objective(long)
    short = lk.compose(outer(LONG_CHAIN), prior=prior())
    assert composed_objective(short)(short, torch.zeros(3, 4)).shape == (3,)
    vae = lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,))
    conditional = lk.load_model("vae", data_shape=(2,), latent_dim=2, classes=3)
    with pytest.raises(lk.ConfigError, match="prior model 'vae' is conditional on class"):
        lk.compose(vae, prior=conditional)


# ------------------------------------------------------------------ the Python entry points


def _vdm() -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model("vdm", data_shape=(4,), hidden=(8,), num_timesteps=4, decoder="gaussian")


PYTHON_CASES = {
    # torch's "mat1 and mat2 must have the same dtype" (a RuntimeError, no argument named)
    "continuous-elbo-t-float64": (
        lambda m: m.continuous_elbo(torch.zeros(3, 4), t=torch.tensor(0.5, dtype=torch.float64)),
        lk.DTypeError,
        "continuous_elbo: t must be torch.float32",
    ),
    # a generator of another device than the model's: torch's RuntimeError inside the loop
    # (a CPU generator for a CUDA model; here the model is on the meta device)
    "sample-sde-generator-elsewhere": (
        lambda m: sample_sde(m.to("meta"), 2, steps=3, generator=torch.Generator()),
        lk.DeviceError,
        "sample_sde: generator is on cpu, the model on meta",
    ),
    "sample-ode-generator-elsewhere": (
        lambda m: sample_ode(m.to("meta"), 2, generator=torch.Generator()),
        lk.DeviceError,
        "sample_ode: generator is on cpu, the model on meta",
    ),
    "ode-log-prob-generator-elsewhere": (
        lambda m: lk.ode_log_prob(
            m.to("meta"), torch.zeros(2, 4, device="meta"), generator=torch.Generator()
        ),
        lk.DeviceError,
        "ode_log_prob: generator is on cpu, the model on meta",
    ),
    # settings of an ODE figure not asked for were ignored, however wrong
    "evaluate-negative-ode-margin-without-ode": (
        lambda m: lk.evaluate(m, torch.zeros(3, 4), iwae_k=0, ode_margin=-1.0),
        lk.ConfigError,
        "ode_margin must be a finite number ≥ 0",
    ),
    "evaluate-ode-options-without-ode": (
        lambda m: lk.evaluate(m, torch.zeros(3, 4), iwae_k=0, ode_options={"rtol": 1e-3}),
        lk.ConfigError,
        "ode_options {'rtol': 0.001} given, but ode_examples = 0",
    ),
    # the discrete data's bin width without dequantize: ignored, whatever it was
    "ode-log-prob-bin-width-without-dequantize": (
        lambda m: lk.ode_log_prob(m, torch.zeros(2, 4), bin_width=0.5),
        lk.ConfigError,
        "bin_width=0.5 is the discrete data's bin width, read only with dequantize=True",
    ),
}


@pytest.mark.parametrize("call, error, words", PYTHON_CASES.values(), ids=PYTHON_CASES.keys())
def test_a_hostile_python_call_is_one_typed_error(call, error, words):
    with pytest.raises(error) as caught:
        call(_vdm())
    message = str(caught.value)
    assert words in message and "\n" not in message, message


def test_what_the_python_checks_leave_allowed():
    """The cases above, given rightly: a float32 t, a generator of the model's device, an
    ODE margin with no ODE figure (the command line passes its default)."""
    m = _vdm()
    x = torch.zeros(3, 4)
    assert m.continuous_elbo(x, t=torch.tensor(0.5)).total.shape == (3,)
    assert sample_sde(m, 2, steps=3, generator=torch.Generator().manual_seed(0)).shape == (2, 4)
    assert lk.evaluate(m, x, iwae_k=0, ode_margin=1.0).num_examples == 3
    # dequantize without bin_width takes the 8-bit width: the same bound as 2/255 given
    default, given = (
        lk.ode_log_prob(m, x, dequantize=True, generator=torch.Generator().manual_seed(1), **w)
        for w in ({}, {"bin_width": 2.0 / 255.0})
    )
    assert torch.equal(default.log_prob_bound, given.log_prob_bound)
