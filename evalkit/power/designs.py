"""Study designs for analytic power: degrees of freedom and the standard error of the
standardised impact estimate, in PowerUp!'s notation (Dong & Maynard 2013, J. Res.
Educ. Eff. 6(1), 24–67, Table 1; Bloom 2005, *Learning More from Social Experiments*, ch. 4).

Parameters: ``p`` share treated; ``n`` level-1 units per level-2 unit, ``J`` level-2
units (per level-3 unit), ``K`` level-3 units; ``rho2``/``rho3`` ICCs; ``r21``,
``r22``, ``r23`` outcome variance explained by covariates at each level; ``omega2``/
``omega3`` treatment-effect heterogeneity across blocks relative to the level's
outcome variance, ``r2t2``/``r2t3`` the share of it explained; ``g`` covariates at
the level whose df it reduces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

Params = Mapping[str, float]


@dataclass(frozen=True)
class Design:
    """One design: its sizes, parameters, df and squared SE of the impact estimate."""

    name: str
    title: str
    sizes: tuple[str, ...]  # sample sizes, lowest level first; the last is the top
    required: tuple[str, ...]  # parameters without a default
    optional: tuple[str, ...]
    df: Callable[[Params], float]
    variance: Callable[[Params], float]

    @property
    def top(self) -> str:
        """The top-level sample size (what ``sample_size`` solves for by default)."""
        return self.sizes[-1]


def _pq(v: Params) -> float:
    return v["p"] * (1 - v["p"])


DESIGNS: dict[str, Design] = {
    d.name: d
    for d in (
        Design(
            "ira",
            "individual random assignment",
            ("n",),
            (),
            ("r21",),
            lambda v: v["n"] - v["g"] - 2,
            lambda v: (1 - v["r21"]) / (_pq(v) * v["n"]),
        ),
        Design(
            "bira2c1",
            "blocked individual random assignment, constant block effects (2 levels)",
            ("n", "J"),
            (),
            ("r21",),
            lambda v: v["J"] * (v["n"] - 1) - v["g"] - 1,
            lambda v: (1 - v["r21"]) / (_pq(v) * v["J"] * v["n"]),
        ),
        Design(
            "bira2f1",
            "blocked individual random assignment, fixed block effects (2 levels)",
            ("n", "J"),
            (),
            ("r21",),
            lambda v: v["J"] * (v["n"] - 2) - v["g"],
            lambda v: (1 - v["r21"]) / (_pq(v) * v["J"] * v["n"]),
        ),
        Design(
            "bira2r1",
            "blocked individual random assignment, random block effects (2 levels)",
            ("n", "J"),
            ("rho2", "omega2"),
            ("r21", "r2t2"),
            lambda v: v["J"] - v["g"] - 1,
            lambda v: (
                v["rho2"] * v["omega2"] * (1 - v["r2t2"]) / v["J"]
                + (1 - v["rho2"]) * (1 - v["r21"]) / (_pq(v) * v["J"] * v["n"])
            ),
        ),
        Design(
            "cra2r2",
            "cluster random assignment at level 2 (2 levels)",
            ("n", "J"),
            ("rho2",),
            ("r21", "r22"),
            lambda v: v["J"] - v["g"] - 2,
            lambda v: (
                v["rho2"] * (1 - v["r22"]) / (_pq(v) * v["J"])
                + (1 - v["rho2"]) * (1 - v["r21"]) / (_pq(v) * v["J"] * v["n"])
            ),
        ),
        Design(
            "bira3r1",
            "blocked individual random assignment, random blocks at levels 2 and 3",
            ("n", "J", "K"),
            ("rho2", "rho3", "omega2", "omega3"),
            ("r21", "r2t2", "r2t3"),
            lambda v: v["K"] - v["g"] - 1,
            lambda v: (
                v["rho3"] * v["omega3"] * (1 - v["r2t3"]) / v["K"]
                + v["rho2"] * v["omega2"] * (1 - v["r2t2"]) / (v["J"] * v["K"])
                + (1 - v["rho2"] - v["rho3"]) * (1 - v["r21"]) / (_pq(v) * v["J"] * v["K"] * v["n"])
            ),
        ),
        Design(
            "bcra3f2",
            "blocked cluster random assignment at level 2, fixed level-3 blocks",
            ("n", "J", "K"),
            ("rho2",),
            ("r21", "r22"),
            lambda v: v["K"] * (v["J"] - 2) - v["g"],
            lambda v: (
                v["rho2"] * (1 - v["r22"]) / (_pq(v) * v["J"] * v["K"])
                + (1 - v["rho2"]) * (1 - v["r21"]) / (_pq(v) * v["J"] * v["K"] * v["n"])
            ),
        ),
        Design(
            "bcra3r2",
            "blocked cluster random assignment at level 2, random level-3 blocks",
            ("n", "J", "K"),
            ("rho2", "rho3", "omega3"),
            ("r21", "r22", "r2t3"),
            lambda v: v["K"] - v["g"] - 1,
            lambda v: (
                v["rho3"] * v["omega3"] * (1 - v["r2t3"]) / v["K"]
                + v["rho2"] * (1 - v["r22"]) / (_pq(v) * v["J"] * v["K"])
                + (1 - v["rho2"] - v["rho3"]) * (1 - v["r21"]) / (_pq(v) * v["J"] * v["K"] * v["n"])
            ),
        ),
        Design(
            "cra3r3",
            "cluster random assignment at level 3 (3 levels)",
            ("n", "J", "K"),
            ("rho2", "rho3"),
            ("r21", "r22", "r23"),
            lambda v: v["K"] - v["g"] - 2,
            lambda v: (
                v["rho3"] * (1 - v["r23"]) / (_pq(v) * v["K"])
                + v["rho2"] * (1 - v["r22"]) / (_pq(v) * v["J"] * v["K"])
                + (1 - v["rho2"] - v["rho3"]) * (1 - v["r21"]) / (_pq(v) * v["J"] * v["K"] * v["n"])
            ),
        ),
    )
}
"""The designs by PowerUp!'s names."""
