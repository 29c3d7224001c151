"""Priors for the Bayesian mixed models: a small, validated specification that is
stated on the effect-size scale and turned into PyMC variables when a model is built.

Coefficient priors are in outcome SDs per unit of the predictor (for a 0/1 treatment
indicator, in effect-size units); SD priors in outcome SDs. For ``family="bernoulli"``
both are on the logit scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evalkit.core import EvalkitInputError

COEFFICIENT_FAMILIES = ("normal", "student_t")
SD_FAMILIES = ("half_normal", "half_student_t", "exponential")


@dataclass(frozen=True)
class Prior:
    """A prior distribution by family and parameters.

    Build one with :meth:`normal`, :meth:`student_t`, :meth:`half_normal`,
    :meth:`half_student_t` or :meth:`exponential`; in ``priors=`` a bare number is
    shorthand for ``Normal(0, number)`` (coefficients) or ``HalfNormal(number)`` (SDs).
    """

    family: str
    mu: float = 0.0
    sigma: float = 1.0
    nu: float = math.inf
    lam: float = 1.0

    @classmethod
    def normal(cls, mu: float, sigma: float) -> Prior:
        """``Normal(mu, sigma)`` for a coefficient."""
        return cls("normal", mu=float(mu), sigma=float(sigma))

    @classmethod
    def student_t(cls, nu: float, mu: float, sigma: float) -> Prior:
        """Student-t with ``nu`` degrees of freedom, location ``mu`` and scale ``sigma``."""
        return cls("student_t", mu=float(mu), sigma=float(sigma), nu=float(nu))

    @classmethod
    def half_normal(cls, sigma: float) -> Prior:
        """``HalfNormal(sigma)`` for an SD."""
        return cls("half_normal", sigma=float(sigma))

    @classmethod
    def half_student_t(cls, nu: float, sigma: float) -> Prior:
        """Half Student-t (``nu`` = 1 is the half-Cauchy) for an SD."""
        return cls("half_student_t", sigma=float(sigma), nu=float(nu))

    @classmethod
    def exponential(cls, lam: float) -> Prior:
        """``Exponential(lam)`` (mean 1/lam) for an SD."""
        return cls("exponential", lam=float(lam))

    def describe(self) -> str:
        """The prior as text, e.g. ``Normal(0, 0.5)``."""
        if self.family == "normal":
            return f"Normal({self.mu:g}, {self.sigma:g})"
        if self.family == "student_t":
            return f"StudentT({self.nu:g}, {self.mu:g}, {self.sigma:g})"
        if self.family == "half_normal":
            return f"HalfNormal({self.sigma:g})"
        if self.family == "half_student_t":
            return f"HalfStudentT({self.nu:g}, {self.sigma:g})"
        return f"Exponential({self.lam:g})"

    def check(self, name: str, families: Sequence[str]) -> Prior:
        """This prior, after checking that it suits parameter ``name``."""
        if self.family not in families:
            raise EvalkitInputError(
                f"prior for {name}: {self.family!r} is not available here; choose "
                f"{', '.join(families)}."
            )
        values = {"mu": self.mu, "sigma": self.sigma, "nu": self.nu, "lam": self.lam}
        if not math.isfinite(self.mu):
            raise EvalkitInputError(f"prior for {name}: mu must be finite, got {self.mu!r}.")
        for key in ("sigma", "nu", "lam"):
            if not values[key] > 0 or math.isnan(values[key]):
                raise EvalkitInputError(
                    f"prior for {name}: {key} must be positive, got {values[key]!r}."
                )
        if self.family in ("student_t", "half_student_t") and not math.isfinite(self.nu):
            raise EvalkitInputError(f"prior for {name}: give the degrees of freedom nu.")
        return self

    def variable(self, name: str, **kwargs: Any) -> Any:
        """The PyMC random variable (inside a model context)."""
        import pymc as pm

        if self.family == "normal":
            return pm.Normal(name, self.mu, self.sigma, **kwargs)
        if self.family == "student_t":
            return pm.StudentT(name, nu=self.nu, mu=self.mu, sigma=self.sigma, **kwargs)
        if self.family == "half_normal":
            return pm.HalfNormal(name, self.sigma, **kwargs)
        if self.family == "half_student_t":
            return pm.HalfStudentT(name, nu=self.nu, sigma=self.sigma, **kwargs)
        return pm.Exponential(name, self.lam, **kwargs)

    def distribution(self, **kwargs: Any) -> Any:
        """The unnamed PyMC distribution of an SD prior (for ``LKJCholeskyCov``)."""
        import pymc as pm

        if self.family == "half_normal":
            return pm.HalfNormal.dist(self.sigma, **kwargs)
        if self.family == "half_student_t":
            return pm.HalfStudentT.dist(nu=self.nu, sigma=self.sigma, **kwargs)
        if self.family == "exponential":
            return pm.Exponential.dist(self.lam, **kwargs)
        raise EvalkitInputError(f"{self.describe()} is not a prior for an SD.")


@dataclass
class ModelPriors:
    """Every parameter's prior after defaults and overrides."""

    coefficients: list[Prior]
    sigma: Prior | None
    sds: dict[str, Prior]
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def all_normal(self) -> bool:
        """Whether every coefficient prior is Normal (β can then be integrated out)."""
        return all(p.family == "normal" for p in self.coefficients)


def resolve(
    priors: Mapping[str, Prior | float] | None,
    *,
    terms: Sequence[str],
    default_scales: np.ndarray,
    levels: Sequence[str],
    gaussian: bool,
) -> ModelPriors:
    """Defaults with the caller's overrides: ``beta`` (all coefficients), a term's
    name, ``sigma`` or ``sd_<level>``. Unknown names and invalid parameters are errors."""
    given = dict(priors or {})
    sd_names = [f"sd_{level}" for level in levels]
    known = ["beta", *terms, *(["sigma"] if gaussian else []), *sd_names]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise EvalkitInputError(
            f"unknown prior(s) {', '.join(unknown)}; the model's are {', '.join(known)}."
        )
    for name, value in given.items():
        if not isinstance(value, (Prior, int, float)) or isinstance(value, bool):
            raise EvalkitInputError(
                f"prior for {name}: give an evalkit.bayes.Prior or a positive number, "
                f"not {type(value).__name__}."
            )

    def coefficient(name: str, default: Prior) -> Prior:
        value = given.get(name, given.get("beta", default))
        prior = Prior.normal(0.0, value) if isinstance(value, (int, float)) else value
        return prior.check(name, COEFFICIENT_FAMILIES)

    def sd(name: str) -> Prior:
        value = given.get(name, Prior.half_normal(1.0))
        prior = Prior.half_normal(value) if isinstance(value, (int, float)) else value
        return prior.check(name, SD_FAMILIES)

    coefficients = [
        coefficient(term, Prior.normal(0.0, float(scale)))
        for term, scale in zip(terms, default_scales, strict=True)
    ]
    notes = {"beta": "Normal(0, 2.5/SD(x)); intercept Normal(0, 5) (standardised outcome)"}
    for term, prior in zip(terms, coefficients, strict=True):
        if term in given or "beta" in given:
            notes[f"beta[{term}]"] = f"{prior.describe()} (outcome SDs per unit of {term})"
    sigma = sd("sigma") if gaussian else None
    if sigma is not None:
        notes["sigma"] = f"{sigma.describe()} (outcome SDs)"
    sds = {level: sd(f"sd_{level}") for level in levels}
    notes.update({f"sd_{level}": f"{p.describe()} (outcome SDs)" for level, p in sds.items()})
    return ModelPriors(coefficients=coefficients, sigma=sigma, sds=sds, notes=notes)
