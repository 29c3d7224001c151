"""A Kraft-style synthesis of coaching studies on the SAT-coaching data: CHE + RVE,
moderators (hours of coaching, ETS involvement, homework, math vs verbal), Egger's
test, ρ and selection-model sensitivity, math and verbal effects jointly (multivariate),
forest, orchard and funnel plots; and the same workflow on an
evaluator's own coded studies (``--studies FILE``, columns as in the template that
ships with evalkit, ``evalkit/analyses/templates/coaching_studies_template.csv``;
effect sizes computed from the reported statistics).

Kraft, Blazar & Hogan's (2018) study-level data are not public, so their pooled
effects (0.49 SD on instruction, 0.18 on achievement) cannot be replicated here; the
numbers checked are those of the reference implementation on the SAT data (metafor
3.8 + clubSandwich 0.5.8, ρ = 0.66; produced by tests/reference/meta/multilevel_reference.R
and shipped as evalkit/analyses/data/metafor_sat_reference.json).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import evalkit
from evalkit import meta
from evalkit.analyses._common import (
    Comparison,
    arguments,
    finish,
    packaged,
    reference,
    save_tables,
)
from evalkit.coaching import effect_sizes_from_reports, moderator_table, synthesize
from evalkit.plots import save_figure
from evalkit.tables import meta_summary_table

DESCRIPTION = (__doc__ or "").splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    """Run the analysis; returns 0 when every number is within its tolerance."""
    args = arguments("coaching_synthesis", DESCRIPTION, argv, studies=True)
    metafor = reference("metafor_sat_reference")
    sat = evalkit.datasets.load("kalaian1996")
    sat["math"] = (sat["outcome"] == "math").astype(int)
    # homework has two 'l' entries (Reynolds & Oberman; a typo for 1 in the source data):
    # metafor reads the column as a factor, so the categorical coding is declared here.
    result = synthesize(
        sat, moderators="math + hrs + ets + C(homework)", rho=0.66, outcome="outcome"
    )
    assert result.moderated is not None
    tables = {
        "overall": meta_summary_table(
            result.che, robust_result=result.robust, title="SAT coaching: overall (CHE + CR2)"
        ),
        "moderators": meta_summary_table(
            result.moderated,
            robust_result=result.moderated_robust,
            title="SAT coaching: moderators",
        ),
    }
    files = save_tables(tables, args.out)
    for name, figure in result.figures.items():
        files.append(save_figure(figure, args.out / f"{name}.png"))
    result.rho_sensitivity.to_csv(args.out / "rho_sensitivity.csv", index=False)
    assert result.selection is not None and result.joint_robust is not None
    result.selection.to_csv(args.out / "selection_sensitivity.csv", index=False)
    result.joint_robust.tidy().to_csv(args.out / "math_and_verbal_jointly.csv", index=False)
    files += [args.out / "selection_sensitivity.csv", args.out / "math_and_verbal_jointly.csv"]
    print("Selection-model sensitivity (SAT):")
    print(result.selection.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("Math and verbal jointly (multivariate UN, CR2):")
    print(
        result.joint_robust.tidy()[["term", "estimate", "std_error", "df"]].to_string(index=False)
    )
    for warning in result.joint_robust.warnings:
        print(f"Note: {warning}")
    print(tables["moderators"].to_markdown())
    print(f"Egger's test (CR2): {result.egger}")
    print(
        f"Meta-regression: {result.moderator_rows_dropped} effect sizes without moderator values left out."
    )

    own_studies = args.studies is not None
    template = args.studies if own_studies else packaged("templates/coaching_studies_template.csv")
    coded = effect_sizes_from_reports(pd.read_csv(template))
    by_domain = {}
    for domain, part in coded.groupby("outcome_domain"):
        fit = meta.random_effects(part, effect="yi", variance="vi", test="knha")
        by_domain[domain] = float(fit.params["Intercept"])
    label = f"Your studies ({template})" if own_studies else "Template example (fictitious rows)"
    print(f"{label}: pooled g by domain {by_domain}")
    coded.to_csv(args.out / "coded_effect_sizes.csv", index=False)
    files.extend(_own_synthesis(coded, args.out))

    che, rve = metafor["sat_che_mods"], metafor["sat_che_mods_CR2"]
    check = Comparison(
        "metafor 3.8 + clubSandwich 0.5.8 on the SAT data (CHE, ρ = 0.66, CR2)", label="reference"
    )
    mods = result.moderated_robust
    assert mods is not None
    for k, term in enumerate(["Intercept", "math", "hrs", "ets", "homework"]):
        check.check(f"{term}: estimate", float(mods.params.iloc[k]), che["beta"][k], 1e-6)
        check.check(f"{term}: CR2 SE", float(mods.std_errors.iloc[k]), rve["se"][k], 1e-6)
    return finish(check, files, args.out)


def _own_synthesis(coded: pd.DataFrame, out: Path) -> list[Path]:
    """The coded studies through the full synthesis: CHE + CR2, both outcome domains
    jointly, selection-model sensitivity, the program-feature moderator table and the
    forest plot with the robust pooled estimate."""
    two_domains = coded["outcome_domain"].nunique() > 1
    own = synthesize(coded, outcome="outcome_domain" if two_domains else None)
    written = [save_figure(own.figures["forest"], out / "own_forest.png")]
    assert own.selection is not None
    own.selection.to_csv(out / "own_selection_sensitivity.csv", index=False)
    features = moderator_table(coded)
    features.to_csv(out / "own_moderators.csv", index=False)
    written += [out / "own_selection_sensitivity.csv", out / "own_moderators.csv"]
    print("Selection-model sensitivity (your studies):")
    print(own.selection.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("Program features (one CHE meta-regression each, CR2):")
    print(features.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if own.joint_robust is not None:
        print("Both outcome domains jointly (multivariate, CR2):")
        print(
            own.joint_robust.tidy()[["term", "estimate", "std_error", "df"]].to_string(index=False)
        )
    for note in (*own.notes, *own.che.warnings):
        print(f"Note: {note}")
    return written


if __name__ == "__main__":
    raise SystemExit(main())
