"""Stage `figures`: every PNG — digits, baselines, noise sweep, latent space, errors."""

from __future__ import annotations

from pathlib import Path

from mnist_ae import artifacts, baselines, data, figures
from mnist_ae.config import Params
from mnist_ae.tracking import NO_TRACKING, Tracker


def run(params: Params, workdir: Path, tracker: Tracker = NO_TRACKING) -> None:
    """Render every figure and save it."""
    settings = params.figures
    mnist = artifacts.MNIST.read(workdir)
    inputs = figures.FigureInputs(
        dense_autoencoder=artifacts.DENSE_AUTOENCODER.read(workdir),
        dense_encoder=artifacts.DENSE_ENCODER.read(workdir),
        conv_denoiser=artifacts.CONV_DENOISER.read(workdir),
        clean=data.to_unit_float(mnist["x_test"]),
        noisy=artifacts.NOISY.read(workdir)["x_test_noisy"],
        labels=mnist["y_test"],
        histories={
            "dense": artifacts.DENSE_HISTORY.read_history(workdir),
            "conv": artifacts.CONV_HISTORY.read_history(workdir),
        },
        evaluation=artifacts.EVALUATION.read(workdir),
        sweep=artifacts.NOISE_SWEEP.read(workdir),
        sweep_baseline=baselines.best_on_tuning(artifacts.BASELINE_TUNING.read(workdir)),
        noise_factor=params.noise.noise_factor,
    )
    rendered = figures.pipeline_figures(
        inputs, settings.n_digits, settings.projection, settings.projection_samples, params.seed
    )
    for name, figure in rendered.items():
        artifacts.FIGURES[name].write(workdir, figure, settings.dpi)
    tracker.log_stage("figures")
