"""evalkit: estimate what instructional coaching does to instruction and achievement."""

from evalkit import adapters, datasets, effectsize, results, tables
from evalkit._errors import EvalkitInputError, EvalkitWarning
from evalkit.data import simulate_district

__version__ = "0.1.0"

__all__ = [
    "EvalkitInputError",
    "EvalkitWarning",
    "__version__",
    "adapters",
    "datasets",
    "effectsize",
    "results",
    "simulate_district",
    "tables",
]
