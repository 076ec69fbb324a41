"""One MLflow run per pipeline invocation, attached to by every stage that runs in it.

DVC runs each stage as its own process, and skips stages whose inputs did not change. To still
get one row per `dvc repro` / `dvc exp run`, every stage that runs attaches to the MLflow run
tagged with the same *invocation key* — the id of the `dvc` process that launched it (pid and
start time) plus the DVC experiment name — creating it if it is the first stage to run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import mlflow
import psutil
from mlflow.tracking import MlflowClient

from mnist_ae.config import Params, flatten
from mnist_ae.signals import StageTerminatedError, held_signals
from mnist_ae.tracking.row import LiveTracker
from mnist_ae.tracking.store import (
    check_reachable,
    configure_http_client,
    experiment_id,
    explain_failure,
    store_lock,
    tracking_uri,
)

log = logging.getLogger(__name__)

INVOCATION_TAG = "pipeline.invocation"
STAGES_TAG = "pipeline.stages_run"
SECRET_NAME = re.compile(r"(TOKEN|KEY|PASSWORD|PASSWD|SECRET|CREDENTIALS?)$", re.IGNORECASE)


def without_secrets(values: Mapping[str, str]) -> dict[str, str]:
    """Drop entries whose name looks like a secret or whose value holds a secret from the
    environment (any *_TOKEN, *_KEY, *_PASSWORD, *_SECRET variable), before they are logged."""
    secrets = [
        value
        for name, value in os.environ.items()
        # Shorter values ("None", "true") would match innocent params by accident.
        if SECRET_NAME.search(name) and len(value) >= 8
    ]
    kept = {
        key: value
        for key, value in values.items()
        if not SECRET_NAME.search(key) and not any(secret in value for secret in secrets)
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


def _repro_name(tags: Mapping[str, str]) -> str:
    """The run name outside `dvc exp run`: `repro-<commit7>`, `-dirty` with uncommitted changes."""
    commit = tags.get("git.commit", "unknown")
    short = commit[:7] if commit != "unknown" else "nogit"
    return f"repro-{short}" + ("-dirty" if tags.get("git.dirty") == "true" else "")


@contextlib.contextmanager
def pipeline_run(stage: str, params: Params, workdir: Path | str) -> Iterator[LiveTracker]:
    """Attach to (or start) this invocation's MLflow run for the duration of one stage.

    Logs every param (flattened from params.yaml) and the run tags once; marks the run FAILED
    if the stage raises, FINISHED otherwise. Yields the tracker the stage logs through.
    """
    uri = tracking_uri()
    configure_http_client()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    try:
        # The client creates a new store's tables: one process at a time, and never half of them.
        with store_lock(uri), held_signals():
            client = MlflowClient()
            experiment = experiment_id(client, params.tracking.experiment_name)
        tags = without_secrets(_run_tags())
        existing = client.search_runs(
            [experiment],
            filter_string=f"tags.`{INVOCATION_TAG}` = '{tags[INVOCATION_TAG]}'",
            max_results=1,
        )
    except Exception as exc:
        explained = explain_failure(uri, exc)
        if explained is not None:
            raise explained from exc
        raise
    run_name = os.environ.get("DVC_EXP_NAME") or _repro_name(tags)
    try:
        with held_signals():  # see held_signals: no write to the store may stop halfway
            if existing:
                run = mlflow.start_run(run_id=existing[0].info.run_id)
            else:
                run = mlflow.start_run(experiment_id=experiment, run_name=run_name)
            logged = run.data.params if existing else {}
            flat = {key: str(value) for key, value in flatten(params.model_dump()).items()}
            fresh = {k: v for k, v in without_secrets(flat).items() if k not in logged}
            if fresh:
                mlflow.log_params(fresh)
            stages = run.data.tags.get(STAGES_TAG, "").split(",") if existing else []
            mlflow.set_tags({**tags, STAGES_TAG: ",".join([*filter(None, stages), stage])})
        yield LiveTracker(client, run.info.run_id, Path(workdir), params.tracking.registry, uri=uri)
        with held_signals():
            mlflow.end_run(status="FINISHED")
    except BaseException as exc:
        explained = explain_failure(uri, exc)
        # Already on the way out: neither an interrupt nor a store that is failing right now
        # may replace the error being reported while the run is marked.
        with (
            contextlib.suppress(KeyboardInterrupt, StageTerminatedError, Exception),
            held_signals(),
        ):
            mlflow.end_run(status="FAILED")  # nothing to end if start_run itself failed
        if explained is not None:
            raise explained from exc
        raise
