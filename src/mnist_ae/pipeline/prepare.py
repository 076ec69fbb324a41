"""Stage `prepare`: full MNIST (or its first N samples) as uint8 arrays."""

from __future__ import annotations

from pathlib import Path

from mnist_ae import artifacts, data
from mnist_ae.config import Params
from mnist_ae.tracking import NO_TRACKING, Tracker


def run(params: Params, workdir: Path, tracker: Tracker = NO_TRACKING) -> None:
    """Load MNIST from the configured source, check it, keep the first N, save it."""
    settings = params.prepare
    idx_dir = settings.idx_dir and str(Path(workdir) / settings.idx_dir)  # absolute stays so
    mnist = data.load(settings.source, idx_dir)
    mnist = mnist.head(settings.train_samples, settings.test_samples)
    artifacts.MNIST.write(workdir, mnist.arrays())
    counts = {"train_samples": len(mnist.x_train), "test_samples": len(mnist.x_test)}
    artifacts.DATA_SUMMARY.write(workdir, counts)
    tracker.log_stage("prepare")
