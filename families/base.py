"""What a family is: links, kernels, response handling and extra parameters.

A family plugin subclasses :class:`Family` and names its kernels.  Kernels
are plain module-level ``numba.njit`` functions of scalars, so that the
compiled core can inline them into its loops (see :mod:`glmmcore.objectives.family_kernels`
and ``docs/family-plugins.md`` for the whole contract):

- link: ``linkfun(mu) -> eta``, ``linkinv(eta) -> mu``, ``mu_eta(eta, mu) ->
  dmu/deta`` (given ``mu = linkinv(eta)``), optionally ``mu_eta2(eta, mu)``;
- ``variance(mu, phi)``: the inverse Fisher information of ``mu`` per unit
  weight, which sets the PIRLS weights ``wt mu_eta^2 / variance`` (it is
  ``Var(y)`` for exponential-dispersion families);
- ``dev_resid(y, mu, wt, phi)``: ``-2 log p(y)`` up to a term free of ``mu``;
- ``logpdf(y, mu, wt, phi)``: the complete log-density times the weight;
- optional ``cumulant(eta)``: ``b(eta)`` of the canonical link, for a family
  without an extra parameter, where ``logpdf = wt (y eta - b(eta)) + c(y, wt)``
  (adaptive quadrature then evaluates one kernel per node and observation
  instead of ``linkinv`` and ``dev_resid``, and PIRLS's update takes its
  deviance from it);
- optional ``dlogpdf_dmu`` (the score: PIRLS then uses it for the working
  residual, needed when ``d log p / d mu`` is not ``wt (y - mu) / variance``)
  and ``d2logpdf_dmu2`` (with ``laplace = "observed"``: the exact Laplace
  approximation).

``phi`` is the family's extra parameter (dispersion, shape, size, precision)
or 1 for families without one; ``wt`` is the prior weight (the number of
trials for binomial proportions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from glmmcore.errors import FamilyError, ResponseError, show


@dataclass(frozen=True)
class Link:
    """A link function: scalar ``njit`` kernels and a name.

    ``mu_eta2(eta, mu)``, the second derivative of the inverse link, is
    optional; families that use the observed information need it.
    """

    name: str
    linkfun: Any
    linkinv: Any
    mu_eta: Any
    mu_eta2: Any = None

    def __repr__(self) -> str:
        return f"Link({self.name!r})"


@dataclass(frozen=True)
class ExtraParameter:
    """A parameter a family estimates with the model (dispersion, shape, ...).

    Attributes
    ----------
    name
        Its name (``"dispersion"``, ``"theta"``, ``"precision"``).  A
        ``"dispersion"`` is a residual scale: it appears as the ``Residual``
        row of ``varcorr`` and as ``sigma = sqrt(phi)``.  The parameter is
        positive and optimized on the log scale.
    """

    name: str


class Family:
    """Base class of a distribution family (and of family plugins).

    Subclasses set the class attributes and the kernels; an instance binds a
    link.  See the module docstring for the kernel contract.

    Parameters
    ----------
    link
        Name of the link; the family's default when None.
    """

    name: ClassVar[str] = ""
    links: ClassVar[dict[str, Link]] = {}
    default_link: ClassVar[str] = ""
    extra: ClassVar[ExtraParameter | None] = None
    variance: ClassVar[Any] = None
    dev_resid: ClassVar[Any] = None
    logpdf: ClassVar[Any] = None
    # b(eta) with the canonical link: logpdf = wt (y eta - b(eta)) + c(y, wt) (no extra
    # parameter); used only with canonical_link
    cumulant: ClassVar[Any] = None
    # "expected": log|L|^2 of the Laplace approximation at the PIRLS (Fisher) weights, as
    # lme4; "observed": at -d2 log p / d eta2 (the exact Laplace approximation, as
    # glmmTMB), which needs the two kernels below and the link's mu_eta2
    laplace: ClassVar[str] = "expected"
    dlogpdf_dmu: ClassVar[Any] = None
    d2logpdf_dmu2: ClassVar[Any] = None
    # with another link and the two kernels above, PIRLS takes Newton steps (observed
    # information), which converge quadratically where Fisher scoring converges linearly
    canonical_link: ClassVar[str | None] = None
    # PIRLS's working residual from dlogpdf_dmu (None: whenever it is given); False for an
    # exponential-dispersion family, whose (y - mu) / mu_eta is the same and cheaper
    score_residual: ClassVar[bool | None] = None
    # for the flags on a fit: the range of the mean ((0, 1) for proportions), and whether
    # a level whose responses are all 0 is worth reporting (counts, proportions)
    mean_bounds: ClassVar[tuple[float, float] | None] = None
    zero_responses_matter: ClassVar[bool] = False
    # how that flag words "all responses 0" for this family ("no successes (all responses 0)")
    zero_responses_label: ClassVar[str] = "only zero responses"
    # the extra parameter's value when it is held fixed, not estimated (an instance's, e.g.
    # NegativeBinomial(theta=1)); None: estimated (or no extra parameter)
    fixed_phi: float | None = None

    def __init__(self, link: str | Link | None = None) -> None:
        if isinstance(link, Link):
            self.link = link
        else:
            name = link or self.default_link
            if name not in self.links:
                raise FamilyError(f"family '{self.name}' does not support link '{name}'; "
                                  f"supported: {', '.join(self.links)}")
            self.link = self.links[name]

    def __repr__(self) -> str:
        fixed = "" if self.fixed_phi is None else f", {self.extra.name}={self.fixed_phi!r}"
        return f"{type(self).__name__}(link={self.link.name!r}{fixed})"

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and other.link.name == self.link.name  # type: ignore
                and other.fixed_phi == self.fixed_phi)                        # type: ignore

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.link.name, self.fixed_phi))

    @property
    def estimates_phi(self) -> bool:
        """Whether the fit estimates an extra parameter (it has one and it is not fixed)."""
        return self.extra is not None and self.fixed_phi is None

    def with_link(self, link: str | Link) -> Family:
        """The same family (a fixed parameter included) with another link."""
        out = type(self)(link)
        out.fixed_phi = self.fixed_phi
        return out

    @property
    def is_gaussian_identity(self) -> bool:
        """A linear mixed model: fitted by penalized least squares."""
        return False

    # -- the response ---------------------------------------------------
    def prepare_response(self, values: list[pd.Series], weights: np.ndarray, name: str,
                         labels: pd.Index) -> tuple[np.ndarray, np.ndarray, dict]:
        """Check and convert the raw response.

        Parameters
        ----------
        values
            The evaluated response expressions (two for ``cbind``).
        weights
            Prior weights.
        name
            Label of the response, for messages.
        labels
            Row labels of the data as given, for messages.

        Returns
        -------
        y, weights, info
        """
        if len(values) != 1:
            raise ResponseError(f"family '{self.name}' takes a single response column, "
                                f"not {name}")
        y = _as_float(values[0], name, self.name)
        self.check_support(y, name, labels)
        return y, weights, {}

    def check_support(self, y: np.ndarray, name: str, labels: pd.Index) -> None:
        """Raise :class:`ResponseError` naming the first value outside the support."""
        bad = np.flatnonzero(~self.in_support(y))
        if bad.size:
            i = bad[0]
            raise ResponseError(f"response '{name}' has a value outside the support of the "
                                f"{self.name} family: {show(y[i])} in row {show(labels[i])} "
                                f"({bad.size} such rows)")

    def in_support(self, y: np.ndarray) -> np.ndarray:
        """Mask of response values the family accepts."""
        return np.isfinite(y)

    def start_mu(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Starting mean (R's ``family$initialize``)."""
        return y.copy()

    def start_phi(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> float:
        """Starting value of the extra parameter (ignored without one)."""
        return 1.0

    def response_variance(self, mu: np.ndarray, phi: float = 1.0) -> np.ndarray:
        """``Var(y)`` per unit weight at the means (for Pearson residuals).

        The variance kernel, unless a family whose kernel is an inverse Fisher
        information (not ``Var(y)``) overrides this.
        """
        return self.variance_array(mu, phi)

    def display_params(self, phi: float) -> dict[str, float]:
        """The extra parameter as results show it (e.g. a shape from a dispersion)."""
        return {self.extra.name: phi} if self.extra is not None else {}

    def simulate(self, mu: np.ndarray, weights: np.ndarray, phi: float,
                 rng: np.random.Generator) -> np.ndarray:
        """Random draws of the response given means (for simulation)."""
        raise NotImplementedError(f"family '{self.name}' does not simulate")

    # -- array versions of the kernels (compiled, see glmmcore.objectives.family_kernels) ---
    def linkinv_array(self, eta: np.ndarray) -> np.ndarray:
        """Inverse link of an array."""
        from glmmcore.objectives import family_kernels as kernels
        return kernels.linkinv(self, eta)

    def linkfun_array(self, mu: np.ndarray) -> np.ndarray:
        """Link of an array."""
        from glmmcore.objectives import family_kernels as kernels
        return kernels.linkfun(self, mu)

    def variance_array(self, mu: np.ndarray, phi: float = 1.0) -> np.ndarray:
        """Variance of each observation per unit weight (dispersion included)."""
        from glmmcore.objectives import family_kernels as kernels
        return kernels.variance(self, mu, phi)

    def dev_resid_array(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray,
                        phi: float = 1.0) -> np.ndarray:
        """Squared deviance residuals."""
        from glmmcore.objectives import family_kernels as kernels
        return kernels.dev_resid(self, y, mu, weights, phi)

    def logpdf_array(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray,
                     phi: float = 1.0) -> np.ndarray:
        """Complete log-density of each observation."""
        from glmmcore.objectives import family_kernels as kernels
        return kernels.logpdf(self, y, mu, weights, phi)


def _as_float(series: pd.Series, name: str, family: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=float)
    if not pd.api.types.is_numeric_dtype(series):
        message = (f"response '{name}' must be numeric for the {family} family; it has dtype "
                   f"{series.dtype} (e.g. {show(series.iloc[0])})")
        if isinstance(series.dtype, pd.CategoricalDtype):   # the binomial family's order
            levels = list(series.cat.remove_unused_categories().cat.categories)
        else:
            levels = sorted(series.dropna().unique(), key=str)
        if len(levels) == 2 and family != "binomial":
            raise ResponseError(f"{message}. It has two values ({show(levels[0])}, "
                                f"{show(levels[1])}): a two-level response is binomial; fit it "
                                f"with family='binomial' ({show(levels[1])} counts as success)",
                                suggested_family="binomial")
        raise ResponseError(message)
    return series.to_numpy(dtype=float)
