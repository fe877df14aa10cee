"""The `quantsite` command against the live gunicorn: click's runner for most commands, the installed entry point in
a subprocess for the environment variables and exit codes as a shell script sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner, Result
from quantsite_client.cli import cli

from tests.client.conftest import LiveServer
from tests.client.test_client import dequantize_linear, onnx_asymmetric, quantize_linear
from tests.integration import stack

RNG = np.random.default_rng(1313)


@pytest.fixture
def run(gunicorn_server: LiveServer):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = {"QUANTSITE_URL": gunicorn_server.url, "QUANTSITE_TOKEN": gunicorn_server.token}

    def invoke(*args: str, expect: int = 0) -> Result:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == expect, (result.exit_code, result.output, result.stderr)
        return result
    return invoke


def test_instances_and_config(run, fresh_id: str) -> None:  # type: ignore[no-untyped-def]
    run("instances", "create", fresh_id, "--set", "quantization_type=UINT8", "--set", "symmetric=true")
    assert fresh_id in json.loads(run("--json", "instances", "ls").stdout)
    assert fresh_id in run("instances").stdout.split()  # ls is the default
    config = json.loads(run("--json", "config", fresh_id, "--set", "per_channel=true").stdout)
    assert (config["quantization_type"], config["symmetric"], config["per_channel"]) == ("UINT8", True, True)
    assert "per_channel" in run("config", fresh_id).stdout  # the table

    exists = run("instances", "create", fresh_id, expect=6)
    assert exists.stderr.count("\n") == 1
    assert "already exists" in exists.stderr
    run("instances", "rm", fresh_id)
    missing = run("instances", "rm", fresh_id, expect=5)
    assert missing.stderr == f"error: 404 Quantizer instance {fresh_id} not found (instance.not_found)\n"
    run("config", fresh_id, "--set", "nonsense", expect=2)  # not KEY=VALUE: a usage error


def test_quantize_then_dequantize_files(run, fresh_id: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("instances", "create", fresh_id)
    x = RNG.standard_normal((16, 8)).astype(np.float32)
    np.save(tmp_path / "in.npy", x)
    summary = json.loads(run("--json", "quantize", fresh_id, str(tmp_path / "in.npy"), "-o",
                             str(tmp_path / "q.npz")).stdout)
    scale, zero_point = onnx_asymmetric(x)
    assert (np.float32(summary["scale"]), summary["zero_point"], summary["shape"]) == (scale, zero_point, [16, 8])
    with np.load(tmp_path / "q.npz", allow_pickle=False) as archive:
        codes = archive["data"]
        assert np.float32(archive["scale"]) == scale
        assert int(archive["zero_point"]) == zero_point
    np.testing.assert_array_equal(codes, quantize_linear(x, scale, zero_point))

    run("quantize", fresh_id, str(tmp_path / "in.npy"), "-o", str(tmp_path / "q.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "q.npy"), codes)

    run("dequantize", fresh_id, str(tmp_path / "q.npz"), "-o", str(tmp_path / "back.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "back.npy"), dequantize_linear(codes, scale, zero_point))
    run("dequantize", fresh_id, str(tmp_path / "q.npy"), "-o", str(tmp_path / "half.npy"), "--scale", "0.5",
        "--zero-point", "0")
    np.testing.assert_array_equal(np.load(tmp_path / "half.npy"), dequantize_linear(codes, 0.5, 0))

    np.save(tmp_path / "bad.npy", np.array([[1.0, np.inf]], np.float32))
    invalid = run("quantize", fresh_id, str(tmp_path / "bad.npy"), "-o", str(tmp_path / "out.npy"), expect=7)
    assert "(input." in invalid.stderr
    assert not (tmp_path / "out.npy").exists()


def test_calibrate_and_stats(run, fresh_id: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("instances", "create", fresh_id, "--set", "symmetric=true")
    batches = [RNG.standard_normal((4, 4)).astype(np.float32) * k for k in (1, 2, 3)]
    paths = []
    for k, batch in enumerate(batches):
        paths.append(str(tmp_path / f"batch{k}.npy"))
        np.save(paths[-1], batch)
    answer = json.loads(run("--json", "calibrate", fresh_id, *paths).stdout)
    amax = max(float(np.abs(b).max()) for b in batches)
    assert np.float32(answer["scale"]) == np.float32(amax) / np.float32(127)

    np.save(tmp_path / "x.npy", batches[0])
    run("quantize", fresh_id, str(tmp_path / "x.npy"), "-o", str(tmp_path / "q.npy"))
    figures = json.loads(run("--json", "stats", fresh_id).stdout)
    assert (figures["quantize_calls"], figures["total_values"]) == (1, 16)
    assert "quantize_calls" in run("stats", fresh_id).stdout


def test_entry_point_environment_and_exit_codes(gunicorn_server: LiveServer, tmp_path: Path) -> None:
    quantsite = str(Path(sys.executable).with_name("quantsite"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTSITE_")}

    def shell(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([quantsite, *args], env={**env, **extra}, capture_output=True, text=True,
                              timeout=60, check=False)

    ok = shell("--json", "instances", QUANTSITE_URL=gunicorn_server.url, QUANTSITE_TOKEN=gunicorn_server.token)
    assert ok.returncode == 0
    assert "default" in json.loads(ok.stdout)
    no_token = shell("instances", QUANTSITE_URL=gunicorn_server.url)
    assert no_token.returncode == 4
    assert no_token.stderr.startswith("error: 401 ")
    assert no_token.stderr.count("\n") == 1
    unreachable = shell("--timeout", "5", "--retries", "0", "stats", "default",
                        QUANTSITE_URL=f"http://127.0.0.1:{stack.free_port()}", QUANTSITE_TOKEN="x")
    assert unreachable.returncode == 3
    assert unreachable.stderr.count("\n") == 1


def test_options_before_the_command_win_over_the_environment(gunicorn_server: LiveServer) -> None:
    result = CliRunner().invoke(cli, ["--url", gunicorn_server.url, "--token", gunicorn_server.token, "--json",
                                      "instances", "ls"],
                                env={"QUANTSITE_URL": "http://127.0.0.1:1", "QUANTSITE_TOKEN": "wrong"})
    assert result.exit_code == 0, result.output
    assert "default" in json.loads(result.stdout)


def test_float8_codes_through_files(run, fresh_id: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("instances", "create", fresh_id, "--set", "quantization_type=FP8_E4M3")
    x = RNG.standard_normal((8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run("quantize", fresh_id, str(tmp_path / "x.npy"), "-o", str(tmp_path / "q.npz"))
    with np.load(tmp_path / "q.npz", allow_pickle=False) as archive:
        bits, scale = archive["data"], np.float32(archive["scale"])
    assert bits.dtype == np.uint8  # the float8 bit patterns, as the server's .npy answers carry them
    values = bits.view(ml_dtypes.float8_e4m3fn)
    np.testing.assert_array_equal(values, (x / scale).astype(ml_dtypes.float8_e4m3fn))
    run("dequantize", fresh_id, str(tmp_path / "q.npz"), "-o", str(tmp_path / "back.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "back.npy"), values.astype(np.float32) * scale)
