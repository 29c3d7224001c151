"""The docs build executes examples and fails on a broken one (with our mkdocs.yml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="the docs extra (mkdocs, PyYAML) is not installed")

ROOT = Path(__file__).resolve().parents[1]


def _build(tmp_path: Path, page: str) -> subprocess.CompletedProcess[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(page)
    config.update(docs_dir=str(docs), site_dir=str(tmp_path / "site"), nav=["index.md"])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [mkdocs, "build", "--strict", "-f", str(tmp_path / "mkdocs.yml")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("code", "fails"),
    [("print(1 + 1)", False), ("raise RuntimeError('broken example')", True)],
)
def test_docs_build_runs_examples(tmp_path: Path, code: str, fails: bool) -> None:
    page = f'# Page\n\n```python exec="on" result="text"\n{code}\n```\n'
    result = _build(tmp_path, page)
    assert (result.returncode != 0) == fails, result.stderr[-2000:]
