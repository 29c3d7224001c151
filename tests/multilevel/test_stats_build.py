"""The one pass over the rows: per-group cross-products by padded batched products
(groups of similar size) and by per-column sums (very unequal groups) equal the
cross-products computed group by group."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.multilevel.stats import build


@pytest.mark.parametrize(
    ("low", "high"), [(25, 26), (20, 31), (1, 60)], ids=["equal", "similar", "unequal"]
)
def test_cross_products_equal_the_direct_ones(low: int, high: int) -> None:
    rng = np.random.default_rng(low)
    sizes = rng.integers(low, high, 4000)
    codes = np.repeat(np.arange(4000), sizes)
    design = rng.standard_normal((codes.size, 6))
    shuffle = rng.permutation(codes.size)  # rows need not arrive sorted
    stats = build(design[shuffle], [codes[shuffle], codes[shuffle] // 8], [1, 1], 3)
    bounds = np.r_[0, np.cumsum(sizes)]
    direct = np.array(
        [
            design[bounds[g] : bounds[g + 1]].T @ design[bounds[g] : bounds[g + 1]]
            for g in range(4000)
        ]
    )
    np.testing.assert_allclose(stats.cross, direct, rtol=1e-12, atol=1e-11)
    assert stats.n_groups == [4000, 500]
