"""The client and CLI against the quality routes of issue 11: POST /instances/{id}/evaluate, and the error report
of quantize / quantize_dequantize (?report=true, X-Report-* headers). Figures checked against numpy here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from quantsite_client import QuantsiteClient
from quantsite_client.cli import EXIT_TARGET_NOT_MET, cli

from tests.client.conftest import LiveServer, route_exists

pytestmark = pytest.mark.skipif(not route_exists("/instances/default/evaluate"),
                                reason="POST /instances/{id}/evaluate (issue 11) is not merged into this checkout")

RNG = np.random.default_rng(11)
INT8_SYM = {"quantization_type": "INT8", "symmetric": True}
INT16_SYM = {"quantization_type": "INT16", "symmetric": True}


def sqnr_db(x: np.ndarray, approx: np.ndarray) -> float:
    x64, err = x.astype(np.float64), x.astype(np.float64) - approx.astype(np.float64)
    return float(10 * np.log10(np.sum(x64 * x64) / np.sum(err * err)))


def symmetric_fake_quant(x: np.ndarray, qmax: int) -> np.ndarray:
    scale = np.float32(np.abs(x).max()) / np.float32(qmax)
    codes = np.clip(np.rint(x / scale), -qmax - 1, qmax)
    return (codes.astype(np.float32) * scale).astype(np.float32)


def test_evaluate_candidates_and_recommendation(qs: QuantsiteClient, fresh_id: str) -> None:
    qs.create_instance(fresh_id)
    config_before = qs.config(fresh_id)
    x = RNG.standard_normal((32, 16)).astype(np.float32)
    answer = qs.evaluate(fresh_id, x, candidates=[INT8_SYM, INT16_SYM], target=30)
    rows = answer["candidates"]
    assert [(row["config"]["quantization_type"], row["bits"]) for row in rows] == [("INT8", 8), ("INT16", 16)]
    for row, qmax in zip(rows, (127, 32767), strict=True):
        assert row["sqnr_db"] == pytest.approx(sqnr_db(x, symmetric_fake_quant(x, qmax)), rel=1e-6)
    assert rows[0]["bytes"] < rows[1]["bytes"]
    assert answer["recommended"] == rows[0]  # the smaller one meets 30 dB (about 40 dB on Gaussian data)
    assert qs.evaluate(fresh_id, x, candidates=[INT8_SYM], target=200)["recommended"] is None
    assert qs.config(fresh_id) == config_before  # evaluate changes nothing


def test_quantize_report(qs: QuantsiteClient, fresh_id: str) -> None:
    qs.create_instance(fresh_id, symmetric=True)
    x = RNG.standard_normal((16, 16)).astype(np.float32)
    q = qs.quantize(fresh_id, x, report=True)
    approx = (q.codes.astype(np.float32) * np.float32(q.scale)).astype(np.float32)
    assert q.report is not None
    assert q.report["sqnr_db"] == pytest.approx(sqnr_db(x, approx), rel=1e-6)
    assert q.report["max_abs_error"] == pytest.approx(float(np.abs(x - approx).max()), rel=1e-6)
    values, report = qs.quantize_dequantize(fresh_id, x, report=True)
    np.testing.assert_array_equal(values, approx)
    assert report is not None
    assert report["sqnr_db"] == pytest.approx(q.report["sqnr_db"], rel=1e-9)
    assert qs.quantize(fresh_id, x).report is None  # only on request


def test_cli_evaluate_table_json_and_exit_code(gunicorn_server: LiveServer, fresh_id: str, tmp_path: Path) -> None:
    env = {"QUANTSITE_URL": gunicorn_server.url, "QUANTSITE_TOKEN": gunicorn_server.token}
    runner = CliRunner()
    with gunicorn_server.client() as qs:
        qs.create_instance(fresh_id)
    np.save(tmp_path / "x.npy", RNG.standard_normal((32, 16)).astype(np.float32))
    candidates = json.dumps([INT8_SYM, INT16_SYM])
    table = runner.invoke(cli, ["evaluate", fresh_id, str(tmp_path / "x.npy"), "--target-sqnr", "30",
                                "--candidates", candidates], env=env)
    assert table.exit_code == 0, table.output
    assert "INT8" in table.stdout
    assert "INT16" in table.stdout
    assert "sqnr_db" in table.stdout
    as_json = runner.invoke(cli, ["--json", "evaluate", fresh_id, str(tmp_path / "x.npy"), "--candidates",
                                  candidates], env=env)
    assert as_json.exit_code == 0
    assert len(json.loads(as_json.stdout)["candidates"]) == 2
    unmet = runner.invoke(cli, ["evaluate", fresh_id, str(tmp_path / "x.npy"), "--target-sqnr", "200",
                                "--candidates", candidates], env=env)
    assert unmet.exit_code == EXIT_TARGET_NOT_MET
