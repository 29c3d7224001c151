"""Analytic gradient of the profiled deviance for random-intercept models.

With one random intercept per level, θ has one entry per level and the recursive
reduction at level l is ``C' = C[1:,1:] − w u uᵀ`` with ``a = C[0,0]``, ``u = C[0,1:]``,
``d = 1 + s a``, ``w = s/d`` and ``s = θ_l²``, plus ``log|M| += Σ log d``. Forward-mode
differentiation carries ``∂C/∂s_m`` for every level through the same recursion (the
sums over children are linear), so the gradient costs about k + 1 reductions and is
exact — free of the finite-difference noise that limits the optimiser on large data.
"""

from __future__ import annotations

import numpy as np

from evalkit.multilevel.crossed import Derivatives
from evalkit.multilevel.engine import Reducer


def intercepts_only(q: tuple[int, ...]) -> bool:
    """Whether every level has a single random effect (the case handled here)."""
    return all(size == 1 for size in q)


def _forward(
    reducer: Reducer, theta: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """``log|M|``, the reduced totals ``[XᵀM⁻¹X, XᵀM⁻¹y; ·, yᵀM⁻¹y]`` and their
    derivatives in ``s = θ²`` (one slice per level)."""
    stats = reducer.stats
    k = theta.size
    s = theta**2
    dlogdet = np.zeros(k)
    if reducer.fast:
        zz = reducer.zz
        d = 1.0 + s[0] * zz
        logdet = float(np.log(d).sum())
        dlogdet[0] = float((zz / d).sum())
        cross = reducer.rest - reducer.weighted_outer(s[0] / d)
        derivs = np.zeros((k, *cross.shape))
        derivs[0] = -reducer.weighted_outer(1.0 / d**2)
        first = 1
    else:
        cross = stats.cross
        derivs = np.zeros((k, *cross.shape))
        logdet = 0.0
        first = 0
    for level in range(first, k):
        a = cross[:, 0, 0]
        u = cross[:, 0, 1:]
        d = 1.0 + s[level] * a
        w = s[level] / d
        logdet += float(np.log(d).sum())
        if level == k - 1:  # the top: only the totals are needed, as matrix products
            total, dtotal = _top_totals(cross, derivs, u, a, d, w, s[level], level, dlogdet)
            return logdet, dlogdet, total, dtotal
        uu = u[:, :, None] * u[:, None, :]
        updated = np.empty((k, cross.shape[0], cross.shape[1] - 1, cross.shape[2] - 1))
        for m in range(k):
            own = 1.0 if m == level else 0.0
            da = derivs[m][:, 0, 0]
            du = derivs[m][:, 0, 1:]
            dd = own * a + s[level] * da
            dlogdet[m] += float((dd / d).sum())
            dw = (own - w * dd) / d
            cross_term = du[:, :, None] * u[:, None, :]
            updated[m] = (
                derivs[m][:, 1:, 1:]
                - dw[:, None, None] * uu
                - w[:, None, None] * (cross_term + np.swapaxes(cross_term, 1, 2))
            )
        cross = cross[:, 1:, 1:] - w[:, None, None] * uu
        derivs = updated
        cross = np.add.reduceat(cross, stats.starts[level], axis=0)
        derivs = np.add.reduceat(derivs, stats.starts[level], axis=1)
    raise AssertionError("unreachable: the loop returns at the top level")  # pragma: no cover


def _top_totals(
    cross: np.ndarray,
    derivs: np.ndarray,
    u: np.ndarray,
    a: np.ndarray,
    d: np.ndarray,
    w: np.ndarray,
    s_level: float,
    level: int,
    dlogdet: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``Σ_g (C_g[1:,1:] − w_g u_g u_gᵀ)`` and its derivatives over the top level's
    groups as ``(w ∘ U)ᵀU`` products (updates ``dlogdet`` in place)."""
    total = cross[:, 1:, 1:].sum(axis=0) - (u * w[:, None]).T @ u
    dtotal = np.empty((derivs.shape[0], *total.shape))
    for m in range(derivs.shape[0]):
        own = 1.0 if m == level else 0.0
        da = derivs[m][:, 0, 0]
        du = derivs[m][:, 0, 1:]
        dd = own * a + s_level * da
        dlogdet[m] += float((dd / d).sum())
        dw = (own - w * dd) / d
        mixed = (du * w[:, None]).T @ u
        dtotal[m] = derivs[m][:, 1:, 1:].sum(axis=0) - (u * dw[:, None]).T @ u - mixed - mixed.T
    return total, dtotal


def _profiled(
    total: np.ndarray, dtotal: np.ndarray, p: int
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """``XᵀM⁻¹X``, its inverse, the RSS at β̂ and the RSS's derivatives (the envelope
    theorem: β̂ held fixed) from the reduced totals and their derivatives."""
    xtx, xty, yty = total[:p, :p], total[:p, p], float(total[p, p])
    inverse = np.linalg.inv(xtx)
    beta = inverse @ xty
    rss = yty - float(beta @ xty)
    drss = (
        dtotal[:, p, p]
        - 2.0 * dtotal[:, :p, p] @ beta
        + np.einsum("i,mij,j->m", beta, dtotal[:, :p, :p], beta)
    )
    return xtx, inverse, rss, drss


def value_and_gradient(
    reducer: Reducer, theta: np.ndarray, *, reml: bool
) -> tuple[float, np.ndarray]:
    """The profiled deviance (REML criterion or −2 log-likelihood) and its gradient."""
    logdet, dlogdet, total, dtotal = _forward(reducer, theta)
    p, n = reducer.stats.p, reducer.stats.n
    xtx, inverse, rss, drss = _profiled(total, dtotal, p)
    if reml:
        dof = n - p
        _, logdet_x = np.linalg.slogdet(xtx)
        value = logdet + logdet_x + dof * (1.0 + np.log(2.0 * np.pi * rss / dof))
        dvalue = dlogdet + np.einsum("ij,mji->m", inverse, dtotal[:, :p, :p]) + dof * drss / rss
    else:
        value = logdet + n * (1.0 + np.log(2.0 * np.pi * rss / n))
        dvalue = dlogdet + n * drss / rss
    return float(value), 2.0 * theta * dvalue


def derivatives(reducer: Reducer, theta: np.ndarray, *, reml: bool) -> Derivatives:
    """``log|M|`` (with ``log|XᵀM⁻¹X|`` for REML), the RSS at β̂(θ) and their exact
    θ-derivatives: what Satterthwaite's df need, as the crossed engine provides them."""
    logdet, dlogdet, total, dtotal = _forward(reducer, theta)
    p = reducer.stats.p
    xtx, inverse, rss, drss = _profiled(total, dtotal, p)
    if reml:
        logdet += float(np.linalg.slogdet(xtx)[1])
        dlogdet = dlogdet + np.einsum("ij,mji->m", inverse, dtotal[:, :p, :p])
    return Derivatives(logdet, rss, 2.0 * theta * dlogdet, 2.0 * theta * drss, xtx)
