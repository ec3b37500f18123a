"""Deprecated: the old home of the learning-rate schedules and the weight average.

Whatever its name said, this module held no noise schedule: the learning-rate schedules
are :mod:`latentkit.training.lr_schedules` now, and the exponential moving average of the
weights :mod:`latentkit.training.averaging`. Its old names stay importable from here.
"""

from __future__ import annotations

# The old names (latentkit.schedules.EMA, .LR_KINDS, .LRSchedule, .apply_lr, .lr_factor).
from latentkit.training.averaging import EMA as EMA
from latentkit.training.lr_schedules import LR_KINDS as LR_KINDS
from latentkit.training.lr_schedules import LRSchedule as LRSchedule
from latentkit.training.lr_schedules import apply_lr as apply_lr
from latentkit.training.lr_schedules import lr_factor as lr_factor

__all__: list[str] = []
