"""Tracking helpers that need no server: secrets filtering, URIs, the fail-fast check."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import mlflow
import pytest

from mnist_ae import signals, tracking
from mnist_ae.tracking import row, store
from mnist_ae.tracking import run as tracking_run


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
    assert uri == f"sqlite:///{tmp_path}/mlflow.db?timeout={store.SQLITE_LOCK_TIMEOUT}"
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


def test_sqlite_store_in_a_missing_directory_fails_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(store.TrackingUnavailableError, match="does not exist"):
        store.check_reachable(f"sqlite:///{tmp_path}/missing/mlflow.db")
    store.check_reachable(f"sqlite:///{tmp_path}/mlflow.db")  # fine: the directory exists


def test_unreachable_server_fails_within_the_timeout() -> None:
    import socket
    import time

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


@pytest.mark.parametrize(
    ("sig", "expected"),
    [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, signals.StageTerminatedError)],
)
def test_held_signals_act_when_the_block_ends(sig: signal.Signals, expected: type) -> None:
    previous = signal.signal(signal.SIGTERM, signals.raise_terminated)  # as run_stage installs
    try:
        finished = False
        with pytest.raises(expected), signals.held_signals():
            os.kill(os.getpid(), sig)
            time.sleep(0.05)  # the handler has run by now
            finished = True
        assert finished
        reached = False
        # A second signal acts at once, also inside a nested block.
        with pytest.raises(expected), signals.held_signals(), signals.held_signals():
            os.kill(os.getpid(), sig)
            os.kill(os.getpid(), sig)
            time.sleep(0.05)
            reached = True
        assert not reached, "the second signal did not interrupt the block"
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_held_signals_leave_an_ignored_signal_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a job started with `&`
    try:
        with signals.held_signals():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_logging_leaves_the_run_to_be_marked_failed(tmp_path: Path) -> None:
    """Ctrl-C inside an SQLite write left the store locked for the rest of the process: marking
    the run FAILED then failed ("database is locked") with a logged traceback. 40 interrupts at
    seeded random moments of a logging loop; without held_signals several of them hit a write."""
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}?timeout=5")
    experiment_id = mlflow.create_experiment("interrupts")
    moments = random.Random(0)
    previous = signal.signal(signal.SIGALRM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
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
        mlflow.set_tracking_uri(previous_uri)


def test_ctrl_c_while_the_run_starts_marks_it_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal held through start_run is acted on where the run is marked FAILED, and the
    stage body never runs (it was acted on outside that, and the run stayed RUNNING)."""
    from mnist_ae.config import load_params

    previous_uri = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    start_run = mlflow.start_run

    def interrupted_start_run(*args: object, **kwargs: object) -> mlflow.ActiveRun:
        run = start_run(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return run

    monkeypatch.setattr(mlflow, "start_run", interrupted_start_run)
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
        mlflow.set_tracking_uri(previous_uri)


def test_the_row_schema_names_each_stage_and_only_its_own_outputs() -> None:
    """Each stage logs only files it produces, so a back-filled row matches a live one."""
    import yaml

    stages = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["stages"]
    assert set(row.ROW) == set(stages) - {"check_params"}
    for stage, part in row.ROW.items():
        sources = [file for file, _ in part.metrics] + [file for file, _ in part.files]
        sources += [part.curves.source] if part.curves else []
        for source in sources:
            assert source.producer == stage, (stage, source.path)
    models = [name for part in row.ROW.values() for name in part.models]
    assert models == ["dense_autoencoder", "dense_encoder", "dense_decoder", "conv_denoiser"]


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
