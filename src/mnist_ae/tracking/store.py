"""Where MLflow runs are stored: the tracking URI, a fast reachability check, and creating a
store and its experiment safely from several processes at once."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.credentials import read_mlflow_creds
from requests.exceptions import RequestException

from mnist_ae.cli import first_line

# Seconds a stage waits for the tracking server to answer before giving up (before training).
PREFLIGHT_TIMEOUT = 5.0
# SQLite: how long a writer waits for another process's lock (parallel queued experiments).
SQLITE_LOCK_TIMEOUT = 60


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking store cannot be reached or created; the message is one line."""


def repository_root() -> Path:
    """The DVC repository the pipeline belongs to.

    DVC sets DVC_ROOT for every stage; for queued experiments (which run in a temporary copy
    under .dvc/tmp) it points at the parent repository, so all runs share one store. Outside
    DVC (`mnist-ae`): the closest folder holding dvc.yaml, from the working directory up; the
    working directory itself when there is none.
    """
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    return next(
        (folder for folder in (here, *here.parents) if (folder / "dvc.yaml").is_file()), here
    )


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store `mlflow.db` at the repository root
    (`root`, by default repository_root()).

    The default store waits up to SQLITE_LOCK_TIMEOUT s for a lock instead of SQLite's 5 s, so
    experiments running in parallel (`dvc queue start -j 2`) queue up rather than fail with
    "database is locked".
    """
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    root = repository_root() if root is None else Path(root).resolve()
    return f"sqlite:///{root / 'mlflow.db'}?timeout={SQLITE_LOCK_TIMEOUT}"


# Up to the last "@" before the path: a password may hold a raw "@".
_USERINFO = re.compile(r"^([a-zA-Z][\w+.-]*://)[^/]*@")


def _without_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI minus user:password@, the user, the password), percent-decoded as requests
    (MLflow's client) decodes them."""
    parts = urllib.parse.urlsplit(uri)
    user, password = parts.username, parts.password
    return (
        _USERINFO.sub(r"\1", uri),
        None if user is None else urllib.parse.unquote(user),
        None if password is None else urllib.parse.unquote(password),
    )


def display_uri(uri: str) -> str:
    """The URI without credentials, query or fragment, safe to print."""
    return re.split(r"[?#]", _without_credentials(uri)[0], maxsplit=1)[0]


def sqlite_database(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, else None."""
    if urllib.parse.urlsplit(uri).scheme != "sqlite":
        return None
    return Path(urllib.parse.urlsplit(uri).path.removeprefix("/"))


# MLflow's client retries a failing server 7 times with back-off doubling from 2 s (minutes per
# call). A stage fails in seconds instead (its training resumes from the checkpoint on rerun);
# each can be overridden in the environment.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def configure_http_client() -> None:
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def is_http(uri: str) -> bool:
    """Whether `uri` is a tracking server's (http or https), not a local store."""
    return urllib.parse.urlsplit(uri).scheme in ("http", "https")


def _authorization(user: str | None, password: str | None) -> str | None:
    """The header MLflow's client would send: user:password from the URI, else MLflow's
    credentials (MLFLOW_TRACKING_USERNAME/PASSWORD, else ~/.mlflow/credentials) when both are
    set, else a bearer MLFLOW_TRACKING_TOKEN."""
    if user is None:
        credentials = read_mlflow_creds()
        user, password = credentials.username, credentials.password
        if not (user and password):
            user = None
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        return f"Basic {token}"
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    return None


def _tls_context() -> ssl.SSLContext:
    """TLS as MLflow's client does it: MLFLOW_TRACKING_SERVER_CERT_PATH (a private CA),
    MLFLOW_TRACKING_CLIENT_CERT_PATH, MLFLOW_TRACKING_INSECURE_TLS."""
    context = ssl.create_default_context(
        cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None
    )
    if os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        context.load_cert_chain(os.environ["MLFLOW_TRACKING_CLIENT_CERT_PATH"])
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("true", "1"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _server_message(error: urllib.error.HTTPError) -> str:
    """`ERROR_CODE: first line of the message` from an MLflow error response, at most 200 chars."""
    body = error.read().decode(errors="replace")
    try:
        answer = json.loads(body)
        text = f"{answer.get('error_code', '')}: {answer.get('message', '')}".strip(": ")
    except (ValueError, AttributeError):
        text = body
    lines = text.strip().splitlines()
    line = lines[0] if lines else str(error.reason)
    return line if len(line) <= 200 else line[:197] + "..."


def server_problem(uri: str, timeout: float = PREFLIGHT_TIMEOUT) -> str | None:
    """Why the MLflow server at `uri` cannot take this pipeline's runs, in one line that says
    what to do; None when an authenticated request that needs its database succeeds.

    Never prints credentials: the URI is shown without them, and the server's answers do not
    echo them.
    """
    bare, user, password = _without_credentials(uri)
    shown = display_uri(uri)
    url = bare.split("?")[0].rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    request = urllib.request.Request(url)
    header = _authorization(user, password)
    if header:
        request.add_header("Authorization", header)
    try:
        context = _tls_context() if url.startswith("https:") else None
        with urllib.request.urlopen(request, timeout=timeout, context=context):
            return None
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return (
                f"MLflow tracking server {shown} refused the credentials (HTTP 401); set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account on it"
            )
        if exc.code == 403:
            return (
                f"MLflow tracking server {shown} denied access (HTTP 403: {_server_message(exc)}); "
                "ask its admin for permission"
            )
        if exc.code >= 500:
            return (
                f"MLflow tracking server {shown} cannot serve requests (HTTP {exc.code} "
                f"{_server_message(exc)}); check the server and its database, then run again"
            )
        return None  # it answered: a proxy or an older server may not route this endpoint
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return (
            f"MLflow tracking server {shown} is unreachable ({reason}); "
            "start it or unset MLFLOW_TRACKING_URI"
        )


def check_reachable(uri: str, timeout: float = PREFLIGHT_TIMEOUT) -> None:
    """Fail fast, before any training, if the tracking store cannot be used: the server is
    down, refuses the credentials, or cannot reach its database.

    MLflow's own client retries an unreachable server with back-off for minutes; one plain
    request with a short timeout tells within seconds.
    """
    if is_http(uri):
        problem = server_problem(uri, timeout)
        if problem:
            raise TrackingUnavailableError(problem)
    database = sqlite_database(uri)
    if database is not None and not database.parent.is_dir():
        raise TrackingUnavailableError(
            f"MLflow store {display_uri(uri)}: directory {database.parent} does not exist"
        )


def explain_failure(uri: str, error: BaseException) -> TrackingUnavailableError | None:
    """A one-line TrackingUnavailableError for an error raised by MLflow's HTTP client while a
    stage ran (the server or its database went away), else None."""
    if not is_http(uri) or not isinstance(error, (MlflowException, RequestException)):
        return None
    problem = server_problem(uri)
    if problem is None:
        problem = (
            f"MLflow tracking server {display_uri(uri)} failed a request "
            f"({first_line(error, 200)}); run again"
        )
    return TrackingUnavailableError(problem)


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


# MLflow's own tooling reads this tag to tell a model-training experiment from a GenAI one.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, created if missing, tagged as a model-training experiment (an
    existing one without the tag gets it)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        key, kind = EXPERIMENT_KIND
        if experiment.tags.get(key) != kind:
            client.set_experiment_tag(experiment.experiment_id, key, kind)
        return experiment.experiment_id
    return client.create_experiment(
        name, artifact_location=artifact_root(client.tracking_uri), tags=dict([EXPERIMENT_KIND])
    )


def artifact_root(uri: str) -> str | None:
    """Where a SQLite store's artifacts go: "artifacts beside the store", mlruns/ next to
    mlflow.db whatever the working directory; None (MLflow's default) for other stores."""
    database = sqlite_database(uri)
    return None if database is None else (database.resolve().parent / "mlruns").as_uri()


@contextlib.contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI is `uri` within; afterwards it, and MLFLOW_TRACKING_URI
    (which mlflow.set_tracking_uri exports), are what they were, unset included.

    For MLflow calls that take no URI: mlflow.start_run, and loading `runs:/ID/NAME`, which
    MLflow 3.17 resolves through the global URI whatever URI it is given.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils  # the global: None when never set

    previous, variable = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if variable is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = variable
