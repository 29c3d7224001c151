"""Effect-size tables in the WWC style."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from evalkit.core import EvalkitInputError
from evalkit.effectsize import EffectSize, improvement_index, substantively_important
from evalkit.tables._format import fmt_number, fmt_p
from evalkit.tables._table import Table


def effect_size_table(
    effects: Mapping[str, EffectSize] | pd.DataFrame,
    *,
    digits: int = 2,
    title: str = "Effect sizes",
    notes: tuple[str, ...] = (),
) -> Table:
    """One row per outcome: g, SE, CI, exact p, improvement index and WWC flags.

    Parameters
    ----------
    effects
        A mapping from outcome label to a scalar :class:`EffectSize`, or a
        DataFrame with columns ``estimate, se, ci_low, ci_high, p_value`` indexed
        by outcome (e.g. ``EffectSize.to_frame()``).
    digits
        Decimals for effect sizes.
    title, notes
        Title and extra notes.
    """
    level = 0.95
    if isinstance(effects, pd.DataFrame):
        frame = effects.copy()
        methods = sorted(set(frame["method"])) if "method" in frame else []
    else:
        for name, record in effects.items():
            if not isinstance(record, EffectSize):
                raise EvalkitInputError(
                    f"effect {name!r} is a {type(record).__name__}, not an EffectSize (from "
                    "evalkit.effectsize); pass effect-size records or a DataFrame."
                )
            if not isinstance(record.estimate, float):
                raise EvalkitInputError(
                    f"effect {name!r} is vectorised; pass its to_frame() instead."
                )
        frame = pd.DataFrame(
            {name: record.to_frame().iloc[0] for name, record in effects.items()}
        ).T
        methods = sorted({record.method for record in effects.values()})
        levels = {record.level for record in effects.values()}
        if len(levels) > 1:
            raise EvalkitInputError("all effects in one table must share one confidence level.")
        level = levels.pop() if levels else level
    required = ["estimate", "std_error", "ci_low", "ci_high", "p_value"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise EvalkitInputError(f"effects is missing column(s) {', '.join(missing)}.")
    frame[required] = frame[required].astype(float)
    ci_label = f"{round(level * 100)}% CI"
    body = pd.DataFrame(
        {
            "g": [fmt_number(v, digits) for v in frame["estimate"]],
            "SE": [fmt_number(v, digits) for v in frame["std_error"]],
            ci_label: [
                f"[{fmt_number(lo, digits)}, {fmt_number(hi, digits)}]"
                for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)
            ],
            "p": [fmt_p(p) for p in frame["p_value"]],
            "Improvement index": [fmt_number(improvement_index(g), 1) for g in frame["estimate"]],
            "Substantively important": [
                "yes" if substantively_important(g) else "no" for g in frame["estimate"]
            ],
        },
        index=[str(i) for i in frame.index],
    )
    all_notes = [
        "g = Hedges' g; improvement index = 100·Φ(g) − 50; substantively important: |g| ≥ 0.25 (WWC).",
        *[f"Method: {m}." for m in methods],
        *notes,
    ]
    return Table(
        body=body, title=title, notes=tuple(all_notes), data=frame[required], stub_header="Outcome"
    )
