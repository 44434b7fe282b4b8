"""Family registry: discovery of families through the ``glmmcore.families`` entry points.

Built-in families are registered by glmmcore's own ``pyproject.toml`` in the
same entry-point group a third-party plugin uses.  Discovery is lazy (on the
first lookup of a name that is not built in, or of the list) and cached per
registry: glmmcore's own families win every name they take, so a built-in name
is imported directly, without scanning the installed distributions.  A plugin
that fails to import or does not meet the interface is skipped with a
:class:`FamilyPluginWarning` naming it and the reason; every other family keeps
working.  When two entry points share a name, glmmcore's own wins, then the
one whose distribution name sorts first; the others are reported in a warning.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from .errors import FamilyError, FamilyPluginWarning, warn

GROUP = "glmmcore.families"
OWN_DISTRIBUTION = "glmmcore"
# glmmcore's own entry points (pyproject.toml's table, which a test keeps equal to this)
BUILTIN_FAMILIES = {
    "gaussian": "glmmcore.families.gaussian:Gaussian",
    "binomial": "glmmcore.families.binomial:Binomial",
    "poisson": "glmmcore.families.poisson:Poisson",
    "gamma": "glmmcore.families.gamma:Gamma",
    "negative_binomial": "glmmcore.families.negative_binomial:NegativeBinomial",
}


@dataclass(frozen=True)
class FamilyEntry:
    """A discovered family class and where it came from."""

    name: str
    cls: type
    source: str
    package: str = ""        # the distribution that declares the entry point
    version: str = ""        # its installed version
    entry_point: str = ""    # "name = module:attribute" in the glmmcore.families group


class FamilyRegistry:
    """Families found through entry points, discovered once on first use."""

    def __init__(self, group: str = GROUP) -> None:
        self.group = group
        self._lock = threading.Lock()
        self._entries: dict[str, FamilyEntry] | None = None

    def entries(self) -> dict[str, FamilyEntry]:
        """All valid families by name (discovering them on first call)."""
        with self._lock:
            if self._entries is None:
                self._entries = _discover(self.group)
            return self._entries

    def refresh(self) -> None:
        """Forget the discovered families (after installing a plugin)."""
        with self._lock:
            self._entries = None

    def names(self) -> list[str]:
        """Sorted names of the available families."""
        return sorted(self.entries())

    def get(self, family: Any, link: Any = None, **params: Any) -> Any:
        """A family instance from a name, a class or an instance.

        ``params`` go to the family's constructor (``theta=1`` for a negative
        binomial with a fixed size).

        Raises
        ------
        FamilyError
            Unknown name (listing the available ones), unsupported link, or an
            object that is not a family.
        """
        from glmmcore.families.base import Family
        if isinstance(family, Family):
            if params:
                raise FamilyError(f"parameters {', '.join(params)} go with a family name or "
                                  "class, not an instance")
            if link is not None and link != family.link.name:
                return family.with_link(link)
            return family
        if isinstance(family, type) and issubclass(family, Family):
            problem = interface_problem(family)
            if problem:
                raise FamilyError(f"family class {family.__name__} {problem}")
            return _construct(family, link, params)
        if not isinstance(family, str):
            raise FamilyError(f"family must be a name, a Family subclass or instance, "
                              f"not {type(family).__name__}")
        key = family.lower()
        if self.group == GROUP and key in BUILTIN_FAMILIES:
            return _construct(_builtin_class(key), link, params)
        found = self.entries().get(key)
        if found is None:
            raise FamilyError(f"unknown family '{family}'; available: {', '.join(self.names())}")
        return _construct(found.cls, link, params)


def _builtin_class(name: str) -> type:
    """A built-in family's class, imported without the entry-point scan (its name wins
    over any plugin's)."""
    module, attribute = BUILTIN_FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def _construct(cls: type, link: Any, params: dict[str, Any]) -> Any:
    """``cls(link, **params)``; a parameter the family does not take is a FamilyError."""
    if not params:
        return cls(link)
    try:
        return cls(link, **params)
    except TypeError as exc:
        raise FamilyError(f"family '{cls.name}' does not take the parameters "
                          f"{', '.join(params)} ({exc})") from None


def interface_problem(cls: type) -> str | None:
    """Why ``cls`` does not meet the family interface, or None if it does."""
    from glmmcore.families.base import Family, Link
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        return "is not a subclass of glmmcore.families.Family"
    if not cls.name:
        return "has no name"
    if not cls.links or not all(isinstance(v, Link) for v in cls.links.values()):
        return "has no links (a dict of Link objects)"
    if cls.default_link not in cls.links:
        return f"has default link '{cls.default_link}' that is not among its links"
    for kernel in ("variance", "dev_resid", "logpdf"):
        if not hasattr(getattr(cls, kernel, None), "py_func"):
            return f"has no numba.njit kernel '{kernel}'"
    for link in cls.links.values():
        for kernel in ("linkfun", "linkinv", "mu_eta"):
            if not hasattr(getattr(link, kernel, None), "py_func"):
                return f"has link '{link.name}' without a numba.njit kernel '{kernel}'"
    laplace = getattr(cls, "laplace", "expected")
    if laplace not in ("expected", "observed"):
        return f"has laplace = {laplace!r}; it must be 'expected' or 'observed'"
    if laplace == "observed":
        for kernel in ("dlogpdf_dmu", "d2logpdf_dmu2"):
            if not hasattr(getattr(cls, kernel, None), "py_func"):
                return f"uses the observed information but has no numba.njit kernel '{kernel}'"
        for link in cls.links.values():
            if not hasattr(getattr(link, "mu_eta2", None), "py_func"):
                return (f"uses the observed information but its link '{link.name}' has no "
                        "numba.njit kernel 'mu_eta2'")
    return None


def _discover(group: str) -> dict[str, FamilyEntry]:
    candidates: dict[str, list[tuple[int, str, Any]]] = {}
    for ep in entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else ""
        rank = 0 if dist == OWN_DISTRIBUTION else 1
        candidates.setdefault(ep.name.lower(), []).append((rank, f"{dist}:{ep.value}", ep))
    # (the ranks and sources above order the candidates; FamilyEntry keeps the details)
    entries: dict[str, FamilyEntry] = {}
    for name in sorted(candidates):
        for _, source, ep in sorted(candidates[name], key=lambda c: (c[0], c[1])):
            try:
                cls = ep.load()
            except Exception as exc:  # noqa: BLE001 - any plugin failure is reported, not fatal
                warn(f"family plugin '{name}' ({source}) failed to import and is "
                     f"skipped: {type(exc).__name__}: {exc}", FamilyPluginWarning)
                continue
            problem = interface_problem(cls)
            if problem:
                warn(f"family plugin '{name}' ({source}) {problem} and is skipped",
                     FamilyPluginWarning)
                continue
            if name in entries:
                warn(f"two families are named '{name}': using {entries[name].source}, "
                     f"ignoring {source}", FamilyPluginWarning)
                continue
            entries[name] = FamilyEntry(
                name, cls, source, package=ep.dist.name if ep.dist is not None else "",
                version=ep.dist.version if ep.dist is not None else "",
                entry_point=f"{ep.name} = {ep.value}")
    return entries


_REGISTRY = FamilyRegistry()


def available_families() -> list[str]:
    """Names of the families glmmcore can use (built-in and plugins)."""
    return _REGISTRY.names()


def family_info() -> list[dict[str, Any]]:
    """Where each available family comes from and what it offers, sorted by name.

    Returns
    -------
    list of dict
        Per family: ``name``; ``package`` and ``version`` (the installed
        distribution that declares it: ``glmmcore`` for the built-in ones);
        ``entry_point`` (``"name = module:Class"`` in the ``glmmcore.families``
        group); ``class`` (``module.Class``); ``links`` and ``default_link``;
        ``extra`` (the name of its extra parameter, or None); ``gradient``
        (the links whose Laplace deviance has the analytic gradient).

    Examples
    --------
    >>> [f["package"] for f in family_info() if f["name"] == "poisson"]
    ['glmmcore']
    """
    from .objectives.family_kernels import gradient_route
    out = []
    for name, entry in sorted(_REGISTRY.entries().items()):
        cls = entry.cls
        gradient = [link for link in cls.links if gradient_route(cls(link)) is not None]
        out.append({"name": name, "package": entry.package, "version": entry.version,
                    "entry_point": entry.entry_point,
                    "class": f"{cls.__module__}.{cls.__qualname__}",
                    "links": list(cls.links), "default_link": cls.default_link,
                    "extra": cls.extra.name if cls.extra is not None else None,
                    "gradient": gradient})
    return out


def get_family(family: Any = "gaussian", link: Any = None, **params: Any) -> Any:
    """A family instance from a name, class or instance, with an optional link and the
    family's own parameters.

    Examples
    --------
    >>> get_family("binomial", link="probit")
    Binomial(link='probit')
    >>> get_family("negative_binomial", theta=1)
    NegativeBinomial(link='log', theta=1.0)
    """
    return _REGISTRY.get(family, link, **params)


def refresh_families() -> None:
    """Discover the families again (e.g. after installing a plugin)."""
    _REGISTRY.refresh()
