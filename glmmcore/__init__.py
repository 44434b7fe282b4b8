"""glmmcore: linear and generalized linear mixed models, compiled with Numba.

The main entry point is :func:`fit`::

    import glmmcore
    result = glmmcore.fit("y ~ x + (1 + x | g)", data)
    print(result.summary())

A model built once is fitted to many responses by :class:`MixedModel`::

    model = glmmcore.MixedModel("y ~ x + (1 + x | g)", data)
    results = [model.fit(y) for y in responses]
"""

from . import (
    _numba_cache,  # noqa: F401  (first: before any cache=True function)
    plot,
)
from .api import fit, refit
from .batch import BatchResult, fit_many
from .design.model import MixedModel
from .errors import (
    ArgumentError,
    CheckpointError,
    ConvergenceError,
    ConvergenceWarning,
    DataError,
    FamilyError,
    FamilyPluginWarning,
    FormulaError,
    GlmmError,
    GlmmWarning,
    IdentifiabilityWarning,
    IgnoredArgumentWarning,
    MissingColumnError,
    MissingValueWarning,
    ModelSpecError,
    RankDeficiencyWarning,
    ResponseError,
    SingularFitWarning,
)
from .fitting.control import FitControl
from .fitting.warmup import warmup
from .inference import anova, bootstrap
from .registry import available_families, family_info, get_family
from .results.result import MixedModelResult
from .simulation import Simulation, designs, simulate

__version__ = "0.1.0"

__all__ = [
    "ArgumentError", "BatchResult", "CheckpointError", "ConvergenceError", "ConvergenceWarning",
    "DataError", "FamilyError", "FamilyPluginWarning", "FitControl", "FormulaError",
    "GlmmError", "GlmmWarning", "IdentifiabilityWarning", "IgnoredArgumentWarning",
    "MissingColumnError", "MissingValueWarning", "MixedModel", "MixedModelResult",
    "ModelSpecError", "RankDeficiencyWarning", "ResponseError", "Simulation",
    "SingularFitWarning", "__version__", "anova", "available_families", "bootstrap", "designs",
    "family_info", "fit", "fit_many", "get_family", "plot", "refit", "simulate", "warmup",
]
