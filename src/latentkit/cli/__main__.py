"""``python -m latentkit.cli`` (as ``torchrun ... -m latentkit.cli train ...`` runs it)."""

import sys

from latentkit.cli import main

sys.exit(main())
