"""The test tree's rules (docs/architecture.md, "Tests"): every test module sits in a tier
folder (tests/unit, tests/integration, tests/e2e), and no test module imports another test
module or a conftest: what tests share is a public name in tests/support or a fixture in a
conftest.py."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "e2e")


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every module (and ``from x import y`` name) a file imports."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _is_test_module(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] == "tests" and any(p.startswith("test_") or p == "conftest" for p in parts[1:])


def cross_imports(root: Path) -> list[str]:
    """Each ``file:line: name`` where a module under ``root`` imports a test module or a conftest."""
    return [f"{path.relative_to(root.parent)}:{line}: {name}"
            for path in sorted(root.rglob("*.py"))
            for line, name in _imported_modules(path) if _is_test_module(name)]


def misplaced(root: Path) -> list[str]:
    """Test modules outside the tier folders (directly in tests/, or in tests/support)."""
    return sorted(str(p.relative_to(root.parent)) for p in root.rglob("test_*.py")
                  if p.relative_to(root).parts[0] not in TIERS)


def test_no_test_module_imports_another_or_a_conftest():
    assert cross_imports(TESTS) == [], "share through tests/support or a conftest.py fixture"


def test_every_test_module_sits_in_a_tier_folder():
    assert misplaced(TESTS) == [], f"move them under one of tests/{{{','.join(TIERS)}}}/"


def test_the_rules_catch_what_they_are_for(tmp_path: Path):
    """The checks above on a made-up tree: each kind of breakage is found, the allowed imports are not."""
    root = tmp_path / "tests"
    (root / "unit" / "mapping").mkdir(parents=True)
    (root / "support").mkdir()
    (root / "support" / "web.py").write_text("X = 1\n")
    (root / "test_flat.py").write_text("")
    (root / "support" / "test_helpers.py").write_text("")
    (root / "unit" / "mapping" / "test_ok.py").write_text(
        "from tests.support.web import X\nimport tests.support\nfrom tests.support import web\n")
    (root / "unit" / "mapping" / "test_bad.py").write_text(
        "from tests.unit.mapping.test_ok import X\n"
        "from tests.unit.mapping import test_ok\n"
        "import tests.integration.test_other\n"
        "def f():\n    from tests.conftest import REPO\n")
    assert cross_imports(root) == [
        "tests/unit/mapping/test_bad.py:1: tests.unit.mapping.test_ok",
        "tests/unit/mapping/test_bad.py:1: tests.unit.mapping.test_ok.X",
        "tests/unit/mapping/test_bad.py:2: tests.unit.mapping.test_ok",
        "tests/unit/mapping/test_bad.py:3: tests.integration.test_other",
        "tests/unit/mapping/test_bad.py:5: tests.conftest",
        "tests/unit/mapping/test_bad.py:5: tests.conftest.REPO",
    ]
    assert misplaced(root) == ["tests/support/test_helpers.py", "tests/test_flat.py"]
