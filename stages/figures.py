"""DVC stage `figures`: PNGs of digits, reconstructions, denoising and training curves."""

from mnist_ae import data, figures, io, paths, tracking
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def main(params: Params) -> None:
    """Render every figure, save it, and complete this run's MLflow row."""
    count = params.figures.n_digits
    with tracking.pipeline_run("figures", params) as client:
        histories = {
            "dense": io.read_history_csv(paths.DENSE_HISTORY),
            "conv": io.read_history_csv(paths.CONV_HISTORY),
        }
        results = io.read_json(paths.EVALUATION)
        rendered = figures.pipeline_figures(
            io.load_model(paths.DENSE_AUTOENCODER),
            io.load_model(paths.CONV_DENOISER),
            data.to_unit_float(io.load_mnist(paths.MNIST)["x_test"][:count]),
            io.load_noisy(paths.NOISY)["x_test_noisy"][:count],
            histories,
            results,
        )
        for name, figure in rendered.items():
            io.save_figure(figure, paths.FIGURES[name], params.figures.dpi)
        # Stages DVC skipped logged nothing in this run: fill in their metrics and curves.
        tracking.backfill(client, results, histories)
        tracking.log_artifacts([*paths.FIGURES.values()], "figures")
        tracking.log_artifacts([paths.EVALUATION])


if __name__ == "__main__":
    run_stage("figures", main)
