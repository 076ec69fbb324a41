"""DVC stage `baselines`: PCA at the AE's code size; classical denoisers tuned on train data."""

from mnist_ae import baselines, data, io, paths, tracking
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def main(params: Params) -> None:
    """Fit PCA on the training images; pick each denoiser's strength on a training slice."""
    settings = params.baselines
    with tracking.pipeline_run("baselines", params):
        clean = data.to_unit_float(io.load_mnist(paths.MNIST)["x_train"])
        noisy = io.load_noisy(paths.NOISY)["x_train_noisy"]
        if settings.tuning_samples >= len(clean):
            raise ValueError(
                f"baselines.tuning_samples ({settings.tuning_samples}) must be smaller than "
                f"the {len(clean)} training samples"
            )
        pca = baselines.fit_pca(clean, params.train_dense.encoding_dim)
        io.save_arrays(paths.PCA, {"mean": pca.mean, "components": pca.components})
        tail = slice(len(clean) - settings.tuning_samples, None)
        tuned = baselines.tune_denoisers(noisy[tail], clean[tail], settings.grids.model_dump())
        summary = {name: result.as_dict() for name, result in tuned.items()}
        io.write_json(paths.BASELINE_TUNING, summary)
        tracking.log_metrics({name: {"tuned_strength": t.strength} for name, t in tuned.items()})


if __name__ == "__main__":
    run_stage("baselines", main)
