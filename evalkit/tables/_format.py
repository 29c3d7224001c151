"""APA-style number formatting for publication tables."""

from __future__ import annotations

import math

MINUS = "−"

_ASCII = {
    "−": "-", "–": "-", "—": "-", "∞": "inf", "\u200b": "", "\u00a0": " ",
    "²": "2", "³": "3", "×": "x", "·": "*", "±": "+/-", "≥": ">=", "≤": "<=", "≈": "~",
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "η": "eta", "θ": "theta",
    "λ": "lambda", "μ": "mu", "ρ": "rho", "σ": "sigma", "τ": "tau", "φ": "phi", "χ": "chi",
    "ω": "omega", "Σ": "Sigma", "Δ": "Delta", "Φ": "Phi", "Ω": "Omega", "π": "pi",
    "ε": "epsilon", "ν": "nu", "ψ": "psi", "→": "->", "‘": "'", "’": "'", "“": '"', "”": '"',
}  # fmt: skip


def ascii_text(text: str) -> str:
    """``text`` in plain ASCII for CSV: true minus signs become ``-``, Greek letters their
    names, invisible characters nothing; any other non-ASCII letter loses its accent.

    Examples
    --------
    >>> ascii_text("τ² = −0.12 [95% CI −0.3, ∞]")
    'tau2 = -0.12 [95% CI -0.3, inf]'
    """
    import unicodedata

    mapped = "".join(_ASCII.get(ch, ch) for ch in str(text))
    if mapped.isascii():
        return mapped
    decomposed = unicodedata.normalize("NFKD", mapped)
    return decomposed.encode("ascii", "ignore").decode("ascii")


def fmt_number(value: float | None, digits: int = 2) -> str:
    """Format a number with a leading zero and a true minus sign; blank for missing.

    Examples
    --------
    >>> fmt_number(-0.1234), fmt_number(12.5, 1), fmt_number(float("nan"))
    ('−0.12', '12.5', '')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if math.isinf(value):
        return "∞" if value > 0 else f"{MINUS}∞"
    text = f"{value:,.{digits}f}"
    if text.lstrip("-").strip("0.,") == "":
        text = text.lstrip("-")
    return text.replace("-", MINUS)


def fmt_bounded(value: float | None, digits: int = 2) -> str:
    """Format a quantity that cannot exceed 1 in size (r, R², p) without a leading zero (APA).

    Examples
    --------
    >>> fmt_bounded(0.456), fmt_bounded(-0.05)
    ('.46', '−.05')
    """
    text = fmt_number(value, digits)
    return text.replace("0.", ".", 1) if text.lstrip(MINUS).startswith("0.") else text


def fmt_p(p: float | None) -> str:
    """Exact p-value to three decimals without a leading zero; ``< .001`` below that (APA).

    Examples
    --------
    >>> fmt_p(0.0321), fmt_p(0.00002), fmt_p(1.0)
    ('.032', '< .001', '1.000')
    """
    if p is None or math.isnan(p):
        return ""
    if p < 0.001:
        return "< .001"
    return f"{p:.3f}".replace("0.", ".", 1) if p < 1 else f"{p:.3f}"


def stars(p: float, thresholds: tuple[float, ...] = (0.05, 0.01, 0.001)) -> str:
    """``*``, ``**`` or ``***`` by how many of the ``thresholds`` ``p`` falls below."""
    if p is None or math.isnan(p):
        return ""
    return "*" * sum(p < t for t in thresholds)


def fmt_df(df: float) -> str:
    """Degrees of freedom: whole numbers plainly, fractional (Satterthwaite) to one decimal, ∞ for z."""
    if math.isinf(df):
        return "∞"
    return f"{df:.0f}" if abs(df - round(df)) < 1e-9 else f"{df:.1f}"
