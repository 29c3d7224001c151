"""The default analysis that `make run` executes."""

from __future__ import annotations

from pathlib import Path

from evalkit import report


def test_report_writes_tables_and_figure(tmp_path: Path) -> None:
    result = report.run(tmp_path, seed=7)
    written = {p.name for p in result.files}
    for stem in ("effect_sizes", "achievement_model", "descriptives"):
        for suffix in ("md", "html", "tex", "csv", "docx"):
            assert f"{stem}.{suffix}" in written
    assert "effect_sizes.png" in written
    assert all(p.exists() and p.stat().st_size > 0 for p in result.files)
    # The unadjusted achievement effect is near the simulated truth of 0.18.
    assert abs(result.effects.loc["Achievement, unadjusted", "estimate"] - 0.18) < 0.15


def test_main_prints_where_files_are(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert report.main(["--out", str(tmp_path), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "Wrote 16 files to" in printed
