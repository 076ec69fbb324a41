"""Test-set evaluation of both models, with the do-nothing baseline beside the denoiser."""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_ae.metrics import binary_crossentropy, image_quality, mean_squared_error
from mnist_ae.training import channel_images, flat_images


def evaluate(
    dense_autoencoder: Any,
    conv_denoiser: Any,
    clean: np.ndarray,
    noisy: np.ndarray,
    batch_size: int,
) -> dict[str, dict[str, float]]:
    """Metrics on the test set: dense AE reconstruction, conv denoiser and noisy input.

    `clean` and `noisy` are float images (N, 28, 28) in [0, 1]. The noisy input scored
    against the clean images is the do-nothing baseline the denoiser must beat.
    """
    reconstructed = dense_autoencoder.predict(flat_images(clean), batch_size=batch_size, verbose=0)
    denoised = conv_denoiser.predict(channel_images(noisy), batch_size=batch_size, verbose=0)
    return {
        "dense_autoencoder": {
            "bce": binary_crossentropy(clean, reconstructed.reshape(clean.shape)),
            "mse": mean_squared_error(clean, reconstructed.reshape(clean.shape)),
        },
        "conv_denoiser": image_quality(clean, denoised.reshape(clean.shape)),
        "noisy_input": image_quality(clean, noisy),
        "test_samples": len(clean),
    }
