"""A wheel built from the repository, installed in a fresh virtual environment without
extras, runs the command line and the bundled analyses, imports the estimators, gives a
clear error for the Bayesian layer, and collects the test suite (Bayesian tests skip)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str | Path, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, check=False,
        timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_wheel_without_extras(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT, cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("evalkit-*.whl"))
    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", venv, cwd=tmp_path).returncode == 0
    python, evalkit = venv / "bin" / "python", venv / "bin" / "evalkit"
    installed = _run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]

    listed = _run(evalkit, "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "hsb_chapter4" in listed.stdout and "coaching_synthesis" in listed.stdout
    ran = _run(evalkit, "run", "hsb_chapter4", "--out", tmp_path / "hsb", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "OUTSIDE TOLERANCE" not in ran.stdout and any((tmp_path / "hsb").glob("*.docx"))
    imported = _run(
        python, "-c", "import evalkit.meta, evalkit.multilevel, evalkit.coaching", cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    bayes = _run(python, "-c", "import evalkit.bayes", cwd=tmp_path)
    assert bayes.returncode != 0 and "needs the 'bayes' extra" in bayes.stderr

    # The repository's tests collect without the extra (the Bayesian ones skip).
    tools = _run(python, "-m", "pip", "install", "-q", "pytest", "hypothesis", cwd=tmp_path)
    assert tools.returncode == 0, tools.stderr[-3000:]
    collected = _run(
        python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
        "-m", "not slow and not r_live", cwd=ROOT,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    summary = collected.stdout.strip().splitlines()[-1]
    assert "error" not in summary and "tests collected" in summary, summary
    assert (
        "tests/bayes/test_bayes.py:10: the bayes extra (pymc) is not installed" in collected.stdout
    )
