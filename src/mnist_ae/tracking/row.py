"""The MLflow row of one pipeline invocation: its schema, declared once, and the trackers that
write it.

ROW says, for each stage, which metrics file it logs under which prefix, which per-step curves,
which models and which files. A stage that runs logs its part from the files it has just
written (`Tracker.log_stage`); the last stage (report) fills in, from the same files and by the
same code, the parts of the stages DVC skipped because nothing they depend on changed
(`Tracker.complete_row`). So a row is complete, and the same, however many stages ran. Models
are the exception: they are logged by the run that trained them, never back-filled (a model is
MBs; the run that has it is linked from the row's `git.commit` and DVC experiment).
"""

from __future__ import annotations

import logging
import platform
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from mnist_ae import artifacts
from mnist_ae.config import RegistryParams, flatten
from mnist_ae.signals import held_signals

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Curves:
    """Per-step series from a table: `<prefix>.<column>`, the first row at `first_step`."""

    source: artifacts.Table
    prefix: str
    first_step: int  # 1 for epochs, 0 for noise levels


@dataclass(frozen=True)
class StageRow:
    """One stage's part of the row."""

    metrics: tuple[tuple[artifacts.Json, str], ...] = ()  # (file, metric-name prefix)
    curves: Curves | None = None
    models: tuple[str, ...] = ()  # MLflow model names, logged only by the run that trains them
    # A summary whose "datasets" entry names the data the stage trained on (pipeline.train):
    # logged as the run's MLflow dataset inputs, context "training".
    datasets: artifacts.Json | None = None
    files: tuple[tuple[artifacts.Artifact, str | None], ...] = ()  # (file, artifact directory)


ROW: dict[str, StageRow] = {
    "prepare": StageRow(metrics=((artifacts.DATA_SUMMARY, "data."),)),
    "add_noise": StageRow(),
    "train_dense": StageRow(
        metrics=((artifacts.DENSE_SUMMARY, "dense."),),
        curves=Curves(artifacts.DENSE_HISTORY, "dense", 1),
        models=("dense_autoencoder", "dense_encoder", "dense_decoder"),
        datasets=artifacts.DENSE_SUMMARY,
    ),
    "train_conv": StageRow(
        metrics=((artifacts.CONV_SUMMARY, "conv."),),
        curves=Curves(artifacts.CONV_HISTORY, "conv", 1),
        models=("conv_denoiser",),
        datasets=artifacts.CONV_SUMMARY,
    ),
    **{
        files.summary.producer: StageRow(
            metrics=((files.summary, f"vae_{name}."),),
            curves=Curves(files.history, f"vae_{name}", 1),
            models=(f"vae_{name}_encoder", f"vae_{name}_decoder"),
            datasets=files.summary,
        )
        for name, files in artifacts.VAE.items()
    },
    "baselines": StageRow(metrics=((artifacts.BASELINE_TUNING, "baselines."),)),
    "evaluate": StageRow(
        metrics=((artifacts.EVALUATION, ""),), files=((artifacts.EVALUATION, None),)
    ),
    **{
        files.evaluation.producer: StageRow(metrics=((files.evaluation, f"vae_{name}.test."),))
        for name, files in artifacts.VAE.items()
    },
    "noise_sweep": StageRow(curves=Curves(artifacts.NOISE_SWEEP, "sweep", 0)),
    "figures": StageRow(files=tuple((png, "figures") for png in artifacts.FIGURES.values())),
    "report": StageRow(
        files=((artifacts.REPORT_MARKDOWN, "reports"), (artifacts.REPORT_HTML, "reports"))
    ),
}


def numeric_metrics(payload: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a (nested) mapping as dotted metric names; strings are left out."""
    flat = flatten(dict(payload), prefix)
    return {
        key: float(value)
        for key, value in flat.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo's "model name"), to say where a time was
    measured."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


@held_signals()
def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log flat metrics to the active run (held: an SQLite write must not stop halfway)."""
    if metrics:
        mlflow.log_metrics(dict(metrics), step=step)


@held_signals()
def log_history(history: Mapping[str, Sequence[float]], prefix: str, first_step: int = 1) -> None:
    """Log series as `<prefix>.<name>`, one point per step (an `epoch` column is skipped)."""
    for name, values in history.items():
        if name == "epoch":
            continue
        for step, value in enumerate(values, start=first_step):
            mlflow.log_metric(f"{prefix}.{name}", float(value), step=step)


class Tracker:
    """The stages' logging interface. This base logs nothing: the benchmark and in-process
    tests run the stages' functions with it."""

    def epoch_callbacks(self, stage: str) -> list[Any]:
        """Keras callbacks that log the stage's curves as each epoch ends."""
        return []

    def log_resumed_epochs(
        self, stage: str, history: Mapping[str, Sequence[float]], resumed: int
    ) -> None:
        """Log the curves of epochs restored from a checkpoint."""

    def log_model(self, name: str, model: Any, sample: np.ndarray) -> None:
        """Log a trained Keras model."""

    def log_training_time(self, stage: str, seconds: float, result: Any) -> None:
        """Record how long the stage's training (a training.FitResult) took here."""

    def log_stage(self, stage: str) -> None:
        """Log the stage's part of the row from the files it wrote."""

    def complete_row(self) -> list[str]:
        """Fill in the parts of the row that stages DVC skipped would have logged."""
        return []


NO_TRACKING = Tracker()


class LiveTracker(Tracker):
    """Logs to the active MLflow run (opened by tracking.pipeline_run)."""

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        workdir: Path,
        registry: RegistryParams | None = None,
        uri: str = "",
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.workdir = workdir
        self.registry = registry  # tracking.registry (None: register nothing)
        self.uri = uri  # the tracking URI

    def epoch_callbacks(self, stage: str) -> list[Any]:
        import keras

        curves = ROW[stage].curves
        if curves is None:
            raise ValueError(f"stage '{stage}' has no curves in the MLflow row")
        prefix = curves.prefix

        class _EpochLogger(keras.callbacks.Callback):
            @held_signals()
            def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
                values = {f"{prefix}.{key}": float(value) for key, value in (logs or {}).items()}
                mlflow.log_metrics(values, step=epoch + 1)

        return [_EpochLogger()]

    def log_resumed_epochs(
        self, stage: str, history: Mapping[str, Sequence[float]], resumed: int
    ) -> None:
        """Log the curves of epochs restored from a checkpoint (their process died before
        logging them to this run), and tag the run so a reader knows training was resumed."""
        curves = ROW[stage].curves
        if resumed and curves is not None:
            log_history({name: values[:resumed] for name, values in history.items()}, curves.prefix)
            with held_signals():
                mlflow.set_tag(f"{curves.prefix}.resumed_after_epoch", str(resumed))

    def log_training_time(self, stage: str, seconds: float, result: Any) -> None:
        """Tags, not metrics: a wall time belongs to the run that trained, on its machine (a
        metric would make the row depend on which stages ran, and nothing back-fills it).
        `<prefix>.train_seconds` times the epochs this process ran (not those resumed)."""
        curves = ROW[stage].curves
        if curves is None:
            raise ValueError(f"stage '{stage}' has no curves in the MLflow row")
        with held_signals():
            mlflow.set_tags(
                {
                    f"{curves.prefix}.train_seconds": f"{seconds:.1f}",
                    f"{curves.prefix}.train_epochs_timed": str(
                        result.epochs_run - result.resumed_epochs
                    ),
                    f"{curves.prefix}.train_cpu": cpu_model(),
                }
            )

    @held_signals()
    def log_model(self, name: str, model: Any, sample: np.ndarray) -> None:
        """Log a Keras model in MLflow's Keras flavour, with a signature inferred from `sample`."""
        import keras
        import mlflow.keras
        import tensorflow as tf
        from mlflow.models import infer_signature

        if not any(name in row.models for row in ROW.values()):
            raise ValueError(f"model '{name}' is not in the MLflow row's schema (ROW)")
        signature = infer_signature(sample, model.predict(sample, verbose=0))
        # uv's .venv has no pip, so MLflow warns (twice) that the conda.yaml it writes names
        # pip without a version; harmless here, where the pip requirements are explicit.
        environment_log = logging.getLogger("mlflow.utils.environment")
        level = environment_log.level
        environment_log.setLevel(logging.ERROR)
        try:
            mlflow.keras.log_model(
                model,
                name=name,
                signature=signature,
                # Explicit: MLflow's inference would re-import the model in a subprocess.
                pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
            )
        finally:
            environment_log.setLevel(level)

    def log_stage(self, stage: str) -> None:
        self._log_missing(stage, set(self.client.get_run(self.run_id).data.metrics))

    def complete_row(self) -> list[str]:
        present = set(self.client.get_run(self.run_id).data.metrics)
        filled = [entry for stage in ROW for entry in self._log_missing(stage, present)]
        if filled:
            log.info("back-filled from skipped stages: %s", ", ".join(filled))
        return filled

    def _log_missing(self, stage: str, present: set[str]) -> list[str]:
        """Log what the schema says `stage` logs and the run lacks; return what was logged."""
        row, logged = ROW[stage], []
        for source, prefix in row.metrics:
            missing = {
                key: value
                for key, value in numeric_metrics(source.read(self.workdir), prefix).items()
                if key not in present
            }
            log_metrics(missing)
            logged += sorted(missing)
        if row.datasets is not None:
            logged += self._log_missing_datasets(row.datasets)
        if row.curves is not None:
            columns = row.curves.source.columns(self.workdir)
            names = [name for name in columns if name != "epoch"]
            if names and f"{row.curves.prefix}.{names[0]}" not in present:
                log_history(columns, row.curves.prefix, row.curves.first_step)
                logged.append(f"{row.curves.prefix}.*")
        uploaded: dict[str | None, set[str]] = {}
        for source, directory in row.files:
            path = source.source(self.workdir)  # recorded as read even when already uploaded
            if directory not in uploaded:
                listing = self.client.list_artifacts(self.run_id, directory)
                uploaded[directory] = {Path(item.path).name for item in listing}
            if path.name not in uploaded[directory]:
                with held_signals():
                    mlflow.log_artifact(str(path), artifact_path=directory)
                logged.append(f"{directory or '.'}/{path.name}")
        return logged

    def _log_missing_datasets(self, summary: artifacts.Json) -> list[str]:
        """Log the training datasets a summary names that the run lacks."""
        described = summary.read(self.workdir).get("datasets", {})
        return log_training_datasets(self.client, self.run_id, described)


def log_training_datasets(
    client: MlflowClient, run_id: str, described: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Log data files as the run's training datasets (MLflow dataset inputs, context
    "training"), each `{name: {file, sha256, train_samples, validation_samples}}` as a training
    summary records them (pipeline.train), unless the run has it (same name and digest)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = client.get_run(run_id).inputs
    present = {(item.dataset.name, item.dataset.digest) for item in inputs.dataset_inputs}
    logged = []
    for name, dataset in described.items():
        # MLflow stores at most 36 characters of digest: the first 32 hex digits of the
        # file's SHA-256 (128 bits); the whole one is the input's `sha256` tag.
        digest = dataset["sha256"][:32]
        if (name, digest) in present:
            continue
        with warnings.catch_warnings():
            # MLflow 3.17 registers its local-file source for two schemes ("" and "file"), so
            # a relative path "can be interpreted in multiple ways": both are the same class.
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
            source = resolve_dataset_source(dataset["file"])
        meta = MetaDataset(source, name, digest)
        tags = {
            MLFLOW_DATASET_CONTEXT: "training",
            "sha256": dataset["sha256"],
            "train_samples": str(dataset["train_samples"]),
            "validation_samples": str(dataset["validation_samples"]),
        }
        entry = DatasetInput(
            meta._to_mlflow_entity(), [InputTag(key, value) for key, value in tags.items()]
        )
        with held_signals():
            client.log_inputs(run_id, datasets=[entry])
        present.add((name, digest))
        logged.append(f"dataset {name}")
    return logged
