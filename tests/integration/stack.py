"""The real services of an integration run: a database, gunicorn, nginx (with a config generated from
deploy/nginx.conf) and the manage.py steps of a deployment. Used by the integration fixtures and by
run_schemathesis.py; every server binds to 127.0.0.1 only and every wait is bounded."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
NGINX_SITE = ROOT / "deploy" / "nginx.conf"
PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
SECRET_KEY = "integration-only-" + "k" * 50
# What the production site file says, and what a test run puts in its place (each must be present).
SITE_UPSTREAM = "server 127.0.0.1:8000"
SITE_HTTP_LISTEN = ("listen 80;", "listen [::]:80;")
SITE_HTTPS_LISTEN = ("listen 443 ssl http2;", "listen [::]:443 ssl http2;")
SITE_CERT = "/etc/letsencrypt/live/quantsite.example.com/fullchain.pem"
SITE_KEY = "/etc/letsencrypt/live/quantsite.example.com/privkey.pem"
SITE_STATIC_ROOT = "/srv/quantsite/staticfiles/"
SITE_LOG_DIR = "/var/log/nginx/"
# gunicorn's access log with the worker pid and the request id, so a test can tell which worker answered.
ACCESS_LOG_FORMAT = '%(p)s %(m)s %(U)s %(s)s %({x-request-id}o)s'


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_workdir(prefix: str) -> Path:
    """A temporary directory that nginx's workers (another user when the master runs as root) can read."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------------------- databases
@dataclass
class Database:
    kind: str
    url: str
    name: str = ""

    def drop(self) -> None:
        if self.kind == "postgresql":
            _pg_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(**PG_ADMIN, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement)


def create_database(kind: str, workdir: Path) -> Database:
    """A fresh, empty database for one run: a new PostgreSQL database, or a SQLite file in the run's directory."""
    if kind == "sqlite":
        return Database(kind, f"sqlite:///{workdir / 'db.sqlite3'}")
    name = f"quantsite_it_{os.getpid()}_{secrets.token_hex(4)}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    return Database(kind, f"postgres://{PG_ADMIN['user']}@{PG_ADMIN['host']}:{PG_ADMIN['port']}/{name}", name)


# ---------------------------------------------------------------------------- a private PostgreSQL server
def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's binaries (initdb, pg_ctl), as Debian lays them out."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return found[-1].parent


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of a test's own (the machine's server on 5432 is shared and must never be restarted):
    initdb into a temporary directory, listening on 127.0.0.1 on a free port, its socket in that directory. As
    root, every command runs as the `postgres` OS user (initdb and postgres refuse root)."""

    base: Path
    port: int
    bindir: Path = field(default_factory=postgres_bindir)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "postgres.log"

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            log = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                               f"{result.stderr}\n{log}")

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--no-instructions", timeout=120)

    def start(self) -> None:
        # fsync off: a throwaway cluster; a fast shutdown still writes everything out.
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", options, "-w", "-t", "30",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def cleanup(self) -> None:
        """Stop the server however it is (an immediate shutdown, then the postmaster's pid killed), then remove
        the directory. Safe to call in any state."""
        try:
            if self.running():
                self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pid_file = self.datadir / "postmaster.pid"
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)  # the postmaster's immediate stop
                time.sleep(1)
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private cluster, stopped and removed on the way out, failure or not."""
    server = PrivatePostgres(base=make_workdir("qs-pg-"), port=free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


# ---------------------------------------------------------------------------- the Django side
def django_env(database_url: str, workdir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a production deployment (DEBUG off), with no variable inherited from the caller's
    Django, quantsite or gunicorn settings (pytest-django's test settings set some in this process); its static
    files and model jobs' files in the test's own `workdir`, never in the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "QUANTIZER_", "GUNICORN_")) and k != "DATABASE_URL"}
    env.update({
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "DJANGO_STATIC_ROOT": str(workdir / "static"),
        "QUANTIZER_JOBS_ROOT": str(workdir / "jobs"),
        "DJANGO_LOG_LEVEL": "INFO",
        "QUANTIZER_REQUIRE_AUTH": "0",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(overrides)
    return env


def manage(env: Mapping[str, str], *args: str, timeout: float = 120) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=dict(env), capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
                           f"{result.stdout}\n{result.stderr}")
    return result.stdout


def deploy_steps(env: Mapping[str, str]) -> None:
    """What the deployment of docs/operations.md does before gunicorn starts."""
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "collectstatic", "--noinput", "-v", "0")


def create_token(env: Mapping[str, str], username: str = "integration-admin") -> str:
    """createsuperuser --noinput (credentials from the environment), then drf_create_token: the token's key."""
    admin_env = {**env, "DJANGO_SUPERUSER_USERNAME": username, "DJANGO_SUPERUSER_PASSWORD": secrets.token_urlsafe(16),
                 "DJANGO_SUPERUSER_EMAIL": f"{username}@example.com"}
    manage(admin_env, "createsuperuser", "--noinput")
    out = manage(env, "drf_create_token", username)
    match = re.search(r"\b([0-9a-f]{40})\b", out)
    if not match:
        raise RuntimeError(f"no token in drf_create_token's output: {out!r}")
    return match.group(1)


# ---------------------------------------------------------------------------- processes
def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent` (a gunicorn master's workers), from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(entry))
    return sorted(pids)


def wait_http(url: str, *, timeout: float = 30, expect: int = 200, context: object = None,
              proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                if response.status == expect:
                    return
                last = response.status
        except urllib.error.HTTPError as exc:
            last = exc.code
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {expect} within {timeout}s (last: {last})")


def stop_process(proc: subprocess.Popen[bytes] | None, *, timeout: float = 40) -> None:
    """SIGTERM (gunicorn and nginx shut down gracefully on it), then SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class Gunicorn:
    env: dict[str, str]
    port: int
    workers: int
    logdir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    error_logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.logdir / "gunicorn-access.log"

    def start(self, timeout: float = 60) -> None:
        """Start the master and wait until / answers and every worker has booted. Each start writes its own error
        log, so that the boots of one start can be counted."""
        self.starts += 1
        error_log = self.logdir / f"gunicorn-error-{self.starts}.log"
        self.error_logs.append(error_log)
        env = {
            **self.env,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_WORKERS": str(self.workers),
            "GUNICORN_ERROR_LOG": str(error_log),
            "GUNICORN_ACCESS_LOG": str(self.access_log),
            "GUNICORN_CMD_ARGS": f"--access-logformat '{ACCESS_LOG_FORMAT}'",
        }
        app_log = open(self.logdir / f"django-{self.starts}.log", "ab")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(  # the JSON application log goes to stderr, as under systemd
            [PYTHON, "-m", "gunicorn", "quantsite.wsgi", "--config", "gunicorn.conf.py"],
            cwd=ROOT, env=env, stdout=app_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        app_log.close()
        wait_http(self.url + "/", timeout=timeout, proc=self.proc)
        deadline = time.monotonic() + timeout
        while self.booted(error_log) < self.workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.workers} workers did not boot within {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @staticmethod
    def booted(error_log: Path) -> int:
        return error_log.read_text().count("Booting worker") if error_log.exists() else 0

    def log_problems(self) -> list[str]:
        """Timeouts, crashes and restarts in the error logs, and 5xx (ERROR records) in the application logs."""
        problems = []
        for log in self.error_logs:
            text = log.read_text() if log.exists() else ""
            for marker in ("WORKER TIMEOUT", "was sent SIGKILL", "exited with code", "Worker failed to boot"):
                if marker in text:
                    problems.append(f"{log.name}: {marker}")
            if self.booted(log) != self.workers:
                problems.append(f"{log.name}: {self.booted(log)} 'Booting worker' lines for {self.workers} workers")
        for log in sorted(self.logdir.glob("django-*.log")):
            problems += [f"{log.name}: {line[:300]}" for line in log.read_text().splitlines()
                         if '"level": "ERROR"' in line or '"level": "CRITICAL"' in line]
        return problems


@contextlib.contextmanager
def gunicorn(env: dict[str, str], logdir: Path, *, workers: int, port: int | None = None) -> Iterator[Gunicorn]:
    server = Gunicorn(env=env, port=port or free_port(), workers=workers, logdir=logdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------- nginx
def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise RuntimeError("nginx is not installed (apt-get install -y nginx); .ci/run installs it")
    return found


def self_signed_certificate(workdir: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and localhost, standing in for the real one."""
    cert, key = workdir / "tls.crt", workdir / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def render_nginx_conf(*, workdir: Path, upstream_port: int, http_port: int, https_port: int, static_root: Path,
                      cert: Path, key: Path) -> str:
    """deploy/nginx.conf with this run's ports, certificate, static root and log paths, inside a minimal main
    config whose pid, logs and temporary files live in `workdir`. Everything else (limits, proxy settings, error
    pages) is the production file as written."""
    site = NGINX_SITE.read_text()
    logs = workdir / "nginx-logs"
    logs.mkdir(exist_ok=True)
    replacements = {
        SITE_UPSTREAM: f"server 127.0.0.1:{upstream_port}",
        SITE_HTTP_LISTEN[0]: f"listen 127.0.0.1:{http_port};",
        SITE_HTTP_LISTEN[1]: "",
        SITE_HTTPS_LISTEN[0]: f"listen 127.0.0.1:{https_port} ssl http2;",
        SITE_HTTPS_LISTEN[1]: "",
        SITE_CERT: str(cert),
        SITE_KEY: str(key),
        SITE_STATIC_ROOT: f"{static_root}/",
        SITE_LOG_DIR: f"{logs}/",
    }
    for old, new in replacements.items():
        if old not in site:
            raise AssertionError(f"deploy/nginx.conf no longer contains {old!r}: update tests/integration/stack.py")
        site = site.replace(old, new)
    temp = {name: workdir / "nginx-temp" / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    # As root, the workers would switch to `nobody`; running them as the caller keeps the temporary files simple.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""# Generated for an integration run from deploy/nginx.conf; do not edit.
{user}
worker_processes 2;
pid {workdir}/nginx.pid;
error_log {logs}/main-error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    access_log {logs}/main-access.log;
    client_body_temp_path {temp['client_body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};

{site}
}}
"""


@dataclass
class Nginx:
    conf: Path
    workdir: Path
    http_port: int
    https_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, ssl_context: object, timeout: float = 30) -> None:
        binary = nginx_binary()
        check = subprocess.run([binary, "-t", "-q", "-c", str(self.conf), "-p", str(self.workdir)],
                               capture_output=True, text=True, timeout=30, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
        log = open(self.workdir / "nginx-stderr.log", "ab")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen([binary, "-c", str(self.conf), "-g", "daemon off;", "-p", str(self.workdir)],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_http(self.url + "/", timeout=timeout, context=ssl_context, proc=self.proc)

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)
        self.proc = None


# ---------------------------------------------------------------------------- the whole deployment
WORKERS = 4
TIMEOUT = 30  # seconds, on every HTTP call


@dataclass
class Deployment:
    kind: str
    workdir: Path
    env: dict[str, str]
    database: Database
    gunicorn: Gunicorn
    nginx: Nginx
    cert: Path

    @property
    def url(self) -> str:
        return self.nginx.url


@contextlib.contextmanager
def deployed(kind: str, database: Database, workdir: Path, *, workers: int = WORKERS, static: bool = True,
             env_overrides: Mapping[str, str] | None = None) -> Iterator[Deployment]:
    """migrate and collectstatic with the production environment (DEBUG off), gunicorn, then nginx in front of it
    with TLS and a config generated from deploy/nginx.conf; both stopped on the way out (the database is the
    caller's). static=False skips collectstatic (an empty static root) for tests of the API alone; env_overrides
    are added to the production environment."""
    server: Gunicorn | None = None
    proxy: Nginx | None = None
    try:
        env = django_env(database.url, workdir, **(env_overrides or {}))
        if static:
            deploy_steps(env)
        else:
            manage(env, "migrate", "--noinput", "-v", "0")
            (workdir / "static").mkdir(exist_ok=True)
        server = Gunicorn(env=env, port=free_port(), workers=workers, logdir=workdir)
        server.start()
        cert, key = self_signed_certificate(workdir)
        http_port, https_port = free_port(), free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(render_nginx_conf(workdir=workdir, upstream_port=server.port, http_port=http_port,
                                          https_port=https_port, static_root=workdir / "static", cert=cert, key=key))
        proxy = Nginx(conf=conf, workdir=workdir, http_port=http_port, https_port=https_port)
        proxy.start(ssl_context=ssl.create_default_context(cafile=str(cert)))
        yield Deployment(kind, workdir, env, database, server, proxy, cert)
    finally:
        if proxy is not None:
            proxy.stop()
        if server is not None:
            server.stop()


# ---------------------------------------------------------------------------- the client side
def loopback_session() -> requests.Session:
    """A session that ignores the environment's proxies and CA bundle (REQUESTS_CA_BUNDLE would replace the
    run's own certificate): every call goes straight to 127.0.0.1."""
    session = requests.Session()
    session.trust_env = False
    return session


class Api:
    """requests with a timeout on every call and one keep-alive session per thread, against nginx over TLS."""

    def __init__(self, base: str, cert: Path) -> None:
        self.base = base
        self.verify = str(cert)
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = loopback_session()
        return session

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("allow_redirects", False)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json=json, **kwargs)

    def put(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)
