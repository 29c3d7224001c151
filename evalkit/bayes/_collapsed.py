"""The collapsed (marginal) likelihood of a Gaussian random-intercepts model as one
PyTensor operation whose value and gradient come from a compiled kernel.

With random intercepts only, V = σ²(I + Σ_l s_l Z_l Z_lᵀ) with s_l = τ_l²/σ². The
REML engine's recursive Woodbury reduction turns the per-cluster cross-products of
``[Z, X, y]`` into ``log|I + Z S Zᵀ|`` and the reduced cross-products
``[X y]ᵀ (I + Z S Zᵀ)⁻¹ [X y]``; forward-mode differentiation carries their
derivatives in s through the same recursion (see :mod:`evalkit.multilevel.gradient`).

Two things make a gradient cheap. At the lowest level the cross-products are data:
the reduction there is ``R_parent − Σ_children w(a) u uᵀ`` with ``w(a) = s/(1 + s a)``,
so the children's ``u uᵀ`` are summed in advance for every (parent, a) pair and the
work is proportional to the number of distinct cluster sizes per parent — with equal
class sizes, to the number of schools. Above it the kernel loops over groups in
compiled code (numba), so the cost of a gradient grows with the number of groups at
the upper levels, not with students or teachers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from evalkit.multilevel.stats import SufficientStats


@dataclass(frozen=True)
class Layout:
    """The data the kernel reads, prepared once per model.

    Attributes
    ----------
    pair_parent, pair_size, pair_count, pair_outer
        For each (parent group, lowest-level cluster size) pair: the parent's index, the
        size ``a = zᵀz``, the number of clusters and ``Σ u uᵀ`` over them.
    rest
        ``Σ C[1:, 1:]`` over each parent's clusters.
    parents, offsets, sizes
        Parent index of every group at levels 1 … k−1 (concatenated, level l starting at
        ``offsets[l]``) and the number of groups per level (``sizes[k] = 1``).
    n
        Number of observations.
    """

    pair_parent: np.ndarray
    pair_size: np.ndarray
    pair_count: np.ndarray
    pair_outer: np.ndarray
    rest: np.ndarray
    parents: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    n: int

    @classmethod
    def from_stats(cls, stats: SufficientStats) -> Layout:
        """Prepare the kernel's data from the REML engine's sufficient statistics."""
        if any(q != 1 for q in stats.q):
            raise ValueError("the collapsed kernel handles one random intercept per level")
        k = len(stats.q)
        cross = stats.cross
        parent_of = [_parent_map(stats, level) for level in range(k)]
        sizes = np.array([*stats.n_groups, 1], dtype=np.int64)
        first = parent_of[0]
        size = cross[:, 0, 0]
        keys, inverse, counts = np.unique(
            np.column_stack([first, size]), axis=0, return_inverse=True, return_counts=True
        )
        inverse = inverse.ravel()
        u = cross[:, 0, 1:]
        width = u.shape[1]
        pair_outer = np.zeros((keys.shape[0], width, width))
        np.add.at(pair_outer, inverse, u[:, :, None] * u[:, None, :])
        rest = np.zeros((sizes[1], width, width))
        np.add.at(rest, first, cross[:, 1:, 1:])
        upper = parent_of[1:]
        offsets = np.zeros(k, dtype=np.int64)
        for level in range(2, k):
            offsets[level] = offsets[level - 1] + sizes[level - 1]
        parents = np.concatenate(upper) if upper else np.zeros(0, dtype=np.int64)
        return cls(
            pair_parent=keys[:, 0].astype(np.int64),
            pair_size=np.ascontiguousarray(keys[:, 1]),
            pair_count=counts.astype(np.float64),
            pair_outer=pair_outer,
            rest=rest,
            parents=parents.astype(np.int64),
            offsets=offsets,
            sizes=sizes,
            n=stats.n,
        )

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The kernel's data arguments, in order."""
        return (
            self.pair_parent,
            self.pair_size,
            self.pair_count,
            self.pair_outer,
            self.rest,
            self.parents,
            self.offsets,
            self.sizes,
        )


def _parent_map(stats: SufficientStats, level: int) -> np.ndarray:
    """Index of each level-``level`` group's parent (all zeros at the top level)."""
    if level == len(stats.q) - 1:
        return np.zeros(stats.n_groups[level], dtype=np.int64)
    starts = stats.starts[level]
    return np.repeat(np.arange(starts.size), np.diff(np.r_[starts, stats.n_groups[level]]))


@numba.njit(cache=True)
def _mirror(blocks: np.ndarray) -> None:
    """Copy the upper triangle of every trailing square block to the lower one."""
    flat = blocks.reshape(-1, blocks.shape[-2], blocks.shape[-1])
    width = flat.shape[1]
    for g in range(flat.shape[0]):
        for r in range(width):
            for c in range(r + 1, width):
                flat[g, c, r] = flat[g, r, c]


@numba.njit(cache=True)
def reduce_with_gradient(
    s: np.ndarray,
    pair_parent: np.ndarray,
    pair_size: np.ndarray,
    pair_count: np.ndarray,
    pair_outer: np.ndarray,
    rest: np.ndarray,
    parents: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
    gradient: bool = True,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """``log|I + Z S Zᵀ|``, the reduced cross-products of ``[X y]`` and (when
    ``gradient``) their derivatives with respect to ``s`` (one variance ratio per level,
    lowest first). The blocks are symmetric: upper triangles are computed and mirrored."""
    k = s.size
    width = rest.shape[1]
    cur = rest.copy()
    dcur = np.zeros((k if gradient else 1, rest.shape[0], width, width))
    logdet = 0.0
    dlogdet = np.zeros(k)
    s0 = s[0]
    for i in range(pair_parent.size):
        a = pair_size[i]
        d = 1.0 + s0 * a
        w = s0 / d
        dw = 1.0 / (d * d)
        logdet += pair_count[i] * np.log(d)
        dlogdet[0] += pair_count[i] * a / d
        g = pair_parent[i]
        for r in range(width):
            for c in range(r, width):
                o = pair_outer[i, r, c]
                cur[g, r, c] -= w * o
                if gradient:
                    dcur[0, g, r, c] -= dw * o
    for level in range(1, k):
        width = cur.shape[1] - 1
        nxt = np.zeros((sizes[level + 1], width, width))
        dnxt = np.zeros((k if gradient else 1, sizes[level + 1], width, width))
        sl = s[level]
        for g in range(cur.shape[0]):
            parent = parents[offsets[level] + g]
            a = cur[g, 0, 0]
            d = 1.0 + sl * a
            w = sl / d
            logdet += np.log(d)
            for r in range(width):
                ur = cur[g, 0, r + 1]
                for c in range(r, width):
                    nxt[parent, r, c] += cur[g, r + 1, c + 1] - w * ur * cur[g, 0, c + 1]
            if not gradient:
                continue
            for m in range(level + 1):
                own = 1.0 if m == level else 0.0
                dd = own * a + sl * dcur[m, g, 0, 0]
                dlogdet[m] += dd / d
                dw = (own - w * dd) / d
                for r in range(width):
                    ur = cur[g, 0, r + 1]
                    dur = dcur[m, g, 0, r + 1]
                    for c in range(r, width):
                        uc = cur[g, 0, c + 1]
                        duc = dcur[m, g, 0, c + 1]
                        dnxt[m, parent, r, c] += (
                            dcur[m, g, r + 1, c + 1] - dw * ur * uc - w * (dur * uc + ur * duc)
                        )
        _mirror(nxt)
        if gradient:
            _mirror(dnxt)
        cur = nxt
        dcur = dnxt
    if k == 1:
        _mirror(cur)
        if gradient:
            _mirror(dcur)
    total = np.zeros((cur.shape[1], cur.shape[2]))
    dtotal = np.zeros((k, cur.shape[1], cur.shape[2]))
    for g in range(cur.shape[0]):
        total += cur[g]
        if gradient:
            for m in range(k):
                dtotal[m] += dcur[m, g]
    return logdet, total, dlogdet, dtotal


@numba.njit(cache=True)
def loglik_integrated(
    s: np.ndarray,
    variance: float,
    prior_precision: np.ndarray,
    prior_mean: np.ndarray,
    pair_parent: np.ndarray,
    pair_size: np.ndarray,
    pair_count: np.ndarray,
    pair_outer: np.ndarray,
    rest: np.ndarray,
    parents: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
    n: float,
) -> tuple[float, np.ndarray, float]:
    """Log-likelihood with the random intercepts and β (prior ``Normal(m, P⁻¹)``, P
    diagonal) integrated out, and its gradient in ``s`` and ``variance`` = σ².

    With ``A = XᵀM⁻¹X/σ² + P``, ``b = XᵀM⁻¹y/σ² + Pm`` and ``μ = A⁻¹b``:
    ``ℓ = −½[n log 2πσ² + log|M| + yᵀM⁻¹y/σ² + mᵀPm − bᵀμ + log|A| − log|P|]``
    (``∂b/∂s`` and ``∂b/∂σ²`` do not involve m, so the gradient keeps its form).
    """
    logdet, total, dlogdet, dtotal = reduce_with_gradient(
        s, pair_parent, pair_size, pair_count, pair_outer, rest, parents, offsets, sizes
    )
    p = prior_precision.size
    xx = np.ascontiguousarray(total[:p, :p])
    xy = np.ascontiguousarray(total[:p, p])
    yy = total[p, p]
    a = xx / variance + np.diag(prior_precision)
    a_inv = np.linalg.inv(a)
    shift = prior_precision * prior_mean
    b = xy / variance + shift
    mu = a_inv @ b
    sign, logdet_a = np.linalg.slogdet(a)
    value = -0.5 * (
        n * np.log(2.0 * np.pi * variance)
        + logdet
        + yy / variance
        + prior_mean @ shift
        - mu @ b
        + logdet_a
        - np.sum(np.log(prior_precision))
    )
    grad_s = np.empty(s.size)
    for m in range(s.size):
        dxx = np.ascontiguousarray(dtotal[m, :p, :p])
        dxy = np.ascontiguousarray(dtotal[m, :p, p])
        change = (
            dlogdet[m]
            + dtotal[m, p, p] / variance
            - (2.0 * mu @ dxy - mu @ dxx @ mu) / variance
            + np.sum(a_inv * dxx) / variance
        )
        grad_s[m] = -0.5 * change
    v2 = variance * variance
    grad_v = -0.5 * (
        n / variance - yy / v2 + (2.0 * mu @ xy - mu @ xx @ mu) / v2 - np.sum(a_inv * xx) / v2
    )
    if sign <= 0.0:
        value = -np.inf
    return value, grad_s, grad_v


@numba.njit(cache=True)
def loglik_given_beta(
    s: np.ndarray,
    variance: float,
    beta: np.ndarray,
    pair_parent: np.ndarray,
    pair_size: np.ndarray,
    pair_count: np.ndarray,
    pair_outer: np.ndarray,
    rest: np.ndarray,
    parents: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
    n: float,
) -> tuple[float, np.ndarray, float, np.ndarray]:
    """Log-likelihood with the random intercepts integrated out, given β, and its
    gradient in ``s``, ``variance`` = σ² and β."""
    logdet, total, dlogdet, dtotal = reduce_with_gradient(
        s, pair_parent, pair_size, pair_count, pair_outer, rest, parents, offsets, sizes
    )
    p = beta.size
    xx = np.ascontiguousarray(total[:p, :p])
    xy = np.ascontiguousarray(total[:p, p])
    quad = total[p, p] - 2.0 * beta @ xy + beta @ xx @ beta
    value = -0.5 * (n * np.log(2.0 * np.pi * variance) + logdet + quad / variance)
    grad_s = np.empty(s.size)
    for m in range(s.size):
        dxy = np.ascontiguousarray(dtotal[m, :p, p])
        dxx = np.ascontiguousarray(dtotal[m, :p, :p])
        dquad = dtotal[m, p, p] - 2.0 * beta @ dxy + beta @ dxx @ beta
        grad_s[m] = -0.5 * (dlogdet[m] + dquad / variance)
    grad_v = -0.5 * (n / variance - quad / (variance * variance))
    grad_beta = (xy - xx @ beta) / variance
    return value, grad_s, grad_v, grad_beta


def _operation_class() -> type:
    """The PyTensor operation (built lazily: PyTensor comes with the bayes extra)."""
    global _OPERATION
    if _OPERATION is not None:
        return _OPERATION
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType, disconnected_type, grad_not_implemented
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    class CollapsedLoglik(Op):
        """The collapsed log-likelihood and its gradient (outputs: value, ∂/∂s, ∂/∂σ²,
        ∂/∂β). Inputs: ``s``, σ², then β — or, when ``integrate``, the prior precision
        and mean of β — then the :class:`Layout` arrays and n."""

        __props__ = ("integrate",)

        def __init__(self, integrate: bool) -> None:
            self.integrate = integrate

        @property
        def leading(self) -> int:
            """Number of inputs before the layout arrays."""
            return 4 if self.integrate else 3

        def make_node(self, *inputs: Any) -> Apply:
            tensors = [pt.as_tensor_variable(v) for v in inputs]
            outputs = [pt.dscalar(), pt.dvector(), pt.dscalar(), pt.dvector()]
            return Apply(self, tensors, outputs)

        def perform(self, node: Any, inputs: Any, outputs: Any) -> None:
            s, variance, *rest = inputs
            if self.integrate:
                value, grad_s, grad_v = loglik_integrated(s, float(variance), *rest)
                grad_beta = np.zeros(0)
            else:
                value, grad_s, grad_v, grad_beta = loglik_given_beta(s, float(variance), *rest)
            for storage, result in zip(outputs, (value, grad_s, grad_v, grad_beta), strict=True):
                storage[0] = np.asarray(result, dtype=np.float64)

        def connection_pattern(self, node: Any) -> list[list[bool]]:
            differentiable = 2 if self.integrate else 3
            return [[i < differentiable] * 4 for i in range(len(node.inputs))]

        def grad(self, inputs: Any, output_grads: Any) -> list[Any]:
            _, grad_s, grad_v, grad_beta = self(*inputs)  # type: ignore[misc]
            g = output_grads[0]
            differentiable = 2 if self.integrate else 3
            rest = [disconnected_type() for _ in inputs[differentiable:]]
            if any(not isinstance(h.type, DisconnectedType) for h in output_grads[1:]):
                return [
                    grad_not_implemented(self, i, inputs[i]) for i in range(differentiable)
                ] + rest
            wrt = [g * grad_s, g * grad_v] + ([] if self.integrate else [g * grad_beta])
            return wrt + rest

    _register_numba(CollapsedLoglik)
    _OPERATION = CollapsedLoglik
    return CollapsedLoglik


_OPERATION: type | None = None


def _register_numba(op_type: type) -> None:
    """Give nutpie's numba backend the compiled kernels instead of an object-mode call."""
    try:
        from pytensor.link.numba.dispatch.basic import (
            numba_njit,
            register_funcify_default_op_cache_key,
        )
    except ImportError:  # older PyTensor: the object-mode fallback still works
        return

    @register_funcify_default_op_cache_key(op_type)
    def _funcify(op: Any, node: Any = None, **kwargs: Any) -> Any:
        if op.integrate:
            integrated = loglik_integrated

            @numba_njit
            def collapsed(s, variance, precision, mean, a, b, c, d, e, f, g, h, n):  # type: ignore[no-untyped-def]
                value, grad_s, grad_v = integrated(
                    s, variance.item(), precision, mean, a, b, c, d, e, f, g, h, n.item()
                )
                return np.asarray(value), grad_s, np.asarray(grad_v), np.zeros(0)

            return collapsed
        given = loglik_given_beta

        @numba_njit
        def collapsed_given(s, variance, beta, a, b, c, d, e, f, g, h, n):  # type: ignore[no-untyped-def]
            value, grad_s, grad_v, grad_beta = given(
                s, variance.item(), beta, a, b, c, d, e, f, g, h, n.item()
            )
            return np.asarray(value), grad_s, np.asarray(grad_v), grad_beta

        return collapsed_given


def shared_layout(layout: Layout) -> list[Any]:
    """The layout's arrays as model data (numba would otherwise compile constants in;
    as data, a compiled model can take another data set of the same shape)."""
    import pymc as pm

    names = ("parent", "size", "count", "outer", "rest", "parents", "offsets", "sizes")
    arrays = [
        pm.Data(f"collapsed_{name}", array)
        for name, array in zip(names, layout.arrays(), strict=True)
    ]
    return [*arrays, pm.Data("collapsed_n", np.float64(layout.n))]


def marginal_loglik(
    layout: Layout,
    sigma: Any,
    taus: list[Any],
    *,
    beta: Any = None,
    prior_sd: np.ndarray | None = None,
    prior_mean: np.ndarray | None = None,
) -> Any:
    """The log-likelihood with the random intercepts integrated out; with ``beta=None``
    the coefficients (prior ``Normal(prior_mean, prior_sd)``) are integrated out too,
    the prior's parameters held as model data."""
    import pymc as pm
    import pytensor.tensor as pt

    s = pt.stack([(tau / sigma) ** 2 for tau in taus])
    integrate = beta is None
    if integrate:
        assert prior_sd is not None
        mean = np.zeros(prior_sd.size) if prior_mean is None else prior_mean
        leading = [
            pm.Data("collapsed_prior_precision", np.asarray(1.0 / prior_sd**2, dtype=float)),
            pm.Data("collapsed_prior_mean", np.asarray(mean, dtype=float)),
        ]
    else:
        leading = [beta]
    operation = _operation_class()(integrate)
    return operation(s, sigma**2, *leading, *shared_layout(layout))[0]


def coefficient_draws(
    layout: Layout,
    sigma: np.ndarray,
    taus: np.ndarray,
    prior_sd: np.ndarray,
    rng: np.random.Generator,
    prior_mean: np.ndarray | None = None,
) -> np.ndarray:
    """Draws of β from its exact conditional posterior given each draw of σ and the
    τ's (``sigma``: draws; ``taus``: draws × levels); returns draws × coefficients."""
    k = taus.shape[1]
    p = int(layout.rest.shape[1]) - k
    out = np.empty((sigma.size, p))
    noise = rng.standard_normal((sigma.size, p))
    inverse_prior = np.diag(1.0 / prior_sd**2)
    shift = (np.zeros(p) if prior_mean is None else prior_mean) / prior_sd**2
    for i in range(sigma.size):
        variance = sigma[i] ** 2
        _, total, _, _ = reduce_with_gradient(
            taus[i] ** 2 / variance, *layout.arrays(), gradient=False
        )
        precision = total[:p, :p] / variance + inverse_prior
        chol = np.linalg.cholesky(precision)
        mean = np.linalg.solve(precision, total[:p, p] / variance + shift)
        out[i] = mean + np.linalg.solve(chol.T, noise[i])
    return out
