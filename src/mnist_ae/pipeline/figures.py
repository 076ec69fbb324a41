"""Stage `figures`: every PNG — digits, baselines, noise sweep, latent space, errors, and the
VAEs' manifold, codes, samples, interpolations and reconstructions."""

from __future__ import annotations

from pathlib import Path

from mnist_ae import artifacts, baselines, data, figures, vae
from mnist_ae.config import Params
from mnist_ae.tracking import NO_TRACKING, Tracker


def run(params: Params, workdir: Path, tracker: Tracker = NO_TRACKING) -> None:
    """Render every figure and save it."""
    settings = params.figures
    mnist = artifacts.MNIST.read(workdir)
    clean = data.to_unit_float(mnist["x_test"])
    binarized = params.train_vae.binarize == "dynamic"
    manifold, likelihood = artifacts.VAE["manifold"], artifacts.VAE["likelihood"]
    vae_inputs = figures.VaeFigureInputs(
        manifold_encoder=manifold.encoder.read(workdir),
        manifold_decoder=manifold.decoder.read(workdir),
        likelihood_encoder=likelihood.encoder.read(workdir),
        likelihood_decoder=likelihood.decoder.read(workdir),
        # The test images exactly as evaluate_vae scores them.
        images=vae.test_images(clean, binarized, params.seed),
        binarized=binarized,
        histories={
            name: files.history.read_history(workdir) for name, files in artifacts.VAE.items()
        },
    )
    inputs = figures.FigureInputs(
        dense_autoencoder=artifacts.DENSE_AUTOENCODER.read(workdir),
        dense_encoder=artifacts.DENSE_ENCODER.read(workdir),
        conv_denoiser=artifacts.CONV_DENOISER.read(workdir),
        clean=clean,
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
        vae=vae_inputs,
    )
    rendered = figures.pipeline_figures(
        inputs,
        settings.n_digits,
        settings.projection,
        settings.projection_samples,
        settings.manifold_size,
        params.seed,
    )
    for name, figure in rendered.items():
        artifacts.FIGURES[name].write(workdir, figure, settings.dpi)
    tracker.log_stage("figures")
