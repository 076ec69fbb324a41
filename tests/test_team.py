"""The team tracking server under faults, end to end: a wrong password stops a stage before any
training; PostgreSQL stopped mid-training fails the stage in one line, and once the database is
back the server serves again and the run is redone. scripts/tracking-server.sh refuses a
missing or weak admin password before it creates anything.

The session's server (conftest `tracking_server`) is shared: each test logs to an experiment of
its own, so test_pipeline.py's counts stay exact."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from mnist_ae.team_server import Layout, start_database, stop_database
from pipeline_repo import (
    ADMIN_PASSWORD,
    CHECKPOINT,
    SECRETS,
    Pipeline,
    TeamServer,
    checkpointed_epochs,
    free_port,
    start_unending_training,
    tracking_server_command,
)

pytestmark = pytest.mark.e2e


def _team_copy(pristine: Pipeline, server: TeamServer, root: Path, experiment: str) -> Pipeline:
    """A copy of the built repository that logs to the team server, in its own experiment."""
    pipe = pristine.clone(root, server.url)
    pipe.edit_params("tracking", "experiment_name", experiment)
    return pipe


def _stage_lines(stage: str, stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{stage}:")]


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        (None, "set MLFLOW_AUTH_ADMIN_PASSWORD to the admin password for the first start"),
        ("password1234", "MLFLOW_AUTH_ADMIN_PASSWORD is too weak"),
        ("short-pw", "MLFLOW_AUTH_ADMIN_PASSWORD is too weak"),
    ],
)
def test_the_server_refuses_a_missing_or_weak_admin_password(
    tmp_path: Path, password: str | None, problem: str
) -> None:
    folder = tmp_path / "server"
    result = tracking_server_command(
        "--dir",
        str(folder),
        "start",
        "--port",
        str(free_port()),
        MLFLOW_AUTH_ADMIN_PASSWORD=password,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        line for line in result.stderr.splitlines() if line.startswith("tracking-server: error: ")
    ]
    assert len(result.stderr.splitlines()) == 1 and problem in result.stderr
    assert not folder.exists()  # nothing created, no database started


@pytest.mark.parametrize("option", ["--port", "--db-port"])
def test_a_start_on_a_busy_port_fails_in_one_line_and_leaves_nothing(
    tmp_path: Path, option: str
) -> None:
    folder = tmp_path / "server"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = "--db-port" if option == "--port" else "--port"
        result = tracking_server_command(
            *("--dir", str(folder), "start", option, str(port), other, str(free_port())),
            MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"tracking-server: error: port {port} on 127.0.0.1 is in use; choose another with {option}"
    ]
    assert not folder.exists()


def test_a_wrong_password_fails_before_training_in_one_line(
    pristine: Pipeline, tracking_server: TeamServer, tmp_path: Path
) -> None:
    pipe = _team_copy(pristine, tracking_server, tmp_path / "repo", "team-wrong-password")
    before = pipe.digests()
    wrong = "not-the-password-7c1e"
    pipe.env["MLFLOW_TRACKING_PASSWORD"] = wrong
    started = time.monotonic()
    ran, result = pipe.repro("--force", "--single-item", "train_conv", check=False)
    elapsed = time.monotonic() - started
    assert ran == ["train_conv"] and result.returncode != 0
    assert _stage_lines("train_conv", result.stderr) == [
        f"train_conv: error: MLflow tracking server {tracking_server.url} refused the "
        "credentials (HTTP 401); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to "
        "your account on it (set MNIST_AE_DEBUG=1 for a traceback)"
    ]
    printed = result.stdout + result.stderr
    assert wrong not in printed and SECRETS["MLFLOW_TRACKING_PASSWORD"] not in printed
    assert "Epoch 1/" not in result.stdout and "Traceback" not in printed
    assert not (pipe.root / CHECKPOINT).exists()
    assert pipe.digests() == before
    assert elapsed < 60  # one request; MLflow's own retries would take minutes


def test_database_stopped_mid_run_fails_in_one_line_and_the_run_can_be_redone(
    pristine: Pipeline, tracking_server: TeamServer, tmp_path: Path
) -> None:
    pipe = _team_copy(pristine, tracking_server, tmp_path / "repo", "team-database-down")
    pipe.edit_params("train_conv", "early_stopping_patience", None)
    before = pipe.digests()
    layout = Layout(tracking_server.directory)
    process = start_unending_training(pipe)
    try:
        stop_database(layout)
        stopped = time.monotonic()
        _, stderr = process.communicate(timeout=180)
        failed_after = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        start_database(layout)
    assert process.returncode != 0
    (line,) = _stage_lines("train_conv", stderr)
    assert line.startswith(
        f"train_conv: error: MLflow tracking server {tracking_server.url} cannot serve requests "
        "(HTTP 503 TEMPORARILY_UNAVAILABLE: (psycopg.OperationalError) connection failed"
    ), stderr
    assert line.endswith(
        "check the server and its database, then run again (set MNIST_AE_DEBUG=1 for a traceback)"
    )
    assert "Traceback" not in stderr
    assert failed_after < 90  # seconds of retries, not MLflow's default minutes
    assert pipe.digests() == before  # no output replaced
    done = checkpointed_epochs(pipe.root / CHECKPOINT)
    assert done >= 2

    # The database is back: the same server serves again, and the stage resumes and finishes.
    pipe.edit_params("train_conv", "epochs", done + 1)
    ran, result = pipe.repro("train_conv")
    assert ran == ["check_params", "train_conv"]
    assert f"resuming from checkpoint {pipe.root / CHECKPOINT} after epoch {done}" in result.stderr
    failed, redone = pipe.runs()
    assert failed.info.status in ("RUNNING", "FAILED")  # it could not be marked: no database
    assert redone.info.status == "FINISHED"
    steps = [
        metric.step
        for metric in pipe.client().get_metric_history(redone.info.run_id, "conv.val_loss")
    ]
    assert sorted(steps) == list(range(1, done + 2))
    assert redone.data.metrics["conv.epochs_run"] == done + 1


def test_a_committed_result_is_logged_to_the_server_without_retraining(
    pristine: Pipeline, built_pipeline: Pipeline, tracking_server: TeamServer, tmp_path: Path
) -> None:
    """The README's way to bring a result (its outputs pulled from DVC) to the server: the
    report stage alone fills a complete row from the files, the models aside."""
    pipe = _team_copy(pristine, tracking_server, tmp_path / "repo", "team-imported")
    ran, _ = pipe.repro("--force", "--single-item", "report")
    assert ran == ["report"]
    (imported,) = pipe.runs()
    original = built_pipeline.runs()[0]  # the session's first, complete row
    assert imported.info.status == "FINISHED"
    assert imported.data.metrics.keys() == original.data.metrics.keys()
    for key, value in original.data.metrics.items():
        assert imported.data.metrics[key] == pytest.approx(value), key
    client = pipe.client()
    for curve in ("conv.val_loss", "dense.val_loss"):
        history = client.get_metric_history(imported.info.run_id, curve)
        assert len(history) == len(client.get_metric_history(original.info.run_id, curve))
    for folder in ("figures", "reports"):
        names = {item.path for item in client.list_artifacts(imported.info.run_id, folder)}
        assert names == {item.path for item in client.list_artifacts(original.info.run_id, folder)}
