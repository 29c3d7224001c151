"""Results of meta-analytic models, on evalkit's results contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import ModelResults


@dataclass(frozen=True)
class MetaResults(ModelResults):
    """A fitted meta-analytic model.

    Beyond the common contract (``params``, ``tidy()``, ``glance()``, ...), it
    keeps the heterogeneity statistics and the data needed for predictions,
    robust variance estimation and sensitivity analyses.

    Attributes
    ----------
    method, test
        τ² estimator (``"FE"`` for a fixed-effect model) and ``"z"`` or ``"knha"``.
    tau2, tau2_ci
        Between-study variance and its Q-profile confidence interval.
    i2, i2_ci, h2, h2_ci
        I² (%) and H² with intervals derived from the τ² interval.
    q, q_df, q_p
        Cochran's Q (QE for meta-regression), its df and p-value.
    qm, qm_df, qm_p
        Omnibus test of the moderators (chi-square, or F under Knapp–Hartung).
    r2
        Percentage of τ² accounted for by the moderators (meta-regression).
    variance_components
        τ² of a random-effects model as the shared table (level ``study``), or the
        variance of every level of a multilevel model; ``None`` for a fixed-effect
        model. ``glance()`` shows them as ``var_<level>``.
    weights
        Percentage weight of each effect size.
    """

    method: str = "REML"
    test: str = "z"
    level: float = 0.95
    tau2: float = 0.0
    tau2_ci: tuple[float, float] = (np.nan, np.nan)
    i2: float = 0.0
    i2_ci: tuple[float, float] = (np.nan, np.nan)
    h2: float = 1.0
    h2_ci: tuple[float, float] = (np.nan, np.nan)
    q: float = 0.0
    q_df: int = 0
    q_p: float = 1.0
    qm: float = np.nan
    qm_df: tuple[int, ...] = ()
    qm_p: float = np.nan
    r2: float = np.nan
    weights: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    y: np.ndarray = field(default_factory=lambda: np.empty(0))
    v: np.ndarray = field(default_factory=lambda: np.empty(0))
    x: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    structure: Any = None
    labels: pd.Index = field(default_factory=lambda: pd.RangeIndex(0))
    """Row labels of the effect sizes (the data's index), for aligning cluster labels."""
    data: pd.DataFrame | None = field(default=None, repr=False)
    """The data as given, so that a cluster can be named by its column."""

    def marginal_blocks(self, cluster: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Row indices and the model's marginal covariance for each cluster in ``cluster``.

        Raises when a cluster would split a block of correlated effect sizes: robust
        variance estimation needs clusters that contain whole model blocks.
        """
        from evalkit.core import EvalkitInputError

        _, codes = np.unique(cluster, return_inverse=True)
        groups = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
        if self.structure is None:
            total = self.v + self.tau2
            return [(rows, np.diag(total[rows])) for rows in groups]
        if isinstance(self.structure, tuple):
            blocks, theta = self.structure
            model_blocks = blocks.cluster_blocks(theta)
        else:  # a multivariate fit carries its own between-study covariance
            model_blocks = self.structure.cluster_blocks(self.structure.tau)
        owner = np.empty(self.y.size, dtype=np.int64)
        for index, rows in enumerate(groups):
            owner[rows] = index
        assembled = [np.zeros((rows.size, rows.size)) for rows in groups]
        position = {int(r): i for rows in groups for i, r in enumerate(rows)}
        for rows, matrix in model_blocks:
            owners = np.unique(owner[rows])
            if owners.size > 1:
                raise EvalkitInputError(
                    "robust clusters must contain whole model clusters; the rows "
                    f"{', '.join(map(str, rows[:5]))} share a model cluster but not a robust one."
                )
            target = assembled[int(owners[0])]
            local = np.array([position[int(r)] for r in rows])
            target[np.ix_(local, local)] += matrix
        return list(zip(groups, assembled, strict=True))

    def predict(self, newmods: Any = None, *, level: float | None = None) -> pd.DataFrame:
        """Predicted average effect with its confidence and prediction intervals.

        The prediction interval (``pi_low``, ``pi_high``) is where the true effect of
        a new study is expected to fall; it is undefined for fixed-effect models.

        Parameters
        ----------
        newmods
            Moderator values (a DataFrame or mapping of columns) for a meta-regression;
            omit for the intercept-only model.
        level
            Confidence level; defaults to the model's.
        """
        from evalkit.meta._input import new_design

        level = self.level if level is None else level
        intercept_only = self.x.shape[1] == 1 and newmods is None
        x_new = np.ones((1, 1)) if intercept_only else new_design(self.spec, newmods)
        beta = self.params.to_numpy()
        cov = self.cov.to_numpy()
        pred = x_new @ beta
        se = np.sqrt(np.einsum("ij,jk,ik->i", x_new, cov, x_new))
        df = float(self.df.iloc[0])
        crit = stats.t.ppf(0.5 + level / 2, df)
        # A fixed-effect model assumes no heterogeneity: no prediction interval (as metafor).
        spread = np.sqrt(se**2 + self.tau2) if self.method != "FE" else np.full_like(se, np.nan)
        return pd.DataFrame(
            {
                "estimate": pred,
                "std_error": se,
                "ci_low": pred - crit * se,
                "ci_high": pred + crit * se,
                "pi_low": pred - crit * spread,
                "pi_high": pred + crit * spread,
            }
        )


def multilevel_structure(result: MetaResults) -> Any:
    """The (blocks, variance components) of a multilevel fit, ``None`` for a univariate
    one; multivariate fits are refused by the tools built on nested levels."""
    if result.structure is None or isinstance(result.structure, tuple):
        return result.structure
    from evalkit.core import EvalkitInputError

    raise EvalkitInputError(
        "this tool is for univariate and multilevel models; for a multivariate model, fit "
        "each outcome with multilevel() (or use robust(), predict() and profile_intervals())."
    )
