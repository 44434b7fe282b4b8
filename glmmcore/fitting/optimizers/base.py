"""What every optimizer returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class OptimResult:
    """Outcome of one optimizer run."""

    x: np.ndarray
    fun: float
    nevals: int
    message: str
    at_limit: bool = False      # stopped by its evaluation limit, not its tolerance


@dataclass(frozen=True)
class Optimizer:
    """A bounded minimizer as the fitting strategies call it.

    ``minimize(objective, x0, lower, *, rel_tol, x_tol, maxeval, initial_step)``
    returns an :class:`OptimResult`; ``objective(x)`` returns the value, or
    ``(value, gradient)`` when ``uses_gradient``.  An optimizer may ignore
    ``x_tol`` and ``initial_step`` (a gradient method has no use for them).
    """

    name: str
    minimize: Callable[..., OptimResult]
    uses_gradient: bool
    label: str = ""             # how the fit's messages name it (default: name)

    def describe(self, opt: OptimResult) -> str:
        """``'<label>: <message> after <n> evaluations'`` for the fit's messages."""
        return f"{self.label or self.name}: {opt.message} after {opt.nevals} evaluations"
