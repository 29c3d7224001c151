"""The results contract and the statsmodels / linearmodels adapters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from evalkit import EvalkitInputError
from evalkit.adapters import from_linearmodels, from_statsmodels
from evalkit.core import TIDY_COLUMNS, Dropped, ModelResults


@pytest.fixture
def regression_data() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 300
    frame = pd.DataFrame(
        {
            "school_id": np.repeat(np.arange(30), 10),
            "coached": rng.integers(0, 2, n),
            "prior": rng.standard_normal(n),
        }
    )
    school = rng.normal(0, 0.4, 30)[frame["school_id"]]
    frame["achievement"] = (
        0.2 * frame["coached"] + 0.6 * frame["prior"] + school + rng.normal(0, 0.7, n)
    )
    return frame


def test_ols_adapter_matches_statsmodels(regression_data: pd.DataFrame) -> None:
    fit = smf.ols("achievement ~ coached + prior", regression_data).fit()
    res = from_statsmodels(fit)
    np.testing.assert_allclose(res.params, fit.params)
    np.testing.assert_allclose(res.std_errors, fit.bse)
    np.testing.assert_allclose(res.pvalues, fit.pvalues)
    np.testing.assert_allclose(res.conf_int(0.9).to_numpy(), fit.conf_int(alpha=0.1).to_numpy())
    assert (res.df == fit.df_resid).all()
    tidy = res.tidy()
    assert tuple(tidy.columns) == TIDY_COLUMNS
    glance = res.glance()
    assert glance.loc[0, "r_squared"] == pytest.approx(fit.rsquared)
    assert glance.loc[0, "nobs"] == 300


def test_cluster_robust_ols_uses_normal_when_statsmodels_does(
    regression_data: pd.DataFrame,
) -> None:
    fit = smf.ols("achievement ~ coached + prior", regression_data).fit(
        cov_type="cluster", cov_kwds={"groups": regression_data["school_id"]}, use_t=False
    )
    res = from_statsmodels(fit)
    assert np.isinf(res.df).all()
    np.testing.assert_allclose(res.pvalues, fit.pvalues)
    np.testing.assert_allclose(res.std_errors, fit.bse)


def test_mixedlm_adapter_keeps_fixed_effects(regression_data: pd.DataFrame) -> None:
    fit = smf.mixedlm("achievement ~ coached + prior", regression_data, groups="school_id").fit(
        reml=True
    )
    res = from_statsmodels(fit, level="school_id")
    assert list(res.params.index) == ["Intercept", "coached", "prior"]
    np.testing.assert_allclose(res.std_errors, fit.bse.iloc[:3])
    np.testing.assert_allclose(res.pvalues, fit.pvalues.iloc[:3])
    glance = res.glance()
    assert glance.loc[0, "n_school_id"] == 30
    assert glance.loc[0, "var_residual"] == pytest.approx(fit.scale)
    assert glance.loc[0, "var_school_id"] == pytest.approx(float(fit.cov_re.iloc[0, 0]))
    assert res.variance_components is not None
    assert list(res.variance_components.frame["term"]) == ["Intercept", "residual"]


def test_linearmodels_panel_and_iv(regression_data: pd.DataFrame) -> None:
    from linearmodels.iv import IV2SLS
    from linearmodels.panel import PanelOLS

    panel = regression_data.assign(year=np.tile(np.arange(10), 30)).set_index(["school_id", "year"])
    fit = PanelOLS.from_formula("achievement ~ coached + prior + EntityEffects", panel).fit(
        cov_type="clustered", cluster_entity=True
    )
    res = from_linearmodels(fit)
    np.testing.assert_allclose(res.params, fit.params)
    np.testing.assert_allclose(res.std_errors, fit.std_errors)
    np.testing.assert_allclose(res.pvalues, fit.pvalues, rtol=1e-10)
    iv = IV2SLS.from_formula(
        "achievement ~ 1 + prior + [coached ~ school_id]", regression_data
    ).fit()
    iv_res = from_linearmodels(iv)
    np.testing.assert_allclose(iv_res.std_errors, iv.std_errors)
    np.testing.assert_allclose(iv_res.pvalues, iv.pvalues, rtol=1e-10)
    assert "first_stage_F" in iv_res.glance().columns


def test_dropped_rows_are_reported() -> None:
    dropped = Dropped(rows=(3, 7, 9), reasons=("missing prior", "missing prior", "missing outcome"))
    assert dropped.n == 3
    assert dropped.counts() == {"missing prior": 2, "missing outcome": 1}
    assert dropped.describe() == "3 rows dropped: 2 missing prior, 1 missing outcome."
    with pytest.raises(EvalkitInputError, match="one reason per dropped row"):
        Dropped(rows=(1,), reasons=())


def test_results_are_immutable_and_checked() -> None:
    terms = pd.Index(["a", "b"])
    res = ModelResults(
        params=pd.Series([1.0, 2.0], index=terms),
        cov=pd.DataFrame(np.diag([0.25, 1.0]), index=terms, columns=terms),
        df=pd.Series([10.0, np.inf], index=terms),
        nobs=12,
        model="test",
        backend="evalkit",
        warnings=("singular fit",),
    )
    with pytest.raises(AttributeError):
        res.nobs = 5  # type: ignore[misc]
    assert res.std_errors.tolist() == [0.5, 1.0]
    assert res.statistics.tolist() == [2.0, 2.0]
    assert res.pvalues["a"] > res.pvalues["b"]  # t with 10 df has fatter tails than z
    assert "Warning: singular fit" in res.summary()
    assert "<table" in res._repr_html_()
    with pytest.raises(EvalkitInputError, match="cov must be indexed"):
        ModelResults(
            params=res.params, cov=res.cov.iloc[:1, :1], df=res.df, nobs=1, model="m", backend="b"
        )
