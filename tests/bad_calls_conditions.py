"""Hostile calls of the conditional API: the condition's declaration, the marginal over a
finite label set, the semi-supervised labels and the per-class sample grid."""

from __future__ import annotations

import attrs
import torch
from bad_calls_kit import NAN, Bad, bad

import latentkit as lk
from latentkit.config import class_count, drop_rate
from latentkit.data import keep_labels
from latentkit.sampling import class_grid

t = torch.zeros


@attrs.frozen
class _Conditional:
    """A config with the two shared validators of conditional plugins."""

    classes: int = attrs.field(default=0, validator=class_count)
    guidance_drop: float = attrs.field(default=0.1, validator=drop_rate)


def _cvae() -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear", classes=3)


CONDITIONS: dict[str, tuple[Bad, ...]] = {
    "latentkit.ConditionSpec": (
        bad("zero count", lambda k: lk.ConditionSpec(num_classes=0), lk.InputError, "num_classes"),
        bad("bool", lambda k: lk.ConditionSpec(num_classes=True), lk.InputError, "num_classes"),
        bad("empty", lambda k: lk.ConditionSpec(), lk.InputError, "num_classes"),
        bad("NaN", lambda k: lk.ConditionSpec(num_classes=2, drop_rate=NAN), lk.InputError),
        bad(
            "out of range",
            lambda k: lk.ConditionSpec(num_classes=2, guidance=True, drop_rate=1.0),
            lk.InputError,
            "drop_rate",
        ),
    ),
    "latentkit.class_log_probs": (
        bad("not conditional", lambda k: lk.class_log_probs(k.vae, k.x), lk.InputError),
        bad("zero count", lambda k: lk.class_log_probs(_cvae(), k.x, k=0), lk.InputError, "k"),
        bad("NaN", lambda k: lk.class_log_probs(_cvae(), k.x + NAN), lk.NonFiniteError),
    ),
    "latentkit.marginal_log_prob": (
        bad("not conditional", lambda k: lk.marginal_log_prob(k.vae, k.x), lk.InputError),
        bad("wrong type", lambda k: lk.marginal_log_prob(_cvae(), "x"), lk.InputError),
        bad("bool", lambda k: lk.marginal_log_prob(_cvae(), k.x, exact=3), lk.InputError),
    ),
    "latentkit.data.keep_labels": (
        bad("zero count", lambda k: keep_labels(torch.arange(4), 0), lk.ConfigError, "labels"),
        bad("too many", lambda k: keep_labels(torch.arange(4), 2), lk.ConfigError, "class 0"),
        bad("wrong dtype", lambda k: keep_labels(t(4), 1), lk.ConfigError, "integer"),
        bad("negative", lambda k: keep_labels(torch.arange(4), 1, seed=-1), lk.InputError),
    ),
    "latentkit.config.class_count": (
        bad("one value", lambda k: _Conditional(classes=1), lk.ConfigError, "'classes' = 1"),
        bad("negative", lambda k: _Conditional(classes=-2), lk.ConfigError, "classes"),
        bad("bool", lambda k: _Conditional(classes=True), lk.ConfigError, "classes"),
        bad("huge int", lambda k: _Conditional(classes=10**6), lk.ConfigError, "classes"),
    ),
    "latentkit.config.drop_rate": (
        bad("one", lambda k: _Conditional(guidance_drop=1.0), lk.ConfigError, "guidance_drop"),
        bad("NaN", lambda k: _Conditional(guidance_drop=NAN), lk.ConfigError, "guidance_drop"),
        bad("string", lambda k: _Conditional(guidance_drop="0"), lk.ConfigError, "guidance_drop"),
    ),
    "latentkit.sampling.class_grid": (
        bad("wrong type", lambda k: class_grid("m", 2), lk.InputError),
        bad("zero count", lambda k: class_grid(_cvae(), 0), lk.InputError, "per_class"),
    ),
}
