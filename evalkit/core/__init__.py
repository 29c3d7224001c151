"""The floor every part of evalkit stands on: the results contract, the shared
variance-components table, cluster-robust inference, input validation and errors, and
complete-case handling. Estimators, tables and workflows import from here and from
each other's public ``__init__`` only."""

from evalkit.core.errors import EvalkitInputError, EvalkitWarning
from evalkit.core.figures import figure_and_axes
from evalkit.core.formulas import read_formula
from evalkit.core.missing import MissingPolicy, complete_cases
from evalkit.core.results import TIDY_COLUMNS, Dropped, ModelResults, z_based
from evalkit.core.robust import (
    SMALL_DF,
    RobustParts,
    RobustResults,
    RobustType,
    WaldTest,
    sandwich,
    total_variance,
    wald_test,
)
from evalkit.core.sources import (
    Aggregate,
    DaskSource,
    DataQuery,
    DataSource,
    DuckDBSource,
    SourceKind,
    is_data_source,
    open_source,
    quote,
)
from evalkit.core.threads import blas_threads, lapack_threads
from evalkit.core.typing import (
    ArrayLike,
    Assignment,
    AttritionBoundary,
    FloatArray,
    SmallSampleCorrection,
    TableFormat,
)
from evalkit.core.validate import (
    MAX_ROWS_SHOWN,
    as_float_array,
    broadcast_inputs,
    check_correlation,
    check_option,
    check_text_in_numbers,
    collinear_terms,
    declared_categorical,
    describe_rows,
    merge_lookup,
    require,
    require_columns,
)
from evalkit.core.variance import (
    INTERCEPT,
    RESIDUAL,
    VarianceComponents,
    pair_term,
    variance_key,
)

__all__ = [
    "INTERCEPT",
    "MAX_ROWS_SHOWN",
    "RESIDUAL",
    "SMALL_DF",
    "TIDY_COLUMNS",
    "Aggregate",
    "ArrayLike",
    "Assignment",
    "AttritionBoundary",
    "DaskSource",
    "DataQuery",
    "DataSource",
    "Dropped",
    "DuckDBSource",
    "EvalkitInputError",
    "EvalkitWarning",
    "FloatArray",
    "MissingPolicy",
    "ModelResults",
    "RobustParts",
    "RobustResults",
    "RobustType",
    "SmallSampleCorrection",
    "SourceKind",
    "TableFormat",
    "VarianceComponents",
    "WaldTest",
    "as_float_array",
    "blas_threads",
    "broadcast_inputs",
    "check_correlation",
    "check_option",
    "check_text_in_numbers",
    "collinear_terms",
    "complete_cases",
    "declared_categorical",
    "describe_rows",
    "figure_and_axes",
    "is_data_source",
    "lapack_threads",
    "merge_lookup",
    "open_source",
    "pair_term",
    "quote",
    "read_formula",
    "require",
    "require_columns",
    "sandwich",
    "total_variance",
    "variance_key",
    "wald_test",
    "z_based",
]
