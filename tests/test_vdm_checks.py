"""The plugin's own property checks (``latentkit_vdm.checks``) pass through the author kit's
runner on the plugin's test configs, and each catches the fault it is about."""

from __future__ import annotations

import pytest
from latentkit_vdm.checks import VDM_CHECKS

from latentkit.testing.checks import run_check, run_checks


@pytest.mark.parametrize("check", VDM_CHECKS, ids=lambda c: c.key)
def test_vdm_check_passes_on_the_plugin_configs(check):
    result = run_check(check, "vdm", max_examples=5, derandomize=True)
    assert result.status == "passed", result.detail + result.counterexample


def test_vdm_checks_catch_a_wrong_score_weighting(monkeypatch):
    """A score-matching loss with λ = β̄² in place of g² fails ``vdm-score-matching``."""
    from latentkit_vdm.model import ContinuousDiffusion

    original = ContinuousDiffusion.score_matching_loss

    def wrong(self, x, t, noise, weighting="likelihood"):
        return original(self, x, t, noise, "simple")

    monkeypatch.setattr(ContinuousDiffusion, "score_matching_loss", wrong)
    check = next(c for c in VDM_CHECKS if c.key == "vdm-score-matching")
    result = run_check(check, "vdm", max_examples=5, derandomize=True, shrink_seconds=1)
    assert result.status == "failed"


def test_verify_runs_the_familys_own_checks_after_the_generic_ones():
    """ModelSpec.checks: ``run_checks("vdm")`` (what ``latentkit verify vdm`` runs) includes the
    family's identities, selectable by key like the generic ones."""
    from latentkit.testing.checks import CHECKS
    from latentkit.testing.checks.runner import model_checks

    own = [c.key for c in model_checks("vdm")]
    assert own == ["vdm-score-matching", "vdm-layer-kl", "vdm-continuous-unbiased"]
    assert not set(own) & {c.key for c in CHECKS}
    results = run_checks("vdm", checks=["vdm-score-matching"], max_examples=3, derandomize=True)
    assert [r.check.key for r in results] == ["vdm-score-matching"]
    assert not results[0].failed, results[0].detail
    assert model_checks("vae") == []
