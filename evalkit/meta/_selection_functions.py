"""Selection functions of p-value selection models and their normalising constants.

The weight functions and their parameter bounds are those of metafor's ``selmodel``
(Viechtbauer, metafor 3.8–5.0, ``help(selmodel)``): the step function of Vevea &
Hedges (1995), the beta function of Citkowicz & Vevea (2017), and the half-normal,
negative-exponential, logistic and power functions of Preston, Ashby & Smyth (2004).
A study's p-value is one-sided (``"greater"``: small when the effect is large and
positive; ``"less"``) or two-sided, computed from the effect and its sampling
variance alone.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

from evalkit.core import EvalkitInputError, check_option

SelectionType = Literal["step", "beta", "halfnorm", "negexp", "logistic", "power"]
Alternative = Literal["greater", "less", "two-sided"]

# Composite Gauss–Legendre rule used inside each smooth piece of the integrand.
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)
_PANELS = 1
# Around 0 a two-sided p-value has a cusp (1 − p ∝ |y|), which the power and beta
# functions raise to a fractional power: pieces graded geometrically towards 0 resolve it.
_P_SCALE = (0.0, -1e-4, 1e-4, -1e-3, 1e-3, -1e-2, 1e-2, -0.1, 0.1, -0.5, 0.5, -1.0, 1.0, -1.5, 1.5, -2.0, 2.0, -2.5, 2.5, -3.0, 3.0, -3.5, 3.5,
            -4.0, 4.0, -5.0, 5.0, -6.0, 6.0, -8.0, 8.0)  # fmt: skip
_Y_SCALE = (-8.0, -5.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
_REACH = 14.0  # integrate over the mean ± 14 SD: the normal mass outside is < 1e-43


def p_values(y: np.ndarray, v: np.ndarray, alternative: Alternative) -> np.ndarray:
    """The p-value each effect would have reported (z = y / √v)."""
    z = y / np.sqrt(v)
    if alternative == "greater":
        return special.ndtr(-z)
    if alternative == "less":
        return special.ndtr(z)
    return 2.0 * special.ndtr(-np.abs(z))


def _effect_at(p: float, v: np.ndarray, alternative: Alternative) -> np.ndarray:
    """The effect size whose p-value is ``p`` (the positive one for two-sided p-values)."""
    if alternative == "greater":
        return np.sqrt(v) * special.ndtri(1.0 - p)
    if alternative == "less":
        return np.sqrt(v) * special.ndtri(p)
    return np.sqrt(v) * special.ndtri(1.0 - p / 2.0)


def _below(p: float, mu: np.ndarray, s: np.ndarray, v: np.ndarray, alt: Alternative) -> np.ndarray:
    """P(p-value ≤ p) when the effect is N(mu, s²) and its sampling variance is v."""
    if p <= 0.0:
        return np.zeros_like(mu)
    if p >= 1.0:
        return np.ones_like(mu)
    cut = _effect_at(p, v, alt)
    if alt == "greater":
        return special.ndtr((mu - cut) / s)
    if alt == "less":
        return special.ndtr((cut - mu) / s)
    return special.ndtr((mu - cut) / s) + special.ndtr((-cut - mu) / s)


def _below_derivatives(
    p: float, mu: np.ndarray, s: np.ndarray, v: np.ndarray, alt: Alternative
) -> tuple[np.ndarray, np.ndarray]:
    """Derivatives of P(p-value ≤ p) in the mean and in τ² (s² = v + τ²)."""
    if p <= 0.0 or p >= 1.0:
        return np.zeros_like(mu), np.zeros_like(mu)
    cut = _effect_at(p, v, alt)
    parts = {"greater": [(1.0, mu - cut)], "less": [(-1.0, cut - mu)]}.get(
        alt, [(1.0, mu - cut), (-1.0, -cut - mu)]
    )
    d_mu = np.zeros_like(mu)
    d_tau2 = np.zeros_like(mu)
    for sign, numerator in parts:
        u = numerator / s
        density = np.exp(-0.5 * u**2) / np.sqrt(2 * np.pi)
        d_mu += sign * density / s
        d_tau2 -= density * u / (2 * s**2)
    return d_mu, d_tau2


@dataclass(frozen=True)
class SelectionFunction:
    """One selection function: its form, cut-points, parameter bounds and start values."""

    type: SelectionType
    steps: tuple[float, ...]
    alternative: Alternative
    n_delta: int
    lower: np.ndarray
    upper: np.ndarray
    start: np.ndarray
    null: np.ndarray
    fixed: np.ndarray
    pval_min: float

    @property
    def names(self) -> list[str]:
        """Parameter names: ``delta`` or ``delta1, delta2, …``."""
        if self.type == "step":
            edges = (0.0, *self.steps)
            return [f"delta[{lo:g} < p <= {hi:g}]" for lo, hi in itertools.pairwise(edges)]
        if self.n_delta == 1:
            return ["delta"]
        return [f"delta{j + 1}" for j in range(self.n_delta)]

    def weight(self, p: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Relative probability that a result with p-value ``p`` is published."""
        p = np.clip(p, self.pval_min, 1.0 - self.pval_min)
        if self.type == "step":
            group = np.searchsorted(np.asarray(self.steps), p, side="left")
            return np.asarray(delta)[np.minimum(group, self.n_delta - 1)]
        if self.type == "beta":
            q = np.clip(p, self.steps[0], self.steps[1])
            return q ** (delta[0] - 1.0) * (1.0 - q) ** (delta[1] - 1.0)
        alpha = self.steps[0]
        d = delta[0]
        if self.type == "halfnorm":
            rel = np.exp(-d * p**2 + d * alpha**2)
        elif self.type == "negexp":
            rel = np.exp(-d * (p - alpha))
        elif self.type == "logistic":
            rel = (np.exp(-d * p) / (1.0 + np.exp(-d * p))) / (
                np.exp(-d * alpha) / (1.0 + np.exp(-d * alpha))
            )
        else:
            rel = ((1.0 - p) / (1.0 - alpha)) ** d
        return np.where(p <= alpha, 1.0, rel)

    def log_weight(self, p: np.ndarray, delta: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.weight(p, delta))

    def normaliser(
        self, mu: np.ndarray, s: np.ndarray, v: np.ndarray, delta: np.ndarray
    ) -> np.ndarray:
        """A_i: the expected weight of study i's result, E[w(p(Y))] for Y ~ N(mu, s²)."""
        if self.type == "step":
            edges = (0.0, *self.steps)
            below = [_below(a, mu, s, v, self.alternative) for a in edges]
            return sum(delta[j] * (below[j + 1] - below[j]) for j in range(self.n_delta))
        return self._integrate(mu, s, v, delta)

    def step_scores(
        self, mu: np.ndarray, s: np.ndarray, v: np.ndarray, delta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A_i and its derivatives in the mean, τ² and each δ_j (step functions only)."""
        edges = (0.0, *self.steps)
        below = [_below(a, mu, s, v, self.alternative) for a in edges]
        slopes = [_below_derivatives(a, mu, s, v, self.alternative) for a in edges]
        area = np.zeros_like(mu)
        d_mu = np.zeros_like(mu)
        d_tau2 = np.zeros_like(mu)
        d_delta = np.zeros((mu.size, self.n_delta))
        for j in range(self.n_delta):
            mass = below[j + 1] - below[j]
            area += delta[j] * mass
            d_mu += delta[j] * (slopes[j + 1][0] - slopes[j][0])
            d_tau2 += delta[j] * (slopes[j + 1][1] - slopes[j][1])
            d_delta[:, j] = mass
        return area, d_mu, d_tau2, d_delta

    def _breakpoints(self, mu: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Where the integrand has kinks or steep parts, per study (rows), inside the range."""
        lo, hi = mu - _REACH * s, mu + _REACH * s
        root = np.sqrt(v)
        # p(y) changes on the scale of the sampling SD around 0, the density on the scale
        # of s around the mean: pieces on both scales keep every piece smooth and short.
        inner = [t * root for t in _P_SCALE] + [mu + t * s for t in _Y_SCALE]
        kinks = [a for a in (self.steps[0], self.pval_min, 1.0 - self.pval_min) if 0.0 < a < 1.0]
        if self.type == "beta":
            kinks.extend(a for a in self.steps if 0.0 < a < 1.0)
        for a in kinks:
            cut = _effect_at(a, v, self.alternative)
            inner.extend([cut, -cut] if self.alternative == "two-sided" else [cut])
        points = np.column_stack([lo, *[np.clip(c, lo, hi) for c in inner], hi])
        return np.sort(points, axis=1)

    def _integrate(
        self, mu: np.ndarray, s: np.ndarray, v: np.ndarray, delta: np.ndarray
    ) -> np.ndarray:
        points = self._breakpoints(mu, s, v)
        # Each piece between breakpoints is split into equal panels with a 16-point rule.
        fractions = np.linspace(0.0, 1.0, _PANELS + 1)
        left, right = points[:, :-1], points[:, 1:]
        width = right - left
        starts = left[:, :, None] + width[:, :, None] * fractions[None, None, :-1]
        half = (width / (2 * _PANELS))[:, :, None, None]
        nodes = starts[:, :, :, None] + half * (_NODES + 1.0)
        weights = half * _WEIGHTS
        y = nodes.reshape(mu.size, -1)
        density = np.exp(-0.5 * ((y - mu[:, None]) / s[:, None]) ** 2) / (
            np.sqrt(2 * np.pi) * s[:, None]
        )
        w = self.weight(p_values(y, v[:, None], self.alternative), delta)
        return np.sum(
            w * density * np.broadcast_to(weights, nodes.shape).reshape(mu.size, -1), axis=1
        )


def selection_function(
    type: SelectionType, steps: tuple[float, ...] | None, alternative: Alternative
) -> SelectionFunction:
    """Bounds, start values and null values of each type, as metafor sets them."""
    check_option("type", type, SelectionType)
    check_option("alternative", alternative, Alternative)
    chosen = _check_steps(type, steps)
    if type == "step":
        cuts = tuple(sorted(set(chosen)))
        if cuts[-1] != 1.0:
            cuts = (*cuts, 1.0)
        n = len(cuts)
        fixed = np.zeros(n, dtype=bool)
        fixed[0] = True  # the first interval's weight is the reference, 1
        return SelectionFunction(
            type, cuts, alternative, n, np.zeros(n), np.full(n, 100.0),
            np.linspace(1.0, 0.8, n), np.ones(n), fixed, 0.0,
        )  # fmt: skip
    if type == "beta":
        return SelectionFunction(
            type, chosen, alternative, 2, np.full(2, 1e-5), np.full(2, 100.0),
            np.ones(2), np.ones(2), np.zeros(2, dtype=bool), 1e-5,
        )  # fmt: skip
    return SelectionFunction(
        type, chosen, alternative, 1, np.zeros(1), np.full(1, 100.0),
        np.ones(1), np.zeros(1), np.zeros(1, dtype=bool), 1e-5 if type == "power" else 0.0,
    )  # fmt: skip


def _check_steps(type: SelectionType, steps: tuple[float, ...] | None) -> tuple[float, ...]:
    if steps is None:
        if type == "step":
            raise EvalkitInputError(
                "a step-function selection model needs its cut-points: steps=(0.025,) is the "
                "three-parameter model (one-sided p < .025, i.e. significant at .05 two-sided)."
            )
        return (0.0, 1.0) if type == "beta" else (0.0,)
    values = tuple(float(s) for s in np.atleast_1d(np.asarray(steps, dtype=float)))
    if not values or any(not np.isfinite(s) or s < 0.0 or s > 1.0 for s in values):
        raise EvalkitInputError(f"steps must be p-values between 0 and 1, got {steps!r}.")
    if type == "step":
        if min(values) <= 0.0:
            raise EvalkitInputError("the lowest step of a step-function model must be above 0.")
        return values
    if type == "beta":
        if len(values) != 2 or values[0] >= values[1]:
            raise EvalkitInputError(
                "steps for the beta model are two p-values (a1, a2) with a1 < a2, between "
                f"which the beta function applies; got {steps!r}."
            )
        return values
    if len(values) != 1 or values[0] >= 1.0:
        raise EvalkitInputError(
            f"the {type} model takes one step (p-values below it are all published, weight "
            f"1); got {steps!r}."
        )
    return values
