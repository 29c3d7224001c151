"""evalkit: estimate what instructional coaching does to instruction and achievement."""

from evalkit import adapters, core, datasets, effectsize, tables
from evalkit.core import EvalkitInputError, EvalkitWarning
from evalkit.data import simulate_district

__version__ = "0.1.0"

__all__ = [
    "EvalkitInputError",
    "EvalkitWarning",
    "__version__",
    "adapters",
    "core",
    "datasets",
    "effectsize",
    "simulate_district",
    "tables",
]
