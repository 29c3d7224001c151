"""Data for evaluations: validation, the simulated district and bundled datasets."""

from evalkit.data.rollout import simulate_rollout
from evalkit.data.simulate import (
    CONDITIONS,
    REVERSED_ITEMS,
    SURVEY_ITEMS,
    District,
    DistrictTruth,
    simulate_district,
)
from evalkit.data.validate import check_columns, check_nesting, check_unique, missing_report

__all__ = [
    "CONDITIONS",
    "REVERSED_ITEMS",
    "SURVEY_ITEMS",
    "District",
    "DistrictTruth",
    "check_columns",
    "check_nesting",
    "check_unique",
    "missing_report",
    "simulate_district",
    "simulate_rollout",
]
