"""Stage `evaluate`: test-set metrics of both models beside their baselines."""

from __future__ import annotations

from pathlib import Path

from mnist_ae import artifacts, baselines, data, evaluation
from mnist_ae.config import Params
from mnist_ae.tracking import NO_TRACKING, Tracker


def run(params: Params, workdir: Path, tracker: Tracker = NO_TRACKING) -> None:
    """Score models and baselines on the test set and write the DVC metrics JSON."""
    mnist = artifacts.MNIST.read(workdir)
    tuning = artifacts.BASELINE_TUNING.read(workdir)
    results = evaluation.evaluate(
        artifacts.DENSE_AUTOENCODER.read(workdir),
        baselines.PcaModel(**artifacts.PCA.read(workdir)),
        artifacts.CONV_DENOISER.read(workdir),
        {name: float(tuned["strength"]) for name, tuned in tuning.items()},
        data.to_unit_float(mnist["x_test"]),
        artifacts.NOISY.read(workdir)["x_test_noisy"],
        mnist["y_test"],
        params.evaluate.batch_size,
    )
    artifacts.EVALUATION.write(workdir, results)
    tracker.log_stage("evaluate")
