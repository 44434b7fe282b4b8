"""glmmcore-beta: an example glmmcore family plugin.

Registers two families through the ``glmmcore.families`` entry points (see
this package's ``pyproject.toml``): ``beta`` (Beta regression with an
estimated precision, :class:`glmmcore_beta.beta.Beta`) and
``poisson_plugin`` (a copy of glmmcore's Poisson family, for benchmarking
the plugin path).  Use them by name: ``glmmcore.fit(..., family="beta")``.
"""

__version__ = "0.1.0"
