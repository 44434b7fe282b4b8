"""Inference after the fit: tests, intervals and degrees of freedom."""
