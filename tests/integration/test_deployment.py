"""The deployment as a client sees it: nginx (TLS, limits, static files, JSON errors) in front of gunicorn's 4
workers, on PostgreSQL and on SQLite. Concurrency, coherence across workers and restarts, through real processes.

The last test reads the gunicorn logs of the whole run (this module runs in file order for each database).
"""

from __future__ import annotations

import http.client
import io
import json
import re
import secrets
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import requests

from engine import QuantizationConfig, Quantizer
from tests.integration import stack
from tests.integration.stack import TIMEOUT, WORKERS, Api, Deployment

pytestmark = pytest.mark.integration

SPEC_DATA = [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]]
SPEC_BODY = {"data": SPEC_DATA, "validate": True}
ASYMMETRIC_CODES = [[-94, -32, 31], [93, 127, -69]]  # the spec's example on the default instance (README)
SYMMETRIC_CODES = [[17, 48, 79], [110, 127, 30]]  # ... on a symmetric one
CONFIG_A = {
    "quantization_type": "INT8", "quantization_mode": "DYNAMIC", "num_bits": 8, "symmetric": False,
    "enable_cache": True, "cache_size": 500, "use_percentile": False, "error_on_nan": True, "error_on_inf": True,
    "enable_requantization": False, "outlier_threshold": None, "skip_layers": [], "calibration_method": "MINMAX",
    "buffer_size": 0,
}
CONFIG_B = {
    "quantization_type": "UINT8", "quantization_mode": "DYNAMIC_PER_BATCH", "num_bits": 6, "symmetric": True,
    "enable_cache": False, "cache_size": 10, "use_percentile": True, "min_percentile": 1.0, "max_percentile": 99.0,
    "error_on_nan": False, "error_on_inf": False, "enable_requantization": True, "requantization_threshold": 0.05,
    "outlier_threshold": 3.0, "skip_layers": ["x"], "calibration_method": "PERCENTILE", "buffer_size": 4096,
}
THREADS = 16
HTTP = stack.loopback_session()  # plain-HTTP calls (the redirect, the second gunicorn)


def new_id(name: str) -> str:
    return f"it-{name}-{secrets.token_hex(4)}"


def expected_codes(config: dict[str, Any]) -> list[list[int]]:
    """What a freshly built engine object answers for the spec's example: the reference for "the new state"."""
    quantizer = Quantizer(QuantizationConfig.from_dict(config))
    return np.asarray(quantizer.quantize(np.asarray(SPEC_DATA, dtype=np.float32)).data).tolist()


def together(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Run call(0..count-1) on `count` threads released at the same instant; bounded by TIMEOUT per thread."""
    barrier = threading.Barrier(count, timeout=TIMEOUT)

    def run(index: int) -> Any:
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(run, index) for index in range(count)]
        return [future.result(timeout=4 * TIMEOUT) for future in futures]


def json_of(response: requests.Response) -> Any:
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    return response.json()


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Access logs are written just after the response is sent: wait (bounded) for a line to appear."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def served_by(deployment: Deployment, request_ids: set[str]) -> Counter[str]:
    """Which gunicorn worker (pid) answered each of these requests, from the access log."""

    def lines() -> list[list[str]]:
        rows = [line.split() for line in deployment.gunicorn.access_log.read_text().splitlines()]
        return [row for row in rows if len(row) >= 5 and row[4] in request_ids]

    eventually(lambda: len(lines()) >= len(request_ids))
    return Counter(row[0] for row in lines())


# ---------------------------------------------------------------------------- basics through nginx
def test_liveness_readiness_and_request_id(api: Api, deployment: Deployment) -> None:
    response = api.get("/", headers={"X-Request-ID": "it-liveness-1"})
    assert response.status_code == 200
    assert json_of(response) == {"status": "healthy", "service": "Quantizer API"}
    assert response.headers["X-Request-ID"] == "it-liveness-1"
    assert response.headers["Server"].startswith("nginx")

    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert json_of(ready)["status"] == "ready"
    assert re.fullmatch(r"[0-9a-f]{32}", ready.headers["X-Request-ID"])  # nginx's $request_id when none is sent

    missing = api.get("/no/such/route", headers={"X-Request-ID": "it-missing-route"})
    assert missing.status_code == 404
    assert json_of(missing)["code"] == "route.not_found"
    assert missing.headers["X-Request-ID"] == "it-missing-route"
    app_logs = "".join(log.read_text() for log in deployment.workdir.glob("django-*.log"))
    assert '"request_id": "it-missing-route"' in app_logs  # JSON log lines carry the request id
    nginx_log = deployment.workdir / "nginx-logs" / "quantsite.access.log"
    assert eventually(lambda: '"request_id":"it-missing-route"' in nginx_log.read_text())


def test_http_redirects_to_https(deployment: Deployment) -> None:
    response = HTTP.get(deployment.nginx.http_url + "/instances?x=1", allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 301
    assert response.headers["Location"] == "https://127.0.0.1/instances?x=1"


def test_https_security_headers(api: Api) -> None:
    response = api.get("/instances")
    assert response.status_code == 200
    assert "max-age=" in response.headers["Strict-Transport-Security"]  # Django saw HTTPS via X-Forwarded-Proto


# ---------------------------------------------------------------------------- concurrency
def test_counters_are_exact_under_concurrency(api: Api) -> None:
    instance = new_id("counters")
    assert api.post(f"/instances/{instance}", json={}).status_code == 200

    def calls(_: int) -> None:
        for _ in range(50):
            response = api.post(f"/instances/{instance}/quantize", json=SPEC_BODY)
            assert response.status_code == 200, response.text
            assert response.json()["data"] == ASYMMETRIC_CODES

    together(THREADS, calls)
    reads = together(THREADS, lambda _: api.get(f"/instances/{instance}/stats").json())
    for stats in reads:
        assert stats["quantize_calls"] == THREADS * 50 == 800
        assert stats["total_values"] == 800 * 6


def test_create_race_has_one_winner(api: Api) -> None:
    instance = new_id("create-race")
    responses = together(THREADS, lambda _: api.post(f"/instances/{instance}", json={"symmetric": True}))
    assert Counter(r.status_code for r in responses) == {200: 1, 409: THREADS - 1}
    assert {json_of(r)["code"] for r in responses if r.status_code == 409} == {"instance.exists"}
    assert api.get("/instances").json().count(instance) == 1


def test_delete_race_has_one_winner(api: Api) -> None:
    instance = new_id("delete-race")
    assert api.post(f"/instances/{instance}", json={}).status_code == 200
    responses = together(THREADS, lambda _: api.delete(f"/instances/{instance}"))
    assert Counter(r.status_code for r in responses) == {200: 1, 404: THREADS - 1}
    assert {json_of(r)["code"] for r in responses if r.status_code == 404} == {"instance.not_found"}
    assert instance not in api.get("/instances").json()


def test_every_worker_sees_config_change_delete_and_recreate(api: Api, deployment: Deployment) -> None:
    instance = new_id("coherence")
    url = f"/instances/{instance}/quantize"

    def answers(phase: str) -> tuple[list[Any], set[str]]:
        """48 quantize calls, 8 at a time, so that they land on every worker; their answers and request ids."""
        ids = [f"{instance}-{phase}-{n}" for n in range(48)]

        def call(index: int) -> list[Any]:
            out = []
            for request_id in ids[index::8]:
                response = api.post(url, json=SPEC_BODY, headers={"X-Request-ID": request_id})
                assert response.status_code == 200, response.text
                out.append(response.json()["data"])
            return out

        return [data for chunk in together(8, call) for data in chunk], set(ids)

    assert api.post(f"/instances/{instance}", json={}).status_code == 200
    before, ids = answers("warm")  # every worker now holds the asymmetric engine object
    assert before == [ASYMMETRIC_CODES] * 48
    assert len(served_by(deployment, ids)) > 1

    assert api.put(f"/instances/{instance}/config", json={"symmetric": True}).status_code == 200
    after_put, ids = answers("put")
    assert after_put == [SYMMETRIC_CODES] * 48
    assert len(served_by(deployment, ids)) > 1

    recreated = {"quantization_type": "INT8", "symmetric": True, "num_bits": 4}
    assert api.delete(f"/instances/{instance}").status_code == 200
    assert api.post(f"/instances/{instance}", json=recreated).status_code == 200
    after_recreate, ids = answers("recreate")
    assert after_recreate == [expected_codes(recreated)] * 48
    assert expected_codes(recreated) not in (ASYMMETRIC_CODES, SYMMETRIC_CODES)
    workers = served_by(deployment, ids)
    assert len(workers) > 1, workers
    stats = api.get(f"/instances/{instance}/stats").json()
    assert stats["quantize_calls"] == 48  # the re-created instance starts from zero: nothing of the old one
    configs = together(8, lambda _: api.get(f"/instances/{instance}/config").json())
    assert all(c["num_bits"] == 4 and c["symmetric"] is True for c in configs)


def test_concurrent_full_config_puts_never_mix(api: Api) -> None:
    instance = new_id("put-race")
    assert api.post(f"/instances/{instance}", json={}).status_code == 200
    stored = []
    for config in (CONFIG_A, CONFIG_B):
        assert api.put(f"/instances/{instance}/config", json=config).status_code == 200
        stored.append(api.get(f"/instances/{instance}/config").json())
    full_a, full_b = stored
    assert full_a != full_b

    def writer(index: int) -> list[dict[str, Any]]:
        seen = []
        for step in range(6):
            config = CONFIG_A if (index + step) % 2 else CONFIG_B
            response = api.put(f"/instances/{instance}/config", json=config)
            assert response.status_code == 200, response.text
            seen.append(api.get(f"/instances/{instance}/config").json())
        return seen

    seen = [config for chunk in together(THREADS, writer) for config in chunk]
    assert all(config in (full_a, full_b) for config in seen)
    final = together(8, lambda _: api.get(f"/instances/{instance}/config").json())
    assert final[0] in (full_a, full_b)
    assert all(config == final[0] for config in final)


# ---------------------------------------------------------------------------- limits and bodies
def test_nginx_answers_413_as_json_above_client_max_body_size(deployment: Deployment) -> None:
    context = ssl.create_default_context(cafile=str(deployment.cert))
    conn = http.client.HTTPSConnection("127.0.0.1", deployment.nginx.https_port, context=context, timeout=TIMEOUT)
    try:
        # Only the headers are sent: nginx refuses on Content-Length alone, before a byte of the body.
        conn.putrequest("POST", "/instances/default/quantize")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(128 * 1024 * 1024 + 1))
        conn.putheader("X-Request-ID", "it-too-large")
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 413
    assert response.getheader("Content-Type", "").startswith("application/json")
    assert response.getheader("X-Request-ID") == "it-too-large"
    assert json.loads(body)["code"] == "request.too_large"


def test_nginx_answers_414_as_json_for_an_over_long_request_line(api: Api) -> None:
    scales = ",".join(["0.125"] * 2000)  # about 12 KB of query string, beyond nginx's 8 KB header buffers
    response = api.post(f"/instances/default/dequantize?scale={scales}", data=b"", headers={
        "Content-Type": "application/octet-stream", "X-Shape": "1"})
    assert response.status_code == 414, (response.status_code, response.text[:300], dict(response.headers))
    assert json_of(response)["code"] == "request.uri_too_long"


def test_large_binary_body_streams_through(api: Api) -> None:
    array = np.linspace(-4, 4, 1000 * 1000, dtype=np.float32).reshape(1000, 1000)
    response = api.post("/instances/default/quantize", data=array.tobytes(), headers={
        "Content-Type": "application/octet-stream", "X-Shape": "1000,1000", "Accept": "application/octet-stream",
    })
    assert response.status_code == 200, response.text[:300]
    assert response.headers["X-Shape"] == "1000,1000"
    assert response.headers["X-Dtype"] == "int8"
    codes = np.frombuffer(response.content, dtype=np.int8)
    assert codes.size == 1000 * 1000
    reference = Quantizer(QuantizationConfig.from_dict({})).quantize(array).data
    assert np.array_equal(codes.reshape(1000, 1000), reference)


def test_a_4096_channel_quantize_passes_nginx_with_its_parameters_in_an_npz(api: Api) -> None:
    """Per-channel scales in headers would be ~8 KB at 512 channels, beyond nginx's proxy buffer (a 502): above 64
    channels they stay out of the headers, and an .npz answer carries them."""
    instance = new_id("channels")
    assert api.post(f"/instances/{instance}", json={"per_channel": True, "symmetric": True}).status_code == 200
    array = np.random.default_rng(4096).normal(size=(4096, 8)).astype(np.float32)
    headers = {"Content-Type": "application/octet-stream", "X-Shape": "4096,8"}
    for accept in ("application/octet-stream", "application/json"):
        response = api.post(f"/instances/{instance}/quantize", data=array.tobytes(), headers={**headers,
                            "Accept": accept})
        assert response.status_code == 200, response.text[:300]
        assert "X-Scale" not in response.headers
        assert "application/x-npz" in response.headers["X-Parameters-Omitted"]
    response = api.post(f"/instances/{instance}/quantize", data=array.tobytes(), headers={**headers,
                        "Accept": "application/x-npz"})
    assert response.status_code == 200, response.text[:300]
    with np.load(io.BytesIO(response.content), allow_pickle=False) as npz:
        codes, scale, axis = npz["data"], npz["scale"], int(npz["axis"])
    assert (codes.shape, scale.shape, axis) == ((4096, 8), (4096,), 0)
    amax = np.abs(array).max(axis=1)
    np.testing.assert_array_equal(scale, (amax / np.float32(127)).astype(np.float32))  # symmetric INT8, per row
    np.testing.assert_array_equal(codes, np.clip(np.rint(array / scale[:, None]), -128, 127).astype(np.int8))
    assert api.delete(f"/instances/{instance}").status_code == 200


def test_large_json_body_passes_every_limit(api: Api) -> None:
    rows = np.round(np.random.default_rng(0).normal(size=(500, 500)), 4).tolist()  # about 2.5 MB of JSON
    response = api.post("/instances/default/quantize_dequantize", json={"data": rows})
    assert response.status_code == 200, response.text[:300]
    assert response.json()["original_shape"] == [500, 500]


# ---------------------------------------------------------------------------- static files (DEBUG off)
def test_static_files_and_api_docs_load(api: Api) -> None:
    css = api.get("/static/admin/css/base.css")
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    assert "X-Request-ID" not in css.headers  # served by nginx from STATIC_ROOT, not by a gunicorn worker
    assert "max-age=" in css.headers.get("Cache-Control", "")

    for page in ("/api/docs/", "/api/redoc/", "/admin/login/"):
        html = api.get(page)
        assert html.status_code == 200, page
        assets = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html.text))
        assert assets, f"{page} references no static file"
        for asset in assets:
            assert api.get(asset).status_code == 200, asset
    schema = api.get("/api/schema/?format=json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Quantizer API"

    missing = api.get("/static/no/such/file.css")
    assert missing.status_code == 404
    assert json_of(missing)["code"] == "route.not_found"


# ---------------------------------------------------------------------------- authentication
def test_token_authentication(deployment: Deployment) -> None:
    """With QUANTIZER_REQUIRE_AUTH on (a second gunicorn on the same database): 401 JSON without a token, 200 with
    one made by createsuperuser --noinput and drf_create_token."""
    token = stack.create_token(deployment.env)
    env = {**deployment.env, "QUANTIZER_REQUIRE_AUTH": "1", "DJANGO_SECURE_SSL_REDIRECT": "0"}
    logdir = deployment.workdir / "auth"
    logdir.mkdir(exist_ok=True)
    with stack.gunicorn(env, logdir, workers=1) as server:
        anonymous = HTTP.get(server.url + "/instances", timeout=TIMEOUT)
        assert anonymous.status_code == 401
        assert json_of(anonymous)["code"] == "http.not_authenticated"
        assert anonymous.headers["WWW-Authenticate"] == "Token"
        wrong = HTTP.get(server.url + "/instances", headers={"Authorization": "Token " + "0" * 40},
                             timeout=TIMEOUT)
        assert wrong.status_code == 401
        assert json_of(wrong)["code"] == "http.authentication_failed"
        good = HTTP.get(server.url + "/instances", headers={"Authorization": f"Token {token}"}, timeout=TIMEOUT)
        assert good.status_code == 200
        assert "default" in good.json()
        quantized = HTTP.post(server.url + "/instances/default/quantize", json=SPEC_BODY, timeout=TIMEOUT,
                                  headers={"Authorization": f"Token {token}"})
        assert quantized.status_code == 200
        assert HTTP.get(server.url + "/", timeout=TIMEOUT).status_code == 200  # liveness needs no token
        assert HTTP.get(server.url + "/readyz", timeout=TIMEOUT).status_code == 200
    assert server.log_problems() == []


# ---------------------------------------------------------------------------- restart
def test_restart_loses_nothing(api: Api, deployment: Deployment) -> None:
    calibrated, imported = new_id("restart-cal"), new_id("restart-imp")
    assert api.post(f"/instances/{calibrated}", json={"symmetric": True, "quantization_mode": "STATIC"}
                    ).status_code == 200
    response = api.post(f"/instances/{calibrated}/calibrate",
                        json={"data": [[[0.5, -1.0], [2.0, 3.0]], [[-4.0, 1.0]]]})
    assert response.status_code == 200, response.text
    assert api.post(f"/instances/{imported}", json={"quantization_type": "UINT8", "quantization_mode": "STATIC"}
                    ).status_code == 200
    response = api.post(f"/instances/{imported}/parameters",
                        json={"parameters": {"global_scale": 0.05, "global_zero_point": 128}})
    assert response.status_code == 200, response.text
    answers = {}
    for instance in (calibrated, imported):
        for _ in range(3):
            response = api.post(f"/instances/{instance}/quantize", json=SPEC_BODY)
            assert response.status_code == 200, response.text
        answers[instance] = response.json()

    def snapshot() -> dict[str, Any]:
        state: dict[str, Any] = {"instances": api.get("/instances").json()}
        for instance in (calibrated, imported):
            for part in ("config", "parameters", "stats"):
                response = api.get(f"/instances/{instance}/{part}")
                assert response.status_code == 200, response.text
                state[f"{instance}/{part}"] = response.json()
        return state

    before = snapshot()
    deployment.gunicorn.stop()
    down = api.get("/instances", headers={"X-Request-ID": "it-while-down"})
    assert down.status_code == 502  # nginx's own answer while gunicorn is down: JSON too
    assert json_of(down)["code"] == "server.unavailable"
    assert down.headers["X-Request-ID"] == "it-while-down"
    deployment.gunicorn.start()

    assert snapshot() == before
    for instance, answer in answers.items():
        assert api.post(f"/instances/{instance}/quantize", json=SPEC_BODY).json() == answer


# ---------------------------------------------------------------------------- last: the logs of the whole run
def test_gunicorn_logs_show_no_timeout_and_no_worker_restart(deployment: Deployment) -> None:
    """No WORKER TIMEOUT, no killed or crashed worker, 'Booting worker' only for the workers of each start, and no
    ERROR record (a 5xx) in the application logs."""
    assert deployment.gunicorn.starts >= 1
    assert deployment.gunicorn.log_problems() == []
    for log in deployment.gunicorn.error_logs:
        assert deployment.gunicorn.booted(log) == WORKERS
    nginx_errors = (deployment.workdir / "nginx-logs" / "quantsite.error.log").read_text()
    assert not re.search(r"\[(crit|alert|emerg)\]", nginx_errors), nginx_errors[-2000:]
