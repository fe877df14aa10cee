"""The engine stands alone: importing it loads nothing of Django, DRF or the web app (docs/design.md, Layers)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB_PACKAGES = ("django", "rest_framework", "quantizers", "quantsite")


def test_importing_engine_loads_no_web_module() -> None:
    code = ("import engine, sys; print([m for m in sys.modules if m.split('.')[0] in "
            "('django','rest_framework','quantizers','quantsite')])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_engine_public_names() -> None:
    code = "from engine import Quantizer, QuantizationConfig, QuantizationType, QuantizationMode; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            timeout=60)
    assert result.stdout.strip() == "ok"


def test_engine_source_imports_only_numpy_and_the_standard_library() -> None:
    allowed = {"numpy", "ml_dtypes", "numba", *sys.stdlib_module_names}
    offenders = []
    for path in sorted((ROOT / "engine").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] not in allowed]
    assert offenders == []
