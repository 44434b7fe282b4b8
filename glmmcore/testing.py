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
