"""MLflow tracking: one MLflow run (one row in the UI) per pipeline invocation.

DVC runs each stage as its own process, and skips stages whose inputs did not change. To still
get one row per `dvc repro` / `dvc exp run`, every stage that runs attaches to the MLflow run
tagged with the same *invocation key* — the id of the `dvc` process that launched it (pid and
start time) plus the DVC experiment name — creating it if it is the first stage to run. The
last stage (report) back-fills, from their outputs, what skipped stages would have logged
(headline metrics, training summaries, per-epoch curves, the noise sweep), so a row is
complete even when DVC skipped most stages.

Nothing here writes to a DVC output: run ids and timestamps live only in MLflow.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import psutil
from mlflow.tracking import MlflowClient

from mnist_ae.cli import StageTerminatedError, held_signals
from mnist_ae.config import Params, flatten

log = logging.getLogger(__name__)

INVOCATION_TAG = "pipeline.invocation"
STAGES_TAG = "pipeline.stages_run"
# Seconds a stage waits for the tracking server to answer before giving up (before training).
PREFLIGHT_TIMEOUT = 5.0
# SQLite: how long a writer waits for another process's lock (parallel queued experiments).
SQLITE_LOCK_TIMEOUT = 60
_SECRET_NAME = re.compile(r"(TOKEN|KEY|PASSWORD|PASSWD|SECRET|CREDENTIALS?)$", re.IGNORECASE)


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
def _store_lock(uri: str) -> Iterator[None]:
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


def without_secrets(values: Mapping[str, str]) -> dict[str, str]:
    """Drop entries whose name looks like a secret or whose value holds a secret from the
    environment (any *_TOKEN, *_KEY, *_PASSWORD, *_SECRET variable), before they are logged."""
    secrets = [
        value
        for name, value in os.environ.items()
        # Shorter values ("None", "true") would match innocent params by accident.
        if _SECRET_NAME.search(name) and len(value) >= 8
    ]
    kept = {
        key: value
        for key, value in values.items()
        if not _SECRET_NAME.search(key) and not any(secret in value for secret in secrets)
    }
    if len(kept) < len(values):
        dropped = sorted(set(values) - set(kept))
        log.warning("not logged, they look like or contain secrets: %s", ", ".join(dropped))
    return kept


def _dvc_ancestor() -> psutil.Process | None:
    """The closest ancestor process that is the `dvc` command, if any."""
    try:
        for parent in psutil.Process().parents():
            command = parent.cmdline()
            executable = [Path(part).name for part in command[:2]]
            if "dvc" in executable or command[1:3] == ["-m", "dvc"]:
                return parent
    except (psutil.Error, IndexError):
        return None
    return None


def invocation_key() -> str:
    """Identify this pipeline invocation: the launching dvc process and the experiment name."""
    process = _dvc_ancestor() or psutil.Process()
    experiment = os.environ.get("DVC_EXP_NAME", "")
    return f"{process.pid}-{process.create_time():.3f}-{experiment}"


def _git(*arguments: str) -> str:
    try:
        result = subprocess.run(
            ["git", *arguments], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip()


def _run_tags() -> dict[str, str]:
    commit = _git("rev-parse", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    tags = {
        "git.commit": commit,
        "mlflow.source.git.commit": commit,
        "git.dirty": str(dirty).lower(),
        INVOCATION_TAG: invocation_key(),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    database = sqlite_database(tracking_uri())
    if database is not None:
        # "Artifacts beside the store": mlruns/ next to mlflow.db, whatever the working dir.
        artifact_location = (database.resolve().parent / "mlruns").as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


@contextlib.contextmanager
def pipeline_run(stage: str, params: Params) -> Iterator[MlflowClient]:
    """Attach to (or start) this invocation's MLflow run for the duration of one stage.

    Logs every param (flattened from params.yaml) and the run tags once; marks the run FAILED
    if the stage raises, FINISHED otherwise.
    """
    uri = tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    # The client creates a new store's tables: one process at a time, and never half of them.
    with _store_lock(uri), held_signals():
        client = MlflowClient()
        experiment_id = _experiment_id(client, params.tracking.experiment_name)
    tags = without_secrets(_run_tags())
    existing = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{INVOCATION_TAG}` = '{tags[INVOCATION_TAG]}'",
        max_results=1,
    )
    run_name = os.environ.get("DVC_EXP_NAME") or None
    try:
        with held_signals():  # see held_signals: no write to the store may stop halfway
            if existing:
                run = mlflow.start_run(run_id=existing[0].info.run_id)
            else:
                run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name)
            logged = run.data.params if existing else {}
            flat = {key: str(value) for key, value in flatten(params.model_dump()).items()}
            fresh = {k: v for k, v in without_secrets(flat).items() if k not in logged}
            if fresh:
                mlflow.log_params(fresh)
            stages = run.data.tags.get(STAGES_TAG, "").split(",") if existing else []
            mlflow.set_tags({**tags, STAGES_TAG: ",".join([*filter(None, stages), stage])})
        yield client
    except BaseException:
        # Already on the way out: an interrupt while marking the run must not replace the
        # error being reported.
        with contextlib.suppress(KeyboardInterrupt, StageTerminatedError), held_signals():
            mlflow.end_run(status="FAILED")  # nothing to end if start_run itself failed
        raise
    with held_signals():
        mlflow.end_run(status="FINISHED")


@held_signals()
def log_metrics(metrics: Mapping[str, Any], prefix: str = "", step: int | None = None) -> None:
    """Log a (possibly nested) mapping of numbers as dotted metric names."""
    flat = flatten(dict(metrics), prefix)
    numeric = {key: float(value) for key, value in flat.items() if isinstance(value, int | float)}
    if numeric:
        mlflow.log_metrics(numeric, step=step)


@held_signals()
def log_history(history: Mapping[str, Sequence[float]], prefix: str, first_step: int = 1) -> None:
    """Log series as `<prefix>.<name>`, one point per step (an `epoch` column is skipped).

    Training curves use step = epoch (from 1); the noise sweep uses step = level index (from 0).
    """
    for name, values in history.items():
        if name == "epoch":
            continue
        for step, value in enumerate(values, start=first_step):
            mlflow.log_metric(f"{prefix}.{name}", float(value), step=step)


def epoch_logger(prefix: str) -> Any:
    """A Keras callback that logs loss and val_loss to the active run at each epoch's end."""
    import keras

    class _EpochLogger(keras.callbacks.Callback):
        @held_signals()
        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            values = {f"{prefix}.{key}": float(value) for key, value in (logs or {}).items()}
            mlflow.log_metrics(values, step=epoch + 1)

    return _EpochLogger()


@held_signals()
def log_keras_model(model: Any, name: str, sample: np.ndarray) -> None:
    """Log a Keras model in MLflow's Keras flavour, with a signature inferred from `sample`."""
    import keras
    import mlflow.keras
    import tensorflow as tf
    from mlflow.models import infer_signature

    signature = infer_signature(sample, model.predict(sample, verbose=0))
    mlflow.keras.log_model(
        model,
        name=name,
        signature=signature,
        # Explicit requirements: MLflow's inference would re-import the model in a subprocess.
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
    )


@held_signals()
def log_artifacts(paths: Sequence[Path | str], artifact_path: str | None = None) -> None:
    """Upload files to the active run."""
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def backfill(
    client: MlflowClient,
    metrics: Mapping[str, Any],
    series: Mapping[str, tuple[Mapping[str, Sequence[float]], int]],
) -> list[str]:
    """Log the metrics and series the active run lacks, because DVC skipped their stages.

    `metrics` is a nested mapping logged under dotted names; `series` maps a prefix to
    (columns, first step). Returns what was back-filled.
    """
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("backfill needs an active MLflow run")
    present = set(client.get_run(run.info.run_id).data.metrics)
    flat = flatten(dict(metrics))
    missing = {key: value for key, value in flat.items() if key not in present}
    log_metrics(missing)
    filled = sorted(key for key, value in missing.items() if isinstance(value, int | float))
    for prefix, (columns, first_step) in series.items():
        names = [name for name in columns if name != "epoch"]
        if names and f"{prefix}.{names[0]}" not in present:
            log_history(columns, prefix, first_step)
            filled.append(f"{prefix}.*")
    if filled:
        log.info("back-filled from skipped stages: %s", ", ".join(filled))
    return filled


@held_signals()
def log_resumed_epochs(history: Mapping[str, Sequence[float]], resumed: int, prefix: str) -> None:
    """Log the curves of epochs restored from a checkpoint (their process died before logging
    them to this run), and tag the run so a reader knows training was resumed."""
    if resumed:
        log_history({name: values[:resumed] for name, values in history.items()}, prefix)
        mlflow.set_tag(f"{prefix}.resumed_after_epoch", str(resumed))
