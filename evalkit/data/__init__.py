"""Data for evaluations: validation, the simulated district and bundled datasets."""

from evalkit.data.messy import EXPORT_MAPPING, bundled_export, messy_exports, write_exports
from evalkit.data.panel import PanelSDs, simulate_student_panel
from evalkit.data.ratings import RatingSDs, simulate_observation_scores
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
    "EXPORT_MAPPING",
    "REVERSED_ITEMS",
    "SURVEY_ITEMS",
    "District",
    "DistrictTruth",
    "PanelSDs",
    "RatingSDs",
    "bundled_export",
    "check_columns",
    "check_nesting",
    "check_unique",
    "messy_exports",
    "missing_report",
    "simulate_district",
    "simulate_observation_scores",
    "simulate_rollout",
    "simulate_student_panel",
    "write_exports",
]
