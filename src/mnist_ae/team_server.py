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
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from mnist_ae.tracking.run import SECRET_NAME

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
    def settings(self) -> Path:  # the database port and default permission; written once the
        # first start has succeeded
        return self.root / "settings.json"

    @property
    def pending_settings(self) -> Path:  # during the first start
        return self.root / "settings.json.new"

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
    user = _pg_user()
    if shutil.which("runuser") is None:
        raise ServerError(f"running as root needs `runuser` to start PostgreSQL as {user.pw_name}")
    return ["runuser", "-u", user.pw_name, "--"]


def _pg_user() -> pwd.struct_passwd:
    name = os.environ.get(PG_USER_ENV, "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ServerError(
            f"no user {name!r} to run PostgreSQL as (it refuses root): set {PG_USER_ENV} to an "
            "unprivileged user, or run this as one"
        ) from None


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
    try:
        result = _run_pg(command, stdin)
    except subprocess.TimeoutExpired:
        raise ServerError(f"`{program}` did not finish within 120 s") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ServerError(f"`{program}` failed: {detail[-1] if detail else result.returncode}")
    return result


def _run_pg(command: tuple[str, ...], stdin: str | None) -> subprocess.CompletedProcess:
    program = command[0]
    return subprocess.run(
        [*_pg_prefix(), _program(program), *command[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        # Nothing else of ours: the database server keeps its environment for its lifetime.
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
    )


def _make_postgres_folder(layout: Layout) -> None:
    layout.postgres.mkdir(mode=0o700)
    if os.geteuid() == 0:
        user = _pg_user()
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
    _pg("sh", "-c", 'umask 077 && cat > "$1"', "sh", str(pwfile), stdin=password + "\n")
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
    _pg("sh", "-c", 'cat >> "$1"', "sh", str(layout.pgdata / "postgresql.conf"), stdin=settings)


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
        port = _settings(layout)["db_port"]
        raise ServerError(f"PostgreSQL did not start (is port {port} in use?); see {layout.pglog}")


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
    for path in (layout.settings, layout.pending_settings):
        if path.exists():
            return json.loads(path.read_text())
    raise ServerError(f"{layout.root} holds no server; `start` makes one")


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
    try:
        state = json.loads(layout.state.read_text())
        process = psutil.Process(state["pid"])
        if process.create_time() == state["create_time"]:
            return state
    except (psutil.Error, ValueError, KeyError, TypeError):
        pass
    layout.state.unlink()
    return None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


LOCAL_HOSTS = "localhost,localhost:*,127.0.0.1,127.0.0.1:*"


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        # As a server binds: connections of a stopped server left in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _empty(folder: Path) -> None:
    """Remove what a failed first start made in `folder` (which was empty before)."""
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def start(
    layout: Layout,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    db_port: int | None = None,
    workers: int = 2,
    allowed_hosts: str | None = None,
    default_permission: str | None = None,
) -> str:
    """Start PostgreSQL and the server (initialising the folder the first time); its URL.

    `db_port` is fixed at the first start; `default_permission` (EDIT at first) is remembered
    until a start names another. A first start that fails leaves the folder empty again.
    """
    running = _running_server(layout)
    if running:
        raise ServerError(f"already running at {running['url']} (pid {running['pid']})")
    if not _port_free(port, "127.0.0.1" if host in ("0.0.0.0", "::") else host):
        raise ServerError(f"port {port} on {host} is in use; choose another with --port")
    if layout.settings.exists():  # written by the first start that succeeded
        settings = _settings(layout)
        if db_port is not None and db_port != settings["db_port"]:
            raise ServerError(
                f"the database of {layout.root} listens on port {settings['db_port']}, fixed at "
                "its first start; leave out --db-port"
            )
        if default_permission and default_permission != settings["default_permission"]:
            settings["default_permission"] = default_permission
            _write_private(layout.settings, json.dumps(settings) + "\n")
        return _serve(layout, host, port, workers, allowed_hosts, admin_password=None)
    admin_password = check_admin_password(os.environ.get(ADMIN_PASSWORD_ENV))
    db_port = db_port or DEFAULT_DB_PORT
    if not _port_free(db_port):
        raise ServerError(f"port {db_port} on 127.0.0.1 is in use; choose another with --db-port")
    # Under root, the PostgreSQL user must be able to pass through (files inside are 0600).
    layout.root.mkdir(mode=0o711 if os.geteuid() == 0 else 0o700, parents=True, exist_ok=True)
    if any(layout.root.iterdir()):
        raise ServerError(f"{layout.root} is not empty and holds no server; choose a new --dir")
    try:
        init_database(layout, db_port)
        _write_private(layout.flask_secret, secrets.token_urlsafe(32) + "\n")
        settings = {"db_port": db_port, "default_permission": default_permission or "EDIT"}
        _write_private(layout.pending_settings, json.dumps(settings) + "\n")
        url = _serve(layout, host, port, workers, allowed_hosts, admin_password)
        layout.pending_settings.rename(layout.settings)
    except BaseException:
        _empty(layout.root)  # _serve stopped what it started
        raise
    return url


def _serve(
    layout: Layout,
    host: str,
    port: int,
    workers: int,
    allowed_hosts: str | None,
    admin_password: str | None,
) -> str:
    """Start the database and the MLflow server; on any failure stop both again."""
    settings = _settings(layout)
    server = None
    try:
        start_database(layout)  # inside: a timeout or Ctrl-C here must stop it too
        create_databases(layout)
        _write_auth_config(layout, settings["default_permission"])
        layout.artifacts.mkdir(mode=0o700, exist_ok=True)
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", host,
            "--port", str(port),
            "--backend-store-uri", _database_url(layout, "mlflow"),
            "--artifacts-destination", str(layout.artifacts.resolve()),
            "--app-name", "basic-auth",
            "--workers", str(workers),
        ]  # fmt: skip
        if allowed_hosts:  # MLflow's list replaces its default: keep this machine's own names
            command += ["--allowed-hosts", f"{allowed_hosts},{LOCAL_HOSTS}"]
        # The server keeps its environment for its lifetime: none of the caller's secrets.
        environment = {
            name: value for name, value in os.environ.items() if not SECRET_NAME.search(name)
        }
        environment.update(
            PGPASSWORD=layout.db_password.read_text().strip(),
            MLFLOW_AUTH_CONFIG_PATH=str(layout.auth_config.resolve()),
            MLFLOW_FLASK_SERVER_SECRET_KEY=layout.flask_secret.read_text().strip(),
        )
        if admin_password:
            environment[ADMIN_PASSWORD_ENV] = admin_password
        descriptor = os.open(layout.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "ab") as log:
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
                raise ServerError(f"the MLflow server did not start; see {layout.log}")
            time.sleep(0.5)
        state = {"pid": server.pid, "create_time": psutil.Process(server.pid).create_time()}
        _write_private(layout.state, json.dumps({**state, "url": url}) + "\n")
    except BaseException:
        if server is not None:
            _kill_group(server.pid)
        stop_database(layout)
        raise
    return url


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # our own child (a failed start): reap it
        if not _live_members(pid):  # zombies left to a parent that never reaps them count out
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _live_members(group: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
    return members


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
        message = (str(message or exc.reason).strip().splitlines() or [""])[0]
        if exc.code == 401:
            message += f" (set {ADMIN_PASSWORD_ENV} to the admin's current password)"
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
        "--db-port",
        type=int,
        help=f"PostgreSQL's port, fixed at the first start ({DEFAULT_DB_PORT})",
    )
    start_parser.add_argument("--workers", type=int, default=2)
    start_parser.add_argument(
        "--allowed-hosts", help="Host headers to accept, e.g. mlflow.example.org (when exposed)"
    )
    start_parser.add_argument(
        "--default-permission",
        default=None,
        choices=["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"],
        help="what every user may do in experiments they did not create (EDIT; remembered)",
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
            # The bare URL opens MLflow's GenAI view; `mnist-ae ui` links to the runs table.
            print(f"Its runs: MLFLOW_TRACKING_URI={url} mnist-ae ui")
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
    except KeyboardInterrupt:
        left = "nothing left running" if arguments.command == "start" else "see `status`"
        print(f"tracking-server: interrupted; {left}", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, as everywhere (MNIST_AE_DEBUG=1: the traceback)
        if os.environ.get("MNIST_AE_DEBUG", "") not in ("", "0"):
            raise
        text = (str(exc).strip().splitlines() or [""])[0]
        print(f"tracking-server: error: {type(exc).__name__}: {text}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
