"""The exceptions latentkit raises. Every message names what was expected and what was given."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DTypeError",
    "DataSourceError",
    "DeviceError",
    "EstimatorError",
    "InputError",
    "InputTypeError",
    "LatentkitError",
    "NonFiniteError",
    "NonFiniteTrainingError",
    "NotTractableError",
    "PluginError",
    "ShapeError",
    "SupportError",
    "TrainingError",
    "UnknownModelError",
]


class LatentkitError(Exception):
    """Base class of every error latentkit raises on purpose."""


class InputError(LatentkitError, ValueError):
    """A tensor handed to a public entry point is unusable (shape, dtype, device, values)."""


class ShapeError(InputError):
    """A tensor has the wrong rank or shape."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type (a string where a model goes, say)."""


class DTypeError(InputError, TypeError):
    """A tensor has the wrong dtype (e.g. uint8 images where floats are expected)."""


class DeviceError(InputError):
    """Tensors (or a tensor and the model) live on different devices."""


class NonFiniteError(InputError):
    """A tensor holds NaN or infinite values."""


class ConfigError(LatentkitError, ValueError):
    """A configuration value is out of range or unknown; the message names the field."""


class PluginError(LatentkitError):
    """A plugin failed to load or registered something malformed; names the distribution."""


class UnknownModelError(PluginError, LookupError):
    """No registered model has the requested name."""


class NotTractableError(LatentkitError):
    """An exact quantity (e.g. log p(x)) was asked of a model for which it is intractable."""


class EstimatorError(LatentkitError, ValueError):
    """The requested bound estimator is unknown or not supported by the model's posterior chain."""


class DataSourceError(InputError):
    """A data set cannot be had: an optional source is not installed (the message names the
    extra or package to install), a name is unknown, or a user's file is missing or unreadable."""


class SupportError(InputError):
    """Data lie outside the support of the model's likelihood p(x | z_1) (e.g. values other
    than 0 and 1 for a Bernoulli likelihood); the message counts them and shows the first."""


class CheckpointError(LatentkitError):
    """A checkpoint is missing, incomplete, corrupt, tampered with, or of an unknown format."""


class TrainingError(LatentkitError):
    """Training cannot go on; the message names the step."""


class NonFiniteTrainingError(TrainingError):
    """A training step gave a NaN or infinite loss or gradient; the message names the step and
    which (the loss, or the parameters whose gradient is not finite)."""
