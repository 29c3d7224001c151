"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REFERENCE = Path(__file__).parent / "reference"


@pytest.fixture
def reference_dir() -> Path:
    """Folder with the committed outputs of the R reference scripts."""
    return REFERENCE
