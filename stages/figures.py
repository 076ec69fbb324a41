"""DVC stage `figures`: every PNG — digits, baselines, noise sweep, latent space, errors."""

from mnist_ae import baselines, data, figures, io, paths, tracking
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def main(params: Params) -> None:
    """Render every figure and save it."""
    settings = params.figures
    with tracking.pipeline_run("figures", params):
        mnist = io.load_mnist(paths.MNIST)
        inputs = figures.FigureInputs(
            dense_autoencoder=io.load_model(paths.DENSE_AUTOENCODER),
            dense_encoder=io.load_model(paths.DENSE_ENCODER),
            conv_denoiser=io.load_model(paths.CONV_DENOISER),
            clean=data.to_unit_float(mnist["x_test"]),
            noisy=io.load_noisy(paths.NOISY)["x_test_noisy"],
            labels=mnist["y_test"],
            histories={
                "dense": io.read_history_csv(paths.DENSE_HISTORY),
                "conv": io.read_history_csv(paths.CONV_HISTORY),
            },
            evaluation=io.read_json(paths.EVALUATION),
            sweep=io.read_table_csv(paths.NOISE_SWEEP),
            sweep_baseline=baselines.best_on_tuning(io.read_json(paths.BASELINE_TUNING)),
            noise_factor=params.noise.noise_factor,
        )
        rendered = figures.pipeline_figures(
            inputs, settings.n_digits, settings.projection, settings.projection_samples, params.seed
        )
        for name, figure in rendered.items():
            io.save_figure(figure, paths.FIGURES[name], settings.dpi)


if __name__ == "__main__":
    run_stage("figures", main)
