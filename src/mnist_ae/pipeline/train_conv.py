"""Stage `train_conv`: the convolutional denoising autoencoder, noisy -> clean."""

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
    """Train on (noisy, clean) training pairs and save the plain-Keras denoiser."""
    settings = params.train_conv
    clean = data.to_unit_float(artifacts.MNIST.read(workdir)["x_train"])
    noisy = artifacts.NOISY.read(workdir)["x_train_noisy"]
    if len(noisy) != len(clean):
        raise ValueError(
            f"{artifacts.NOISY.path} and {artifacts.MNIST.path} hold different training sets"
        )
    noisy, clean = data.channel_images(noisy), data.channel_images(clean)

    def export(trained: keras.Model) -> Exported:
        denoiser = models.export_conv_denoiser(trained)  # plain Keras layers, same weights
        return {"conv_denoiser": (artifacts.CONV_DENOISER, denoiser, noisy[:8])}

    return train_and_save(
        "train_conv",
        params,
        settings,
        lambda: models.build_conv_denoiser(settings.filters, settings.fuse_last_upsampling),
        (noisy, clean),
        [artifacts.MNIST, artifacts.NOISY],
        export,
        (artifacts.CONV_HISTORY, artifacts.CONV_SUMMARY),
        workdir,
        tracker,
        callbacks,
    )
