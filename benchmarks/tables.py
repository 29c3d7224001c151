"""Small-cell suppression speed: the complementary-suppression audit on square count
tables (counts 0-24, threshold 10), first call and steady state."""

from __future__ import annotations

import time

import numpy as np
from _timing import best_of

from evalkit.tables import suppress_counts


def main() -> None:
    print("table      first call  steady state  cells hidden")
    for n in (10, 30, 100, 200):
        counts = np.random.default_rng(1).integers(0, 25, (n, n))
        start = time.perf_counter()
        result = suppress_counts(counts)
        first = time.perf_counter() - start
        steady = best_of(lambda counts=counts: suppress_counts(counts), 3)
        print(f"{n:>3} x {n:<3}  {first:9.3f} s  {steady:10.3f} s  {int(result.cells.sum()):>12,}")


if __name__ == "__main__":
    main()
