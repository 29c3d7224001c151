"""Shared type aliases and the ``Literal`` option types used across evalkit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray: TypeAlias = npt.NDArray[np.float64]
ArrayLike: TypeAlias = float | int | Sequence[float] | npt.NDArray[np.floating] | pd.Series
"""Scalars, sequences, NumPy arrays or pandas Series of numbers."""

SmallSampleCorrection = Literal["wwc", "exact", "none"]
AttritionBoundary = Literal["cautious", "optimistic"]
TableFormat = Literal["md", "html", "tex", "csv", "docx"]
Assignment = Literal["within_school", "by_school"]
