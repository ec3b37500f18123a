"""The plugin's own property checks (``latentkit_vdm.checks``) pass through the author kit's
runner on the plugin's test configs, and each catches the fault it is about."""

from __future__ import annotations

import pytest
from latentkit_vdm.checks import VDM_CHECKS

from latentkit.testing.checks import run_check


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
