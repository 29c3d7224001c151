"""The ``evalkit`` command line.

``evalkit run <analysis | script.py>``, ``evalkit meta``, ``evalkit lmm``,
``evalkit effectsize``, ``evalkit power`` and ``evalkit list``. Every command takes
``--out`` (where tables and figures go), ``--format`` (md, html, tex, csv, docx, or
``json``: the tidy and glance tables as JSON on stdout, for scripts) and ``--seed``.

Exit codes: 0 success; 1 an analysis's comparison with published numbers failed;
2 bad usage or bad input (the message says what and where); 3 an unexpected error.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.core import EvalkitInputError

FORMATS = ("md", "html", "tex", "csv", "docx", "json")


BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_boolean(name: str, value: str) -> bool:
    """true/yes/1 or false/no/0 (any case); anything else is an error naming the option."""
    word = value.strip().lower()
    if word not in BOOLEAN_WORDS:
        raise EvalkitInputError(f"--param {name}={value!r}: write true/false, yes/no or 1/0.")
    return BOOLEAN_WORDS[word]


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise EvalkitInputError(f"--param {name}={value!r}: {name} must be a number.") from None
    return number


def _encoding(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encoding",
        default="utf-8",
        help="text encoding of the CSV file (default utf-8; e.g. latin-1, cp1252)",
    )


def read_table(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV file; an encoding problem names the file, the first bad byte and its
    line, and the option that fixes it."""
    try:
        return pd.read_csv(path, encoding=encoding)
    except UnicodeDecodeError:
        raw = Path(path).read_bytes()
        try:
            raw.decode(encoding)
            where = ""
        except UnicodeDecodeError as error:
            line = raw[: error.start].count(b"\n") + 1
            where = f" (byte 0x{raw[error.start]:02x} on line {line})"
        raise EvalkitInputError(
            f"{path} is not valid {encoding} text{where}; save it as UTF-8, or pass "
            "--encoding with the file's encoding (for example --encoding latin-1 or cp1252)."
        ) from None
    except LookupError:
        raise EvalkitInputError(f"--encoding {encoding!r} is not a known text encoding.") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="folder for tables and figures")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="md",
        help="output format (json: tidy/glance on stdout)",
    )
    parser.add_argument("--seed", type=int, default=2026, help="random seed (simulations)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``evalkit --help``)."""
    parser = argparse.ArgumentParser(
        prog="evalkit",
        description="Evaluate instructional coaching: multilevel models, meta-analysis, effect sizes and power.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run a replication analysis (by name) or an analysis script; options the "
        "analysis defines (e.g. --studies FILE) pass through",
    )
    run.add_argument(
        "analysis", help="analysis name (see `evalkit list`) or a path to a .py script"
    )
    _common(run)

    sub.add_parser("list", help="list the bundled replication analyses")

    evaluate = sub.add_parser(
        "evaluate", help="the coaching evaluation on a district's own exports (CSV, Excel, Parquet)"
    )
    for table, flag in (
        ("schools", "--schools"), ("teachers", "--teachers"), ("coaching_log", "--log"),
        ("observations", "--observations"), ("students", "--students"), ("survey", "--survey"),
    ):  # fmt: skip
        evaluate.add_argument(flag, dest=table, type=Path, required=table != "survey",
                              help=f"the {table.replace('_', ' ')} file")  # fmt: skip
    evaluate.add_argument("--map", dest="mapping", type=Path, default=None,
                          help="TOML mapping of your column names to evalkit's")  # fmt: skip
    evaluate.add_argument("--date-format", default=None, help="e.g. %%d/%%m/%%Y")
    evaluate.add_argument(
        "--teacher-moves",
        choices=["error", "first", "most_students", "split"],
        default="error",
        help="what a teacher listed under two schools means",
    )
    evaluate.add_argument(
        "--covariate", action="append", default=[], help="a student-table covariate (repeat)"
    )
    _encoding(evaluate)
    evaluate.add_argument("--out", type=Path, default=Path("report"), help="report folder")
    evaluate.add_argument(
        "--format", choices=[*FORMATS[:-1], "all"], default="all", help="table format(s)"
    )

    meta = sub.add_parser("meta", help="meta-analysis of a CSV of effect sizes")
    meta.add_argument("csv", type=Path)
    _encoding(meta)
    meta.add_argument("--effect", required=True, help="effect-size column")
    meta.add_argument("--variance", required=True, help="sampling-variance column")
    meta.add_argument("--method", default="REML", help="tau^2 estimator (REML, ML, DL, ...)")
    meta.add_argument("--test", default="z", choices=("z", "knha"), help="z or Knapp-Hartung")
    meta.add_argument("--study", help="study column: effect sizes nested in studies (CHE + CR2)")
    meta.add_argument(
        "--rho", type=float, default=0.8, help="imputed within-study correlation (with --study)"
    )
    meta.add_argument("--moderators", help='moderators, e.g. "hrs + C(design)"')
    _common(meta)

    lmm = sub.add_parser(
        "lmm", help='linear mixed model: evalkit lmm "y ~ x + (1 | school)" data.csv'
    )
    lmm.add_argument("formula")
    lmm.add_argument(
        "csv",
        type=Path,
        help="a CSV file (read into memory), or Parquet files (a path or quoted glob such "
        "as 'state/*.parquet', fitted where they live)",
    )
    _encoding(lmm)
    lmm.add_argument("--method", default="REML", choices=("REML", "ML"))
    lmm.add_argument(
        "--df-method",
        default="satterthwaite",
        choices=("satterthwaite", "kenward-roger", "containment", "residual", "none"),
    )
    _common(lmm)

    es = sub.add_parser("effectsize", help="Hedges' g from group statistics (WWC)")
    es.add_argument("--mean-t", type=float, required=True)
    es.add_argument("--mean-c", type=float, required=True)
    es.add_argument("--sd-t", type=float, required=True)
    es.add_argument("--sd-c", type=float, required=True)
    es.add_argument("--n-t", type=float, required=True)
    es.add_argument("--n-c", type=float, required=True)
    es.add_argument("--icc", type=float, help="ICC for the clustering correction")
    es.add_argument("--cluster-size", type=float, help="average cluster size (with --icc)")
    _common(es)

    power = sub.add_parser("power", help="MDES, power or sample size of a design (PowerUp! names)")
    power.add_argument(
        "design", help="ira, bira2c1, bira2f1, bira2r1, cra2r2, bira3r1, bcra3f2, bcra3r2, cra3r3"
    )
    power.add_argument("--solve", choices=("mdes", "power", "sample_size"), default="mdes")
    power.add_argument("--es", type=float, help="effect size (for power and sample_size)")
    power.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="design parameter, repeatable: --param rho2=0.1 --param n=20",
    )
    _common(power)
    return parser


def _emit(
    args: argparse.Namespace, tables: dict[str, Any], payload: dict[str, pd.DataFrame]
) -> None:
    """Print JSON for ``--format json``; otherwise print Markdown and save tables under ``--out``."""
    if args.format == "json":
        print(
            json.dumps(
                {k: json.loads(v.to_json(orient="records")) for k, v in payload.items()}, indent=2
            )
        )
        return
    for table in tables.values():
        print(table.to_markdown())
    if args.out is not None:
        for name, table in tables.items():
            path = table.save(Path(args.out) / f"{name}.{args.format}", format=args.format)
            print(f"wrote {path}")


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    from evalkit import analyses

    argv = ["--seed", str(args.seed), *extra]
    if args.out is not None:
        argv += ["--out", str(args.out)]
    if not args.analysis.endswith(".py"):
        return analyses.run(args.analysis, argv)
    script = Path(args.analysis)
    if not script.is_file():
        raise EvalkitInputError(f"no analysis script {str(script)!r}.")
    old = sys.argv
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as done:
        return int(done.code or 0)
    finally:
        sys.argv = old
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from evalkit.coaching import DistrictData, evaluate_district, write_report

    def step(text: str) -> None:
        print(f"evalkit evaluate: {text}", file=sys.stderr, flush=True)

    step("reading the exports")
    data = DistrictData.from_files(
        schools=args.schools, teachers=args.teachers, coaching_log=args.coaching_log,
        observations=args.observations, students=args.students, survey=args.survey,
        mapping=args.mapping, encoding=args.encoding, date_format=args.date_format,
    )  # fmt: skip
    step("checking the data")
    report = data.resolve_moves(args.teacher_moves).check()
    fatal = report[report["fatal"].astype(bool)]
    if len(fatal):
        print(fatal.to_string(index=False, max_colwidth=70))
        raise EvalkitInputError(
            f"{len(fatal)} problem(s) in the data (listed above, with file lines); fix them "
            "and run again."
        )
    step("fitting the instruction and achievement models")
    evaluation = evaluate_district(
        data, covariates=args.covariate, teacher_moves=args.teacher_moves
    )
    formats = ("md", "html", "tex", "csv", "docx") if args.format == "all" else (args.format,)
    step(f"writing the report to {args.out}")
    files = write_report(evaluation, args.out, formats=formats)  # type: ignore[arg-type]
    print(evaluation.tables["effect_sizes"].to_markdown())
    print(f"Wrote {len(files)} files to {args.out.resolve()}")
    return 0


def _list() -> int:
    from evalkit import analyses

    for name, description in analyses.available().items():
        print(f"{name:22s} {description}")
    return 0


def _meta(args: argparse.Namespace) -> int:
    from evalkit import meta
    from evalkit.tables import meta_summary_table

    data = read_table(args.csv, args.encoding)
    if args.study:
        data = data.reset_index(drop=True)
        data["_es_id"] = range(1, len(data) + 1)
        fit = meta.multilevel(
            data,
            effect=args.effect,
            variance=args.variance,
            levels=[args.study, "_es_id"],
            moderators=args.moderators or None,
            rho=args.rho,
        )
        shown: Any = meta.robust(fit, data[args.study])
        table = meta_summary_table(fit, robust_result=shown)
    else:
        if args.moderators:
            fit = meta.meta_regression(
                data,
                effect=args.effect,
                variance=args.variance,
                moderators=args.moderators,
                method=args.method,
                test=args.test,
            )
        else:
            fit = meta.random_effects(
                data, effect=args.effect, variance=args.variance, method=args.method, test=args.test
            )
        shown = fit
        table = meta_summary_table(fit)
    _emit(args, {"meta_analysis": table}, {"tidy": shown.tidy(), "glance": shown.glance()})
    return 0


def _lmm(args: argparse.Namespace) -> int:
    from evalkit.multilevel import lmm
    from evalkit.tables import regression_table

    text = str(args.csv)
    data: object
    if text.lower().endswith((".parquet", ".pq")) or any(c in text for c in "*?["):
        data = text  # Parquet files or a glob: fitted where the data live (DuckDB)
    else:
        data = read_table(args.csv, args.encoding)
    fit = lmm(args.formula, data, method=args.method, df_method=args.df_method)
    _emit(
        args,
        {"lmm": regression_table({"Model": fit}, title=args.formula)},
        {"tidy": fit.tidy(), "glance": fit.glance()},
    )
    return 0


def _effectsize(args: argparse.Namespace) -> int:
    from evalkit import effectsize as es
    from evalkit.tables import effect_size_table

    options = {"icc": args.icc, "cluster_size": args.cluster_size} if args.icc is not None else {}
    g = es.hedges_g(args.mean_t, args.mean_c, args.sd_t, args.sd_c, args.n_t, args.n_c, **options)
    _emit(args, {"effect_size": effect_size_table({"Hedges' g": g})}, {"tidy": g.to_frame()})
    return 0


def _power(args: argparse.Namespace) -> int:
    from evalkit import power

    params: dict[str, Any] = {}
    for item in args.param:
        if "=" not in item:
            raise EvalkitInputError(f"--param {item!r}: write NAME=VALUE, e.g. --param rho2=0.1.")
        name, value = (part.strip() for part in item.split("=", 1))
        params[name] = parse_boolean(name, value) if name == "two_tailed" else _number(name, value)
    if args.solve != "mdes" and args.es is None:
        raise EvalkitInputError(f"--solve {args.solve} needs --es.")
    if args.solve == "mdes":
        result = power.mdes(args.design, **params)
    elif args.solve == "power":
        result = power.power(args.design, args.es, **params)
    else:
        result = power.sample_size(args.design, args.es, **params)
    frame = result.to_frame()
    if args.format == "json":
        print(frame.to_json(orient="records"))
    else:
        print(frame.T.to_string(header=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evalkit`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handlers = {
        "run": lambda a: _run(a, extra),
        "evaluate": _evaluate,
        "list": lambda _: _list(),
        "meta": _meta,
        "lmm": _lmm,
        "effectsize": _effectsize,
        "power": _power,
    }
    try:
        return int(handlers[args.command](args))
    except EvalkitInputError as error:
        print(f"evalkit {args.command}: {error}", file=sys.stderr)
        return 2
    except (
        FileNotFoundError,
        IsADirectoryError,
        pd.errors.EmptyDataError,
        pd.errors.ParserError,
    ) as error:
        print(f"evalkit {args.command}: cannot read the input file: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        print(
            f"evalkit {args.command}: unexpected error ({type(error).__name__}: {error})",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
