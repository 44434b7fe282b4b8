"""The optimizers, by name.

Each optimizer is one module here with a ``minimize`` function of the signature
that :class:`~glmmcore.fitting.optimizers.base.Optimizer` describes, and one entry in
:data:`OPTIMIZERS`; ``FitControl(optimizer=name)`` then selects it for the main stage of
an LMM or GLMM fit (a gradient method where the objective has an analytic gradient).  The
fallbacks after failed checks stay BOBYQA, lme4's optimizer.
"""

from .base import Optimizer, OptimResult
from .bobyqa import bobyqa
from .lbfgsb import lbfgsb

OPTIMIZERS = {
    "bobyqa": Optimizer("bobyqa", bobyqa, uses_gradient=False),
    "lbfgsb": Optimizer("lbfgsb", lbfgsb, uses_gradient=True, label="L-BFGS-B"),
}

__all__ = ["OPTIMIZERS", "OptimResult", "Optimizer", "main_optimizer"]


def main_optimizer(choice: str, gradient: bool) -> Optimizer:
    """The optimizer of a fit's main stage: the one ``choice`` names, or for ``"auto"``
    L-BFGS-B where the strategy takes the analytic gradient and BOBYQA otherwise."""
    if choice == "auto":
        return OPTIMIZERS["lbfgsb" if gradient else "bobyqa"]
    return OPTIMIZERS[choice]
