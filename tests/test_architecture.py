"""What each package may import: the stages of docs/architecture.md point one way, shared modules sit below them.

A new package, or an import against the flow, fails here until this table (and docs/architecture.md) say so.
The `cli.py` modules (and cli, reference, __main__) drive whole stages and may import anything."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "metaconf"
DRIVERS = {"cli.py", "reference.py", "__main__.py"}
SHARED = {
    "errors",
    "io",
    "configfile",
    "conditions",
    "precision",
    "flags",
    "retry",
    "records",
    "names",
    "text",
    "bounds",
    "lock",
    "memory",
    "processes",
}

# unit -> the units it may import (besides itself); shared modules only import each other as listed
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "bounds": set(),
    "names": {"errors"},
    "text": {"errors"},
    "conditions": {"names"},
    "lock": {"errors", "names"},
    "io": {"errors"},
    "retry": {"errors"},
    "configfile": {"errors", "io", "text"},
    "precision": {"errors"},
    "memory": set(),
    "processes": {"errors", "memory"},
    "flags": {"errors", "configfile", "names", "text", "lock"},
    "records": {"errors", "io"},
    "data": SHARED,
    "engines": SHARED,
    "grading": SHARED | {"data", "engines", "tasks"},
    "tasks": SHARED | {"data", "engines", "grading"},
    "metrics": SHARED,
    "targets": SHARED | {"data", "engines", "grading", "tasks"},
    "training": SHARED | {"data", "engines", "targets", "tasks"},  # tasks: the grpo rewards parse and guide
    "evaluation": SHARED | {"data", "engines", "grading", "tasks"},
    "baselines": SHARED | {"data", "engines", "grading", "tasks", "evaluation", "metrics"},
    "report": SHARED | {"metrics", "evaluation", "tasks"},
    "study": SHARED
    | {"data", "engines", "grading", "tasks", "targets", "training", "evaluation", "baselines", "metrics", "report"},
    "serving": SHARED | {"data", "engines", "grading", "tasks", "evaluation", "baselines", "study"},
}


def unit_of(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return parts[0].removesuffix(".py")


def imports() -> dict[str, set[str]]:
    """unit -> the metaconf units its modules import (driver modules left out)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        if path.name in DRIVERS or path == SRC / "__init__.py":
            continue
        unit = unit_of(path)
        found.setdefault(unit, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module]
                if isinstance(node, ast.ImportFrom) and node.module
                else ([a.name for a in node.names] if isinstance(node, ast.Import) else [])
            )
            for name in names:
                parts = name.split(".")
                if parts[0] == "metaconf" and len(parts) > 1 and parts[1] != unit:
                    found[unit].add(parts[1])
    return found


def test_every_package_imports_only_what_the_architecture_allows():
    found = imports()
    assert set(found) <= set(ALLOWED), f"place the new package(s) in ALLOWED: {sorted(set(found) - set(ALLOWED))}"
    wrong = {unit: sorted(deps - ALLOWED[unit]) for unit, deps in found.items() if deps - ALLOWED[unit]}
    assert not wrong, f"imports against the flow (docs/architecture.md): {wrong}"


def test_the_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    """The table is only worth something if a wrong import fails: a copy of the tree where data imports study."""
    import shutil

    copy = tmp_path / "metaconf"
    shutil.copytree(SRC, copy)
    (copy / "data" / "wrong.py").write_text("from metaconf.study import Study\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", copy)
    assert "study" in imports()["data"]
