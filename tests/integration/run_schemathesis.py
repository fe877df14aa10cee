"""schemathesis against a live gunicorn, with every check and the stateful phase (settings: schemathesis.toml).

    .venv/bin/python tests/integration/run_schemathesis.py [extra `schemathesis run` options]

Starts gunicorn (2 workers, DEBUG off, token authentication on) on a free loopback port with a fresh SQLite
database in a temporary directory, creates a superuser and its token, runs `schemathesis run` on the live schema at
/api/schema/ from the repository root, stops gunicorn, and fails when schemathesis failed, took longer than
SCHEMATHESIS_TIMEOUT_S (default 600), or gunicorn logged a 5xx, a worker timeout or a worker restart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration import stack  # noqa: E402 (needs the repository on the path first)

WORKERS = 2


def schemathesis_command() -> list[str]:
    beside = Path(sys.executable).parent / "schemathesis"
    found = str(beside) if beside.exists() else shutil.which("schemathesis")
    if not found:
        raise SystemExit("schemathesis is not installed: make install (it is in the dev extras)")
    return [found]


def main(extra: list[str]) -> int:
    timeout = float(os.environ.get("SCHEMATHESIS_TIMEOUT_S", "600"))
    workdir = stack.make_workdir("quantsite-schemathesis-")
    database = stack.create_database("sqlite", workdir)
    # Plain HTTP straight to gunicorn, without its request-line limit: in production nginx answers an over-long
    # request line (JSON 414, tested in test_deployment); here the fuzzer's long queries reach the application.
    env = stack.django_env(database.url, workdir, QUANTIZER_REQUIRE_AUTH="1",
                           DJANGO_SECURE_SSL_REDIRECT="0", GUNICORN_LIMIT_REQUEST_LINE="0")
    stack.manage(env, "migrate", "--noinput", "-v", "0")
    token = stack.create_token(env)
    started = time.monotonic()
    with stack.gunicorn(env, workdir, workers=WORKERS) as server:
        command = [*schemathesis_command(), "run", f"{server.url}/api/schema/", *extra]
        print("$", " ".join(command), flush=True)
        try:
            result = subprocess.run(command, cwd=ROOT, env={**os.environ, "QUANTSITE_API_TOKEN": token},
                                    timeout=timeout, check=False)
            code = result.returncode
        except subprocess.TimeoutExpired:
            print(f"schemathesis did not finish within {timeout:.0f}s", file=sys.stderr)
            code = 1
    problems = server.log_problems()
    print(f"schemathesis: exit code {code} after {time.monotonic() - started:.1f}s; gunicorn log problems: "
          f"{len(problems)}")
    for problem in problems:
        print("  ", problem)
    if code == 0 and not problems:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs kept in {workdir}")
    return code or (1 if problems else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
