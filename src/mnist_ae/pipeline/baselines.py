"""Stage `baselines`: PCA at the AE's code size; classical denoisers tuned on training data."""

from __future__ import annotations

from pathlib import Path

from mnist_ae import artifacts, baselines, data
from mnist_ae.config import Params
from mnist_ae.tracking import NO_TRACKING, Tracker


def run(params: Params, workdir: Path, tracker: Tracker = NO_TRACKING) -> None:
    """Fit PCA on the training images; pick each denoiser's strength on a training slice."""
    settings = params.baselines
    clean = data.to_unit_float(artifacts.MNIST.read(workdir)["x_train"])
    noisy = artifacts.NOISY.read(workdir)["x_train_noisy"]
    if settings.tuning_samples >= len(clean):
        raise ValueError(
            f"baselines.tuning_samples ({settings.tuning_samples}) must be smaller than "
            f"the {len(clean)} training samples"
        )
    pca = baselines.fit_pca(clean, params.train_dense.encoding_dim)
    artifacts.PCA.write(workdir, {"mean": pca.mean, "components": pca.components})
    tail = slice(len(clean) - settings.tuning_samples, None)
    tuned = baselines.tune_denoisers(noisy[tail], clean[tail], settings.grids.model_dump())
    artifacts.BASELINE_TUNING.write(workdir, {name: t.as_dict() for name, t in tuned.items()})
    tracker.log_stage("baselines")
