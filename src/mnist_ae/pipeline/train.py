"""The one path from params to a trained, saved and logged model, shared by every training
stage (and so by the benchmark)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_ae import artifacts, training
from mnist_ae.config import Params
from mnist_ae.tracking import Tracker

# The name each data file a model trains on has as an MLflow dataset (the runs table's Dataset).
DATASET_NAMES = {artifacts.MNIST.path: "mnist", artifacts.NOISY.path: "mnist-noisy"}

# MLflow model name -> (where it is saved, the model, an input sample for its signature).
Exported = Mapping[str, tuple[artifacts.KerasModel, keras.Model, np.ndarray]]


def train_and_save(
    stage: str,
    params: Params,
    settings: Any,
    build: Callable[[], keras.Model],
    data: tuple[np.ndarray, np.ndarray],
    data_files: Sequence[artifacts.Artifact],
    export: Callable[[keras.Model], Exported],
    outputs: tuple[artifacts.History, artifacts.Json],
    workdir: Path,
    tracker: Tracker,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    code_files: Sequence[Path] = (),
) -> training.FitResult:
    """Seed, build, fit (resumably), then write every output, log, and drop the checkpoint.

    The order matters: the checkpoint goes last, once every output is written, so a stage
    killed while saving resumes instead of retraining. `settings` is the stage's params
    section (training.fit's options plus the model's keys); `export` gives the models to save
    (the summary describes the trained model, all its parts); `outputs` are the history CSV and
    the summary JSON, which also names the data files trained on (their SHA-256 and split
    sizes: the run's MLflow dataset inputs). `code_files`: the model's own source, beyond
    models.py and training.py, that a checkpoint must match to be resumed.
    """
    training.make_deterministic(params.seed)
    strategy = training.distribution_strategy(settings.distribute)
    checkpoint = Path(workdir) / training.CHECKPOINT_DIR / f"{stage}.npz"
    inputs, targets = data
    with strategy.scope():  # the model's variables and the optimizer's, on every replica
        model = build()
        started = time.monotonic()
        result = training.fit(
            model,
            inputs,
            targets,
            **settings.fit_options(),
            seed=params.seed,
            checkpoint=checkpoint,
            resume_key=training.resume_key(
                params.seed,
                # What `distribute: auto` chose too: a checkpoint resumes on as many replicas.
                {**settings.model_dump(), "replicas": strategy.num_replicas_in_sync},
                [file.at(workdir) for file in data_files],
                code_files,
                arrays=data,
            ),
            callbacks=[*tracker.epoch_callbacks(stage), *callbacks],
        )
    tracker.log_training_time(stage, time.monotonic() - started, result)
    exported = export(model)
    for artifact, saved, _ in exported.values():
        artifact.write(workdir, saved)
    tracker.log_resumed_epochs(stage, result.history, result.resumed_epochs)
    history, summary = outputs
    history.write_history(workdir, result.history)
    datasets = {
        DATASET_NAMES[file.path]: {
            "file": file.path,
            "sha256": file.sha256(workdir),
            "train_samples": len(inputs) - settings.validation_samples,
            "validation_samples": settings.validation_samples,
        }
        for file in data_files
    }
    summary.write(workdir, {**result.summary(model), "datasets": datasets})
    tracker.log_stage(stage)
    for name, (_, saved, sample) in exported.items():
        tracker.log_model(name, saved, sample)
    training.remove_checkpoint(checkpoint)  # last: every output is written
    return result
