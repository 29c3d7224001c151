"""Study design: minimum detectable effects, power and sample size for coaching studies,
analytic (PowerUp!'s designs) and by simulation with the multilevel engine."""

from evalkit.power.analytic import PowerAnalysis, design_info, mdes, power, sample_size
from evalkit.power.binary import BinaryPowerAnalysis, mdes_binary, power_binary
from evalkit.power.designs import DESIGNS, Design
from evalkit.power.simulation import (
    SimulatedPower,
    SimulationDesign,
    default_formula,
    design_grid,
    power_curve,
    simulate_power,
    simulate_study,
)

__all__ = [
    "DESIGNS",
    "BinaryPowerAnalysis",
    "Design",
    "PowerAnalysis",
    "SimulatedPower",
    "SimulationDesign",
    "default_formula",
    "design_grid",
    "design_info",
    "mdes",
    "mdes_binary",
    "power",
    "power_binary",
    "power_curve",
    "sample_size",
    "simulate_power",
    "simulate_study",
]
