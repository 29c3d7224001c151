"""The crossed engine's algebra against dense products of a small design: the
elimination update (random intercepts and random slopes on the factor with most
groups), the reduction (``log|M|``, ``XᵀM⁻¹X``, ``XᵀM⁻¹y``, ``yᵀM⁻¹y``), the exact
gradient against central differences, and the BLAS thread setting it runs under."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from evalkit.core import lapack_threads
from evalkit.multilevel.crossed import CrossedReducer, build_crossed


def _design(q0: int, seed: int = 3):  # type: ignore[no-untyped-def]
    """Three crossed factors (40, 9 and 4 groups), 300 rows, two fixed effects; the
    first factor has ``q0`` random effects per group (intercept, then a slope)."""
    rng = np.random.default_rng(seed)
    n = 300
    codes = (rng.integers(0, 40, n), rng.integers(0, 9, n), rng.integers(0, 4, n))
    codes = tuple(np.unique(c, return_inverse=True)[1] for c in codes)
    slope = rng.normal(size=n)
    z0 = np.column_stack([np.ones(n), slope])[:, :q0]
    z = (z0, np.ones((n, 1)), np.ones((n, 1)))
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n) + slope
    return z, codes, x, y


def _dense_z(z, codes):  # type: ignore[no-untyped-def]
    blocks = []
    for zl, c in zip(z, codes, strict=True):
        groups, q = int(c.max()) + 1, zl.shape[1]
        block = np.zeros((zl.shape[0], groups * q))
        for k in range(q):
            block[np.arange(zl.shape[0]), c * q + k] = zl[:, k]
        blocks.append(block)
    return blocks


@pytest.mark.parametrize("q0", [1, 2])
def test_update_is_the_dense_elimination_product(q0: int) -> None:
    z, codes, x, y = _design(q0)
    stats = build_crossed(z, codes, x, y)
    blocks = _dense_z(z, codes)
    rest = np.column_stack([*blocks[1:], x, y])
    rng = np.random.default_rng(1)
    groups = int(codes[0].max()) + 1
    a = rng.normal(size=(groups, q0, q0))
    weights = a @ np.swapaxes(a, 1, 2)  # symmetric blocks D_g
    d_full = linalg.block_diag(*weights)
    expected = rest.T @ blocks[0] @ d_full @ blocks[0].T @ rest
    got = CrossedReducer(stats).update(weights)
    lower = np.tril_indices_from(expected)
    np.testing.assert_allclose(got[lower], expected[lower], rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("q0", [1, 2])
def test_reduction_equals_dense_algebra(q0: int) -> None:
    z, codes, x, y = _design(q0)
    stats = build_crossed(z, codes, x, y)
    zz = np.column_stack(_dense_z(z, codes))
    t0 = np.array([[0.8, 0.0], [0.3, 0.5]])[:q0, :q0]
    factors = [t0, np.array([[0.6]]), np.array([[1.3]])]
    groups = [int(c.max()) + 1 for c in codes]
    lam = linalg.block_diag(*[np.kron(np.eye(g), t) for g, t in zip(groups, factors, strict=True)])
    m = lam.T @ zz.T @ zz @ lam + np.eye(zz.shape[1])
    v_inv = np.eye(y.size) - zz @ lam @ np.linalg.solve(m, lam.T @ zz.T)  # M⁻¹ = (I + ZΛΛᵀZᵀ)⁻¹
    red = CrossedReducer(stats)(factors)
    np.testing.assert_allclose(red.logdet, np.linalg.slogdet(m)[1], rtol=1e-12)
    np.testing.assert_allclose(red.xtmx, x.T @ v_inv @ x, rtol=1e-10)
    np.testing.assert_allclose(red.xtmy, x.T @ v_inv @ y, rtol=1e-10)
    np.testing.assert_allclose(red.ytmy, y @ v_inv @ y, rtol=1e-10)


@pytest.mark.parametrize("reml", [True, False])
def test_exact_gradient_matches_central_differences(reml: bool) -> None:
    z, codes, x, y = _design(1)
    reducer = CrossedReducer(build_crossed(z, codes, x, y))
    theta = np.array([0.7, 0.4, 1.1])
    value, grad = reducer.value_and_gradient(theta, reml=reml)
    assert np.isfinite(value)
    for k in range(theta.size):
        h = 1e-6
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        numeric = (
            reducer.value_and_gradient(up, reml=reml)[0]
            - reducer.value_and_gradient(down, reml=reml)[0]
        ) / (2 * h)
        np.testing.assert_allclose(grad[k], numeric, rtol=1e-6, atol=1e-6)


def test_lapack_threads_limits_the_other_blas_and_restores_it() -> None:
    from threadpoolctl import threadpool_info

    def blas() -> dict[str, int]:
        return {
            i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"
        }

    before = blas()
    with lapack_threads():
        inside = blas()
    assert blas() == before
    scipy_own = [p for p in inside if "scipy.libs" in p]
    others = [p for p in inside if p not in scipy_own]
    if len(inside) > 1 and others:
        assert all(inside[p] == 1 for p in others)
        assert all(inside[p] == before[p] for p in scipy_own)  # SciPy's keeps its threads
    else:
        assert inside == before  # one shared library: nothing to limit
