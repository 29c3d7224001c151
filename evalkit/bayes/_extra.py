"""Importing the Bayesian layer without its extra gives one clear error, naming what is
missing and how to install it."""

from __future__ import annotations

import importlib.util

REQUIRED = ("pymc", "nutpie", "numba", "arviz")

_missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
if _missing:
    raise ImportError(
        f"evalkit.bayes needs the 'bayes' extra ({', '.join(_missing)} not installed): "
        "pip install 'evalkit[bayes]'"
    )
