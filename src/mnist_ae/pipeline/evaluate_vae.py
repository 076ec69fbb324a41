"""Stages `evaluate_vae@<name>`: the VAE `name`'s test scores, as the literature reports them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from mnist_ae import artifacts, data, vae
from mnist_ae.config import Params
from mnist_ae.tracking import NO_TRACKING, Tracker


def run(params: Params, workdir: Path, tracker: Tracker = NO_TRACKING, *, name: str) -> None:
    """Score the VAE on the test set, binarised once with the seed (or grey, with
    `binarize: none`), and write its DVC metrics JSON."""
    files = artifacts.vae_files(name)
    stage = f"evaluate_vae@{name}"
    images = data.flat_images(data.to_unit_float(artifacts.MNIST.read(workdir)["x_test"]))
    binarized = params.train_vae.binarize == "dynamic"
    images = vae.test_images(images, binarized, params.seed)
    scores = vae.test_scores(
        files.encoder.read(workdir),
        files.decoder.read(workdir),
        images,
        getattr(params.evaluate_vae.importance_samples, name),
        params.seed,
        params.evaluate_vae.batch_size,
    )
    # What the scores were measured on: the Model Registry compares versions only on the same.
    digest = data.arrays_sha256(images)
    files.evaluation.write(workdir, {**scores, "binarized": binarized, "test_data_sha256": digest})
    tracker.log_stage(stage)


def runner(name: str) -> Callable[..., None]:
    """The stage function of configuration `name` (an unknown name fails when it runs)."""
    return functools.partial(run, name=name)
