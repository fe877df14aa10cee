"""Model jobs through HTTP, inline (no broker: the job runs in the request that creates it).

Checkpoints are written by the `safetensors` library itself (bfloat16 through ml_dtypes); the artifact's codes are
checked against the single-array quantize route of the same instance (the engine path the reference vectors
cover), and against numpy where the parameters are stored ones.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy as stnp
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from quantizers import jobs
from quantizers.models import Job, JobLayer, LayerParameters

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)  # on_commit runs the job

RNG = np.random.default_rng(10)


def tensors() -> dict[str, np.ndarray]:
    return {
        "layer1.weight": RNG.standard_normal((8, 16)).astype(np.float32),
        "layer1.bias": RNG.standard_normal(8).astype(np.float32),
        "layer2.weight": (RNG.standard_normal((4, 8)) * 3).astype(np.float32),
        "position_ids": np.arange(12, dtype=np.int64).reshape(1, 12),
    }


def safetensors_bytes(arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    return stnp.save(arrays, metadata=metadata)


@pytest.fixture(autouse=True)
def jobs_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "jobs"
    settings.STORAGES = {**settings.STORAGES, "jobs": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                                                       "OPTIONS": {"location": str(root)}}}
    settings.CELERY_BROKER_URL = ""
    return root


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def create_instance(api: Any, instance_id: str, **config: Any) -> None:
    body = {"quantization_type": "INT8", "symmetric": True, "per_channel": True, **config}
    assert api.post(f"/instances/{instance_id}", body).status_code == 200


def upload(api: Any, instance_id: str, *files: tuple[str, bytes], query: str = "") -> Any:
    form = {"file": [SimpleUploadedFile(name, content) for name, content in files]}
    return api.client.post(f"/instances/{instance_id}/jobs{query}", form)


def upload_raw(api: Any, instance_id: str, content: bytes, query: str) -> Any:
    return api.client.post(f"/instances/{instance_id}/jobs{query}", content, content_type="application/octet-stream")


def artifact(api: Any, job_id: str, shard: int | None = None) -> tuple[Any, bytes]:
    response = api.get(f"/jobs/{job_id}/artifact" + ("" if shard is None else f"?shard={shard}"))
    return response, b"".join(response.streaming_content) if response.status_code == 200 else b""


def reference_quantize(api: Any, instance_id: str, arr: np.ndarray, channel_dim: int) -> tuple[np.ndarray, list[float]]:
    """The instance's single-array quantize of `arr` (codes, scales), through the existing route."""
    response = api.client.post(f"/instances/{instance_id}/quantize?channel_dim={channel_dim}", arr.tobytes(),
                               content_type="application/octet-stream", HTTP_X_SHAPE=",".join(map(str, arr.shape)),
                               HTTP_ACCEPT="application/x-npz")
    assert response.status_code == 200, response.content
    with np.load(io.BytesIO(response.content), allow_pickle=False) as npz:
        return npz["data"], [float(s) for s in np.ravel(npz["scale"])]


# ---------------------------------------------------------------------------- the happy path
def test_a_job_runs_inline_and_its_artifact_holds_the_engines_codes(api):
    create_instance(api, "m")
    arrays = tensors()
    response = upload(api, "m", ("model.safetensors", safetensors_bytes(arrays)))
    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == f"/jobs/{body['job_id']}"
    assert body == {"job_id": body["job_id"], "instance_id": "m", "status": "succeeded",
                    "links": {"self": f"/jobs/{body['job_id']}"}}

    job = api.get(f"/jobs/{body['job_id']}").json()
    assert job["status"] == "succeeded"
    assert job["error"] is None
    total = sum(a.nbytes for a in arrays.values())
    assert job["progress"] == {"tensors_done": 4, "tensors_total": 4, "bytes_done": total, "bytes_total": total}
    assert job["links"]["report"] == f"/jobs/{body['job_id']}/report"
    assert job["summary"]["bytes_in"] == total
    assert job["summary"]["tensors_kept"] >= 1
    assert job["started_at"]
    assert job["finished_at"]
    assert job["created_at"]

    response, content = artifact(api, body["job_id"])
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="model.quantized.safetensors"'
    out = stnp.load(content)
    for name in ("layer1.weight", "layer2.weight"):
        codes, scales = reference_quantize(api, "m", arrays[name], channel_dim=0)
        assert out[name].dtype == np.int8
        np.testing.assert_array_equal(out[name], codes)
        assert out[f"{name}_scale"].dtype == np.float32
        np.testing.assert_array_equal(np.ravel(out[f"{name}_scale"]), np.float32(scales))
    np.testing.assert_array_equal(out["position_ids"], arrays["position_ids"])  # integers pass through

    report = api.get(f"/jobs/{body['job_id']}/report").json()
    assert sorted(row["name"] for row in report["layers"]) == sorted(arrays)  # every tensor exactly once
    rows = {row["name"]: row for row in report["layers"]}
    assert rows["position_ids"]["action"] == "kept"
    assert rows["layer1.weight"]["action"] == "quantized"
    assert rows["layer1.weight"]["sqnr_db"] > 20
    assert report["summary"] == job["summary"]


def test_the_report_as_csv(api):
    create_instance(api, "m")
    job_id = upload(api, "m", ("model.safetensors", safetensors_bytes(tensors()))).json()["job_id"]
    response = api.get(f"/jobs/{job_id}/report", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().splitlines()
    assert lines[0].split(",")[:4] == ["name", "shape", "dtype", "action"]
    assert len(lines) == 1 + 4
    assert any(line.startswith("layer1.weight,8x16,") for line in lines)


def test_a_raw_body_with_filename(api):
    create_instance(api, "m")
    response = upload_raw(api, "m", safetensors_bytes(tensors()), "?filename=model.safetensors")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "succeeded"


def test_bfloat16_checkpoints(api):
    create_instance(api, "m")
    weights = RNG.standard_normal((6, 10)).astype(ml_dtypes.bfloat16)
    job_id = upload(api, "m", ("bf.safetensors", safetensors_bytes({"w": weights}))).json()["job_id"]
    out = stnp.load(artifact(api, job_id)[1])
    codes, _ = reference_quantize(api, "m", weights.astype(np.float32), channel_dim=0)  # bf16 -> f32 is exact
    np.testing.assert_array_equal(out["w"], codes)


def test_a_sharded_checkpoint_gives_one_output_shard_per_file(api):
    create_instance(api, "m")
    a, b = {"a.weight": RNG.standard_normal((4, 4)).astype(np.float32)}, {"b.weight": np.ones((2, 3), np.float32)}
    job_id = upload(api, "m", ("model-00001-of-00002.safetensors", safetensors_bytes(a)),
                    ("model-00002-of-00002.safetensors", safetensors_bytes(b))).json()["job_id"]
    first, second = artifact(api, job_id, 0), artifact(api, job_id, 1)
    assert "model-00002-of-00002.quantized.safetensors" in second[0]["Content-Disposition"]
    assert set(stnp.load(first[1])) >= {"a.weight"}
    assert "b.weight" not in stnp.load(first[1])
    assert set(stnp.load(second[1])) >= {"b.weight"}
    response, _ = artifact(api, job_id, 2)
    assert response.status_code == 400
    assert response.json()["code"] == "job.shard_invalid"
    assert len(api.get(f"/jobs/{job_id}/report").json()["layers"]) == 2


def test_npz_checkpoints(api):
    create_instance(api, "m")
    buffer = io.BytesIO()
    np.savez(buffer, w=RNG.standard_normal((4, 6)).astype(np.float32), ids=np.arange(3))
    job_id = upload(api, "m", ("model.npz", buffer.getvalue())).json()["job_id"]
    response, content = artifact(api, job_id)
    assert response.status_code == 200
    with np.load(io.BytesIO(content), allow_pickle=False) as out:
        assert out["w"].dtype == np.int8
        np.testing.assert_array_equal(out["ids"], np.arange(3))


# ---------------------------------------------------------------------------- bad input: 4xx, nothing stored
def _header_then(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _npz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    return buffer.getvalue()


def _object_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


BAD_FILES = [
    ("model.pt", b"\x80\x04\x95 pickle", "model.pickle_refused"),
    ("model.bin", b"\x80\x04\x95 pickle", "model.pickle_refused"),
    ("model.pkl", b"\x80\x04\x95 pickle", "model.pickle_refused"),
    ("model.ckpt", b"\x80\x04\x95 pickle", "model.pickle_refused"),
    ("model.txt", b"hello", "model."),
    ("lying.safetensors", struct.pack("<Q", 10**6) + b"{}", "model."),  # header length beyond the file
    ("offsets.safetensors", _header_then({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 64]}}, b"\0" * 8),
     "model."),
    ("shape.safetensors", _header_then({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
     "model."),
    ("overlap.safetensors", _header_then({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
     "model."),
    ("dtype.safetensors", _header_then({"w": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2),
     "model."),
    ("duplicate.safetensors", b"", "model."),  # filled in below (json.dumps cannot write a duplicate key)
    ("truncated.safetensors", safetensors_bytes({"w": np.ones((64, 64), np.float32)})[:-100], "model."),
    ("member.npz", _npz({"w.txt": b"not npy"}), "model."),
    ("object.npz", _npz({"w.npy": _object_npy()}), "model."),
]
_dup = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
BAD_FILES[10] = ("duplicate.safetensors", struct.pack("<Q", len(_dup)) + _dup + b"\0" * 4, "model.")


@pytest.mark.parametrize(("name", "content", "code"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_files_refused_from_their_header_store_nothing(api, jobs_root, name, content, code):
    create_instance(api, "m")
    response = upload(api, "m", (name, content))
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"].startswith(code)
    assert body["detail"]
    if code == "model.pickle_refused":
        assert "convert to safetensors" in body["detail"]
    assert not Job.objects.exists()
    assert stored_files(jobs_root) == []


def test_above_max_model_mb_is_413_before_anything_is_stored(api, settings, jobs_root):
    create_instance(api, "m")
    settings.QUANTIZER_MAX_MODEL_MB = 1
    response = upload_raw(api, "m", b"\0" * (1024 * 1024 + 1), "?filename=model.safetensors")
    assert response.status_code == 413
    assert response.json()["code"] == "request.too_large"
    assert response.json()["field"] == "QUANTIZER_MAX_MODEL_MB"
    assert not Job.objects.exists()
    assert stored_files(jobs_root) == []


def test_the_jobs_route_is_exempt_from_max_body_mb_and_the_element_limit(api, settings):
    create_instance(api, "m")
    settings.QUANTIZER_MAX_BODY_MB = 1
    settings.QUANTIZER_MAX_ELEMENTS = 1000
    big = {"w": RNG.standard_normal((512, 1024)).astype(np.float32)}  # 2 MB, 512K elements
    response = upload(api, "m", ("model.safetensors", safetensors_bytes(big)))
    assert response.status_code == 202
    assert response.json()["status"] == "succeeded"
    assert api.post("/instances/m/quantize", {"data": [[0.0] * 600] * 2}).status_code == 413  # others keep theirs


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"data": b"{}", "content_type": "application/json"}, 415, "http.unsupported_media_type"),
    ({"data": b"\0" * 16, "content_type": "application/octet-stream"}, 400, "request.no_filename"),
])
def test_bodies_that_are_not_a_checkpoint(api, kwargs, status, code):
    create_instance(api, "m")
    response = api.client.post("/instances/m/jobs", **kwargs)
    assert response.status_code == status
    assert response.json()["code"] == code


def test_no_file_and_unknown_instance(api):
    create_instance(api, "m")
    response = api.client.post("/instances/m/jobs", {"other": "x"})
    assert response.status_code == 400
    assert response.json()["code"] == "request.no_file"
    response = upload(api, "nope", ("model.safetensors", safetensors_bytes(tensors())))
    assert response.status_code == 404
    assert response.json()["code"] == "instance.not_found"
    assert api.client.post("/instances/m/jobs?colour=red").status_code == 400


# ---------------------------------------------------------------------------- failure and cancel leave nothing
def test_a_failed_job_leaves_no_artifact_and_no_layer_rows(api, jobs_root):
    create_instance(api, "m")  # error_on_nan: the second tensor fails after the first was written
    arrays = {"a": np.ones((4, 4), np.float32), "b": np.full((4, 4), np.nan, np.float32)}
    job_id = upload(api, "m", ("model.safetensors", safetensors_bytes(arrays))).json()["job_id"]
    job = api.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "input.nan"
    assert job["error"]["detail"]
    assert artifact(api, job_id)[0].status_code == 409
    assert api.get(f"/jobs/{job_id}/report").status_code == 409
    assert not JobLayer.objects.exists()
    assert not LayerParameters.objects.exists()
    assert [p.parent.name for p in stored_files(jobs_root)] == ["in"]  # the upload only (for a re-run)


def test_cancel_between_tensors_leaves_nothing(api, jobs_root, monkeypatch):
    monkeypatch.setattr(jobs, "POLL_S", 0.0)  # the status is read before every tensor (not every 0.2 s)
    create_instance(api, "m")
    arrays = {f"w{n}": np.ones((4, 4), np.float32) for n in range(5)}
    upload_file = SimpleUploadedFile("model.safetensors", safetensors_bytes(arrays))
    job = jobs.job_create(instance_id="m", uploads=[_temporary(upload_file)], enqueue_job=False)
    seen = []

    def cancel_after_two(report: Any, bytes_done: int) -> None:
        seen.append(report.name)
        if len(seen) == 2:
            assert api.post(f"/jobs/{job.pk}/cancel").json()["status"] == "cancelled"

    jobs.job_run(job.pk, on_tensor=cancel_after_two)
    assert len(seen) <= 3  # stopped at the next tensor boundary after the cancel was seen
    body = api.get(f"/jobs/{job.pk}").json()
    assert body["status"] == "cancelled"
    assert body["finished_at"]
    assert not JobLayer.objects.exists()
    assert not LayerParameters.objects.exists()
    assert [p.parent.name for p in stored_files(jobs_root)] == ["in"]
    assert api.post(f"/jobs/{job.pk}/cancel").status_code == 409  # no longer active


def test_a_cancelled_queued_job_never_runs(api):
    create_instance(api, "m")
    job = jobs.job_create(instance_id="m", enqueue_job=False, uploads=[
        _temporary(SimpleUploadedFile("model.safetensors", safetensors_bytes(tensors())))])
    assert api.post(f"/jobs/{job.pk}/cancel").json()["status"] == "cancelled"
    jobs.job_run(job.pk)
    assert Job.objects.get(pk=job.pk).status == "cancelled"
    assert Job.objects.get(pk=job.pk).started_at is None


def _temporary(upload: SimpleUploadedFile) -> Any:
    """An upload as the jobs route's handler leaves it: in a temporary file."""
    from django.core.files.uploadedfile import TemporaryUploadedFile

    tmp = TemporaryUploadedFile(upload.name, "application/octet-stream", upload.size, None)
    tmp.write(upload.read())
    tmp.seek(0)
    return tmp


def test_a_rerun_after_a_crash_overwrites_its_partial_output(api):
    """A worker killed mid-job leaves the job running; the re-run (the message handed back) starts again and
    gives the same bytes, each layer once."""
    create_instance(api, "m")
    job_id = upload(api, "m", ("model.safetensors", safetensors_bytes(tensors()))).json()["job_id"]
    first = artifact(api, job_id)[1]
    stale = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk=job_id).update(status="running", heartbeat_at=stale)  # as a killed worker leaves it
    out = jobs.jobs_storage().path(Job.objects.get(pk=job_id).files[0]["output"])
    Path(out).write_bytes(b"partial garbage")
    jobs.job_run(job_id)
    assert Job.objects.get(pk=job_id).status == "succeeded"
    assert Job.objects.get(pk=job_id).attempts == 2
    assert artifact(api, job_id)[1] == first
    assert JobLayer.objects.filter(job_id=job_id).count() == 4


def test_a_job_whose_worker_keeps_dying_fails(api, settings):
    create_instance(api, "m")
    job_id = upload(api, "m", ("model.safetensors", safetensors_bytes(tensors()))).json()["job_id"]
    Job.objects.filter(pk=job_id).update(status="running", attempts=settings.QUANTIZER_JOB_MAX_ATTEMPTS,
                                         heartbeat_at=timezone.now() - timedelta(hours=1))
    jobs.job_run(job_id)
    job = api.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "job.worker_lost"


# ---------------------------------------------------------------------------- delete, list, 404
def test_delete_removes_files_and_record(api, jobs_root):
    create_instance(api, "m")
    job_id = upload(api, "m", ("model.safetensors", safetensors_bytes(tensors()))).json()["job_id"]
    assert stored_files(jobs_root)
    response = api.delete(f"/jobs/{job_id}")
    assert response.status_code == 200
    assert job_id in response.json()["message"]
    assert api.get(f"/jobs/{job_id}").status_code == 404
    assert api.get(f"/jobs/{job_id}").json()["code"] == "job.not_found"
    assert stored_files(jobs_root) == []
    assert api.delete(f"/jobs/{job_id}").status_code == 404


@pytest.mark.parametrize("path", ["/jobs/not-a-uuid", "/jobs/00000000-0000-0000-0000-000000000000/report",
                                  "/jobs/00000000-0000-0000-0000-000000000000/artifact"])
def test_unknown_jobs_are_404(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "job.not_found"


def test_the_list_is_drfs_page_envelope_filtered(api):
    create_instance(api, "m")
    create_instance(api, "n")
    good = upload(api, "m", ("model.safetensors", safetensors_bytes(tensors()))).json()["job_id"]
    upload(api, "n", ("model.safetensors", safetensors_bytes(tensors())))
    bad = upload(api, "m", ("model.safetensors", safetensors_bytes({"x": np.full(3, np.nan, np.float32)})))
    body = api.get("/jobs?instance_id=m").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert body["results"][0]["job_id"] == bad.json()["job_id"]  # newest first
    assert [j["job_id"] for j in api.get("/jobs?instance_id=m&status=succeeded").json()["results"]] == [good]
    assert api.get("/jobs").json()["count"] == 3
    response = api.get("/jobs?status=lost")
    assert response.status_code == 400
    assert response.json()["field"] == "status"


# ---------------------------------------------------------------------------- stored layer parameters
def test_layer_params_come_from_the_jobs_rows_and_static_quantize_uses_them(api):
    create_instance(api, "m")
    weight = tensors()["layer1.weight"]
    job_id = upload(api, "m", ("model.safetensors", safetensors_bytes({"layer1.weight": weight}))).json()["job_id"]
    out = stnp.load(artifact(api, job_id)[1])
    scales = np.ravel(out["layer1.weight_scale"]).astype(np.float64)

    row = LayerParameters.objects.get(instance_id="m", layer_name="layer1.weight")
    assert str(row.source_job_id) == job_id
    params = api.get("/instances/m/layer_params/layer1.weight").json()
    np.testing.assert_array_equal(np.float32(params["scale"]), np.float32(scales))  # (float32, shortest repr)
    assert params["channel_dim"] == 0
    assert params["used_by_quantize"] is False

    assert api.patch("/instances/m/config", {"quantization_mode": "STATIC"}).status_code == 200
    params = api.get("/instances/m/layer_params/layer1.weight").json()
    assert params["used_by_quantize"] is True
    assert params["parameters_source"] == "layer"
    other = (RNG.standard_normal((8, 16)) * 5).astype(np.float32)  # a wider range than the stored scales cover
    response = api.post("/instances/m/quantize", {"data": other.tolist(), "layer_name": "layer1.weight",
                                                   "channel_dim": 0})
    assert response.status_code == 200, response.content
    expected = np.clip(np.rint(other.astype(np.float64) / scales.astype(np.float32)[:, None]), -128, 127)
    np.testing.assert_array_equal(np.asarray(response.json()["data"]), expected)
    assert api.get("/instances/m/parameters").json()["layer_params"]["layer1.weight"]["scale"] == params["scale"]


def test_a_config_change_that_invalidates_parameters_drops_the_layer_rows(api):
    create_instance(api, "m")
    upload(api, "m", ("model.safetensors", safetensors_bytes({"w": np.ones((2, 2), np.float32)})))
    assert LayerParameters.objects.filter(instance_id="m").exists()
    assert api.patch("/instances/m/config", {"quantization_type": "UINT8"}).status_code == 200
    assert not LayerParameters.objects.filter(instance_id="m").exists()


# ---------------------------------------------------------------------------- management commands
def test_quantize_model_runs_the_same_job_in_the_foreground(api, tmp_path, capsys):
    create_instance(api, "m")
    source = tmp_path / "model.safetensors"
    source.write_bytes(safetensors_bytes(tensors()))
    via_api = artifact(api, upload(api, "m", ("model.safetensors", source.read_bytes())).json()["job_id"])[1]
    call_command("quantize_model", str(source), "--instance", "m", "--output", str(tmp_path / "out.safetensors"))
    assert (tmp_path / "out.safetensors").read_bytes() == via_api  # same code, same bytes
    assert "model.safetensors" in capsys.readouterr().out
    pickle = tmp_path / "model.pt"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(CommandError, match="convert to safetensors"):
        call_command("quantize_model", str(pickle), "--instance", "m")


def test_purge_jobs_removes_old_finished_jobs_and_their_files(api, jobs_root):
    create_instance(api, "m")
    old = upload(api, "m", ("model.safetensors", safetensors_bytes(tensors()))).json()["job_id"]
    young = upload(api, "m", ("model.safetensors", safetensors_bytes(tensors()))).json()["job_id"]
    Job.objects.filter(pk=old).update(created_at=timezone.now() - timedelta(days=8))
    call_command("purge_jobs", "--older-than", "7d")
    assert list(Job.objects.values_list("pk", flat=True)) == [Job.objects.get(pk=young).pk]
    assert all(young in str(p) for p in stored_files(jobs_root))


# ---------------------------------------------------------------------------- with a broker
def test_with_a_broker_the_job_is_queued_after_commit(api, settings, monkeypatch):
    from quantizers import tasks

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # never reached: delay() is replaced
    sent = []
    monkeypatch.setattr(tasks.run_job, "delay", lambda job_id: sent.append((job_id, Job.objects.get(pk=job_id))))
    create_instance(api, "m")
    response = upload(api, "m", ("model.safetensors", safetensors_bytes(tensors())))
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    [(job_id, job)] = sent  # enqueued once, after the commit (the row was visible)
    assert job_id == response.json()["job_id"]
    assert job.status == "queued"
    assert api.get(f"/jobs/{job_id}/artifact").status_code == 409
    tasks.run_job.apply(args=[job_id])  # the task's body, as a worker runs it
    assert api.get(f"/jobs/{job_id}").json()["status"] == "succeeded"


# ---------------------------------------------------------------------------- admin
def test_admin_jobs_list_page_and_actions(api, admin_client):
    create_instance(api, "m")
    job_id = upload(api, "m", ("model.safetensors", safetensors_bytes(tensors()))).json()["job_id"]
    listing = admin_client.get("/admin/quantizers/job/")
    assert listing.status_code == 200
    assert b"<progress" in listing.content
    assert b"succeeded" in listing.content
    page = admin_client.get(f"/admin/quantizers/job/{job_id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "layer1.weight" in html
    download = f"/admin/quantizers/job/{job_id}/artifact/0/"
    assert download in html
    assert b"".join(admin_client.get(download).streaming_content) == artifact(api, job_id)[1]
    layers = admin_client.get(f"/admin/quantizers/joblayer/?job__id__exact={job_id}&o=3")  # by SQNR (index 3)
    assert layers.status_code == 200
    rows = [r for r in api.get(f"/jobs/{job_id}/report").json()["layers"] if r["sqnr_db"] is not None]
    by_sqnr = [r["name"] for r in sorted(rows, key=lambda r: r["sqnr_db"])]
    text = layers.content.decode()
    assert sorted(by_sqnr, key=lambda name: text.index(f">{name}<")) == by_sqnr  # listed lowest SQNR first
    action = admin_client.post("/admin/quantizers/job/", {"action": "rerun_jobs", "_selected_action": [job_id]})
    assert action.status_code == 302
    assert Job.objects.get(pk=job_id).status == "succeeded"
    assert Job.objects.get(pk=job_id).attempts == 1
    admin_client.post("/admin/quantizers/job/", {"action": "delete_jobs", "_selected_action": [job_id]})
    assert not Job.objects.filter(pk=job_id).exists()
