"""The library's layering (ARCHITECTURE.md): `forensics/` depends on nothing above it, and only
the app's pages import Streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((REPO_ROOT / "forensics").rglob("*.py"))
ABOVE_THE_LIBRARY = {"training", "benchmarks", "tests", "streamlit_app"}


def _imported_packages(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, at any depth (lazy imports too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_library_imports_nothing_above_it(path: Path) -> None:
    assert not _imported_packages(path) & ABOVE_THE_LIBRARY


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_only_the_pages_import_streamlit(path: Path) -> None:
    if "ui" not in path.relative_to(REPO_ROOT / "forensics").parts:
        assert "streamlit" not in _imported_packages(path)


def test_the_check_sees_a_lazy_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from training.train import main\n    import benchmarks.scan\n")
    assert _imported_packages(module) == {"training", "benchmarks"}


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_decision_sits_above_the_detector_and_the_evidence(path: Path) -> None:
    """forensics.decision weighs the detector's verdict and the evidence: neither (nor the
    router, nor what they are built on) may import it."""
    below = path.relative_to(REPO_ROOT / "forensics").parts[0] in (
        "detector.py", "router.py", "evidence", "trust", "verdicts.py", "images.py",
        "inference.py", "patches.py", "models.py", "checkpoint.py",
    )  # fmt: skip
    if below:
        assert "forensics.decision" not in _imported_modules(path)


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names
