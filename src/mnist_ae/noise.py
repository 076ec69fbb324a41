"""Gaussian noise for the denoising task."""

from __future__ import annotations

import numpy as np


def add_gaussian_noise(
    images: np.ndarray, noise_factor: float, rng: np.random.Generator
) -> np.ndarray:
    """Return clip(images + noise_factor * N(0, 1), 0, 1) as float32.

    `images` must already be floats in [0, 1]. The walkthrough uses noise_factor 0.5.
    """
    if noise_factor < 0:
        raise ValueError(f"noise_factor must be >= 0, got {noise_factor}")
    images = np.asarray(images, dtype=np.float32)
    noise = rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(images + np.float32(noise_factor) * noise, 0.0, 1.0)


def noisy_splits(
    x_train: np.ndarray, x_test: np.ndarray, noise_factor: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of train and test images, each from its own seeded stream.

    Independent streams (SeedSequence.spawn) keep the test noise the same whatever the
    number of training samples.
    """
    train_seed, test_seed = np.random.SeedSequence(seed).spawn(2)
    return (
        add_gaussian_noise(x_train, noise_factor, np.random.default_rng(train_seed)),
        add_gaussian_noise(x_test, noise_factor, np.random.default_rng(test_seed)),
    )
