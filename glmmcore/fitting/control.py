"""Settings of the fitting machinery: :class:`FitControl` (lme4's ``lmerControl``)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ..design.predictor import BACKENDS
from ..errors import ArgumentError
from ..spec.arguments import check_bool, check_choice, check_int, check_real, check_str
from .optimizers import OPTIMIZERS
from .start import check_start_rule


@dataclass(frozen=True)
class FitControl:
    """Settings of the fitting machinery (lme4's ``lmerControl``/``glmerControl``).

    Attributes
    ----------
    backend
        ``"auto"``, ``"blocked"`` or ``"sparse"`` factorization (see
        :mod:`glmmcore.design.predictor`).
    rel_tol, x_tol
        Optimizer tolerances on the objective (relative) and the parameters.
    maxeval
        Most objective evaluations per optimizer run.
    check_convergence
        Estimate gradient and Hessian at the optimum and check them.
    start
        Starting theta: ``"auto"`` takes lme4's start or a moment guess from
        the fit without random effects, whichever has the lower objective;
        ``"lme4"`` takes lme4's (see :mod:`glmmcore.fitting.start`).
    warn
        Emit a warning when a check fails (the diagnostics are on the
        result either way).
    optimizer
        ``"bobyqa"`` (lme4's), or ``"lbfgsb"``: L-BFGS-B with an analytic
        gradient: of an LMM's profiled deviance (:mod:`glmmcore.objectives.lmm_gradient`)
        or of a canonical-link GLMM's Laplace or ``nAGQ=0`` deviance
        (:mod:`glmmcore.objectives.laplace_gradient`); a ModelSpecError for other models.
        ``"auto"`` takes L-BFGS-B where it is the faster
        (:func:`glmmcore.objectives.lmm.uses_gradient`,
        :func:`glmmcore.objectives.glmm.uses_gradients`),
        BOBYQA otherwise.
    fast_path
        Let a model with one scalar random-effects term take the compiled
        whole fit (:mod:`glmmcore.fitting.scalar_fast`) where it applies; the
        same optimum, found without the interpreter.  False always takes the
        regular path.
    cold_start
        Where the compiled kernels a fit needs are not in numba's cache yet, fit on
        the sparse factorization while a background process compiles them
        (:mod:`glmmcore.fitting.cold_path`); False compiles in this process.  The
        batch engine turns it off (thousands of fits repay the compile at once).
    """

    backend: str = "auto"
    rel_tol: float = 1e-12
    x_tol: float = 1e-9
    maxeval: int = 100_000
    check_convergence: bool = True
    warn: bool = True
    start: str = "auto"
    optimizer: str = "auto"
    fast_path: bool = True
    cold_start: bool = True

    def __post_init__(self) -> None:
        # types and ranges first: a string tolerance or a float maxeval fails deep inside
        check_choice(self.backend, "control backend", BACKENDS)
        for name in ("rel_tol", "x_tol"):
            object.__setattr__(self, name, check_real(getattr(self, name), f"control {name}",
                                                      minimum=0.0))
        object.__setattr__(self, "maxeval", check_int(self.maxeval, "control maxeval",
                                                      minimum=1))
        for name in ("check_convergence", "warn", "fast_path", "cold_start"):
            check_bool(getattr(self, name), f"control {name}")
        check_str(self.start, "control start")
        check_start_rule(self.start)
        check_choice(self.optimizer, "control optimizer", ("auto", *OPTIMIZERS))

    @classmethod
    def from_any(cls, control: Any) -> FitControl:
        """A control from None, a FitControl or a dict of its fields."""
        if control is None:
            return cls()
        if isinstance(control, cls):
            return control
        if isinstance(control, dict):
            known = {f.name for f in fields(cls)}
            unknown = [str(k) for k in control if k not in known]
            if unknown:
                raise ArgumentError(f"unknown control setting(s) {', '.join(unknown)}; "
                                    f"known: {', '.join(sorted(known))}")
            return replace(cls(), **control)
        raise ArgumentError(f"control must be a FitControl or a dict, "
                            f"not {type(control).__name__}")
