"""Collection rules for the whole repository (tests and doctests).

The Bayesian layer needs the ``bayes`` extra (PyMC, nutpie, numba, ArviZ). Without it
the package and every other test still import and run; the doctests of
``evalkit.bayes`` are not collected, and ``tests/bayes`` skip with that reason.
"""

from __future__ import annotations

import importlib.util

BAYES_EXTRA = ("pymc", "nutpie", "numba", "arviz")

collect_ignore_glob: list[str] = []
if any(importlib.util.find_spec(name) is None for name in BAYES_EXTRA):
    collect_ignore_glob.append("evalkit/bayes/*.py")
