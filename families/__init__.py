"""Distribution families of glmmcore (installed as ``glmmcore.families``).

The built-in families are registered through the ``glmmcore.families``
entry-point group, the same path a third-party plugin takes; see
:mod:`glmmcore.registry` and ``docs/family-plugins.md``.
"""

from .base import ExtraParameter, Family, Link

__all__ = ["ExtraParameter", "Family", "Link"]
