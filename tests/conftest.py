"""Shared test set-up: never touch a tracking server of the user's (tests start their own).

TensorFlow's switches are set by importing mnist_ae (see its __init__).
"""

import os
import signal
from collections.abc import Iterator

import pytest

import mnist_ae  # noqa: F401  (sets TensorFlow switches before any test imports TF)
from pipeline_repo import Pipeline, build, mlflow_server

os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(autouse=True)
def _ctrl_c_enabled() -> Iterator[None]:
    """Tests send real Ctrl-Cs (SIGINT). A run started in the background (`cmd &`) inherits
    SIGINT ignored, and so would every stage it starts: give each test Python's own handler,
    so that its subprocesses start with the default one."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 for the whole session; yields its URI."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.fixture(scope="session")
def _built(
    tracking_server: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Pipeline, Pipeline]:
    base = build(tmp_path_factory.mktemp("repo"), tracking_server)
    return base, base.clone(tmp_path_factory.mktemp("pristine") / "repo")


@pytest.fixture(scope="session")
def built_pipeline(_built: tuple[Pipeline, Pipeline]) -> Pipeline:
    """The shrunk repository after its first `dvc repro`, built once per session. It logs to
    the real tracking server over HTTP (MLFLOW_TRACKING_URI), so test_pipeline.py checks the
    runs through the server; test_queue.py covers the default SQLite store. test_pipeline.py
    uses (and changes) this one."""
    return _built[0]


@pytest.fixture(scope="session")
def pristine(_built: tuple[Pipeline, Pipeline]) -> Pipeline:
    """A copy of the built repository taken before any test changed it, with an empty MLflow
    store. Tests take `pristine.clone(tmp_path / ...)`; never edit it."""
    return _built[1]
