"""Shared pieces of the replication analyses: arguments, output folders, reference
numbers shipped with the package, and the comparison with published numbers (one
printed line per number; exit code 1 when any is off)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from evalkit.tables import Table


@dataclass
class Comparison:
    """Our numbers against the published ones, each with its tolerance."""

    source: str
    label: str = "published"
    rows: list[tuple[str, float, float, float, bool]] = field(default_factory=list)

    def check(self, name: str, ours: float, published: float, tolerance: float) -> None:
        """Record one number; ``tolerance`` is absolute (half a unit of the published
        number's last digit when it is a rounded figure)."""
        difference = ours - published
        self.rows.append((name, ours, published, difference, abs(difference) <= tolerance + 1e-12))

    def report(self) -> int:
        """Print the comparison; return the exit code (1 if any number is off)."""
        print(f"Comparison with {self.source}:")
        width = max(len(r[0]) for r in self.rows)
        for name, ours, published, difference, ok in self.rows:
            status = "ok" if ok else "OUTSIDE TOLERANCE"
            print(
                f"  {name:<{width}}  ours {ours: .4f}  {self.label} {published: .4f}  "
                f"diff {difference: .1e}  {status}"
            )
        failed = sum(not r[4] for r in self.rows)
        print(f"{len(self.rows) - failed} of {len(self.rows)} numbers within tolerance.")
        return 1 if failed else 0


def arguments(
    name: str, description: str, argv: list[str] | None, *, studies: bool = False
) -> argparse.Namespace:
    """``--out`` (default ``results/<name>`` under the current directory) and
    ``--seed`` for every analysis; ``--studies FILE`` where an analysis takes an
    evaluator's own coded studies."""
    parser = argparse.ArgumentParser(prog=f"evalkit run {name}", description=description)
    parser.add_argument("--out", type=Path, default=Path("results") / name, help="output folder")
    parser.add_argument("--seed", type=int, default=2026, help="seed (simulated analyses)")
    if studies:
        parser.add_argument(
            "--studies",
            type=Path,
            default=None,
            help="your coded studies (CSV with the template's columns)",
        )
    return parser.parse_args(argv)


def packaged(relative: str) -> Path:
    """Path of a file shipped with the analyses (``data/…``, ``templates/…``)."""
    return Path(str(resources.files("evalkit.analyses").joinpath(relative)))


def reference(name: str) -> dict[str, Any]:
    """Reference numbers shipped with the package (``data/<name>.json``), produced by
    the R scripts under ``tests/reference/`` (a test keeps the copies identical)."""
    loaded: dict[str, Any] = json.loads(packaged(f"data/{name}.json").read_text())
    return loaded


def save_tables(tables: dict[str, Table], out: Path) -> list[Path]:
    """Each table in Markdown, HTML, LaTeX, CSV and Word."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for name, table in tables.items():
        files.extend(table.save_all(out / name))
    return files


def finish(comparison: Comparison, files: list[Path], out: Path) -> int:
    """Print where the outputs are; return the comparison's exit code."""
    print(f"Wrote {len(files)} files to {out}")
    return comparison.report()
