"""Project-level checks: the OpenAPI schema is valid, migrations match the models, the layers stay apart."""

from __future__ import annotations

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


def test_views_import_no_engine_submodule():
    """Views parse, call a service or selector, render: decoding (engine.npy ...) belongs to parsers and services."""
    import ast

    tree = ast.parse((ROOT / "quantizers" / "api" / "views.py").read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert [name for name in imported if name.startswith("engine.")] == []
