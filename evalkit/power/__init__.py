"""Study design: minimum detectable effects, power and sample size for coaching studies,
analytic (PowerUp!'s designs, including mediation) and by simulation with the
multilevel engine."""

from evalkit.power.analytic import PowerAnalysis, design_info, mdes, power, sample_size
from evalkit.power.binary import BinaryPowerAnalysis, mdes_binary, power_binary
from evalkit.power.designs import DESIGNS, Design
from evalkit.power.mediation import MediationPower, mdes_mediation, power_mediation
from evalkit.power.mediation_simulation import (
    SimulatedMediationPower,
    simulate_mediation_power,
    simulate_mediation_trial,
)
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
    "MediationPower",
    "PowerAnalysis",
    "SimulatedMediationPower",
    "SimulatedPower",
    "SimulationDesign",
    "default_formula",
    "design_grid",
    "design_info",
    "mdes",
    "mdes_binary",
    "mdes_mediation",
    "power",
    "power_binary",
    "power_curve",
    "power_mediation",
    "sample_size",
    "simulate_mediation_power",
    "simulate_mediation_trial",
    "simulate_power",
    "simulate_study",
]
