"""Stage `noise_sweep`: the denoiser and the best classical one across noise levels."""

from __future__ import annotations

from pathlib import Path

from mnist_ae import analysis, artifacts, baselines, data
from mnist_ae.config import Params
from mnist_ae.tracking import NO_TRACKING, Tracker


def run(params: Params, workdir: Path, tracker: Tracker = NO_TRACKING) -> None:
    """PSNR/SSIM per noise factor, written as a DVC plot (x = noise_factor)."""
    settings = params.noise_sweep
    tuning = artifacts.BASELINE_TUNING.read(workdir)
    best = baselines.best_on_tuning(tuning)
    rows = analysis.noise_sweep(
        artifacts.CONV_DENOISER.read(workdir),
        data.to_unit_float(artifacts.MNIST.read(workdir)["x_test"]),
        settings.noise_factors,
        best,
        tuning[best]["strength"],
        params.seed,
        settings.batch_size,
    )
    artifacts.NOISE_SWEEP.write(workdir, rows)
    tracker.log_stage("noise_sweep")
