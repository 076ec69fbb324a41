"""The team's MLflow tracking server: PostgreSQL as the backend store, artifacts proxied by the
server (clients need no storage credentials), MLflow's basic authentication on.

    scripts/tracking-server.sh start|stop|status|add-user NAME   (= python -m mnist_ae.team_server)

Everything lives in one folder (default `.tracking-server/`, git-ignored): the PostgreSQL
cluster, made with the machine's own `initdb` and run with `pg_ctl`, listening on 127.0.0.1 only
(no Unix socket), holding two databases, `mlflow` (runs, models) and `mlflow_auth` (users and
permissions); the artifacts; the logs. The database password is generated at the first start
and kept in the folder (mode 0600); it reaches the server through PGPASSWORD, never a command
line. The admin's password comes from MLflow's own MLFLOW_AUTH_ADMIN_PASSWORD at the first
start (MLflow ignores it afterwards; rotate it through MLflow's update-password API).

PostgreSQL refuses to run as root: under root, its commands run as the user `postgres` (or
MNIST_AE_PG_USER), which must be able to reach the folder.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

DEFAULT_DIR = Path(".tracking-server")
DIR_ENV = "MNIST_AE_SERVER_DIR"
DEFAULT_PORT = 5001  # `mlflow ui` takes 5000
DEFAULT_DB_PORT = 5433  # a system PostgreSQL usually has 5432
ADMIN_USER = "admin"
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"  # MLflow's own variable
NEW_USER_PASSWORD_ENV = "MNIST_AE_NEW_USER_PASSWORD"
PG_USER_ENV = "MNIST_AE_PG_USER"
MIN_PASSWORD_LENGTH = 12
# Passwords that MLflow's or PostgreSQL's own examples use: never accepted.
KNOWN_DEFAULTS = {"password1234", "password", "admin", "mlflow", "postgres", "changeme"}
DATABASES = ("mlflow", "mlflow_auth")
AUTH_CACHE_SECONDS = 60
START_TIMEOUT = 180.0  # the first start creates MLflow's tables (a hundred migrations)


class ServerError(RuntimeError):
    """What went wrong, in one line that says what to do."""


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def postgres(self) -> Path:  # owned by the PostgreSQL user
        return self.root / "postgres"

    @property
    def pgdata(self) -> Path:
        return self.postgres / "data"

    @property
    def pglog(self) -> Path:
        return self.postgres / "postgres.log"

    @property
    def db_password(self) -> Path:
        return self.root / "db-password"

    @property
    def flask_secret(self) -> Path:  # signs the auth app's CSRF tokens
        return self.root / "flask-secret-key"

    @property
    def settings(self) -> Path:  # fixed at the first start: the database port
        return self.root / "settings.json"

    @property
    def auth_config(self) -> Path:
        return self.root / "basic_auth.ini"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def state(self) -> Path:  # while the server runs: its pid and URL
        return self.root / "server.json"


def check_admin_password(password: str | None) -> str:
    if not password:
        raise ServerError(
            f"set {ADMIN_PASSWORD_ENV} to the admin password for the first start "
            f"(at least {MIN_PASSWORD_LENGTH} characters; never a default one)"
        )
    if len(password) < MIN_PASSWORD_LENGTH or password.lower() in KNOWN_DEFAULTS:
        raise ServerError(
            f"{ADMIN_PASSWORD_ENV} is too weak: use at least {MIN_PASSWORD_LENGTH} characters "
            "and not a well-known default"
        )
    return password


# --- PostgreSQL -----------------------------------------------------------------------------


def _pg_prefix() -> list[str]:
    """Run PostgreSQL's programs as an unprivileged user when we are root (they refuse root)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", os.environ.get(PG_USER_ENV, "postgres"), "--"]


def _program(name: str) -> str:
    """`name` on PATH, else in Debian's /usr/lib/postgresql/<version>/bin (not on PATH there)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    if versions:
        return str(versions[-1])
    raise ServerError(f"PostgreSQL's `{name}` was not found; install PostgreSQL 15 or newer")


def _pg(*command: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    program = command[0]
    result = subprocess.run(
        [*_pg_prefix(), _program(program), *command[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LC_ALL": "C"},
    )
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ServerError(f"`{program}` failed: {detail[-1] if detail else result.returncode}")
    return result


def _make_postgres_folder(layout: Layout) -> None:
    layout.postgres.mkdir(mode=0o700)
    if os.geteuid() == 0:
        user = pwd.getpwnam(os.environ.get(PG_USER_ENV, "postgres"))
        os.chown(layout.postgres, user.pw_uid, user.pw_gid)
        if _pg("test", "-w", str(layout.postgres), check=False).returncode != 0:
            layout.postgres.rmdir()
            raise ServerError(
                f"user {user.pw_name} (PostgreSQL refuses root) cannot reach {layout.root}: "
                "choose a --dir it can write to, e.g. under /tmp or /srv"
            )


def init_database(layout: Layout, db_port: int) -> None:
    """A new PostgreSQL cluster: password authentication only, 127.0.0.1 only, no socket."""
    _make_postgres_folder(layout)
    password = secrets.token_urlsafe(24)
    _write_private(layout.db_password, password + "\n")
    # initdb reads the password from a file, written by (and readable only for) its own user.
    pwfile = layout.postgres / "initdb-password"
    _pg("sh", "-c", f"umask 077 && cat > '{pwfile}'", stdin=password + "\n")
    try:
        _init_cluster(layout, pwfile)
    finally:
        _pg("rm", "-f", str(pwfile))
    settings = (
        "\n# mnist_ae.team_server\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {db_port}\n"
        "unix_socket_directories = ''\n"
    )
    _pg("sh", "-c", f"cat >> '{layout.pgdata / 'postgresql.conf'}'", stdin=settings)


def _init_cluster(layout: Layout, pwfile: Path) -> None:
    _pg(
        "initdb",
        "--pgdata",
        str(layout.pgdata),
        "--username",
        "mlflow",
        "--pwfile",
        str(pwfile),
        "--auth",
        "scram-sha-256",
        "--encoding",
        "UTF8",
        "--no-instructions",
    )


def database_running(layout: Layout) -> bool:
    return (
        layout.pgdata.is_dir()
        and _pg("pg_ctl", "status", "-D", str(layout.pgdata), check=False).returncode == 0
    )


def start_database(layout: Layout) -> None:
    if database_running(layout):
        return
    result = _pg(
        "pg_ctl",
        "start",
        "-D",
        str(layout.pgdata),
        "-l",
        str(layout.pglog),
        "-w",
        "-t",
        "60",
        check=False,
    )
    if result.returncode != 0:
        raise ServerError(f"PostgreSQL did not start; see {layout.pglog}")


def stop_database(layout: Layout) -> None:
    if database_running(layout):
        _pg("pg_ctl", "stop", "-D", str(layout.pgdata), "-m", "fast", "-w", "-t", "60")


def _database_url(layout: Layout, database: str) -> str:
    """SQLAlchemy URL without the password (libpq takes it from PGPASSWORD)."""
    return f"postgresql+psycopg://mlflow@127.0.0.1:{_settings(layout)['db_port']}/{database}"


def create_databases(layout: Layout) -> None:
    import psycopg

    port = _settings(layout)["db_port"]
    password = layout.db_password.read_text().strip()
    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="mlflow",
        password=password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as connection:
        existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
        for database in DATABASES:
            if database not in existing:
                connection.execute(f'CREATE DATABASE "{database}"')


# --- the MLflow server ----------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def _settings(layout: Layout) -> dict:
    return json.loads(layout.settings.read_text())


def _write_auth_config(layout: Layout, default_permission: str) -> None:
    _write_private(
        layout.auth_config,
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = {_database_url(layout, 'mlflow_auth')}\n"
        f"admin_username = {ADMIN_USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Checking a password costs a PBKDF2 hash, 0.3 s here: every request of a pipeline
        # run paid it. A successful check is cached per worker for a minute, so a password
        # change or a deleted user reaches the other worker within a minute.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n",
    )


def _running_server(layout: Layout) -> dict | None:
    """server.json if its process is alive, else None (and a stale file is removed)."""
    if not layout.state.exists():
        return None
    state = json.loads(layout.state.read_text())
    try:
        process = psutil.Process(state["pid"])
        if process.create_time() == state["create_time"]:
            return state
    except psutil.Error:
        pass
    layout.state.unlink()
    return None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(
    layout: Layout,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    db_port: int = DEFAULT_DB_PORT,
    workers: int = 2,
    allowed_hosts: str | None = None,
    default_permission: str = "EDIT",
) -> str:
    """Start PostgreSQL and the server (initialising the folder the first time); its URL."""
    running = _running_server(layout)
    if running:
        raise ServerError(f"already running at {running['url']} (pid {running['pid']})")
    first = not layout.settings.exists()
    if first:
        admin_password = check_admin_password(os.environ.get(ADMIN_PASSWORD_ENV))
        # Under root, the PostgreSQL user must be able to pass through (files inside are 0600).
        layout.root.mkdir(mode=0o711 if os.geteuid() == 0 else 0o700, parents=True, exist_ok=True)
        if any(layout.root.iterdir()):
            raise ServerError(f"{layout.root} is not empty and holds no server; choose a new --dir")
        try:
            init_database(layout, db_port)
        except BaseException:
            shutil.rmtree(layout.postgres, ignore_errors=True)  # ours: the folder was empty
            layout.db_password.unlink(missing_ok=True)
            raise
        _write_private(layout.flask_secret, secrets.token_urlsafe(32) + "\n")
        _write_private(layout.settings, json.dumps({"db_port": db_port}) + "\n")
    layout.artifacts.mkdir(exist_ok=True)
    start_database(layout)
    try:
        create_databases(layout)
        _write_auth_config(layout, default_permission)
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        if _healthy(url):
            raise ServerError(f"something already answers at {url}; choose another --port")
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", host,
            "--port", str(port),
            "--backend-store-uri", _database_url(layout, "mlflow"),
            "--artifacts-destination", str(layout.artifacts.resolve()),
            "--app-name", "basic-auth",
            "--workers", str(workers),
        ]  # fmt: skip
        if allowed_hosts:
            command += ["--allowed-hosts", allowed_hosts]
        environment = {
            **os.environ,
            "PGPASSWORD": layout.db_password.read_text().strip(),
            "MLFLOW_AUTH_CONFIG_PATH": str(layout.auth_config.resolve()),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": layout.flask_secret.read_text().strip(),
        }
        if first:
            environment[ADMIN_PASSWORD_ENV] = admin_password
        with open(layout.log, "ab") as log:
            server = subprocess.Popen(
                command,
                cwd=layout.root,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives this command; stopped by `stop`
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                _kill_group(server.pid)
                raise ServerError(f"the MLflow server did not start; see {layout.log}")
            time.sleep(0.5)
    except BaseException:
        stop_database(layout)
        raise
    state = {"pid": server.pid, "create_time": psutil.Process(server.pid).create_time(), "url": url}
    layout.state.write_text(json.dumps(state) + "\n")
    return url


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop(layout: Layout) -> None:
    """Stop the server, then PostgreSQL. Stopping what is not running is not an error."""
    running = _running_server(layout)
    if running:
        _kill_group(running["pid"])
        layout.state.unlink()
    if layout.pgdata.is_dir():
        stop_database(layout)


def status(layout: Layout) -> dict:
    running = _running_server(layout)
    return {
        "server": running["url"] if running else None,
        "healthy": bool(running) and _healthy(running["url"]),
        "database": database_running(layout),
    }


def add_user(url: str, name: str, password: str) -> None:
    """Create a user, as the admin (password: MLFLOW_AUTH_ADMIN_PASSWORD, the current one)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ServerError(
            f"the new user's password needs at least {MIN_PASSWORD_LENGTH} characters"
        )
    admin_password = os.environ.get(ADMIN_PASSWORD_ENV)
    if not admin_password:
        raise ServerError(f"set {ADMIN_PASSWORD_ENV} to the admin's (current) password")
    admin = ADMIN_USER
    token = base64.b64encode(f"{admin}:{admin_password}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/users/create",
        data=json.dumps({"username": name, "password": password}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30):
            return
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            message = json.loads(body).get("message", body)
        except ValueError:
            message = body
        message = (message or exc.reason).strip().splitlines()[0] if (message or exc.reason) else ""
        raise ServerError(
            f"{url} refused to create user {name!r} (HTTP {exc.code}): {message}"
        ) from None
    except OSError as exc:
        raise ServerError(f"{url} is unreachable ({getattr(exc, 'reason', exc)})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tracking-server", description="The team's MLflow tracking server on PostgreSQL."
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get(DIR_ENV) or DEFAULT_DIR),
        help=f"its folder (default: ${DIR_ENV}, else %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start_parser = commands.add_parser("start", help="start PostgreSQL and the server")
    start_parser.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s)")
    start_parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    start_parser.add_argument(
        "--db-port", type=int, default=DEFAULT_DB_PORT, help="first start only (%(default)s)"
    )
    start_parser.add_argument("--workers", type=int, default=2)
    start_parser.add_argument(
        "--allowed-hosts", help="Host headers to accept, e.g. mlflow.example.org (when exposed)"
    )
    start_parser.add_argument(
        "--default-permission",
        default="EDIT",
        choices=["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"],
        help="what every user may do in experiments they did not create (%(default)s)",
    )
    commands.add_parser("stop", help="stop the server and PostgreSQL")
    commands.add_parser("status", help="say what runs")
    user_parser = commands.add_parser(
        "add-user", help=f"create a user; password from {NEW_USER_PASSWORD_ENV} or a prompt"
    )
    user_parser.add_argument("name")
    arguments = parser.parse_args(argv)
    layout = Layout(arguments.dir.resolve())
    try:
        if arguments.command == "start":
            url = start(
                layout,
                host=arguments.host,
                port=arguments.port,
                db_port=arguments.db_port,
                workers=arguments.workers,
                allowed_hosts=arguments.allowed_hosts,
                default_permission=arguments.default_permission,
            )
            print(
                f"MLflow tracking server at {url} (PostgreSQL on 127.0.0.1, logs in {layout.root})"
            )
        elif arguments.command == "stop":
            stop(layout)
            print("stopped")
        elif arguments.command == "status":
            print(json.dumps(status(layout)))
        else:
            running = _running_server(layout)
            if not running:
                raise ServerError(f"no server runs from {layout.root}; `start` it first")
            password = os.environ.get(NEW_USER_PASSWORD_ENV) or getpass.getpass(
                f"password for {arguments.name}: "
            )
            add_user(running["url"], arguments.name, password)
            print(f"user {arguments.name} created")
    except ServerError as exc:
        print(f"tracking-server: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
