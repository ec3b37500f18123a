"""latentkit: latent-variable generative models as two chains under one ELBO engine.

A VAE, a β-VAE, a hierarchical VAE and a DDPM are each a generative chain p and a
posterior chain q over latents z_1..z_L; :func:`elbo` evaluates any of them. Models are
plugins found through the entry-point group ``latentkit.plugins``.

>>> import latentkit as lk
>>> model = lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear")
>>> x = lk.sample(model, 3)
>>> bool((lk.exact_log_prob(model, x) >= lk.elbo(model, x).total).all())
True
"""

from latentkit import distributions as distributions
from latentkit.bounds import ElboResult, bits_per_dim, elbo, iwae
from latentkit.chains import (
    GenerativeChain,
    LatentModel,
    LinearGaussianSpec,
    ObjectiveChoice,
    PosteriorChain,
    SharedModule,
    SingleLayerPosterior,
)
from latentkit.compare import Comparison, ProtocolMismatchError, RunFolderError, compare_runs
from latentkit.composition import compose
from latentkit.conditions import MISSING_LABEL, ConditionSpec
from latentkit.config import structure_config, unstructure_config
from latentkit.data import load_dataset
from latentkit.diagnostics import Diagnostics, diagnose
from latentkit.errors import (
    CheckpointError,
    ConfigError,
    DataSourceError,
    DeviceError,
    DTypeError,
    EstimatorError,
    InputError,
    LatentkitError,
    NonFiniteError,
    NonFiniteTrainingError,
    NotTractableError,
    PluginError,
    ShapeError,
    SupportError,
    TrainingError,
    UnknownModelError,
)
from latentkit.estimators import Draw, Estimator, list_estimators
from latentkit.evaluation import EvalReport, evaluate, paired_difference
from latentkit.hookspecs import hookimpl
from latentkit.likelihoods import make_likelihood
from latentkit.marginals import class_log_probs, marginal_log_prob
from latentkit.objectives import FunctionObjective, Objective, ObjectiveSpec
from latentkit.ode import ode_log_prob as ode_log_prob
from latentkit.oracles import exact_log_prob, exact_posterior
from latentkit.registry import (
    ModelSpec,
    PluginFault,
    get_model_spec,
    get_objective_spec,
    list_models,
    list_objectives,
    load_model,
    make_objective,
    model_specs,
    objective_specs,
    plugin_faults,
    register_plugin,
    reload_plugins,
    training_loss,
    training_objective,
    unregister_plugin,
)
from latentkit.sampling import sample
from latentkit.trained import load_trained_model
from latentkit.training import TrainConfig, Trainer

default_objective = training_objective  # the old name of training_objective (deprecated)

__version__ = "0.1.0"

__all__ = [
    "MISSING_LABEL",
    "CheckpointError",
    "Comparison",
    "ConditionSpec",
    "ConfigError",
    "DTypeError",
    "DataSourceError",
    "DeviceError",
    "Diagnostics",
    "Draw",
    "ElboResult",
    "Estimator",
    "EstimatorError",
    "EvalReport",
    "FunctionObjective",
    "GenerativeChain",
    "InputError",
    "LatentModel",
    "LatentkitError",
    "LinearGaussianSpec",
    "ModelSpec",
    "NonFiniteError",
    "NonFiniteTrainingError",
    "NotTractableError",
    "Objective",
    "ObjectiveChoice",
    "ObjectiveSpec",
    "PluginError",
    "PluginFault",
    "PosteriorChain",
    "ProtocolMismatchError",
    "RunFolderError",
    "ShapeError",
    "SharedModule",
    "SingleLayerPosterior",
    "SupportError",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "UnknownModelError",
    "bits_per_dim",
    "class_log_probs",
    "compare_runs",
    "compose",
    "diagnose",
    "distributions",
    "elbo",
    "evaluate",
    "exact_log_prob",
    "exact_posterior",
    "get_model_spec",
    "get_objective_spec",
    "hookimpl",
    "iwae",
    "list_estimators",
    "list_models",
    "list_objectives",
    "load_dataset",
    "load_model",
    "load_trained_model",
    "make_likelihood",
    "make_objective",
    "marginal_log_prob",
    "model_specs",
    "objective_specs",
    "ode_log_prob",
    "paired_difference",
    "plugin_faults",
    "register_plugin",
    "reload_plugins",
    "sample",
    "structure_config",
    "training_loss",
    "training_objective",
    "unregister_plugin",
    "unstructure_config",
]
