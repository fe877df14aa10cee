"""quantsite settings, read from the environment (see .env.example for every variable)."""

from __future__ import annotations

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)  # optional; real environment variables win

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = "insecure-development-key-only-for-DJANGO_DEBUG=1"
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "quantizers",
]

MIDDLEWARE = [
    "quantizers.metrics.MetricsMiddleware",  # outermost: every answer counted, the other middleware's included
    "quantizers.observability.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "quantizers.middleware.BodySizeLimitMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # Django's session, login and message middlewares, run for the admin's paths only (see the module).
    "quantizers.middleware.AdminSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "quantizers.middleware.AdminCsrfViewMiddleware",  # the admin's paths only (the API's views are exempt)
    "quantizers.middleware.AdminAuthenticationMiddleware",
    "quantizers.middleware.AdminMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "quantsite.urls"
WSGI_APPLICATION = "quantsite.wsgi.application"
APPEND_SLASH = False  # the API answers with and without a trailing slash itself

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ---------------------------------------------------------------------------- database
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several gunicorn workers share the file: WAL lets readers run beside a writer, IMMEDIATE transactions take
    # the write lock up front (no deadlock on lock upgrade), and the busy timeout makes writers wait, not fail.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.int("QUANTIZER_SQLITE_TIMEOUT_S", default=30),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # A persistent connection is checked before its first use in a request, so one broken by a database restart
    # is replaced, not failed on (DATABASE_URL's ?conn_health_checks=0 turns it off: the request then answers 503
    # and the connection is closed at its end).
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# Persistent connections on SQLite too: opening one per request, and closing it (the last connection to close
# checkpoints and deletes the WAL file), took about half the time of a small request (bench/http.py).
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DJANGO_CONN_MAX_AGE", default=60))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Model jobs' uploads and artifacts (quantizers/jobs.py). A folder under the project by default; a shared
    # volume (QUANTIZER_JOBS_ROOT) or another storage backend serves workers on several machines.
    "jobs": {"BACKEND": env.str("QUANTIZER_JOBS_STORAGE", default="django.core.files.storage.FileSystemStorage"),
             "OPTIONS": {"location": env.str("QUANTIZER_JOBS_ROOT", default=str(BASE_DIR / "jobs"))}},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# ---------------------------------------------------------------------------- quantizer limits
QUANTIZER_MAX_BODY_MB = env.int("QUANTIZER_MAX_BODY_MB", default=128)
QUANTIZER_MAX_ELEMENTS = env.int("QUANTIZER_MAX_ELEMENTS", default=16 * 1024 * 1024)
QUANTIZER_MAX_JSON_DEPTH = env.int("QUANTIZER_MAX_JSON_DEPTH", default=32)
DATA_UPLOAD_MAX_MEMORY_SIZE = QUANTIZER_MAX_BODY_MB * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE  # uploads stay in memory: .npy is read zero-copy

# ---------------------------------------------------------------------------- model jobs (Celery)
# POST /instances/{id}/jobs streams a checkpoint to the "jobs" storage: exempt from QUANTIZER_MAX_BODY_MB and the
# element limits, refused (413) above QUANTIZER_MAX_MODEL_MB before a byte is stored.
QUANTIZER_MAX_MODEL_MB = env.int("QUANTIZER_MAX_MODEL_MB", default=4096)
# Unset: no broker, jobs run inline in the request that creates them (the quick start needs nothing else).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="quantsite-jobs")
# A job's message is acknowledged when it ends, and given back when the worker dies mid-job: the task is
# idempotent, so the re-run overwrites what the crashed one left. One job at a time per worker process.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("QUANTIZER_JOB_SOFT_TIME_LIMIT_S", default=3 * 3600)
CELERY_TASK_TIME_LIMIT = env.int("QUANTIZER_JOB_TIME_LIMIT_S", default=CELERY_TASK_SOFT_TIME_LIMIT + 300)
# Job state lives in the database (quantizers.models.Job), not in a result backend.
CELERY_TASK_IGNORE_RESULT = True
# Redis hands an unacknowledged message (a worker killed outright) to another worker after this long: above the
# longest job, or a slow job would run twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("QUANTIZER_JOB_VISIBILITY_TIMEOUT_S", default=CELERY_TASK_TIME_LIMIT + 600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A running job whose progress (written after each tensor) is older than this lost its worker: a redelivered
# message takes it over. Above the time of the slowest single tensor.
QUANTIZER_JOB_HEARTBEAT_S = env.int("QUANTIZER_JOB_HEARTBEAT_S", default=120)
# A job whose worker died this many times fails instead of being handed out again.
QUANTIZER_JOB_MAX_ATTEMPTS = env.int("QUANTIZER_JOB_MAX_ATTEMPTS", default=3)

# ---------------------------------------------------------------------------- CORS
CORS_ALLOW_ALL_ORIGINS = env.bool("QUANTIZER_CORS_ALLOW_ALL", default=DEBUG)
CORS_ALLOWED_ORIGINS = env.list("QUANTIZER_CORS_ORIGINS", default=[])
CORS_ALLOW_CREDENTIALS = False if CORS_ALLOW_ALL_ORIGINS else env.bool("QUANTIZER_CORS_CREDENTIALS", default=False)
# The CORS middleware only when some origin is allowed: with none (production's default) it would grant nothing
# and still cost an eighth of GET /'s time (it builds every request's header map and patches Vary).
if not (CORS_ALLOW_ALL_ORIGINS or CORS_ALLOWED_ORIGINS):
    MIDDLEWARE.remove("corsheaders.middleware.CorsMiddleware")

# ---------------------------------------------------------------------------- HTTPS (nginx terminates TLS)
# With DEBUG off every protection is on by default; the environment can only turn them off. nginx sets
# X-Forwarded-Proto, so plain-HTTP gunicorn behind it knows the original scheme.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^$", r"^readyz/?$", r"^metrics/?$"]  # probes and scrapers may call gunicorn directly
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=not DEBUG)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# Django's deploy check looks for its CSRF middleware by name; MIDDLEWARE holds a subclass (the admin's paths
# only), which quantizers/checks.py looks for instead (quantizers.W003).
SILENCED_SYSTEM_CHECKS = ["security.W003"]
CSRF_FAILURE_VIEW = "quantizers.exceptions.json_csrf_failure"  # JSON 403 (the admin keeps Django's HTML page)

# ---------------------------------------------------------------------------- API authentication
# Token authentication (tokens managed in the admin) on every API route but GET / and GET /readyz; on by default
# whenever DEBUG is off, off in the quick start.
QUANTIZER_REQUIRE_AUTH = env.bool("QUANTIZER_REQUIRE_AUTH", default=not DEBUG)
# GET /metrics needs the same token unless this opens it (a scraper on a private network).
QUANTIZER_METRICS_PUBLIC = env.bool("QUANTIZER_METRICS_PUBLIC", default=False)

# ---------------------------------------------------------------------------- DRF and OpenAPI
REST_FRAMEWORK = {
    # JSON in and out unless a view says otherwise (the array operations and the upload do).
    "DEFAULT_PARSER_CLASSES": ["quantizers.api.parsers.OrjsonParser"],
    "DEFAULT_RENDERER_CLASSES": ["quantizers.api.renderers.OrjsonRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "quantizers.api.negotiation.ContentNegotiation",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["quantizers.permissions.ApiAccess"],
    "EXCEPTION_HANDLER": "quantizers.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "quantizers.api.schema.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Quantizer API",
    "DESCRIPTION": "Quantize, dequantize, fake-quantize and calibrate numeric arrays (INT8, UINT8, INT16, INT4, UINT4, "
    "FP8, BFLOAT16, FLOAT16) "
    "with named quantizer instances whose state persists.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The default enum hook, then ours: id pattern, strict bodies, float32 bounds, JSON errors, 401/406, links.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "quantizers.api.schema_hooks.postprocess_schema",
    ],
}

# ---------------------------------------------------------------------------- logs: JSON lines with the request id
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "quantizers.observability.RequestIdFilter"}},
    "formatters": {"json": {"()": "quantizers.observability.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
    # 4xx are logged once, with their reason, by RequestIdMiddleware; django.request keeps the 5xx tracebacks.
    "loggers": {"django.request": {"level": "ERROR"}, "django.server": {"level": "WARNING"}},
}
