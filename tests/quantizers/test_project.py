"""Project-level checks: the OpenAPI schema is valid, migrations match the models, the layers stay apart, and the
repository stands alone (no reference to files outside it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_schema_validates_without_warnings(tmp_path):
    # --fail-on-warn turns any schema warning (an undocumented field, a guessed type) into a failure.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    text = (tmp_path / "schema.yaml").read_text()
    for component in ("QuantizerConfigModel", "QuantizationRequest", "QuantizationResponse", "DequantizationRequest",
                      "CalibrationRequest", "QuantizationParamsRequest", "ScaleZeroPointResponse", "StatsResponse",
                      "ImportExportParamsRequest"):
        assert f"    {component}:" in text, component


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_engine_imports_nothing_of_django():
    code = ("import sys, engine; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('django', 'rest_framework', 'quantizers', 'quantsite')]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_engine_source_has_no_django_import():
    offenders = [
        str(path) for path in (ROOT / "engine").rglob("*.py")
        for line in path.read_text().splitlines()
        if line.strip().startswith(("import django", "from django", "from rest_framework", "from quantizers"))
    ]
    assert offenders == []


# ---------------------------------------------------------------------------- the repository stands alone
# A clone has only the repository: no text may point at the folder beside it that developers happen to have, nor
# at an absolute path of one machine. The forbidden strings are assembled, so this file does not contain them.
SIBLING_FOLDER = ".." + "/" + "shared"
MACHINE_PATH = re.compile(r"(?<![\w.~-])/" + "work" + r"\b")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".txt", ".html", ".yml", ".yaml", ".conf", ".service", ".example"}
TEXT_NAMES = {"Makefile", "run"}  # .ci/run
SKIPPED_DIRS = {".git", ".venv", "node_modules", "staticfiles"}


def _text_files() -> list[Path]:
    """Tracked files (git ls-files), or every file when this is not a git checkout (an unpacked archive)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        paths = [ROOT / name for name in listed.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in ROOT.rglob("*") if p.is_file()]
    return sorted(
        p for p in paths
        if (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES)
        and not SKIPPED_DIRS.intersection(p.relative_to(ROOT).parts) and p.is_file()
    )


def test_text_files_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in _text_files()}
    assert {"README.md", "Makefile", "pyproject.toml", "tests/quantizers/test_project.py"} <= names


@pytest.mark.parametrize("pattern", [re.compile(re.escape(SIBLING_FOLDER)), MACHINE_PATH],
                         ids=["sibling-folder", "machine-path"])
def test_no_file_refers_outside_the_repository(pattern):
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _text_files()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_nothing_outside_the_engine_imports_its_submodules():
    """The engine's front door is `engine/__init__.py`: the app, the settings and the views import only that."""
    import ast

    offenders = []
    for path in sorted([*(ROOT / "quantizers").rglob("*.py"), *(ROOT / "quantsite").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        names = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
        names += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.startswith("engine.")]
        if any(isinstance(node, ast.ImportFrom) and node.module == "engine"
               and any(alias.name in SUBMODULES for alias in node.names) for node in ast.walk(tree)):
            offenders.append(f"{path.relative_to(ROOT)}: from engine import <submodule>")
    assert offenders == []


SUBMODULES = {p.stem for p in (ROOT / "engine").glob("*.py") if p.stem != "__init__"}
