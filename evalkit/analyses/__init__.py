"""Replication analyses shipped with evalkit: each loads bundled public data, runs the
models, writes tables and figures, and compares its key numbers with the published
(or reference-implementation) ones. Run one with ``evalkit run NAME`` or
``python -m evalkit.analyses.NAME``; ``evalkit list`` names them all."""

from __future__ import annotations

import ast
import importlib
from importlib import resources

from evalkit.core import EvalkitInputError


def available() -> dict[str, str]:
    """Every bundled analysis with the first line of its description."""
    out = {}
    for entry in sorted(resources.files("evalkit.analyses").iterdir(), key=lambda e: e.name):
        name = entry.name
        if not name.endswith(".py") or name.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(entry.read_text(encoding="utf-8"))) or ""
        out[name.removesuffix(".py")] = doc.splitlines()[0] if doc else ""
    return out


def run(name: str, argv: list[str] | None = None) -> int:
    """Run the analysis ``name`` with command-line arguments ``argv``; returns its exit
    code (1 when a number falls outside its tolerance)."""
    if name not in available():
        raise EvalkitInputError(
            f"no analysis {name!r}; choose one of {', '.join(available())} (evalkit list)."
        )
    module = importlib.import_module(f"evalkit.analyses.{name}")
    code: int = module.main(argv)
    return code


__all__ = ["available", "run"]
