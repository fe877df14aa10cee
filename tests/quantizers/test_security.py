"""Authentication, production settings, request ids and logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

ROOT = Path(__file__).resolve().parents[2]
SPEC_BODY = {"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]], "validate": True}


@pytest.fixture
def auth_on(settings):
    settings.QUANTIZER_REQUIRE_AUTH = True


@pytest.fixture
def token(db) -> str:
    user = get_user_model().objects.create_user("alice", password="s3cret-pass-phrase")
    return Token.objects.create(user=user).key


def test_api_routes_need_a_token_when_auth_is_on(api, auth_on):
    for response in (api.get("/instances"), api.post("/instances/default/quantize", SPEC_BODY),
                     api.get("/instances/default/stats")):
        assert response.status_code == 401
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "http.not_authenticated"
        assert response["WWW-Authenticate"] == "Token"


def test_a_wrong_token_is_401(api, auth_on, token):
    response = api.get("/instances", HTTP_AUTHORIZATION="Token not-the-token")
    assert response.status_code == 401
    assert response.json()["code"] == "http.authentication_failed"


def test_a_valid_token_is_let_in(api, auth_on, token):
    response = api.post("/instances/default/quantize", SPEC_BODY, HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200


def test_liveness_and_readiness_need_no_token(api, auth_on):
    assert api.get("/").status_code == 200
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_not_ready_is_a_json_503_that_says_when_to_ask_again(api, monkeypatch):
    from quantizers import health

    monkeypatch.setattr(health, "readiness_problem", lambda: "2 migration(s) not applied")
    ready = api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"detail": "2 migration(s) not applied", "code": "not_ready"}
    assert int(ready["Retry-After"]) > 0


def test_auth_off_in_the_quick_start(api, settings):
    settings.QUANTIZER_REQUIRE_AUTH = False
    assert api.get("/instances").status_code == 200


def test_request_id_is_echoed_or_made(api):
    mine = api.get("/", HTTP_X_REQUEST_ID="abc-123.x")
    assert mine["X-Request-ID"] == "abc-123.x"
    forged = api.get("/", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert forged["X-Request-ID"] != "bad id\nwith newline"
    assert len(forged["X-Request-ID"]) == 32


def test_client_errors_are_logged_once_with_reason_and_request_id(api, caplog):
    with caplog.at_level(logging.INFO, logger="quantizers.requests"):
        api.get("/instances/nope/stats", HTTP_X_REQUEST_ID="req-42")
    records = [r for r in caplog.records if r.name == "quantizers.requests"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.INFO
    assert record.status == 404
    assert record.reason == "Quantizer instance nope not found"
    assert record.request_id == "req-42"


def test_log_lines_are_json_with_the_request_id():
    from quantizers.observability import JsonFormatter, RequestIdFilter, request_id_var

    token = request_id_var.set("rid-7")
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
        RequestIdFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello world"
    assert line["request_id"] == "rid-7"
    assert line["level"] == "INFO"


def test_json_nesting_is_capped(api, settings):
    settings.QUANTIZER_MAX_JSON_DEPTH = 8
    body = '{"data": ' + "[" * 50 + "]" * 50 + "}"
    response = api.raw("post", "/instances/default/quantize", body, "application/json")
    assert response.status_code == 400
    assert "QUANTIZER_MAX_JSON_DEPTH" in response.json()["detail"]


def _production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "QUANTIZER_"))}
    env.update(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="x" * 20 + "production-secret-key-with-enough-entropy-9f8e7d",
               DJANGO_ALLOWED_HOSTS="quantsite.example.com", DJANGO_SETTINGS_MODULE="quantsite.settings")
    env.update(extra)
    return env


def test_production_settings_pass_the_deploy_check():
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=_production_env(), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _settings(*names: str, **extra: str) -> dict[str, str]:
    """The repr of each named setting, in a fresh process started with the production environment plus `extra`
    (one process per environment: each start costs a Django setup)."""
    code = "import django; django.setup(); from django.conf import settings; " + "; ".join(
        f"print(repr(settings.{name}))" for name in names)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_production_env(**extra),
                            capture_output=True, text=True, check=True)
    return dict(zip(names, result.stdout.splitlines(), strict=True))


def _setting(name: str, **extra: str) -> str:
    return _settings(name, **extra)[name]


def test_https_protections_default_on_and_only_the_environment_turns_them_off():
    assert _settings("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
                     "SECURE_HSTS_PRELOAD", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
                     "QUANTIZER_REQUIRE_AUTH") == {
        "SECURE_SSL_REDIRECT": "True",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "True",
        "SECURE_HSTS_PRELOAD": "True",
        "SESSION_COOKIE_SECURE": "True",
        "CSRF_COOKIE_SECURE": "True",
        "QUANTIZER_REQUIRE_AUTH": "True",
    }
    assert _setting("SECURE_SSL_REDIRECT", DJANGO_SECURE_SSL_REDIRECT="0") == "False"


def test_debug_off_without_a_secret_key_refuses_to_start():
    env = _production_env()
    del env["DJANGO_SECRET_KEY"]
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_cors_never_allows_credentials_with_every_origin():
    assert _setting("CORS_ALLOW_ALL_ORIGINS") == "False"  # production: only the listed origins
    assert _setting("CORS_ALLOW_ALL_ORIGINS", DJANGO_DEBUG="1") == "True"  # the quick start: every origin
    assert _setting("CORS_ALLOW_CREDENTIALS", QUANTIZER_CORS_ALLOW_ALL="1", QUANTIZER_CORS_CREDENTIALS="1") == "False"
    assert _setting("CORS_ALLOWED_ORIGINS", QUANTIZER_CORS_ALLOW_ALL="0",
                    QUANTIZER_CORS_ORIGINS="https://a.example,https://b.example") == \
        "['https://a.example', 'https://b.example']"


def test_the_deploy_check_wants_a_csrf_middleware(settings):
    """Django's own check (security.W003, silenced) looks for its CSRF middleware by name; MIDDLEWARE holds the
    admin-only subclass, and quantizers.W003 warns when neither is there."""
    from quantizers.checks import csrf_middleware

    assert csrf_middleware() == []
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "Csrf" not in m]
    assert [w.id for w in csrf_middleware()] == ["quantizers.W003"]
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.csrf.CsrfViewMiddleware"]
    assert csrf_middleware() == []
