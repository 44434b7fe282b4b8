"""Inference after the fit: likelihood-ratio tests, confidence intervals, likelihood
profiles, the parametric bootstrap and denominator degrees of freedom."""

from .anova import anova
from .bootstrap import bootstrap

__all__ = ["anova", "bootstrap"]
