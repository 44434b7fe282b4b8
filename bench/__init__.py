"""Benchmarks of glmmcore against lme4 and mixedlm: ``python -m bench`` (see bench/README.md)."""

import os

# the benchmarks time the compiled paths: a first fit compiles in its process rather than
# take the cold path (glmmcore.fitting.cold_path), and no background compile competes with
# the timings; bench.cold_start sets both for each of its runs
os.environ.setdefault("GLMMCORE_COLD_START", "0")
os.environ.setdefault("GLMMCORE_BACKGROUND_COMPILE", "0")
