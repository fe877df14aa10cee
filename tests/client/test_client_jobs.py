"""The client and CLI against the model jobs of issue 10 (POST /instances/{id}/jobs, GET /jobs/{id}, its report
and artifact): a checkpoint written by the safetensors library, quantized per channel, checked against numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from quantsite_client import JobNotFound, QuantsiteClient
from quantsite_client.cli import cli
from safetensors.numpy import load_file, save_file

from tests.client.conftest import LiveServer, route_exists
from tests.client.test_metrics import sample, scrape

pytestmark = pytest.mark.skipif(not route_exists("/instances/default/jobs"),
                                reason="model jobs (issue 10) are not merged into this checkout")

RNG = np.random.default_rng(10)


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    tensors = {
        "fc1.weight": RNG.standard_normal((8, 16)).astype(np.float32),
        "fc2.weight": np.concatenate([RNG.standard_normal((4, 15)), np.full((4, 1), 40.0)], axis=1).astype(
            np.float32),  # an outlier per row: a much lower SQNR than fc1
        "token_ids": np.arange(6, dtype=np.int64),
    }
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    return path, tensors


def per_channel_codes(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = (np.abs(w).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
    return np.clip(np.rint(w / scale), -128, 127).astype(np.int8), scale


def test_submit_wait_report_download(qs: QuantsiteClient, fresh_id: str, checkpoint, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, tensors = checkpoint
    qs.create_instance(fresh_id, symmetric=True, per_channel=True)
    job = qs.submit_model(fresh_id, path)
    assert job.data["instance_id"] == fresh_id
    job.wait(timeout=120, poll=0.2)
    assert job.status == "succeeded"
    assert job.progress["tensors_done"] == job.progress["tensors_total"] == 3

    report = job.report()
    actions = {layer["name"]: layer["action"] for layer in report["layers"]}
    assert actions == {"fc1.weight": "quantized", "fc2.weight": "quantized", "token_ids": "kept"}
    assert "name" in job.report(csv=True).splitlines()[0]

    out = job.download(tmp_path / "out.safetensors")
    quantized = load_file(str(out))
    for name in ("fc1.weight", "fc2.weight"):
        codes, scale = per_channel_codes(tensors[name])
        np.testing.assert_array_equal(quantized[name], codes)
        np.testing.assert_array_equal(quantized[f"{name}_scale"].reshape(scale.shape), scale)
    np.testing.assert_array_equal(quantized["token_ids"], tensors["token_ids"])
    assert qs.job(job.id).status == "succeeded"
    assert [j.id for j in qs.jobs(instance_id=fresh_id)] == [job.id]

    with pytest.raises(JobNotFound):
        qs.job("00000000-0000-0000-0000-000000000000")


def test_cli_model_watch(gunicorn_server: LiveServer, fresh_id: str, checkpoint, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, tensors = checkpoint
    env = {"QUANTSITE_URL": gunicorn_server.url, "QUANTSITE_TOKEN": gunicorn_server.token}
    with gunicorn_server.client() as qs:
        qs.create_instance(fresh_id, symmetric=True, per_channel=True)
    runner = CliRunner()
    watched = runner.invoke(cli, ["model", fresh_id, str(path), "-o", str(tmp_path / "q.safetensors"), "--watch"],
                            env=env)
    assert watched.exit_code == 0, watched.output
    # the per-layer table, worst layer first
    assert watched.stdout.index("fc2.weight") < watched.stdout.index("fc1.weight") < watched.stdout.index("token_ids")
    codes, _ = per_channel_codes(tensors["fc1.weight"])
    np.testing.assert_array_equal(load_file(str(tmp_path / "q.safetensors"))["fc1.weight"], codes)

    as_json = runner.invoke(cli, ["--json", "model", fresh_id, str(path), "--watch"], env=env)
    assert as_json.exit_code == 0, as_json.output
    result = json.loads(as_json.stdout)
    assert result["job"]["status"] == "succeeded"
    assert len(result["report"]["layers"]) == 3


def test_job_metrics(qs: QuantsiteClient, gunicorn_server: LiveServer, fresh_id: str, checkpoint) -> None:  # type: ignore[no-untyped-def]
    path, _ = checkpoint
    qs.create_instance(fresh_id)
    before = scrape(gunicorn_server)
    qs.submit_model(fresh_id, path).wait(timeout=120, poll=0.2)
    after = scrape(gunicorn_server)
    for name in ("quantsite_jobs_finished_total", "quantsite_job_duration_seconds_count"):
        assert sample(after, name, status="succeeded") - sample(before, name, status="succeeded") == 1
    jobs = {"name": "quantsite_jobs", "status": "succeeded"}
    assert sample(after, **jobs) - sample(before, **jobs) == 1
    assert sample(after, "quantsite_job_queue_depth") == 0
