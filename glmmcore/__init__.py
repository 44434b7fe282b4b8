"""glmmcore: linear and generalized linear mixed models, compiled with Numba.

The main entry point is :func:`fit`::

    import glmmcore
    result = glmmcore.fit("y ~ x + (1 + x | g)", data)
    print(result.summary())

A model built once is fitted to many responses by :class:`MixedModel`::

    model = glmmcore.MixedModel("y ~ x + (1 + x | g)", data)
    results = [model.fit(y) for y in responses]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _numba_cache  # noqa: F401  (first: before any cache=True function)
from ._lazy import lazy_exports
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

if TYPE_CHECKING:
    from . import plot
    from .api import fit, refit
    from .batch import BatchResult, fit_many
    from .design.model import MixedModel
    from .fitting.control import FitControl
    from .fitting.warmup import warmup
    from .inference import anova, bootstrap
    from .registry import available_families, family_info, get_family
    from .results.result import MixedModelResult
    from .simulation import Simulation, designs, simulate

__version__ = "0.1.0"

# the public names defined in submodules, imported on first use (glmmcore._lazy)
_LAZY = {
    "fit": "api", "refit": "api",
    "BatchResult": "batch", "fit_many": "batch",
    "MixedModel": "design.model",
    "FitControl": "fitting.control",
    "warmup": "fitting.warmup",
    "anova": "inference", "bootstrap": "inference",
    "available_families": "registry", "family_info": "registry", "get_family": "registry",
    "MixedModelResult": "results.result",
    "Simulation": "simulation", "designs": "simulation", "simulate": "simulation",
}
_LAZY_MODULES = ("plot",)

__all__ = [
    "ArgumentError", "BatchResult", "CheckpointError", "ConvergenceError", "ConvergenceWarning",
    "DataError", "FamilyError", "FamilyPluginWarning", "FitControl", "FormulaError",
    "GlmmError", "GlmmWarning", "IdentifiabilityWarning", "IgnoredArgumentWarning",
    "MissingColumnError", "MissingValueWarning", "MixedModel", "MixedModelResult",
    "ModelSpecError", "RankDeficiencyWarning", "ResponseError", "Simulation",
    "SingularFitWarning", "__version__", "anova", "available_families", "bootstrap", "designs",
    "family_info", "fit", "fit_many", "get_family", "plot", "refit", "simulate", "warmup",
]


__getattr__, __dir__ = lazy_exports(globals(), _LAZY, _LAZY_MODULES)
