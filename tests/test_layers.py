"""The package's layers: each part of evalkit imports only from its own layer or the
layers below, and another package only through that package's public ``__init__``.

    workflows   coaching, scales, analyses, cli (and the top-level evalkit)
    output      tables, plots
    estimators  effectsize, meta, multilevel, bayes, power
    core        core, adapters, data, datasets

Every import counts, including those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "evalkit"

LAYERS = {
    "core": 0,
    "adapters": 0,
    "data": 0,
    "datasets": 0,
    "effectsize": 1,
    "meta": 1,
    "multilevel": 1,
    "bayes": 1,
    "power": 1,
    "mediation": 1,
    "tables": 2,
    "plots": 2,
    "coaching": 3,
    "scales": 3,
    "analyses": 3,
    "cli": 3,
    "": 3,  # evalkit/__init__.py
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every evalkit module the file imports, with its line (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _module_name(path)
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("evalkit")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("evalkit"):
                continue
            if target == "evalkit":  # from evalkit import meta, tables
                found += [(node.lineno, f"evalkit.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def _violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = _package_of(module)
        for line, target in _imports(path):
            target_package = _package_of(target)
            if target_package == package or target_package not in LAYERS:
                continue  # inside one package, or a name re-exported by evalkit itself
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
            if target != "evalkit" and target != f"evalkit.{target_package}":
                problems.append(f"{where}: not through evalkit.{target_package}'s public __init__")
            if LAYERS[target_package] > LAYERS[package]:
                problems.append(f"{where}: an upward import ({package} -> {target_package})")
    return problems


def test_no_private_or_upward_imports() -> None:
    problems = _violations()
    assert not problems, "\n".join(problems)


def test_the_checker_sees_violations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule is not vacuous: a private cross-package import and an upward import in
    a stand-in package are both reported."""
    fake = tmp_path / "evalkit"
    (fake / "meta").mkdir(parents=True)
    (fake / "meta" / "__init__.py").write_text("from evalkit.tables import Table\n")
    (fake / "meta" / "_fit.py").write_text(
        "def f():\n    from evalkit.multilevel.stats import build\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    problems = _violations()
    assert any("upward import (meta -> tables)" in p for p in problems)
    assert any("evalkit.multilevel.stats: not through" in p for p in problems)
