"""Shared pieces of the replication analyses: output folders and the comparison with
published numbers (one printed line per number; non-zero exit when any is off)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.tables import Table

ROOT = Path(__file__).resolve().parents[1]


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
                f"  {name:<{width}}  ours {ours: .4f}  published {published: .4f}  diff {difference: .1e}  {status}"
            )
        failed = sum(not r[4] for r in self.rows)
        print(f"{len(self.rows) - failed} of {len(self.rows)} numbers within tolerance.")
        return 1 if failed else 0


def arguments(name: str, description: str) -> argparse.Namespace:
    """``--out`` (default results/<name>) for every analysis."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / name, help="output folder")
    parser.add_argument("--seed", type=int, default=2026, help="seed (simulated analyses)")
    return parser.parse_args()


def save_tables(tables: dict[str, Table], out: Path) -> list[Path]:
    """Each table in Markdown, HTML, LaTeX, CSV and Word."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for name, table in tables.items():
        files.extend(table.save_all(out / name))
    return files


def finish(comparison: Comparison, files: list[Path], out: Path) -> None:
    """Print where the outputs are and exit with the comparison's code."""
    print(f"Wrote {len(files)} files to {out}")
    sys.exit(comparison.report())
