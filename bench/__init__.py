"""Benchmarks of glmmcore against lme4 and mixedlm: ``python -m bench`` (see bench/README.md)."""
