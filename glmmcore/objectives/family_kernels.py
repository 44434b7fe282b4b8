"""Compiled array kernels of a family, made from its scalar ``njit`` kernels.

A family names six scalar kernels (see :mod:`glmmcore.families.base`).  For
each family and link, glmmcore generates a small Python module whose
``numba.cfunc`` array kernels loop over observations and call the scalar
kernels directly, so LLVM inlines them: a plugin family compiles to the same
machine code as a built-in one.  The module is written once to a cache
directory, named by a hash of the kernels' source code, so numba's on-disk
cache serves later processes and a changed plugin gets a new module.  The
compiled loops receive the kernels' addresses as plain integers and call them
through :func:`call_update` and friends, so the loops themselves are compiled
and cached once for every family.

Kernels defined where they cannot be imported from a file (``__main__``, a
notebook) are compiled in memory instead: same speed, no disk cache.

The generated modules live only in the process that made them, and the
addresses only mean something there.  So :class:`FamilyKernels` pickles as
its family (a class importable by name, or pickled by value by cloudpickle,
and a link): unpickling in another process (a spawned or forked worker, a
Dask worker on another machine with no shared disk) calls
:func:`family_kernels` there, which regenerates and compiles the module if
that process's kernel directory does not hold it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from . import kernel_templates as templates


@njit(cache=True, nogil=True, inline="always")
def run_sum(x, lo, hi):
    """``sum(x[lo:hi])`` in four running sums: one is a chain of dependent additions,
    four keep the adder busy (and a loop without a sum can vectorize)."""
    s0 = s1 = s2 = s3 = 0.0
    i = lo
    while i + 4 <= hi:
        s0 += x[i]
        s1 += x[i + 1]
        s2 += x[i + 2]
        s3 += x[i + 3]
        i += 4
    while i < hi:
        s0 += x[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


SCALAR_KERNELS = ("linkfun", "linkinv", "mu_eta", "variance", "dev_resid", "logpdf")
OBSERVED_KERNELS = ("mu_eta2", "dlogpdf_dmu", "d2logpdf_dmu2")
# optional kernels of the Laplace gradient with another than the canonical link, and with
# an extra parameter (docs/family-plugins.md)
GRADIENT_KERNELS = ("dvariance_dmu", "dlogpdf_dphi")
ARRAY_KERNELS = ("update", "logpdf_vec", "linkinv_vec", "linkfun_vec", "variance_vec",
                 "devres_vec", "loglik_eta_vec")


@dataclass(frozen=True)
class FamilyKernels:
    """Addresses of a family's compiled array kernels (and the module holding them)."""

    update: int
    logpdf_vec: int
    linkinv_vec: int
    linkfun_vec: int
    variance_vec: int
    devres_vec: int
    loglik_eta_vec: int         # (y, eta, wt, phi) -> log p(y | eta) up to a term free of
    #                             eta, per observation (returns 0, not the sum)
    module: ModuleType
    observed_weights: int = 0   # 0 unless the family uses the observed information
    laplace_observed: bool = False   # log|L|^2 at the observed information (else Fisher)
    newton: bool = False        # PIRLS steps with the observed information (see newton_steps)
    canonical: bool = True      # the link is the family's canonical one (PIRLS is convex)
    by_cumulant: bool = False   # update's deviance from the cumulant (pirls.deviance_offset)
    laplace_weights: int = 0    # the Laplace gradient's terms (0: the canonical route, or none)
    weight_slope: bool = False  # laplace_weights gives dW / d eta (else a central difference)
    dlogpdf_dphi_vec: int = 0   # d log p / d phi per observation (0: a central difference)
    update_newton: int = 0      # update and, at the same eta, H and dW / d eta (fused_update)
    newton_terms: int = 0       # update_newton without the deviance (returns 0)
    phi_weights: int = 0        # laplace_weights' s and W at two phi, differenced (extra)
    dvariance_vec: int = 0      # V'(mu) per observation: the canonical route's dW / d eta
    family: Any = None          # the family they were made for (what a pickle keeps)

    def __reduce__(self) -> tuple:
        # the addresses and the generated module belong to this process: another one
        # rebuilds the kernels from the family (pickle by the module's name would fail
        # there with "No module named 'glmmcore_kernels_...'")
        return family_kernels, (self.family,)


_lock = threading.Lock()


def _reset_lock_in_child() -> None:
    # a fork while another thread held the lock would leave the child's copy locked
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)

_loaded: dict[tuple[str, bool, bool], FamilyKernels] = {}
# _key by the family's and link's names and the kernel objects themselves: hashing the
# sources reads and tokenizes files, ~16 ms per fit (a quarter of a small GLMM's fit)
_keys: dict[tuple, str] = {}


def family_kernels(family: Any) -> FamilyKernels:
    """The compiled array kernels of a family instance (compiled on first use)."""
    cls = type(family)
    scalars = {
        "linkfun": family.link.linkfun, "linkinv": family.link.linkinv,
        "mu_eta": family.link.mu_eta, "variance": cls.variance,
        "dev_resid": cls.dev_resid, "logpdf": cls.logpdf,
    }
    if getattr(cls, "dlogpdf_dmu", None) is not None:
        scalars["dlogpdf_dmu"] = cls.dlogpdf_dmu
    if uses_cumulant(family):
        scalars["cumulant"] = cls.cumulant
    laplace_observed = observed_laplace(family)
    newton = newton_steps(family)
    if laplace_observed or newton:
        scalars.update({"mu_eta2": family.link.mu_eta2, "dlogpdf_dmu": cls.dlogpdf_dmu,
                        "d2logpdf_dmu2": cls.d2logpdf_dmu2})
    gradient = gradient_route(family)
    if gradient is not None:
        scalars.update(_gradient_scalars(family, gradient))
    identity = (family.name, family.link.name, getattr(cls, "score_residual", None),
                *scalars.items())
    with _lock:
        key = _keys.get(identity)
    if key is None:
        key = _key(family, scalars)
        with _lock:
            _keys[identity] = key
    flags = (key, laplace_observed, newton)   # same machine code, other use of it
    with _lock:
        if flags not in _loaded:
            module = _load_module(family, scalars, key)
            extra = {name: getattr(module, name).address
                     for name in ("observed_weights", "laplace_weights", "dlogpdf_dphi_vec",
                                  "update_newton", "newton_terms", "phi_weights",
                                  "dvariance_vec")
                     if hasattr(module, name)}
            _loaded[flags] = FamilyKernels(
                **{name: getattr(module, name).address for name in ARRAY_KERNELS},
                module=module, **extra, laplace_observed=laplace_observed, newton=newton,
                canonical=family.link.name == getattr(cls, "canonical_link", None),
                by_cumulant=_update_by_cumulant(family, scalars),
                weight_slope=_analytic_slope(family, scalars), family=family)
        return _loaded[flags]


def observed_laplace(family: Any) -> bool:
    """Whether the family's Laplace approximation is at the observed information
    (``laplace = "observed"``), not at Fisher's weights."""
    return getattr(type(family), "laplace", "expected") == "observed"


def gradient_route(family: Any) -> str | None:
    """How the Laplace gradient gets the information ``H = -d s / d eta`` that moves the
    mode, or None where it has no gradient (docs/family-plugins.md, "The gradient path").

    ``"canonical"``: the canonical link, Fisher's weights and no extra parameter, whose
    gradient needs only the update kernel (``H = W``); ``"same"``: ``H = W`` all the same
    (the canonical link with an extra parameter, or the observed information);
    ``"observed"``: from the score's kernels and the link's ``mu_eta2``;
    ``"variance"``: an exponential-dispersion family's ``H`` from ``dvariance_dmu``.
    """
    cls, link = type(family), family.link
    observed = observed_laplace(family)
    canonical = link.name == getattr(cls, "canonical_link", None)
    if canonical and not observed and cls.extra is None:
        return "canonical"
    if canonical or observed:
        return "same"
    has = {name: getattr(cls, name, None) is not None
           for name in ("dlogpdf_dmu", "d2logpdf_dmu2", "dvariance_dmu")}
    if getattr(link, "mu_eta2", None) is None:
        return None
    if has["dlogpdf_dmu"] and has["d2logpdf_dmu2"]:
        return "observed"
    if has["dvariance_dmu"] and not getattr(cls, "score_residual", None):
        return "variance"
    return None


def _gradient_scalars(family: Any, route: str) -> dict[str, Any]:
    """The kernels :data:`templates.GRADIENT_TEMPLATE` calls on a route (beyond the six)."""
    cls, link = type(family), family.link
    out = {}
    for name in ("dlogpdf_dmu", "d2logpdf_dmu2", *GRADIENT_KERNELS):
        if getattr(cls, name, None) is not None:
            out[name] = getattr(cls, name)
    if getattr(link, "mu_eta2", None) is not None:
        out["mu_eta2"] = link.mu_eta2
    if route == "canonical":
        # the weights' slope alone: dW / d eta = W V'(mu) when mu_eta = V
        return {"dvariance_dmu": out["dvariance_dmu"]} if "dvariance_dmu" in out else {}
    if cls.extra is None:
        out.pop("dlogpdf_dphi", None)
    return out


def fused_update(family: Any, scalars: dict[str, Any]) -> bool:
    """Whether the family gets the ``update_newton`` kernel: Newton's steps in PIRLS
    (:func:`newton_steps`) and either Fisher's weights in the Laplace approximation with
    their analytic slope, or the observed information there (``W = H``, whose slope the
    gradient takes by central differences), so that one pass over the observations gives
    PIRLS's iteration its update and the information (and the Laplace gradient its terms
    at the mode)."""
    if not newton_steps(family):
        return False
    if observed_laplace(family):
        return True
    return gradient_route(family) == "observed" and _analytic_slope(family, scalars)


def _analytic_slope(family: Any, scalars: dict[str, Any]) -> bool:
    """Whether laplace_weights gives dW / d eta: Fisher's weights, with V' and mu_eta2."""
    return ("dvariance_dmu" in scalars and "mu_eta2" in scalars
            and not observed_laplace(family))


def newton_steps(family: Any) -> bool:
    """Whether PIRLS takes Newton steps for this family and link.

    With the canonical link the observed and expected information agree and
    Fisher scoring is Newton's method already; with another link Fisher scoring
    converges only linearly (probit: 25 iterations where logit takes 3), so a
    family that gives the score and its derivative gets Newton steps.
    """
    cls = type(family)
    return (getattr(cls, "d2logpdf_dmu2", None) is not None
            and getattr(cls, "dlogpdf_dmu", None) is not None
            and getattr(family.link, "mu_eta2", None) is not None
            and family.link.name != getattr(cls, "canonical_link", None))


def uses_cumulant(family: Any) -> bool:
    """Whether ``log p(y | eta)`` comes from the family's cumulant (canonical link, no
    extra parameter) rather than from ``dev_resid`` at ``linkinv(eta)``."""
    cls = type(family)
    return (getattr(cls, "cumulant", None) is not None and cls.extra is None
            and family.link.name == getattr(cls, "canonical_link", None))


def _key(family: Any, scalars: dict[str, Any]) -> str:
    """Hash of everything the generated module's machine code depends on."""
    digest = hashlib.sha256((templates.ALL + inspect.getsource(run_sum.py_func)).encode())
    digest.update(f"{numba.__version__}|{family.name}|{family.link.name}|"
                  f"{getattr(type(family), 'score_residual', None)}".encode())
    seen: set = set()
    for name in scalars:
        func = scalars[name].py_func
        digest.update(f"{name}|{func.__module__}|{func.__qualname__}".encode())
        for text in _closure_sources(func, seen):
            digest.update(text.encode())
    return digest.hexdigest()[:20]


def _closure_sources(func: Any, seen: set) -> list[str]:
    """Source of a kernel, and of the jitted helpers and constants it uses, recursively.

    numba's cache checks only a function's own file; hashing the helpers too
    gives a changed helper (in a plugin, say) a new generated module.
    """
    if func in seen:
        return []
    seen.add(func)
    try:
        out = [inspect.getsource(func)]
    except (OSError, TypeError):
        out = [repr(func.__code__.co_code)]
    names, stack = set(), [func.__code__]
    while stack:                      # names used here and in nested code objects
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if inspect.iscode(c))
    for name in sorted(names):
        value = func.__globals__.get(name)
        if hasattr(value, "py_func"):
            out.extend(_closure_sources(value.py_func, seen))
        elif isinstance(value, (int, float, str, tuple)):
            out.append(f"{name}={value!r}")
    return out


def _importable(func: Any) -> bool:
    module = sys.modules.get(func.__module__)
    return (func.__module__ != "__main__" and "<" not in func.__qualname__
            and module is not None and getattr(module, "__file__", None) is not None
            and getattr(module, func.__qualname__, None) is not None)


def _by_score(family: Any, scalars: dict[str, Any]) -> bool:
    """Whether PIRLS's working residual comes from the family's score kernel."""
    # Fisher scoring needs w * r = d log p / d eta.  (y - mu) / mu_eta is that when
    # d log p / d mu = wt (y - mu) / variance (exponential-dispersion families); a family
    # with a score kernel (Beta, say) gets the score itself.
    by_score = getattr(type(family), "score_residual", None)
    return "dlogpdf_dmu" in scalars if by_score is None else bool(by_score)


def _update_by_cumulant(family: Any, scalars: dict[str, Any]) -> bool:
    return "cumulant" in scalars and not _by_score(family, scalars)


def _source(family: Any, scalars: dict[str, Any], imports: str, cache: bool) -> str:
    by_score = _by_score(family, scalars)
    residual = ("dlogpdf_dmu(y[i], m, wt[i], phi) * v / (wt[i] * me)"
                if by_score else "(y[i] - m) / me")
    by_cumulant = "cumulant" in scalars
    loglik_eta = templates.LOGLIK_BY_CUMULANT if by_cumulant else templates.LOGLIK_BY_DEVIANCE
    update_body = (templates.UPDATE_BY_CUMULANT if _update_by_cumulant(family, scalars)
                   else templates.UPDATE_BY_DEV_RESID.format(residual=residual))
    observed = observed_laplace(family)
    fused = "".join(templates.UPDATE_NEWTON_TEMPLATE.format(
        name=name, residual=residual.replace(templates.SCORE_CALL, "sc"),
        information=templates.OBSERVED_BY_SCORE,
        weight_slope="0.0" if observed else templates.FISHER_SLOPE, deviance=deviance,
        total=total, cache="{cache}")
        for name, deviance, total in (
            ("update_newton", templates.NEWTON_DEVIANCE, "run_sum(dev, 0, n)"),
            ("newton_terms", "", "0.0"))) if fused_update(family, scalars) else ""
    text = (templates.TEMPLATE + (templates.OBSERVED_TEMPLATE if "d2logpdf_dmu2" in scalars else "")
            + _gradient_source(family, scalars)
            + (templates.DPHI_TEMPLATE if "dlogpdf_dphi" in scalars else "")
            + (templates.DVARIANCE_TEMPLATE if gradient_route(family) == "canonical"
               and "dvariance_dmu" in scalars else "") + fused)
    return text.format(family=family.name, link=family.link.name, imports=imports,
                       cache=cache, loglik_eta=loglik_eta, update_body=update_body)


def _gradient_source(family: Any, scalars: dict[str, Any]) -> str:
    """The laplace_weights kernel for the family's gradient route, or nothing."""
    route = gradient_route(family)
    if route in (None, "canonical"):
        return ""
    observed = observed_laplace(family)
    score = ("dlogpdf_dmu(y[i], m, wt[i], phi) * me" if "dlogpdf_dmu" in scalars
             else "wt[i] * (y[i] - m) * me / v")
    weight = templates.OBSERVED if observed else templates.FISHER
    information = {"same": "w[i]", "observed": templates.OBSERVED,
                   "variance": templates.OBSERVED_BY_VARIANCE}[route]
    slope = templates.FISHER_SLOPE if _analytic_slope(family, scalars) else "0.0"
    score_value = ""
    if "dlogpdf_dmu" in scalars:    # the score once per observation (and phi)
        score_value = templates.SCORE_VALUE
        score, weight, information = (text.replace(templates.SCORE_CALL, "sc")
                                      for text in (score, weight, information))
    body = templates.GRADIENT_TEMPLATE.format(
        score=score, weight=weight, information=information, weight_slope=slope,
        score_value=score_value, cache="{cache}")
    if type(family).extra is not None:
        body += templates.PHI_WEIGHTS_TEMPLATE.format(
            score=score, weight=weight, score_value=score_value, cache="{cache}")
    return body


def _load_module(family: Any, scalars: dict[str, Any], key: str) -> ModuleType:
    funcs = {name: scalars[name].py_func for name in scalars}
    if all(_importable(f) for f in funcs.values()):
        imports = "\n".join(f"from {f.__module__} import {f.__qualname__} as {name}"
                            for name, f in funcs.items())
        source = _source(family, scalars, imports, cache=True)
        path = _write_source(f"glmmcore_kernels_{_safe(family.name)}_{key}.py", source)
        if path is not None:
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            # numba's cache finds a function's module by name when loading it
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
            return module
    module = ModuleType(f"glmmcore_kernels_{key}")
    module.__dict__.update(scalars)
    exec(compile(_source(family, scalars, "", cache=False), module.__name__, "exec"),
         module.__dict__)
    return module


def kernel_dir() -> Path | None:
    """Directory of the generated kernel modules (``GLMMCORE_KERNEL_DIR`` overrides)."""
    env = os.environ.get("GLMMCORE_KERNEL_DIR")
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    candidates = [Path(env)] if env else [base / "glmmcore" / "kernels",
                                          Path(tempfile.gettempdir()) / "glmmcore-kernels"]
    for directory in candidates:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(directory, os.W_OK):
            return directory
    return None


def _write_source(name: str, source: str) -> Path | None:
    directory = kernel_dir()
    if directory is None:
        return None
    path = directory / name
    if path.exists() and path.read_text() == source:
        return path
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(source)
    os.replace(tmp, path)  # atomic: concurrent processes see a whole file
    return path


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


# -- calling the array kernels from compiled code ----------------------------------------

def _pointer_call(restype: ir.Type, argtypes: list[ir.Type], pointer_args: list[int]):
    """Codegen: call the function at address args[0] with the remaining arguments,
    casting the integer arguments at ``pointer_args`` to ``double*``."""
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(restype, argtypes)
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        call_args = []
        for k, value in enumerate(args[1:]):
            if k in pointer_args:
                value = builder.inttoptr(value, ir.DoubleType().as_pointer())
            call_args.append(value)
        return builder.call(fn, call_args)
    return codegen


_D, _I, _PTR = ir.DoubleType(), ir.IntType(64), ir.DoubleType().as_pointer()


@intrinsic
def _call_update(typingctx, fn, n, eta, y, wt, phi, mu, w, r, dev):
    sig = types.float64(*([types.int64] * 5), types.float64, *([types.int64] * 4))
    return sig, _pointer_call(_D, [_I, _PTR, _PTR, _PTR, _D, _PTR, _PTR, _PTR, _PTR],
                              [1, 2, 3, 5, 6, 7, 8])


@intrinsic
def _call_yms(typingctx, fn, n, y, mu, wt, phi, out):
    sig = types.float64(*([types.int64] * 5), types.float64, types.int64)
    return sig, _pointer_call(_D, [_I, _PTR, _PTR, _PTR, _D, _PTR], [1, 2, 3, 5])


@intrinsic
def _call_map(typingctx, fn, n, a, b):
    sig = types.float64(types.int64, types.int64, types.int64, types.int64)
    return sig, _pointer_call(_D, [_I, _PTR, _PTR], [1, 2])


@intrinsic
def _call_var(typingctx, fn, n, mu, phi, out):
    sig = types.float64(types.int64, types.int64, types.int64, types.float64, types.int64)
    return sig, _pointer_call(_D, [_I, _PTR, _D, _PTR], [1, 3])


@njit(cache=True, nogil=True)
def call_update(fn, eta, y, wt, phi, mu, w, r, dev):
    """mu, working weights, working residuals and deviance residuals at eta; sum of the latter."""
    return _call_update(fn, eta.size, eta.ctypes.data, y.ctypes.data, wt.ctypes.data, phi,
                        mu.ctypes.data, w.ctypes.data, r.ctypes.data, dev.ctypes.data)


# the gradient's laplace_weights kernel has the update kernel's signature:
# (eta, y, wt, phi) -> s, W, H, dW / d eta
call_laplace_weights = call_update


@intrinsic
def _call_observed(typingctx, fn, n, eta, y, wt, phi, mu, w):
    sig = types.float64(*([types.int64] * 5), types.float64, types.int64, types.int64)
    return sig, _pointer_call(_D, [_I, _PTR, _PTR, _PTR, _D, _PTR, _PTR], [1, 2, 3, 5, 6])


@intrinsic
def _call_update_newton(typingctx, fn, n, eta, y, wt, phi, mu, w, r, dev, h, dw):
    sig = types.float64(*([types.int64] * 5), types.float64, *([types.int64] * 6))
    return sig, _pointer_call(_D, [_I, _PTR, _PTR, _PTR, _D, *([_PTR] * 6)],
                              [1, 2, 3, 5, 6, 7, 8, 9, 10])


@njit(cache=True, nogil=True)
def call_update_newton(fn, eta, y, wt, phi, mu, w, r, dev, h, dw):
    """:func:`call_update`, and the information ``H`` and ``dW / d eta`` at eta into h
    and dw (the ``update_newton`` kernel)."""
    return _call_update_newton(fn, eta.size, eta.ctypes.data, y.ctypes.data, wt.ctypes.data,
                               phi, mu.ctypes.data, w.ctypes.data, r.ctypes.data,
                               dev.ctypes.data, h.ctypes.data, dw.ctypes.data)


@intrinsic
def _call_phi_weights(typingctx, fn, n, eta, y, wt, up, down, ds, dw):
    sig = types.float64(*([types.int64] * 5), types.float64, types.float64, types.int64,
                        types.int64)
    return sig, _pointer_call(_D, [_I, _PTR, _PTR, _PTR, _D, _D, _PTR, _PTR], [1, 2, 3, 6, 7])


@njit(cache=True, nogil=True)
def call_phi_weights(fn, eta, y, wt, up, down, ds, dw):
    """laplace_weights' score and weights at ``phi = up`` less those at ``down`` into ds
    and dw (the ``phi_weights`` kernel)."""
    return _call_phi_weights(fn, eta.size, eta.ctypes.data, y.ctypes.data, wt.ctypes.data,
                             up, down, ds.ctypes.data, dw.ctypes.data)


@njit(cache=True, nogil=True)
def call_observed(fn, eta, y, wt, phi, mu, w):
    """Observed-information weights ``-d2 log p / d eta2`` at eta (with mu) into w."""
    return _call_observed(fn, eta.size, eta.ctypes.data, y.ctypes.data, wt.ctypes.data, phi,
                          mu.ctypes.data, w.ctypes.data)


@njit(cache=True, nogil=True)
def call_yms(fn, y, mu, wt, phi, out):
    """A ``(y, mu, wt, phi) -> out`` kernel (log-density, deviance residuals); returns the sum."""
    return _call_yms(fn, y.size, y.ctypes.data, mu.ctypes.data, wt.ctypes.data, phi,
                     out.ctypes.data)


@njit(cache=True, nogil=True)
def call_map(fn, a, b):
    """An elementwise ``a -> b`` kernel (inverse link, link)."""
    return _call_map(fn, a.size, a.ctypes.data, b.ctypes.data)


@njit(cache=True, nogil=True)
def call_var(fn, mu, phi, out):
    """The variance kernel ``(mu, phi) -> out``."""
    return _call_var(fn, mu.size, mu.ctypes.data, phi, out.ctypes.data)


def _c(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def linkinv(family: Any, eta: np.ndarray) -> np.ndarray:
    """Inverse link of an array."""
    eta = _c(eta)
    out = np.empty_like(eta)
    call_map(family_kernels(family).linkinv_vec, eta, out)
    return out


def linkfun(family: Any, mu: np.ndarray) -> np.ndarray:
    """Link of an array."""
    mu = _c(mu)
    out = np.empty_like(mu)
    call_map(family_kernels(family).linkfun_vec, mu, out)
    return out


def variance(family: Any, mu: np.ndarray, phi: float) -> np.ndarray:
    """Variance function (dispersion included) of an array of means."""
    mu = _c(mu)
    out = np.empty_like(mu)
    call_var(family_kernels(family).variance_vec, mu, float(phi), out)
    return out


def dev_resid(family: Any, y: np.ndarray, mu: np.ndarray, wt: np.ndarray,
              phi: float) -> np.ndarray:
    """Deviance residuals (squared) of arrays."""
    out = np.empty(len(y))
    call_yms(family_kernels(family).devres_vec, _c(y), _c(mu), _c(wt), float(phi), out)
    return out


def logpdf(family: Any, y: np.ndarray, mu: np.ndarray, wt: np.ndarray,
           phi: float) -> np.ndarray:
    """Complete log-density of each observation."""
    out = np.empty(len(y))
    call_yms(family_kernels(family).logpdf_vec, _c(y), _c(mu), _c(wt), float(phi), out)
    return out
