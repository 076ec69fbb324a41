"""DVC stage `add_noise`: clip(x + noise_factor * N(0, 1), 0, 1) for train and test."""

from mnist_ae import data, io, noise, paths, tracking
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def main(params: Params) -> None:
    """Add seeded Gaussian noise to the prepared images and save them as float32."""
    with tracking.pipeline_run("add_noise", params):
        mnist = io.load_mnist(paths.MNIST)
        noisy_train, noisy_test = noise.noisy_splits(
            data.to_unit_float(mnist["x_train"]),
            data.to_unit_float(mnist["x_test"]),
            params.noise.noise_factor,
            params.seed,
        )
        io.save_arrays(paths.NOISY, {"x_train_noisy": noisy_train, "x_test_noisy": noisy_test})


if __name__ == "__main__":
    run_stage("add_noise", main)
