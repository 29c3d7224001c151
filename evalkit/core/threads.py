"""How many BLAS threads a computation may use.

OpenBLAS starts one thread per core. For mid-sized dense factorisations (a side of a
thousand or so) two threads on a two-core machine are slower than one — measured for
the crossed engine on InstEval: 1.5 s against 1.0 s — while from a side of about
2,000 up they are nearly twice as fast. :func:`blas_threads` sets the limit for a
block of code through threadpoolctl (if it is installed; otherwise it does nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return None
    import numpy  # noqa: F401  (the BLAS libraries must be loaded before the scan)
    import scipy.linalg  # noqa: F401

    return ThreadpoolController()


@contextlib.contextmanager
def blas_threads(limit: int | None) -> Iterator[None]:
    """Limit BLAS to ``limit`` threads inside the block (``None``: leave it as is)."""
    controller = _controller() if limit is not None else None
    if controller is None:
        yield
        return
    with controller.limit(limits=limit, user_api="blas"):
        yield


SMALL_DENSE = 2000
"""Below this side a dense factorisation runs faster on one BLAS thread."""


def threads_for(side: int) -> int | None:
    """One thread for matrices below :data:`SMALL_DENSE`, the BLAS default above."""
    return 1 if side < SMALL_DENSE else None
