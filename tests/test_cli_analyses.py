"""The command line and the replication analyses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from evalkit import analyses
from evalkit.cli import main
from evalkit.multilevel import lmm

ROOT = Path(__file__).resolve().parents[1]
ANALYSES = sorted(analyses.available())


def test_list_names_every_analysis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ANALYSES) and len(ANALYSES) >= 6


def test_meta_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    data = ROOT / "evalkit" / "data" / "datasets" / "raudenbush1985.csv"
    assert main(["meta", str(data), "--effect", "yi", "--variance", "vi", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["tidy"][0]["estimate"] == pytest.approx(0.0837, abs=5e-5)


def test_che_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    data = ROOT / "evalkit" / "data" / "datasets" / "kalaian1996.csv"
    code = main(
        [
            "meta",
            str(data),
            "--effect",
            "yi",
            "--variance",
            "vi",
            "--study",
            "study",
            "--rho",
            "0.66",
            "--format",
            "json",
        ]
    )
    assert code == 0
    reference = json.loads((ROOT / "tests" / "reference" / "meta" / "multilevel.json").read_text())
    tidy = json.loads(capsys.readouterr().out)["tidy"][0]
    assert tidy["estimate"] == pytest.approx(reference["sat_che_CR2"]["beta"], rel=1e-8)
    assert tidy["std_error"] == pytest.approx(reference["sat_che_CR2"]["se"], rel=1e-8)


def test_lmm_power_effectsize_and_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ROOT / "evalkit" / "data" / "datasets" / "hsb.csv"
    assert (
        main(
            [
                "lmm",
                "mathach ~ 1 + (1 | school)",
                str(data),
                "--out",
                str(tmp_path),
                "--format",
                "csv",
            ]
        )
        == 0
    )
    assert (tmp_path / "lmm.csv").exists()
    assert (
        main(
            [
                "power",
                "cra2r2",
                "--param",
                "rho2=0.17",
                "--param",
                "n=15",
                "--param",
                "J=20",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "effectsize",
                "--mean-t",
                "1",
                "--mean-c",
                "0.7",
                "--sd-t",
                "1",
                "--sd-c",
                "1",
                "--n-t",
                "200",
                "--n-c",
                "200",
                "--format",
                "json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert '"mdes":0.629' in out.replace(" ", "")


def test_exit_codes_for_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["power", "cra2r2", "--param", "rho2=2", "--param", "n=15", "--param", "J=20"]) == 2
    assert "rho2 (an ICC) must lie in [0, 1)" in capsys.readouterr().err
    assert main(["run", "no_such_analysis"]) == 2
    assert (
        main(
            [
                "power",
                "cra2r2",
                "--solve",
                "power",
                "--param",
                "rho2=0.1",
                "--param",
                "n=5",
                "--param",
                "J=20",
            ]
        )
        == 2
    )
    with pytest.raises(SystemExit) as usage:
        main(["meta"])
    assert usage.value.code == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ANALYSES)
def test_every_analysis_replicates(name: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", f"evalkit.analyses.{name}", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, check=False, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "OUTSIDE TOLERANCE" not in run.stdout
    assert any(tmp_path.glob("*.docx")) and any(tmp_path.glob("*.png"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_cli_end_to_end_and_bad_files(tmp_path: Path) -> None:
    data = ROOT / "evalkit" / "data" / "datasets" / "raudenbush1985.csv"
    ok = _cli("meta", str(data), "--effect", "yi", "--variance", "vi", "--format", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["tidy"][0]["term"] == "Intercept"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    text = tmp_path / "text.csv"
    text.write_text("yi,vi\nhigh,0.1\nlow,0.2\n")
    cases = [
        (_cli("meta", str(data), "--effect", "nope", "--variance", "vi"), "nope"),
        (
            _cli("meta", str(empty), "--effect", "yi", "--variance", "vi"),
            "cannot read the input file",
        ),
        (_cli("meta", str(text), "--effect", "yi", "--variance", "vi"), "yi"),
        (
            _cli("meta", str(tmp_path / "missing.csv"), "--effect", "yi", "--variance", "vi"),
            "cannot read the input file",
        ),
        (_cli("lmm", "y ~ x", str(data)), "random terms"),
    ]
    for run, needle in cases:
        assert run.returncode == 2, run.stderr
        assert needle in run.stderr and "Traceback" not in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
    usage = _cli("power")
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_packaged_reference_numbers_equal_the_r_output() -> None:
    """The analyses ship the metafor + clubSandwich numbers they compare with; the copy
    must equal what tests/reference/meta/multilevel_reference.R wrote."""
    shipped = json.loads(
        (ROOT / "evalkit" / "analyses" / "data" / "metafor_sat_reference.json").read_text()
    )
    written = json.loads((ROOT / "tests" / "reference" / "meta" / "multilevel.json").read_text())
    assert shipped == {key: written[key] for key in shipped}
    assert set(shipped) >= {"sat_che", "sat_che_CR2", "sat_che_mods", "sat_che_mods_CR2"}


def test_own_studies_run_through_the_synthesis(tmp_path: Path) -> None:
    """`evalkit run coaching_synthesis --studies FILE` codes and pools the evaluator's file."""
    template = ROOT / "evalkit" / "analyses" / "templates" / "coaching_studies_template.csv"
    studies = tmp_path / "my_studies.csv"
    studies.write_text(template.read_text())
    code = main(["run", "coaching_synthesis", "--studies", str(studies), "--out", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "coded_effect_sizes.csv").exists()


def test_lmm_on_parquet_files_is_fitted_where_they_live(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hsb = pd.read_csv(ROOT / "evalkit" / "data" / "datasets" / "hsb.csv")
    for part, rows in hsb.groupby(hsb.index % 2):
        rows.to_parquet(tmp_path / f"hsb_{part}.parquet")
    formula = "mathach ~ ses + (1 | school)"
    assert main(["lmm", formula, str(tmp_path / "hsb_*.parquet"), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    glance = shown["glance"][0]
    assert glance["data_source"].endswith("(2 files)")
    expected = lmm(formula, hsb)
    estimates = {row["term"]: row["estimate"] for row in shown["tidy"]}
    assert estimates["ses"] == pytest.approx(expected.params["ses"], rel=1e-10)
