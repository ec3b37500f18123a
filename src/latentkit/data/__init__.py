"""Data sets for latentkit, from files that installed packages ship (nothing downloads by
default), and the user's own arrays and images.

>>> from latentkit.data import load_dataset
>>> ds = load_dataset("digits", variant="binarized", seed=0)
>>> ds.train.shape, ds.test.shape, ds.kind
(torch.Size([1500, 1, 8, 8]), torch.Size([297, 1, 8, 8]), 'binary')

See docs/data.md for the sources, the variants and how to bring your own data, and
latentkit.data.protocol for dynamic binarization and the validation split.
"""

from latentkit.data.core import (
    KINDS,
    LIKELIHOOD_FOR_KIND,
    VARIANTS,
    Dataset,
    binarize,
    to_display,
    to_symmetric,
    to_unit_interval,
)
from latentkit.data.files import SPLIT_SEED
from latentkit.data.protocol import (
    VALIDATION_SIZE,
    DynamicBinarizer,
    keep_labels,
    split_validation,
    step_seed,
)
from latentkit.data.sources import (
    SourceStatus,
    dataset_sources,
    list_datasets,
    load_dataset,
    resolve_mnist,
)
from latentkit.errors import DataSourceError

__all__ = [
    "KINDS",
    "LIKELIHOOD_FOR_KIND",
    "SPLIT_SEED",
    "VALIDATION_SIZE",
    "VARIANTS",
    "DataSourceError",
    "Dataset",
    "DynamicBinarizer",
    "SourceStatus",
    "binarize",
    "dataset_sources",
    "keep_labels",
    "list_datasets",
    "load_dataset",
    "resolve_mnist",
    "split_validation",
    "step_seed",
    "to_display",
    "to_symmetric",
    "to_unit_interval",
]
