"""Stage `train_dense`: the dense autoencoder 784 -> 32 -> 784, plus its encoder/decoder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras

from mnist_ae import artifacts, data, models, training
from mnist_ae.config import Params
from mnist_ae.pipeline.train import Exported, train_and_save
from mnist_ae.tracking import NO_TRACKING, Tracker


def run(
    params: Params,
    workdir: Path,
    tracker: Tracker = NO_TRACKING,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> training.FitResult:
    """Train on clean training images (input = target) and save the three models."""
    settings = params.train_dense
    images = data.flat_images(data.to_unit_float(artifacts.MNIST.read(workdir)["x_train"]))
    parts: list[keras.Model] = []

    def build() -> keras.Model:
        autoencoder, encoder, decoder = models.build_dense_autoencoder(settings.encoding_dim)
        parts[:] = [encoder, decoder]
        return autoencoder

    def export(autoencoder: keras.Model) -> Exported:
        encoder, decoder = parts
        sample = images[:8]
        return {
            "dense_autoencoder": (artifacts.DENSE_AUTOENCODER, autoencoder, sample),
            "dense_encoder": (artifacts.DENSE_ENCODER, encoder, sample),
            "dense_decoder": (artifacts.DENSE_DECODER, decoder, encoder.predict(sample, verbose=0)),
        }

    return train_and_save(
        "train_dense",
        params,
        settings,
        build,
        (images, images),
        [artifacts.MNIST],
        export,
        (artifacts.DENSE_HISTORY, artifacts.DENSE_SUMMARY),
        workdir,
        tracker,
        callbacks,
    )
