"""Multilevel mediation: how much of coaching's effect on achievement runs through
instruction — 2-2-1, 2-1-1, 3-2-1 (and 3-3-1, 3-1-1) designs, Monte Carlo and
cluster-bootstrap intervals, moderated mediation, measurement-error correction of the
b path and sensitivity to mediator–outcome confounding."""

from evalkit.mediation._design import Design, MediationDesign, Moderation
from evalkit.mediation._fit import mediation
from evalkit.mediation._results import MediationResults

__all__ = ["Design", "MediationDesign", "MediationResults", "Moderation", "mediation"]
