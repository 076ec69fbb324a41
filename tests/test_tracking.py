"""Tracking helpers that need no server: secrets filtering, URIs, the fail-fast check."""

from __future__ import annotations

import base64
import http.server
import json
import os
import random
import signal
import threading
import time
import typing
from pathlib import Path

import mlflow
import pytest

from mnist_ae import tracking
from mnist_ae.artifacts import VAE_NAMES
from mnist_ae.tracking import row, store
from mnist_ae.tracking import run as tracking_run
from pipeline_repo import STAGES


def test_secrets_are_dropped_by_name_and_by_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_API_TOKEN", "tok-1234567")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "abcdEFGH")
    monkeypatch.setenv("DB_PASSWORD", "hunter22")
    monkeypatch.setenv("SHORT_TOKEN", "None")  # too short to be matched inside other values
    logged = tracking_run.without_secrets(
        {
            "train_dense.epochs": "50",
            "remote": "https://ci:tok-1234567@example.invalid/repo.git",
            "note": "uses abcdEFGH",
            "password_hint": "hunter22",
            "db.password": "anything",
            "api_key": "anything",
            "experiment": "x-large",
            "prepare.idx_dir": "None",
        }
    )
    assert logged == {
        "train_dense.epochs": "50",
        "experiment": "x-large",
        "prepare.idx_dir": "None",
    }


def test_default_store_is_beside_the_repository_and_waits_for_locks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # queued experiments: the parent repository
    uri = tracking.tracking_uri()
    assert uri == f"sqlite:///{tmp_path}/mlflow.db?timeout=60"
    assert store.sqlite_database(uri) == tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"


def test_display_uri_hides_credentials_and_keeps_the_rest() -> None:
    shown = store.display_uri("https://user:s3cret@mlflow.example.invalid:8443/base?token=t")
    assert shown == "https://mlflow.example.invalid:8443/base"
    assert store.display_uri("sqlite:////work/x/mlflow.db?timeout=60") == (
        "sqlite:////work/x/mlflow.db"
    )
    assert store.display_uri("http://u:p@[::1]:5000") == "http://[::1]:5000"
    # A raw "@" inside the password: nothing of it may show.
    assert store.display_uri("http://u:p@ss@host:5000/x") == "http://host:5000/x"


def test_sqlite_store_in_a_missing_directory_fails_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(store.TrackingUnavailableError, match="does not exist"):
        store.check_reachable(f"sqlite:///{tmp_path}/missing/mlflow.db")
    store.check_reachable(f"sqlite:///{tmp_path}/mlflow.db")  # fine: the directory exists


def test_unreachable_server_fails_within_the_timeout() -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connection refused at once
        port = closed.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(store.TrackingUnavailableError) as error:
            store.check_reachable(f"http://u:p@127.0.0.1:{port}")
    assert time.monotonic() - started < store.PREFLIGHT_TIMEOUT + 1
    assert str(error.value).startswith(
        f"MLflow tracking server http://127.0.0.1:{port} is unreachable ([Errno 111] Connection "
        "refused)"
    )
    assert "u:p" not in str(error.value)


class _Answers(http.server.BaseHTTPRequestHandler):
    """A stand-in MLflow server: answers every request with the class's status and body, and
    records the Authorization header it got."""

    status = 200
    body = b"{}"
    seen: typing.ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *arguments: object) -> None:
        pass


@pytest.fixture
def answering() -> typing.Iterator[type[_Answers]]:
    """A stand-in server on 127.0.0.1; set `.status` and `.body` on the yielded class."""
    handler = type("Handler", (_Answers,), {"seen": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield handler
    server.shutdown()
    server.server_close()


def test_server_problems_are_one_line_naming_the_server_without_credentials(
    answering: type[_Answers], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-pw-1234")
    url = answering.url
    assert store.server_problem(url) is None  # 200: reachable, credentials and database fine
    assert answering.seen[-1] == "Basic " + base64.b64encode(b"alice:s3cret-pw-1234").decode()
    answering.status = 401
    assert store.server_problem(url) == (
        f"MLflow tracking server {url} refused the credentials (HTTP 401); set "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account on it"
    )
    answering.status = 403
    answering.body = b'{"error_code": "PERMISSION_DENIED", "message": "Permission denied"}'
    assert store.server_problem(url) == (
        f"MLflow tracking server {url} denied access (HTTP 403: PERMISSION_DENIED: Permission "
        "denied); ask its admin for permission"
    )
    answering.status = 503
    answering.body = json.dumps(
        {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "connection failed\nsecond line"}
    ).encode()
    problem = store.server_problem(url)
    assert problem == (
        f"MLflow tracking server {url} cannot serve requests (HTTP 503 TEMPORARILY_UNAVAILABLE: "
        "connection failed); check the server and its database, then run again"
    )
    with pytest.raises(store.TrackingUnavailableError, match="HTTP 503"):
        store.check_reachable(url)
    # Credentials in the URI win over the environment and are never shown.
    answering.status = 401
    inline = url.replace("http://", "http://bob:inline-pw-5678@")
    assert "inline-pw" not in store.server_problem(inline)
    assert answering.seen[-1] == "Basic " + base64.b64encode(b"bob:inline-pw-5678").decode()
    # Percent-encoded, as requests (MLflow's client) decodes it.
    store.server_problem(url.replace("http://", "http://bob:p%40ss-5678@"))
    assert answering.seen[-1] == "Basic " + base64.b64encode(b"bob:p@ss-5678").decode()
    answering.status = 404  # answered, without this endpoint (a proxy): MLflow decides later
    assert store.server_problem(url) is None


def test_the_preflight_uses_mlflows_credentials_file_like_its_client(
    answering: type[_Answers], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert store.server_problem(answering.url) is None
    assert answering.seen[-1] is None  # no credentials anywhere: none sent
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow/credentials").write_text(
        "[mlflow]\nmlflow_tracking_username = carol\nmlflow_tracking_password = file-pw-9911\n"
    )
    assert store.server_problem(answering.url) is None
    assert answering.seen[-1] == "Basic " + base64.b64encode(b"carol:file-pw-9911").decode()


def test_a_failure_mid_run_is_explained_only_for_a_server_and_its_client_errors(
    answering: type[_Answers],
) -> None:
    from mlflow.exceptions import MlflowException

    answering.status = 503
    answering.body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "db down"}'
    failure = MlflowException("API request to .../log-batch failed: too many 503 error responses")
    explained = store.explain_failure(answering.url, failure)
    assert isinstance(explained, store.TrackingUnavailableError)
    assert "HTTP 503 TEMPORARILY_UNAVAILABLE: db down" in str(explained)
    assert store.explain_failure(answering.url, ValueError("not MLflow's")) is None
    assert store.explain_failure("sqlite:///x.db", failure) is None
    answering.status = 200  # the server is fine again: the client's own message, shortened
    explained = store.explain_failure(answering.url, failure)
    assert str(explained) == (
        f"MLflow tracking server {answering.url} failed a request (API request to "
        ".../log-batch failed: too many 503 error responses); run again"
    )
    # MLflow's message quotes the URL it called, with any credentials of the tracking URI.
    inline = answering.url.replace("http://", "http://alice:TOP@SECRET-pw@")
    leaking = MlflowException(f"API request to {inline}/api/2.0/mlflow/runs/log-batch failed")
    explained = str(store.explain_failure(inline, leaking))
    assert "SECRET" not in explained and "TOP" not in explained and "alice" not in explained
    assert f"API request to {answering.url}/api/2.0/mlflow/runs/log-batch failed" in explained


def test_the_http_client_gives_up_in_seconds_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in store.HTTP_DEFAULTS:  # set first, so that monkeypatch restores the absence
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    store.configure_http_client()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"  # the user's own setting stays
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"


def test_new_store_is_created_once_by_concurrent_stages(tmp_path: Path) -> None:
    """Queue workers may start on a store that does not exist yet: creating its tables and the
    experiment must not race (without the lock, some of these processes fail)."""
    import subprocess
    import sys

    script = (
        "import os, sys; from mlflow.tracking import MlflowClient; import mlflow\n"
        "from mnist_ae import tracking\n"
        "uri = tracking.tracking_uri(); mlflow.set_tracking_uri(uri)\n"
        "with tracking.store.store_lock(uri):\n"
        "    client = MlflowClient()\n"
        "    print(tracking.store.experiment_id(client, 'race'))\n"
    )
    env = {"DVC_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": "src"}
    workers = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    ids = {worker.communicate(timeout=120)[0].strip() for worker in workers}
    assert [worker.returncode for worker in workers] == [0] * 4
    assert len(ids) == 1 and "" not in ids


def test_the_experiment_is_a_model_training_one_new_or_existing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's tooling reads `mlflow.experimentKind`: set on creation, repaired on an
    experiment an older version of the pipeline created without it."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(tracking.tracking_uri())
    new = store.experiment_id(client, "new")
    old = client.create_experiment("old", tags={"team": "a"})
    assert store.experiment_id(client, "old") == old
    for experiment in (new, old):
        tags = client.get_experiment(experiment).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_experiment(old).tags["team"] == "a"


@pytest.mark.parametrize(
    ("tags", "name"),
    [
        ({"git.commit": "0123456789abcdef", "git.dirty": "false"}, "repro-0123456"),
        ({"git.commit": "0123456789abcdef", "git.dirty": "true"}, "repro-0123456-dirty"),
        ({"git.commit": "unknown", "git.dirty": "false"}, "repro-nogit"),
    ],
)
def test_a_run_outside_dvc_exp_is_named_after_its_commit(tags: dict[str, str], name: str) -> None:
    assert tracking_run._repro_name(tags) == name


def test_ctrl_c_while_logging_leaves_the_run_to_be_marked_failed(tmp_path: Path) -> None:
    """Ctrl-C inside an SQLite write left the store locked for the rest of the process: marking
    the run FAILED then failed ("database is locked") with a logged traceback. 40 interrupts at
    seeded random moments of a logging loop; without held_signals several of them hit a write."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}?timeout=5"
    previous = signal.signal(signal.SIGALRM, lambda *_: signal.raise_signal(signal.SIGINT))
    with store.global_tracking_uri(uri):
        try:
            experiment_id = mlflow.create_experiment("interrupts")
            moments = random.Random(0)
            for _ in range(40):
                run = mlflow.start_run(experiment_id=experiment_id)
                signal.setitimer(signal.ITIMER_REAL, moments.uniform(0.001, 0.08))
                with pytest.raises(KeyboardInterrupt):
                    for step in range(100_000):
                        row.log_metrics({"loss": 1.0, "val_loss": 2.0}, step=step)
                mlflow.end_run(status="FAILED")
                assert mlflow.get_run(run.info.run_id).info.status == "FAILED"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            mlflow.end_run()


def test_ctrl_c_while_the_run_starts_marks_it_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal held through start_run is acted on where the run is marked FAILED, and the
    stage body never runs (it was acted on outside that, and the run stayed RUNNING)."""
    from mnist_ae.config import load_params

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start_run = mlflow.start_run

    def interrupted_start_run(*args: object, **kwargs: object) -> mlflow.ActiveRun:
        run = start_run(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return run

    monkeypatch.setattr(mlflow, "start_run", interrupted_start_run)
    with store.global_tracking_uri(uri):  # pipeline_run sets it
        try:
            with (
                pytest.raises(KeyboardInterrupt),
                tracking.pipeline_run("prepare", load_params(), tmp_path),
            ):
                pytest.fail("the stage ran after Ctrl-C")
            runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
            assert [run.info.status for run in runs] == ["FAILED"]
        finally:
            mlflow.end_run()


def test_the_row_schema_names_each_stage_and_only_its_own_outputs() -> None:
    """Each stage logs only files it produces, so a back-filled row matches a live one."""
    assert set(row.ROW) == set(STAGES) - {"check_params"}
    for stage, part in row.ROW.items():
        sources = [file for file, _ in part.metrics] + [file for file, _ in part.files]
        sources += [part.curves.source] if part.curves else []
        for source in sources:
            assert source.producer == stage, (stage, source.path)
    models = [name for part in row.ROW.values() for name in part.models]
    vaes = [f"vae_{name}_{part}" for name in VAE_NAMES for part in ("encoder", "decoder")]
    assert models == ["dense_autoencoder", "dense_encoder", "dense_decoder", "conv_denoiser", *vaes]


def test_numeric_metrics_are_dotted_names_of_numbers_only() -> None:
    payload = {
        "gaussian": {"strength": 1, "psnr": 15.5, "psnr_by_strength": {"0.5": 14.0}},
        "goals": {"best_classical": "gaussian", "met": True},
        "test_samples": 100,
    }
    assert row.numeric_metrics(payload, "baselines.") == {
        "baselines.gaussian.strength": 1.0,
        "baselines.gaussian.psnr": 15.5,
        "baselines.gaussian.psnr_by_strength.0.5": 14.0,
        "baselines.test_samples": 100.0,
    }


def test_the_null_tracker_logs_nothing_and_needs_no_store(tmp_path: Path) -> None:
    assert tracking.NO_TRACKING.epoch_callbacks("train_dense") == []
    tracking.NO_TRACKING.log_stage("evaluate")  # no file, no store: nothing is touched
    assert tracking.NO_TRACKING.complete_row() == []
    assert mlflow.active_run() is None


class _Recorder:
    """Stands in for mlflow.log_metrics, mlflow.log_metric and mlflow.log_artifact."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[tuple[dict[str, float], int | None]] = []
        self.points: list[tuple[str, float, int | None]] = []
        self.files: list[tuple[str, str | None]] = []
        monkeypatch.setattr(mlflow, "log_metrics", self.log_metrics)
        monkeypatch.setattr(mlflow, "log_metric", self.log_metric)
        monkeypatch.setattr(mlflow, "log_artifact", self.log_artifact)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record one batch of metrics."""
        self.batches.append((dict(metrics), step))

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Record one metric point."""
        self.points.append((key, value, step))

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Record one uploaded file."""
        self.files.append((Path(path).name, artifact_path))


def test_curves_are_logged_as_prefix_dot_name_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _Recorder(monkeypatch)
    row.log_history({"epoch": [1, 2], "loss": [0.5, 0.4], "val_loss": [0.6, 0.45]}, "dense")
    row.log_history({"noise_factor": [0.1, 0.2]}, "sweep", first_step=0)
    tracker = tracking.LiveTracker(None, "run-1", Path("."))  # type: ignore[arg-type]
    (callback,) = tracker.epoch_callbacks("train_conv")
    callback.on_epoch_end(0, {"loss": 0.2, "val_loss": 0.25})
    assert recorder.points == [
        ("dense.loss", 0.5, 1),
        ("dense.loss", 0.4, 2),
        ("dense.val_loss", 0.6, 1),
        ("dense.val_loss", 0.45, 2),
        ("sweep.noise_factor", 0.1, 0),
        ("sweep.noise_factor", 0.2, 1),
    ]
    assert recorder.batches == [({"conv.loss": 0.2, "conv.val_loss": 0.25}, 1)]


def test_a_stage_logs_from_its_files_only_what_the_run_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same code logs a stage's part live and back-fills it: present names are skipped."""
    from types import SimpleNamespace

    from mnist_ae import artifacts

    recorder = _Recorder(monkeypatch)
    artifacts.EVALUATION.write(
        tmp_path,
        {"reconstruction": {"pca": {"mse": 0.04, "psnr": 13.98}}, "goals": {"best": "median"}},
    )
    artifacts.NOISE_SWEEP.write(tmp_path, [{"noise_factor": 0.1, "baseline_psnr": 20.0}])
    present = {"reconstruction.pca.mse": 0.04}
    uploaded = [SimpleNamespace(path="evaluation.json")]
    client = SimpleNamespace(
        get_run=lambda run_id: SimpleNamespace(data=SimpleNamespace(metrics=present)),
        list_artifacts=lambda run_id, directory=None: uploaded,
    )
    tracker = tracking.LiveTracker(client, "run-1", tmp_path)  # type: ignore[arg-type]
    tracker.log_stage("evaluate")
    tracker.log_stage("noise_sweep")
    assert recorder.batches == [({"reconstruction.pca.psnr": 13.98}, None)]
    assert recorder.points == [("sweep.noise_factor", 0.1, 0), ("sweep.baseline_psnr", 20.0, 0)]
    assert recorder.files == []  # evaluation.json is already there
    uploaded.clear()
    tracker.log_stage("evaluate")
    assert recorder.files == [("evaluation.json", None)]


def test_params_are_logged_under_dotted_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stage logs params.yaml flattened: one dotted key per leaf, a list as one value."""
    import yaml

    from mnist_ae.config import parse_params

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["seed"] = 7
    raw["tracking"]["experiment_name"] = "flattened"
    raw["noise"]["noise_factor"] = 0.25
    raw["baselines"]["grids"]["median"] = [3, 5]
    raw["train_dense"]["jit_compile"] = True
    raw["train_conv"]["jit_compile"] = "auto"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with store.global_tracking_uri(uri):  # pipeline_run sets it
        with tracking.pipeline_run("prepare", parse_params(raw), tmp_path):
            run_id = mlflow.active_run().info.run_id
        logged = mlflow.get_run(run_id).data.params
    expected = {
        "seed": "7",
        "tracking.experiment_name": "flattened",
        "prepare.idx_dir": "None",
        "noise.noise_factor": "0.25",
        "baselines.grids.median": "[3, 5]",
        "train_dense.jit_compile": "True",
        "train_conv.jit_compile": "auto",
    }
    assert {key: logged.get(key) for key in expected} == expected
    assert [key for key, value in logged.items() if value.startswith("{")] == []  # no sections
