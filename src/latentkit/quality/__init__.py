"""Sample quality beside likelihood: a shipped MNIST feature network, the Fréchet distance
between feature Gaussians (FLD), k-NN precision and recall, and the classifier score, with
the reference values that bracket them (docs/quality.md). Nothing is downloaded: the feature
network ships with the package, and a user's own is a module or a file on disk."""

from latentkit.quality.assess import (
    DrawnSamples,
    PreparedReference,
    ReferenceValues,
    SampleQuality,
    draw_samples,
    prepare_reference,
    reference_values,
    sample_quality,
    trivial_samples,
)
from latentkit.quality.features import (
    KINDS,
    SHIPPED_SHA256,
    FeatureNetwork,
    LeNet,
    load_feature_network,
    shipped_weights_path,
    to_unit_pixels,
)
from latentkit.quality.metrics import (
    ClassifierScore,
    FrechetEstimate,
    classifier_score,
    frechet_distance,
    frechet_estimate,
    gaussian_stats,
    knn_radii,
    precision_recall,
)
from latentkit.quality.pipeline import (
    check_readable,
    model_sample_quality,
    sample_quality_table,
    sampler_of,
)

__all__ = [
    "KINDS",
    "SHIPPED_SHA256",
    "ClassifierScore",
    "DrawnSamples",
    "FeatureNetwork",
    "FrechetEstimate",
    "LeNet",
    "PreparedReference",
    "ReferenceValues",
    "SampleQuality",
    "check_readable",
    "classifier_score",
    "draw_samples",
    "frechet_distance",
    "frechet_estimate",
    "gaussian_stats",
    "knn_radii",
    "load_feature_network",
    "model_sample_quality",
    "precision_recall",
    "prepare_reference",
    "reference_values",
    "sample_quality",
    "sample_quality_table",
    "sampler_of",
    "shipped_weights_path",
    "to_unit_pixels",
    "trivial_samples",
]
