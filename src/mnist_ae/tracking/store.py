"""Where MLflow runs are stored: the tracking URI, a fast reachability check, and creating a
store and its experiment safely from several processes at once."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mlflow.tracking import MlflowClient

# Seconds a stage waits for the tracking server to answer before giving up (before training).
PREFLIGHT_TIMEOUT = 5.0
# SQLite: how long a writer waits for another process's lock (parallel queued experiments).
SQLITE_LOCK_TIMEOUT = 60


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking store cannot be reached or created; the message is one line."""


def repository_root() -> Path:
    """The DVC repository the pipeline belongs to.

    DVC sets DVC_ROOT for every stage; for queued experiments (which run in a temporary copy
    under .dvc/tmp) it points at the parent repository, so all runs share one store.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store `mlflow.db` at the repository root.

    The default store waits up to SQLITE_LOCK_TIMEOUT s for a lock instead of SQLite's 5 s, so
    experiments running in parallel (`dvc queue start -j 2`) queue up rather than fail with
    "database is locked".
    """
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return f"sqlite:///{repository_root() / 'mlflow.db'}?timeout={SQLITE_LOCK_TIMEOUT}"


_USERINFO = re.compile(r"^([a-zA-Z][\w+.-]*://)[^/@]*@")


def _without_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI minus user:password@, the user, the password)."""
    parts = urllib.parse.urlsplit(uri)
    return _USERINFO.sub(r"\1", uri), parts.username, parts.password


def display_uri(uri: str) -> str:
    """The URI without credentials, query or fragment, safe to print."""
    return re.split(r"[?#]", _without_credentials(uri)[0], maxsplit=1)[0]


def sqlite_database(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, else None."""
    if urllib.parse.urlsplit(uri).scheme != "sqlite":
        return None
    return Path(urllib.parse.urlsplit(uri).path.removeprefix("/"))


def check_reachable(uri: str, timeout: float = PREFLIGHT_TIMEOUT) -> None:
    """Fail fast, before any training, if the tracking store cannot be used.

    MLflow's own client retries an unreachable server with back-off for minutes; one plain
    request with a short timeout tells within seconds.
    """
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme in ("http", "https"):
        bare, user, password = _without_credentials(uri)
        request = urllib.request.Request(bare.split("?")[0].rstrip("/") + "/health")
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except urllib.error.HTTPError:
            return  # it answered: a server without /health is still a server
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingUnavailableError(
                f"MLflow tracking server {display_uri(uri)} is unreachable ({reason}); "
                "start it or unset MLFLOW_TRACKING_URI"
            ) from None
    database = sqlite_database(uri)
    if database is not None and not database.parent.is_dir():
        raise TrackingUnavailableError(
            f"MLflow store {display_uri(uri)}: directory {database.parent} does not exist"
        )


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise store creation and experiment creation across processes (SQLite only)."""
    database = sqlite_database(uri)
    if database is None:
        yield
        return
    with open(database.with_name(database.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    database = sqlite_database(tracking_uri())
    if database is not None:
        # "Artifacts beside the store": mlruns/ next to mlflow.db, whatever the working dir.
        artifact_location = (database.resolve().parent / "mlruns").as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)
