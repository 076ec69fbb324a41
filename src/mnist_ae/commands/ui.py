"""`mnist-ae ui`: the MLflow UI on this project's runs, opened on the runs table.

Starts `mlflow server` on the project's store (mnist_ae.tracking.store.tracking_uri(): the
workspace's mlflow.db by default, artifacts in mlruns/ beside it), makes sure the experiment of
params.yaml exists, prints the link to its runs in the UI's Model training view
(mnist_ae.tracking.links) as soon as the server answers, and stays in the foreground until
Ctrl-C, which stops the server and everything it started. With MLFLOW_TRACKING_URI set to a
tracking server (http/https) it starts nothing and prints that server's link.

Exit codes: 0 stopped by Ctrl-C (or a tracking server's link printed), 1 an error (one line
on stderr), 2 invalid params, 130 Ctrl-C while the experiment was being looked up, 143 or 129
SIGTERM or SIGHUP (the server is stopped in every case).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import webbrowser
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from mnist_ae.cli import command_error, first_line, quiet_libraries
from mnist_ae.config import ParamsError, load_params
from mnist_ae.signals import held_signals
from mnist_ae.tracking.links import runs_url
from mnist_ae.tracking.run import SECRET_NAME
from mnist_ae.tracking.store import (
    TrackingUnavailableError,
    artifact_root,
    check_reachable,
    configure_http_client,
    display_uri,
    experiment_id,
    explain_failure,
    is_http,
    repository_root,
    store_lock,
    tracking_uri,
)

DEFAULT_HOST = "127.0.0.1"  # this machine only; --host 0.0.0.0 to share it on the network
DEFAULT_PORT = 5000  # `mlflow ui`'s own
START_TIMEOUT = 120.0  # seconds; about 4 s on a warm machine (8 s when it creates the store)
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL; it stops in about 1 s


class UiError(RuntimeError):
    """What went wrong, in one line that says what to do."""


class _Signalled(BaseException):
    """SIGTERM or SIGHUP arrived: unwind, stopping the server on the way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="open the MLflow UI on this project's runs",
        description=(
            "Start the MLflow UI on the project's tracking store and print the link to the "
            "experiment's runs (Model training view); Ctrl-C stops it. With "
            "MLFLOW_TRACKING_URI set to a tracking server, print that server's link instead."
        ),
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (%(default)s)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port (%(default)s)")
    browser = parser.add_mutually_exclusive_group()
    browser.add_argument(
        "--open", dest="open_browser", action="store_true", help="also open the link in a browser"
    )
    browser.add_argument(
        "--no-browser", dest="open_browser", action="store_false", help="only print it (default)"
    )
    parser.set_defaults(handler=run)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, found {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    """The handler of `mnist-ae ui`: an exit code, errors as one line on stderr."""
    quiet_libraries()
    uri = tracking_uri()
    remote = is_http(uri)
    try:
        if not remote:
            check_port_free(args.host, args.port)  # before creating anything
        params = load_params(repository_root() / "params.yaml")
        name = params.tracking.experiment_name
        # A server is only read (an account may be read-only); a local store is made ready.
        experiment = find_experiment(uri, name) if remote else ensure_experiment(uri, name)
        if remote:
            link = runs_url(uri, experiment)
            print(f"The runs on the tracking server {display_uri(uri)} (MLFLOW_TRACKING_URI):")
            print(link, flush=True)
            if args.open_browser:
                open_in_browser(link)
            return 0
        return serve(uri, experiment, args.host, args.port, args.open_browser)
    except ParamsError as exc:
        print(f"mnist-ae ui: invalid params: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mnist-ae ui: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return command_error("mnist-ae ui", exc, (UiError, TrackingUnavailableError))


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment `name` in the local store at `uri`, created (with the store) if
    missing; TrackingUnavailableError, in one line, when the store cannot be used."""
    check_reachable(uri)
    try:
        # As the pipeline does it: one process at a time creates a store's tables, never half.
        with store_lock(uri), held_signals():
            return experiment_id(MlflowClient(uri), name)
    except Exception as exc:  # e.g. "(sqlite3.DatabaseError) file is not a database"
        problem = f"MLflow store {display_uri(uri)}: {first_line(exc)}"
        raise TrackingUnavailableError(problem) from exc


def find_experiment(uri: str, name: str) -> str:
    """The id of experiment `name` on the tracking server at `uri`, looked up without writing
    anything; TrackingUnavailableError or UiError, in one line, when there is none to show."""
    configure_http_client()
    check_reachable(uri)
    try:
        experiment = MlflowClient(uri).get_experiment_by_name(name)
    except Exception as exc:
        explained = explain_failure(uri, exc)  # a server's error, without credentials
        raise (explained or exc) from exc
    if experiment is None:
        raise UiError(
            f"the tracking server {display_uri(uri)} has no experiment {name!r} yet; "
            "a pipeline run logging to it (dvc repro) creates it"
        )
    return experiment.experiment_id


def serve(uri: str, experiment: str, host: str, port: int, open_browser: bool) -> int:
    """Run the MLflow server on the store at `uri` until Ctrl-C; print the link when it is up."""
    check_port_free(host, port)  # again: it may have been taken meanwhile
    reach = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://[{reach}]:{port}" if ":" in reach else f"http://{reach}:{port}"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", host,
        "--port", str(port),
        "--workers", "1",  # one user's browser; fewer processes on a small machine
    ]  # fmt: skip
    root = artifact_root(uri)
    if root is not None:
        command += ["--default-artifact-root", root, "--artifacts-destination", root]
    # The server keeps its environment for its lifetime: none of the caller's secrets, and the
    # store's URI not on the command line (where `ps` shows it to every user).
    environment = {
        name: value for name, value in os.environ.items() if not SECRET_NAME.search(name)
    }
    environment["MLFLOW_BACKEND_STORE_URI"] = uri
    # MLflow's job runner (GenAI scorers, trace roll-ups) is eight more processes and two more
    # seconds of start-up, for nothing the runs table needs.
    environment.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    log = Path(tempfile.mkstemp(prefix="mnist-ae-ui-", suffix=".log")[1])
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:  # under nohup a hang-up must not stop it
            signal.signal(sig, _raise_signalled)
    server = None
    try:
        with open(log, "ab") as output:
            server = subprocess.Popen(
                command,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only us: we stop it, whole
            )
        _wait_until_healthy(server, base, log)
        link = runs_url(base, experiment)
        print(
            f"MLflow UI on {display_uri(uri)} (server log: {log}); Ctrl-C stops it. "
            "The experiment's runs, in the Model training view:"
        )
        print(link, flush=True)
        if open_browser:
            open_in_browser(link)
        # Blocks until the server exits, without reaping it (see _stop).
        os.waitid(os.P_PID, server.pid, os.WEXITED | os.WNOWAIT)
        raise UiError(f"the MLflow server stopped by itself ({_last_line(log)}); see {log}")
    except KeyboardInterrupt:
        print("MLflow UI stopped", flush=True)
        log.unlink(missing_ok=True)
        return 0
    except _Signalled as signalled:
        log.unlink(missing_ok=True)
        return 128 + signalled.signum
    finally:
        if server is not None:
            _stop(server)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def open_in_browser(link: str) -> None:
    """--open: the user's web browser, or one line saying there is none."""
    if not webbrowser.open(link):
        print("mnist-ae ui: no web browser found here; open the link above", file=sys.stderr)


def _raise_signalled(signum: int, frame: object) -> None:
    raise _Signalled(signum)


def check_port_free(host: str, port: int) -> None:
    """UiError, in one line, unless a server can listen on `host`:`port`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        # As a server binds: connections of a stopped server left in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UiError(
                    f"port {port} on {host} is in use (another MLflow UI?); choose another "
                    "with --port"
                ) from None
            raise UiError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None


def _wait_until_healthy(server: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if _has_exited(server):
            raise UiError(f"the MLflow server did not start ({_last_line(log)}); see {log}")
        if time.monotonic() > deadline:
            raise UiError(
                f"the MLflow server did not answer within {START_TIMEOUT:.0f} s; see {log}"
            )
        time.sleep(0.2)


def _has_exited(server: subprocess.Popen) -> bool:
    """Whether the server's process has exited, leaving it unreaped (see _stop)."""
    return os.waitid(os.P_PID, server.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() or ["no output"]
    return lines[-1][:200]


def _stop(server: subprocess.Popen) -> None:
    """Stop the server and every process it started (its process group): SIGTERM, then
    SIGKILL to whatever is left after STOP_TIMEOUT.

    The server is reaped only at the end: until then its exited process keeps the group's id
    reserved, so the SIGKILL cannot reach an unrelated process that reused it. Ctrl-C and
    SIGTERM are ignored meanwhile: acting on them could only leave processes behind.
    """
    held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while not _has_exited(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
