"""Checks for family authors: call them from a plugin's own tests.

Each check raises ``AssertionError`` with the value at fault; see
``docs/family-plugins.md`` ("Testing a plugin") for the full list of what a family
should pass, and ``tests/test_plugin_beta.py`` for a plugin's tests that use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def check_link(link: Any, etas: Iterable[float], step: float = 1e-5) -> None:
    """``linkfun`` inverts ``linkinv``; ``mu_eta`` and ``mu_eta2`` are its derivatives.

    The derivatives are compared with central differences of ``linkinv`` and
    ``mu_eta`` at each ``eta`` (choose values inside the link's domain).
    """
    for eta in etas:
        mu = link.linkinv(eta)
        back = link.linkfun(mu)
        assert np.isclose(back, eta, rtol=1e-9, atol=1e-9), \
            f"{link.name}: linkfun(linkinv({eta})) = {back}"
        slope = (link.linkinv(eta + step) - link.linkinv(eta - step)) / (2 * step)
        assert np.isclose(link.mu_eta(eta, mu), slope, rtol=1e-6, atol=0), \
            f"{link.name}: mu_eta({eta}) = {link.mu_eta(eta, mu)}, differences give {slope}"
        curve = (link.mu_eta(eta + step, link.linkinv(eta + step))
                 - link.mu_eta(eta - step, link.linkinv(eta - step))) / (2 * step)
        assert np.isclose(link.mu_eta2(eta, mu), curve, rtol=1e-5, atol=1e-9), \
            f"{link.name}: mu_eta2({eta}) = {link.mu_eta2(eta, mu)}, differences give {curve}"


def check_gradient_kernels(family: Any, ys: Iterable[float], mus: Iterable[float],
                           phi: float = 1.0, weight: float = 1.0, step: float = 1e-6) -> None:
    """The optional kernels of the gradient path are the derivatives they claim to be.

    ``dvariance_dmu`` against central differences of ``variance`` in ``mu``, and
    ``dlogpdf_dphi`` against central differences of ``logpdf`` in ``phi`` (relative
    steps), at every pair of ``ys`` and ``mus`` (values inside the family's support
    and mean range).  A kernel the family does not define is skipped.
    """
    cls = type(family)
    dvar, dphi = getattr(cls, "dvariance_dmu", None), getattr(cls, "dlogpdf_dphi", None)
    for mu in mus:
        if dvar is not None:
            h = step * max(abs(mu), 1.0)
            slope = (cls.variance(mu + h, phi) - cls.variance(mu - h, phi)) / (2 * h)
            assert np.isclose(dvar(mu, phi), slope, rtol=1e-6, atol=1e-9), \
                f"{cls.name}: dvariance_dmu({mu}, {phi}) = {dvar(mu, phi)}, differences " \
                f"give {slope}"
        for y in ys if dphi is not None else ():
            h = step * phi
            slope = (cls.logpdf(y, mu, weight, phi + h)
                     - cls.logpdf(y, mu, weight, phi - h)) / (2 * h)
            value = dphi(y, mu, weight, phi)
            assert np.isclose(value, slope, rtol=1e-6, atol=1e-8), \
                f"{cls.name}: dlogpdf_dphi({y}, {mu}, {weight}, {phi}) = {value}, " \
                f"differences give {slope}"
