"""Objectives: LMM profiled deviance, PIRLS, Laplace and quadrature, gradients."""
