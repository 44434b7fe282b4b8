"""Fitting strategy: control, starts, optimizers, convergence checks, diagnostics."""
