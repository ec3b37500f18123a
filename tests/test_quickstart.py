"""The vae plugin's quickstart (README) runs and prints the exact log p above the ELBO."""

from __future__ import annotations

import re

from latentkit_vae.quickstart import main


def test_the_quickstart_prints_each_model_with_log_p_above_the_elbo(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # one table row per model
    main(["--steps", "5", "--k", "4"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("│ vae linear (pPCA)"))
    elbo, iwae, log_p, gap = (float(v) for v in re.findall(r"-?\d+\.\d+", row)[:4])
    assert log_p >= iwae >= elbo - 1.0  # IWAE-4 ≥ ELBO holds in expectation; one draw may dip
    assert gap >= 0.0 and abs(gap - (log_p - elbo)) < 1e-2  # the gap column is log p − ELBO
    assert "vae mlp" in out and "intractable" in out
