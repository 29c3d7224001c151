"""How many BLAS threads a computation may use.

OpenBLAS starts one thread per core, and pip's NumPy and SciPy wheels each bring
their own OpenBLAS, so a process has two thread pools. Whose threads spin-wait for
work between calls, so with both pools at two threads a crossed fit on a two-core
machine ran slower than with one thread (1.5 s against 1.0 s on InstEval). The
contention is between the pools, not in the factorisation: SciPy's LAPACK on two
threads with NumPy's BLAS on one is the fastest setting measured (one likelihood
evaluation on InstEval: 72–90 ms against 94–118 ms with one thread everywhere and
115–146 ms with two everywhere). :func:`blas_threads` sets one limit for every BLAS
in a block of code; :func:`lapack_threads` gives SciPy's LAPACK the cores and every
other BLAS one thread. Both go through threadpoolctl (and do nothing without it).
"""

from __future__ import annotations

import contextlib
import os
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


@contextlib.contextmanager
def lapack_threads() -> Iterator[None]:
    """SciPy's own BLAS/LAPACK keeps its threads (one per core) inside the block, every
    other BLAS library is limited to one thread.

    SciPy's pip wheel keeps its OpenBLAS in a ``scipy.libs`` folder; where SciPy and
    NumPy share one library (conda, a system BLAS) there is one pool and nothing to
    limit. If several libraries are loaded and none is SciPy's own, all get one thread
    (the contention is then between unknown pools)."""
    controller = _controller()
    if controller is None:
        yield
        return
    blas = [lib for lib in controller.lib_controllers if lib.user_api == "blas"]
    scipy_own = [lib.filepath for lib in blas if _in_folder(lib.filepath, "scipy.libs")]
    others = [lib.filepath for lib in blas if lib.filepath not in scipy_own]
    if len(blas) <= 1 or not others:
        yield
        return
    limited = others if scipy_own else [lib.filepath for lib in blas]
    with controller.select(filepath=limited).limit(limits=1):
        yield


def _in_folder(path: str, folder: str) -> bool:
    return os.path.basename(os.path.dirname(path)) == folder
