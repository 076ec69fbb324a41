"""DVC stage `noise_sweep`: the denoiser and the best classical one across noise levels."""

from mnist_ae import analysis, baselines, data, io, paths, tracking
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def main(params: Params) -> None:
    """PSNR/SSIM per noise factor, written as a DVC plot (x = noise_factor)."""
    settings = params.noise_sweep
    with tracking.pipeline_run("noise_sweep", params):
        tuning = io.read_json(paths.BASELINE_TUNING)
        best = baselines.best_on_tuning(tuning)
        rows = analysis.noise_sweep(
            io.load_model(paths.CONV_DENOISER),
            data.to_unit_float(io.load_mnist(paths.MNIST)["x_test"]),
            settings.noise_factors,
            best,
            tuning[best]["strength"],
            params.seed,
            settings.batch_size,
        )
        io.write_table_csv(paths.NOISE_SWEEP, rows)
        columns = {name: [row[name] for row in rows] for name in rows[0]}
        tracking.log_history(columns, "sweep", first_step=0)


if __name__ == "__main__":
    run_stage("noise_sweep", main)
