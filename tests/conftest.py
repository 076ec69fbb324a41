"""Shared test set-up: never touch a tracking server of the user's (tests start their own).

TensorFlow's switches are set by importing mnist_ae (see its __init__).
"""

import os
import signal
from collections.abc import Iterator

import pytest

import mnist_ae  # noqa: F401  (sets TensorFlow switches before any test imports TF)
from pipeline_repo import SECRETS, TEAM_USER, Pipeline, TeamServer, build, team_server

os.environ.pop("MLFLOW_TRACKING_URI", None)
# The team server's account, for the pipelines that log to it and for the tests' own clients;
# a SQLite store ignores them.
os.environ["MLFLOW_TRACKING_USERNAME"] = TEAM_USER
os.environ["MLFLOW_TRACKING_PASSWORD"] = SECRETS["MLFLOW_TRACKING_PASSWORD"]


@pytest.fixture(autouse=True)
def _ctrl_c_enabled() -> Iterator[None]:
    """Tests send real Ctrl-Cs (SIGINT). A run started in the background (`cmd &`) inherits
    SIGINT ignored, and so would every stage it starts: give each test Python's own handler,
    so that its subprocesses start with the default one."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def tracking_server() -> Iterator[TeamServer]:
    """The team tracking server (PostgreSQL, basic auth, proxied artifacts) for the whole
    session, started and stopped by scripts/tracking-server.sh."""
    with team_server() as server:
        yield server


@pytest.fixture(scope="session")
def _built(
    tracking_server: TeamServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Pipeline, Pipeline]:
    base = build(tmp_path_factory.mktemp("repo"), tracking_server.url)
    return base, base.clone(tmp_path_factory.mktemp("pristine") / "repo")


@pytest.fixture(scope="session")
def built_pipeline(_built: tuple[Pipeline, Pipeline]) -> Pipeline:
    """The shrunk repository after its first `dvc repro`, built once per session. It logs to
    the team tracking server over HTTP (MLFLOW_TRACKING_URI, as TEAM_USER), so
    test_pipeline.py checks the runs through the server; test_queue.py covers the default
    SQLite store. test_pipeline.py
    uses (and changes) this one."""
    return _built[0]


@pytest.fixture(scope="session")
def pristine(_built: tuple[Pipeline, Pipeline]) -> Pipeline:
    """A copy of the built repository taken before any test changed it, with an empty MLflow
    store. Tests take `pristine.clone(tmp_path / ...)`; never edit it."""
    return _built[1]
