"""Importing evalkit changes nothing outside it: no plotting backend is chosen, pyplot
is not loaded, and every plotting function returns a Figure."""

from __future__ import annotations

import subprocess
import sys

from matplotlib.figure import Figure

import evalkit
from evalkit import meta
from evalkit.multilevel import caterpillar_plot, lmm
from evalkit.plots import effect_size_plot

SCRIPT = """
import sys
import matplotlib
matplotlib.use("svg")
import evalkit, evalkit.meta, evalkit.multilevel, evalkit.plots, evalkit.coaching, evalkit.power
import evalkit.tables, evalkit.analyses, evalkit.scales, evalkit.cli
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_importing_evalkit_leaves_the_backend_alone() -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=False, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["svg", "False"]


def test_importing_evalkit_does_not_load_matplotlib() -> None:
    """matplotlib is imported when a figure is drawn: a script or a command that fits
    models does not pay for it (about half a second of the import time)."""
    script = (
        "import sys\n"
        "import evalkit, evalkit.meta, evalkit.multilevel, evalkit.plots, evalkit.cli\n"
        "print(any(name.startswith('matplotlib') for name in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False"]


def test_plot_functions_return_figures() -> None:
    expectancy = evalkit.datasets.load("raudenbush1985")
    fit = meta.random_effects(expectancy, effect="yi", variance="vi")
    students = evalkit.simulate_district(n_schools=8, seed=4).students
    null = lmm("achievement ~ 1 + (1 | school_id)", students)
    figures = [
        meta.forest_plot(fit),
        meta.funnel_plot(fit),
        caterpillar_plot(null, "school_id"),
        effect_size_plot(
            expectancy.assign(estimate=expectancy["yi"], ci_low=-1.0, ci_high=1.0).head(3)
        ),
    ]
    assert all(isinstance(figure, Figure) for figure in figures)
