"""DVC stage `evaluate`: test-set metrics of both models beside their baselines."""

import numpy as np

from mnist_ae import baselines, data, evaluation, io, paths, tracking
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def main(params: Params) -> None:
    """Score models and baselines on the test set and write the DVC metrics JSON."""
    with tracking.pipeline_run("evaluate", params):
        mnist = io.load_mnist(paths.MNIST)
        pca = io.load_arrays(
            paths.PCA, {"mean": (np.float64, (784,)), "components": (np.float64, (None, 784))}
        )
        tuning = io.read_json(paths.BASELINE_TUNING)
        results = evaluation.evaluate(
            io.load_model(paths.DENSE_AUTOENCODER),
            baselines.PcaModel(**pca),
            io.load_model(paths.CONV_DENOISER),
            {name: float(tuned["strength"]) for name, tuned in tuning.items()},
            data.to_unit_float(mnist["x_test"]),
            io.load_noisy(paths.NOISY)["x_test_noisy"],
            mnist["y_test"],
            params.evaluate.batch_size,
        )
        io.write_json(paths.EVALUATION, results)
        tracking.log_metrics(results)
        tracking.log_artifacts([paths.EVALUATION])


if __name__ == "__main__":
    run_stage("evaluate", main)
