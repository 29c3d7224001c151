"""Publication tables: regression, effect-size and descriptive tables in six formats."""

from evalkit.tables._descriptive import SUPPRESSED, descriptive_table
from evalkit.tables._effects import effect_size_table
from evalkit.tables._format import fmt_bounded, fmt_df, fmt_number, fmt_p, stars
from evalkit.tables._meta import meta_summary_table
from evalkit.tables._regression import regression_table
from evalkit.tables._suppression import DEFAULT_THRESHOLD, SuppressedCounts, suppress_counts
from evalkit.tables._table import Table

__all__ = [
    "DEFAULT_THRESHOLD",
    "SUPPRESSED",
    "SuppressedCounts",
    "Table",
    "descriptive_table",
    "effect_size_table",
    "fmt_bounded",
    "fmt_df",
    "fmt_number",
    "fmt_p",
    "meta_summary_table",
    "regression_table",
    "stars",
    "suppress_counts",
]
