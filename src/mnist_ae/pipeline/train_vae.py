"""Stages `train_vae@<name>`: one variational autoencoder of params.yaml's train_vae.models."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from mnist_ae import artifacts, data, training, vae
from mnist_ae.config import Params
from mnist_ae.pipeline.train import Exported, train_and_save
from mnist_ae.tracking import NO_TRACKING, Tracker


def training_data(params: Params, workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of fit: the grey training images, and the images validation scores
    (binarised once with the seed under `binarize: dynamic`, else the grey ones)."""
    images = data.flat_images(data.to_unit_float(artifacts.MNIST.read(workdir)["x_train"]))
    if params.train_vae.binarize == "dynamic":
        return images, vae.binarize(images, params.seed, vae.TRAINING_DRAW)
    return images, images


def run(
    params: Params,
    workdir: Path,
    tracker: Tracker = NO_TRACKING,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    *,
    name: str,
) -> training.FitResult:
    """Train the VAE `name` on the training images and save its encoder and decoder.

    Inputs are the grey images: with `binarize: dynamic`, each step draws its own binary
    batch from them. Targets, which only validation reads, are binary too (drawn once with
    the seed), so val_loss is a negative ELBO of binary images, as the test score will be.
    """
    files = artifacts.vae_files(name)
    stage = f"train_vae@{name}"
    settings = getattr(params.train_vae.models, name)
    images, targets = training_data(params, workdir)

    def build() -> keras.Model:
        return vae.build_vae(
            settings.hidden,
            settings.activation,
            settings.latent_dim,
            dynamic_binarization=params.train_vae.binarize == "dynamic",
            seed=params.seed,
        )

    def export(model: keras.Model) -> Exported:
        sample = targets[:8]
        codes, _ = model.encoder.predict(sample, verbose=0)
        return {
            f"vae_{name}_encoder": (files.encoder, model.encoder, sample),
            f"vae_{name}_decoder": (files.decoder, model.decoder, codes),
        }

    return train_and_save(
        stage,
        params,
        settings,
        build,
        (images, targets),
        [artifacts.MNIST],
        export,
        (files.history, files.summary),
        workdir,
        tracker,
        callbacks,
        code_files=[Path(vae.__file__)],
    )


def runner(name: str) -> Callable[..., training.FitResult]:
    """The stage function of configuration `name` (an unknown name fails when it runs)."""
    return functools.partial(run, name=name)
