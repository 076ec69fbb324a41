"""DVC stage `evaluate`: test-set metrics of both models and the noisy-input baseline."""

from mnist_ae import data, evaluation, io, paths, tracking
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def main(params: Params) -> None:
    """Score the models on the test set and write the DVC metrics JSON."""
    with tracking.pipeline_run("evaluate", params):
        clean = data.to_unit_float(io.load_mnist(paths.MNIST)["x_test"])
        noisy = io.load_noisy(paths.NOISY)["x_test_noisy"]
        results = evaluation.evaluate(
            io.load_model(paths.DENSE_AUTOENCODER),
            io.load_model(paths.CONV_DENOISER),
            clean,
            noisy,
            params.evaluate.batch_size,
        )
        io.write_json(paths.EVALUATION, results)
        tracking.log_metrics(results)
        tracking.log_artifacts([paths.EVALUATION])


if __name__ == "__main__":
    run_stage("evaluate", main)
