"""Multivariate meta-analysis: several outcomes per study with correlated true effects.

The model of metafor's ``rma.mv(yi, V, mods = ~ outcome - 1, random = ~ outcome |
study, struct = "UN" | "HCS" | "CS")`` (Viechtbauer 2010; Berkey et al. 1998;
Kalaian & Raudenbush 1996): effect j of study i estimates μ_outcome(j) + u_i,outcome(j)
with u_i ~ N(0, T) across outcomes and sampling errors with known (or imputed)
within-study covariance V_i. T is unstructured (``"UN"``: a variance per outcome and a
correlation per pair), heteroscedastic compound symmetry (``"HCS"``: a variance per
outcome, one correlation) or compound symmetry (``"CS"``: one variance, one
correlation). Fitted by REML or ML over variances (log scale) and correlations
(Fisher-z scale), then polished by Newton steps to a zero gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize

from evalkit.core import EvalkitInputError
from evalkit.meta._algebra import profiled_loglik

Struct = Literal["UN", "HCS", "CS"]


@dataclass(frozen=True)
class Fit:
    loglik: float
    beta: np.ndarray
    cov: np.ndarray


class OutcomeBlocks:
    """Studies as blocks of effects, grouped by block size for batched algebra."""

    def __init__(
        self,
        y: np.ndarray,
        sampling: np.ndarray,
        x: np.ndarray,
        study: np.ndarray,
        outcome: np.ndarray,
        n_outcomes: int,
    ) -> None:
        self.y, self.x, self.sampling = y, x, sampling
        self.outcome, self.n_outcomes = outcome, n_outcomes
        _, codes = np.unique(study, return_inverse=True)
        self.study_codes = codes
        members = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
        self.groups: list[tuple[np.ndarray, np.ndarray]] = []
        for size in sorted({m.size for m in members}):
            rows = np.array([m for m in members if m.size == size])
            v = sampling[rows[:, :, None], rows[:, None, :]]
            self.groups.append((rows, v))
        _, logdet = np.linalg.slogdet(x.T @ x)
        self.logdet_xtx = float(logdet)

    def marginal(self, rows: np.ndarray, v: np.ndarray, tau: np.ndarray) -> np.ndarray:
        o = self.outcome[rows]
        return v + tau[o[:, :, None], o[:, None, :]]

    def evaluate(self, tau: np.ndarray, *, reml: bool) -> Fit:
        """(Restricted) log-likelihood with metafor's constants, β and (XᵀM⁻¹X)⁻¹."""
        p = self.x.shape[1]
        xtmx = np.zeros((p, p))
        xtmy = np.zeros(p)
        logdet = 0.0
        solved = []
        for rows, v in self.groups:
            m = self.marginal(rows, v, tau)
            try:
                chol = np.linalg.cholesky(m)
            except np.linalg.LinAlgError:
                return Fit(-np.inf, np.full(p, np.nan), np.full((p, p), np.nan))
            logdet += 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
            xb, yb = self.x[rows], self.y[rows]
            mx = np.linalg.solve(m, xb)
            my = np.linalg.solve(m, yb[..., None])[..., 0]
            xtmx += np.einsum("mnp,mnq->pq", xb, mx)
            xtmy += np.einsum("mnp,mn->p", xb, my)
            solved.append((rows, m))
        try:
            cov = np.linalg.inv(xtmx)
        except np.linalg.LinAlgError:
            return Fit(-np.inf, np.full(p, np.nan), np.full((p, p), np.nan))
        beta = cov @ xtmy
        quad = 0.0
        for rows, m in solved:
            r = self.y[rows] - self.x[rows] @ beta
            quad += float(np.sum(r * np.linalg.solve(m, r[..., None])[..., 0]))
        ll = profiled_loglik(
            n=self.y.size, p=p, logdet=logdet, logdet_x=float(np.linalg.slogdet(xtmx)[1]),
            quad=quad, logdet_xtx=self.logdet_xtx, reml=reml,
        )  # fmt: skip
        return Fit(float(ll), beta, cov)

    def cluster_blocks(self, tau: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Rows and marginal covariance of every study (for robust variance estimation)."""
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for rows, v in self.groups:
            out.extend(zip(rows, self.marginal(rows, v, tau), strict=True))
        return out


@dataclass(frozen=True)
class Parameterisation:
    """Maps the unconstrained vector (log variances, Fisher-z correlations) to T."""

    struct: Struct
    n_outcomes: int

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return list(combinations(range(self.n_outcomes), 2))

    @property
    def n_variances(self) -> int:
        return 1 if self.struct == "CS" else self.n_outcomes

    @property
    def n_correlations(self) -> int:
        return len(self.pairs) if self.struct == "UN" else (1 if self.n_outcomes > 1 else 0)

    def matrix(self, phi: np.ndarray) -> np.ndarray:
        q = self.n_outcomes
        nv = self.n_variances
        variances = np.exp(phi[:nv]) if nv == q else np.full(q, np.exp(phi[0]))
        correlations = np.tanh(phi[nv:])
        corr = np.eye(q)
        for index, (a, b) in enumerate(self.pairs):
            value = correlations[index] if self.struct == "UN" else correlations[0]
            corr[a, b] = corr[b, a] = value
        sd = np.sqrt(variances)
        return corr * np.outer(sd, sd)

    def natural(self, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Variances and correlations (the parameters reported)."""
        sd = np.sqrt(np.diag(tau))
        corr = tau / np.outer(sd, sd)
        variances = np.diag(tau)[: self.n_variances]
        if self.struct == "UN":
            rhos = np.array([corr[a, b] for a, b in self.pairs])
        else:
            rhos = np.array([corr[0, 1]]) if self.n_outcomes > 1 else np.empty(0)
        return variances, rhos

    def start(self, y: np.ndarray, v: np.ndarray, outcome: np.ndarray) -> np.ndarray:
        spread = float(np.var(y) + np.mean(v))
        per = [max(float(np.var(y[outcome == j]) - np.mean(v[outcome == j])), 0.1 * spread)
               if np.sum(outcome == j) > 1 else 0.1 * spread
               for j in range(self.n_outcomes)]  # fmt: skip
        logs = np.log(per) if self.n_variances == self.n_outcomes else np.log([np.mean(per)])
        return np.concatenate([logs, np.full(self.n_correlations, 0.3)])


def fit_outcomes(
    blocks: OutcomeBlocks,
    param: Parameterisation,
    *,
    reml: bool,
    held: dict[int, float] | None = None,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, float, bool, float]:
    """Maximise over φ (with some coordinates ``held`` fixed); returns φ̂, ℓ, converged, |∇|."""
    from evalkit.meta._numeric import gradient, newton_ascent

    held = held or {}
    phi0 = (
        param.start(blocks.y, np.diag(blocks.sampling), blocks.outcome)
        if start is None
        else start.copy()
    )
    for index, value in held.items():
        phi0[index] = value
    free = np.ones(phi0.size, dtype=bool)
    free[list(held)] = False

    def full(u: np.ndarray) -> np.ndarray:
        phi = phi0.copy()
        phi[free] = u
        return phi

    def loglik(phi: np.ndarray) -> float:
        return blocks.evaluate(param.matrix(phi), reml=reml).loglik

    def objective(u: np.ndarray) -> float:
        value = loglik(full(u))
        return -value if np.isfinite(value) else 1e300

    steps = np.full(phi0.size, 1e-4)

    def grad(u: np.ndarray) -> np.ndarray:
        return -gradient(loglik, full(u), free, steps)[free]

    found = optimize.minimize(
        objective, phi0[free], jac=grad, method="BFGS", options={"gtol": 1e-5, "maxiter": 2000}
    )
    phi, current, norm = newton_ascent(
        loglik,
        full(found.x),
        free_at=lambda _: free,
        steps_at=lambda _: steps,
        scale=np.ones(phi0.size),
        tolerance=1e-8,
    )
    return phi, current, norm < 1e-4, norm


def sampling_matrix(
    v: np.ndarray, study: np.ndarray, rho: float | None, covariance: Any
) -> np.ndarray:
    """The within-study sampling covariance: given, or imputed from ρ between every pair
    of effects of a study (zero between studies)."""
    k = v.size
    if covariance is not None:
        matrix = np.asarray(covariance, dtype=float)
        if matrix.shape != (k, k):
            raise EvalkitInputError(
                f"covariance must be a {k} × {k} matrix (one row per effect), got {matrix.shape}."
            )
        if not np.allclose(matrix, matrix.T, atol=1e-12 * float(np.max(np.abs(matrix)))):
            raise EvalkitInputError("covariance must be symmetric.")
        same = study[:, None] == study[None, :]
        leak = (~same) & (matrix != 0)
        if leak.any():
            rows = sorted({int(i) for i in np.argwhere(leak)[:, 0]})[:5]
            raise EvalkitInputError(
                "covariance links effects of different studies (rows "
                f"{', '.join(map(str, rows))}); sampling errors are independent across studies."
            )
        if not np.allclose(np.diag(matrix), v, rtol=1e-10):
            raise EvalkitInputError("the diagonal of covariance must equal the variance column.")
        return matrix
    r = 0.0 if rho is None else rho
    same = (study[:, None] == study[None, :]).astype(float)
    root = np.sqrt(v)
    matrix = same * r * np.outer(root, root)
    np.fill_diagonal(matrix, v)
    return matrix


def outcome_design(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Outcome codes and labels: a categorical column's categories in their order,
    otherwise the sorted distinct values (as R's factor levels)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        labels = [str(c) for c in values.cat.categories if (values == c).any()]
    else:
        labels = sorted(set(values.astype(str)))
    folded: dict[str, list[str]] = {}
    for label in labels:
        folded.setdefault(" ".join(label.split()).casefold(), []).append(label)
    clashes = [group for group in folded.values() if len(group) > 1]
    if clashes:
        shown = "; ".join(" / ".join(repr(g) for g in group) for group in clashes)
        raise EvalkitInputError(
            f"outcome labels that differ only in case or spacing: {shown}. They would be "
            "fitted as different outcomes; recode them to one spelling."
        )
    codes = values.astype(str).map({label: i for i, label in enumerate(labels)}).to_numpy()
    return np.asarray(codes, dtype=np.int64), labels


@dataclass(frozen=True)
class MultivariateFit:
    """What a multivariate fit keeps for robust SEs, predictions and profiles."""

    blocks: OutcomeBlocks
    param: Parameterisation
    phi: np.ndarray
    outcomes: list[str]
    reml: bool

    @property
    def tau(self) -> np.ndarray:
        return self.param.matrix(self.phi)

    def cluster_blocks(self, tau: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.blocks.cluster_blocks(tau)


def correlation_names(outcomes: list[str], param: Parameterisation) -> list[str]:
    if param.struct == "UN":
        return [f"cor_study[{outcomes[a]}, {outcomes[b]}]" for a, b in param.pairs]
    return ["cor_study"] if param.n_outcomes > 1 else []


def variance_names(outcomes: list[str], param: Parameterisation) -> list[str]:
    if param.n_variances == 1:
        return ["var_study"]
    return [f"var_study[{name}]" for name in outcomes]


def profile_outcomes(structure: MultivariateFit, *, level: float) -> pd.DataFrame:
    """Profile-likelihood intervals for every variance and correlation of T (as
    metafor's ``confint.rma.mv``): bounds where twice the drop in the (restricted)
    log-likelihood, maximised over the rest, reaches the χ²₁ quantile."""
    from scipy import stats

    blocks, param = structure.blocks, structure.param
    phi_hat = structure.phi
    best = blocks.evaluate(param.matrix(phi_hat), reml=structure.reml).loglik
    crit = stats.chi2.ppf(level, 1) / 2.0
    variances, rhos = param.natural(param.matrix(phi_hat))
    names = variance_names(structure.outcomes, param) + correlation_names(structure.outcomes, param)
    rows = []
    for index, name in enumerate(names):
        is_var = index < param.n_variances
        estimate = float(variances[index] if is_var else rhos[index - param.n_variances])

        def drop(value: float, index: int = index, is_var: bool = is_var) -> float:
            fixed = np.log(value) if is_var else np.arctanh(value)
            _, ll, _, _ = fit_outcomes(
                blocks, param, reml=structure.reml, held={index: fixed}, start=phi_hat
            )
            return best - ll - crit

        if is_var:
            low_end, high_end = estimate * 1e-6, estimate
            low = (
                0.0
                if drop(low_end) < 0
                else optimize.brentq(drop, low_end, high_end, xtol=1e-10 * estimate)
            )
            upper = 2.0 * estimate
            while drop(upper) < 0:
                upper *= 2.0
            high = optimize.brentq(drop, estimate, upper, xtol=1e-10 * estimate)
        else:
            edge = 1 - 1e-9
            low = -1.0 if drop(-edge) < 0 else optimize.brentq(drop, -edge, estimate, xtol=1e-11)
            high = 1.0 if drop(edge) < 0 else optimize.brentq(drop, estimate, edge, xtol=1e-11)
        rows.append({"parameter": name, "estimate": estimate, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def sampling_covariance(data: pd.DataFrame, *, study: str, columns: list[str]) -> np.ndarray:
    """The block-diagonal sampling covariance matrix from covariance columns, as studies
    report it (Berkey et al. 1998 style): within a study, its j-th row holds row j of the
    study's covariance block in ``columns[0], columns[1], …`` (rows in the data's order).

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"trial": [1, 1, 2], "v1": [0.01, 0.004, 0.02], "v2": [0.004, 0.02, None]})
    >>> sampling_covariance(rows, study="trial", columns=["v1", "v2"]).round(3).tolist()
    [[0.01, 0.004, 0.0], [0.004, 0.02, 0.0], [0.0, 0.0, 0.02]]
    """
    from evalkit.core import require_columns

    require_columns(data, [study, *columns])
    k = len(data)
    matrix = np.zeros((k, k))
    labels = data[study].to_numpy()
    for label in pd.unique(labels):
        rows = np.flatnonzero(labels == label)
        if rows.size > len(columns):
            raise EvalkitInputError(
                f"study {label!r} has {rows.size} effects but only {len(columns)} covariance "
                "columns were given."
            )
        block = data.iloc[rows][list(columns[: rows.size])].to_numpy(dtype=float)
        if np.isnan(block).any():
            raise EvalkitInputError(f"study {label!r} has missing covariances in {columns}.")
        if not np.allclose(block, block.T, rtol=1e-8, atol=0):
            raise EvalkitInputError(f"the covariance block of study {label!r} is not symmetric.")
        matrix[np.ix_(rows, rows)] = block
    return matrix
