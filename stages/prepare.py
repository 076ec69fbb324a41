"""DVC stage `prepare`: full MNIST (or its first N samples) as uint8 arrays."""

from mnist_ae import data, io, paths, tracking
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def main(params: Params) -> None:
    """Load MNIST from the configured source, check it, keep the first N, save it."""
    settings = params.prepare
    with tracking.pipeline_run("prepare", params):
        mnist = data.load(settings.source, settings.idx_dir)
        mnist = mnist.head(settings.train_samples, settings.test_samples)
        io.save_arrays(paths.MNIST, mnist.arrays())
        tracking.log_metrics(
            {"train_samples": len(mnist.x_train), "test_samples": len(mnist.x_test)}, "data."
        )


if __name__ == "__main__":
    run_stage("prepare", main)
