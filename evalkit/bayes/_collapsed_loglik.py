"""The collapsed log-likelihood as one PyTensor operation, from the compiled
reductions of :mod:`evalkit.bayes._collapsed` (random intercepts; a (school, size)
shortcut at the lowest level) and :mod:`evalkit.bayes._collapsed_slopes` (random
intercepts and slopes).

Both are parameterised by θ, the entries of the relative covariance factors Λ_l
(``Σ_l = σ²Λ_lΛ_lᵀ``; for an intercept-only level θ_l = τ_l/σ), and σ². With Normal
coefficient priors β is integrated out too: with ``A = XᵀM⁻¹X/σ² + P``,
``b = XᵀM⁻¹y/σ² + Pm`` and ``μ = A⁻¹b``,
``ℓ = −½[n log 2πσ² + log|M| + yᵀM⁻¹y/σ² + mᵀPm − bᵀμ + log|A| − log|P|]``, and
``d(bᵀμ) = 2μᵀdb − μᵀdAμ``, ``d log|A| = tr(A⁻¹dA)`` give its gradient.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from evalkit.bayes._collapsed import Layout, reduce_with_gradient
from evalkit.bayes._collapsed_slopes import SlopeLayout, reduce_general


@numba.njit(cache=True)
def integrated_terms(
    logdet: float,
    total: np.ndarray,
    dlogdet: np.ndarray,
    dtotal: np.ndarray,
    variance: float,
    prior_precision: np.ndarray,
    prior_mean: np.ndarray,
    n: float,
) -> tuple[float, np.ndarray, float]:
    """ℓ with β integrated out, its gradient in the reduction's parameters and in σ²."""
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
    grad = np.empty(dlogdet.size)
    for m in range(dlogdet.size):
        dxx = np.ascontiguousarray(dtotal[m, :p, :p])
        dxy = np.ascontiguousarray(dtotal[m, :p, p])
        change = (
            dlogdet[m]
            + dtotal[m, p, p] / variance
            - (2.0 * mu @ dxy - mu @ dxx @ mu) / variance
            + np.sum(a_inv * dxx) / variance
        )
        grad[m] = -0.5 * change
    v2 = variance * variance
    grad_v = -0.5 * (
        n / variance - yy / v2 + (2.0 * mu @ xy - mu @ xx @ mu) / v2 - np.sum(a_inv * xx) / v2
    )
    if sign <= 0.0:
        value = -np.inf
    return value, grad, grad_v


@numba.njit(cache=True)
def given_terms(
    logdet: float,
    total: np.ndarray,
    dlogdet: np.ndarray,
    dtotal: np.ndarray,
    variance: float,
    beta: np.ndarray,
    n: float,
) -> tuple[float, np.ndarray, float, np.ndarray]:
    """ℓ given β, its gradient in the reduction's parameters, in σ² and in β."""
    p = beta.size
    xx = np.ascontiguousarray(total[:p, :p])
    xy = np.ascontiguousarray(total[:p, p])
    quad = total[p, p] - 2.0 * beta @ xy + beta @ xx @ beta
    value = -0.5 * (n * np.log(2.0 * np.pi * variance) + logdet + quad / variance)
    grad = np.empty(dlogdet.size)
    for m in range(dlogdet.size):
        dxy = np.ascontiguousarray(dtotal[m, :p, p])
        dxx = np.ascontiguousarray(dtotal[m, :p, :p])
        dquad = dtotal[m, p, p] - 2.0 * beta @ dxy + beta @ dxx @ beta
        grad[m] = -0.5 * (dlogdet[m] + dquad / variance)
    grad_v = -0.5 * (n / variance - quad / (variance * variance))
    return value, grad, grad_v, (xy - xx @ beta) / variance


@numba.njit(cache=True)
def _intercepts(theta, layout):  # type: ignore[no-untyped-def]
    """The intercept reduction in θ (it works in s = θ²: ∂/∂θ = 2θ ∂/∂s)."""
    logdet, total, dlogdet, dtotal = reduce_with_gradient(theta * theta, *layout)
    for m in range(theta.size):
        dlogdet[m] *= 2.0 * theta[m]
        dtotal[m] *= 2.0 * theta[m]
    return logdet, total, dlogdet, dtotal


@numba.njit(cache=True)
def loglik_integrated(theta, variance, precision, mean, layout, n):  # type: ignore[no-untyped-def]
    """ℓ with intercepts and β integrated out (``layout``: :meth:`Layout.arrays`)."""
    logdet, total, dlogdet, dtotal = _intercepts(theta, layout)
    return integrated_terms(logdet, total, dlogdet, dtotal, variance, precision, mean, n)


@numba.njit(cache=True)
def loglik_given_beta(theta, variance, beta, layout, n):  # type: ignore[no-untyped-def]
    """ℓ with intercepts integrated out, given β."""
    logdet, total, dlogdet, dtotal = _intercepts(theta, layout)
    return given_terms(logdet, total, dlogdet, dtotal, variance, beta, n)


@numba.njit(cache=True)
def loglik_slopes_integrated(theta, variance, precision, mean, layout, n):  # type: ignore[no-untyped-def]
    """ℓ with random intercepts and slopes and β integrated out
    (``layout``: :meth:`SlopeLayout.arrays`)."""
    logdet, total, dlogdet, dtotal = reduce_general(theta, *layout)
    return integrated_terms(logdet, total, dlogdet, dtotal, variance, precision, mean, n)


@numba.njit(cache=True)
def loglik_slopes_given_beta(theta, variance, beta, layout, n):  # type: ignore[no-untyped-def]
    """ℓ with random intercepts and slopes integrated out, given β."""
    logdet, total, dlogdet, dtotal = reduce_general(theta, *layout)
    return given_terms(logdet, total, dlogdet, dtotal, variance, beta, n)


KERNELS = {
    (True, False): loglik_integrated,
    (False, False): loglik_given_beta,
    (True, True): loglik_slopes_integrated,
    (False, True): loglik_slopes_given_beta,
}
"""The log-likelihood kernels by (integrate β, random slopes)."""


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
        """The collapsed log-likelihood and its gradient (outputs: value, ∂/∂θ, ∂/∂σ²,
        ∂/∂β). Inputs: θ, σ², then β — or, when ``integrate``, the prior precision and
        mean of β — then the layout arrays and n."""

        __props__ = ("integrate", "slopes")

        def __init__(self, integrate: bool, slopes: bool) -> None:
            self.integrate = integrate
            self.slopes = slopes

        def make_node(self, *inputs: Any) -> Apply:
            tensors = [pt.as_tensor_variable(v) for v in inputs]
            outputs = [pt.dscalar(), pt.dvector(), pt.dscalar(), pt.dvector()]
            return Apply(self, tensors, outputs)

        def perform(self, node: Any, inputs: Any, outputs: Any) -> None:
            lead = 4 if self.integrate else 3
            theta, variance, *rest = inputs[:lead]
            layout, n = tuple(inputs[lead:-1]), float(inputs[-1])
            kernel = KERNELS[(self.integrate, self.slopes)]
            results = kernel(theta, float(variance), *rest, layout, n)
            if self.integrate:
                results = (*results, np.zeros(0))
            for storage, result in zip(outputs, results, strict=True):
                storage[0] = np.asarray(result, dtype=np.float64)

        def connection_pattern(self, node: Any) -> list[list[bool]]:
            differentiable = 2 if self.integrate else 3
            return [[i < differentiable] * 4 for i in range(len(node.inputs))]

        def grad(self, inputs: Any, output_grads: Any) -> list[Any]:
            _, grad_theta, grad_v, grad_beta = self(*inputs)  # type: ignore[misc]
            g = output_grads[0]
            differentiable = 2 if self.integrate else 3
            rest = [disconnected_type() for _ in inputs[differentiable:]]
            if any(not isinstance(h.type, DisconnectedType) for h in output_grads[1:]):
                return [
                    grad_not_implemented(self, i, inputs[i]) for i in range(differentiable)
                ] + rest
            wrt = [g * grad_theta, g * grad_v] + ([] if self.integrate else [g * grad_beta])
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

    salt = _source_salt()

    @register_funcify_default_op_cache_key(op_type)
    def _funcify(op: Any, node: Any = None, **kwargs: Any) -> Any:
        function = _numba_wrapper(op, numba_njit)
        return function, salt


def _source_salt() -> int:
    """A checksum of the kernels' source: PyTensor caches compiled graphs by the
    operation's type and properties, so a changed kernel must change the key."""
    import zlib
    from pathlib import Path

    here = Path(__file__).parent
    names = ("_collapsed.py", "_collapsed_slopes.py", "_collapsed_loglik.py")
    return zlib.crc32(b"".join((here / name).read_bytes() for name in names))


def _numba_wrapper(op: Any, numba_njit: Any) -> Any:
    """The operation as a numba function of its inputs (0-d arrays for scalars)."""
    kernel = KERNELS[(op.integrate, op.slopes)]
    if op.integrate and op.slopes:

        @numba_njit
        def integrated_slopes(theta, variance, precision, mean, a, b, c, d, e, f, g, h, i, j, m, n):  # type: ignore[no-untyped-def]
            value, grad, grad_v = kernel(
                theta, variance.item(), precision, mean, (a, b, c, d, e, f, g, h, i, j, m), n.item()
            )
            return np.asarray(value), grad, np.asarray(grad_v), np.zeros(0)

        return integrated_slopes
    if op.integrate:

        @numba_njit
        def integrated(theta, variance, precision, mean, a, b, c, d, e, f, g, h, n):  # type: ignore[no-untyped-def]
            value, grad, grad_v = kernel(
                theta, variance.item(), precision, mean, (a, b, c, d, e, f, g, h), n.item()
            )
            return np.asarray(value), grad, np.asarray(grad_v), np.zeros(0)

        return integrated
    if op.slopes:

        @numba_njit
        def given_slopes(theta, variance, beta, a, b, c, d, e, f, g, h, i, j, m, n):  # type: ignore[no-untyped-def]
            value, grad, grad_v, grad_beta = kernel(
                theta, variance.item(), beta, (a, b, c, d, e, f, g, h, i, j, m), n.item()
            )
            return np.asarray(value), grad, np.asarray(grad_v), grad_beta

        return given_slopes

    @numba_njit
    def given(theta, variance, beta, a, b, c, d, e, f, g, h, n):  # type: ignore[no-untyped-def]
        value, grad, grad_v, grad_beta = kernel(
            theta, variance.item(), beta, (a, b, c, d, e, f, g, h), n.item()
        )
        return np.asarray(value), grad, np.asarray(grad_v), grad_beta

    return given


def _shared(layout: Layout | SlopeLayout) -> list[Any]:
    """The layout's arrays as model data (numba would otherwise compile constants in;
    as data, a compiled model can take another data set of the same shape)."""
    import pymc as pm

    arrays = [pm.Data(f"collapsed_{i}", array) for i, array in enumerate(layout.arrays())]
    return [*arrays, pm.Data("collapsed_n", np.float64(layout.n))]


def marginal_loglik(
    layout: Layout | SlopeLayout,
    sigma: Any,
    theta: Any,
    *,
    beta: Any = None,
    prior_sd: np.ndarray | None = None,
    prior_mean: np.ndarray | None = None,
) -> Any:
    """The log-likelihood with the random effects integrated out (θ: the relative
    factors' entries); with ``beta=None`` the coefficients (prior
    ``Normal(prior_mean, prior_sd)``) are integrated out too, the prior's parameters
    held as model data."""
    import pymc as pm

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
    operation = _operation_class()(integrate, isinstance(layout, SlopeLayout))
    return operation(theta, sigma**2, *leading, *_shared(layout))[0]


def coefficient_draws(
    layout: Layout | SlopeLayout,
    sigma: np.ndarray,
    theta: np.ndarray,
    prior_sd: np.ndarray,
    rng: np.random.Generator,
    prior_mean: np.ndarray | None = None,
) -> np.ndarray:
    """Draws of β from its exact conditional posterior given each draw of σ and θ
    (``sigma``: draws; ``theta``: draws × entries); returns draws × coefficients."""
    p = prior_sd.size
    out = np.empty((sigma.size, p))
    noise = rng.standard_normal((sigma.size, p))
    inverse_prior = np.diag(1.0 / prior_sd**2)
    shift = (np.zeros(p) if prior_mean is None else prior_mean) / prior_sd**2
    for i in range(sigma.size):
        variance = sigma[i] ** 2
        total = layout.totals(np.ascontiguousarray(theta[i]))
        precision = total[:p, :p] / variance + inverse_prior
        chol = np.linalg.cholesky(precision)
        mean = np.linalg.solve(precision, total[:p, p] / variance + shift)
        out[i] = mean + np.linalg.solve(chol.T, noise[i])
    return out
