"""Stage `add_noise`: clip(x + noise_factor * N(0, 1), 0, 1) for train and test."""

from __future__ import annotations

from pathlib import Path

from mnist_ae import artifacts, data, noise
from mnist_ae.config import Params
from mnist_ae.tracking import NO_TRACKING, Tracker


def run(params: Params, workdir: Path, tracker: Tracker = NO_TRACKING) -> None:
    """Add seeded Gaussian noise to the prepared images and save them as float32."""
    mnist = artifacts.MNIST.read(workdir)
    noisy_train, noisy_test = noise.noisy_splits(
        data.to_unit_float(mnist["x_train"]),
        data.to_unit_float(mnist["x_test"]),
        params.noise.noise_factor,
        params.seed,
    )
    artifacts.NOISY.write(workdir, {"x_train_noisy": noisy_train, "x_test_noisy": noisy_test})
    tracker.log_stage("add_noise")
