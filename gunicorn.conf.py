"""gunicorn settings, read from the environment (gunicorn loads this file from the working directory).

Sync workers: measured here, 2 workers on 2 cores gave 1.6-1.9x one worker, more added nothing, and gthread lost
more than half on these CPU-bound requests. Size GUNICORN_WORKERS to the cores (plus one or two so that a cheap
request is not kept waiting behind a large one).
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None  # empty: no access log
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "-") or "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Recycling workers is off by default (nothing leaks); GUNICORN_MAX_REQUESTS turns it on, with jitter.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", str(max_requests // 10)))
# nginx, in front, answers a request line above its 8 KB buffers with a JSON 414 before gunicorn sees it;
# gunicorn's own check (an HTML 414) guards a gunicorn reached directly. 0 turns it off (the schemathesis run,
# which talks to gunicorn directly and should meet the application's JSON answers).
limit_request_line = int(os.environ.get("GUNICORN_LIMIT_REQUEST_LINE", "8190"))
