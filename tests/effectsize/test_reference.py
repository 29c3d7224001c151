"""Agreement with metafor::escalc on public data (tests/reference/effectsize_reference.R)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evalkit import effectsize as es

# Both sides are closed-form: agreement to 1e-10 relative is expected.
RTOL = 1e-10


def test_smd_exact_correction_matches_metafor(reference_dir: Path) -> None:
    ref = pd.read_csv(reference_dir / "effectsize_smd.csv")
    ours = es.hedges_g(
        ref["m1i"], ref["m2i"], ref["sd1i"], ref["sd2i"], ref["n1i"], ref["n2i"], correction="exact"
    )
    np.testing.assert_allclose(ours.estimate, ref["yi"], rtol=RTOL)
    np.testing.assert_allclose(ours.variance, ref["vi"], rtol=RTOL)


def test_wwc_correction_is_close_to_exact(reference_dir: Path) -> None:
    ref = pd.read_csv(reference_dir / "effectsize_smd.csv")
    ours = es.hedges_g(ref["m1i"], ref["m2i"], ref["sd1i"], ref["sd2i"], ref["n1i"], ref["n2i"])
    # The approximation 1 - 3/(4 df - 1) is within 1e-4 of J(df) for df >= 20.
    np.testing.assert_allclose(ours.estimate, ref["yi"], rtol=2e-4)


def test_cox_index_matches_metafor_or2dn(reference_dir: Path) -> None:
    ref = pd.read_csv(reference_dir / "effectsize_cox.csv")
    n_t, n_c = ref["tpos"] + ref["tneg"], ref["cpos"] + ref["cneg"]
    ours = es.cox_index(ref["tpos"] / n_t, ref["cpos"] / n_c, n_t, n_c, correction="none")
    np.testing.assert_allclose(ours.estimate, ref["yi"], rtol=RTOL)
    np.testing.assert_allclose(ours.variance, ref["vi"], rtol=RTOL)
