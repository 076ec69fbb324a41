"""The stages' library functions, in-process (as the benchmark calls them): what a training
stage writes, and that its checkpoint goes only after every output is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from mnist_ae import artifacts, training
from mnist_ae.config import Params, RecordedParams, load_params
from mnist_ae.pipeline import train_dense

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = Path(training.CHECKPOINT_DIR) / "train_dense.npz"


def _params(**train_dense_changes: Any) -> Params:
    params = load_params(REPO / "params.yaml")
    settings = {"epochs": 2, "batch_size": 16, "validation_samples": 16, **train_dense_changes}
    changed = params.train_dense.model_copy(update=settings)
    return params.model_copy(update={"train_dense": changed})


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A workdir holding a tiny prepared MNIST (64 train, 8 test images)."""
    rng = np.random.default_rng(0)
    artifacts.MNIST.write(
        tmp_path,
        {
            "x_train": rng.integers(0, 256, (64, 28, 28)),
            "y_train": np.arange(64) % 10,
            "x_test": rng.integers(0, 256, (8, 28, 28)),
            "y_test": np.arange(8) % 10,
        },
    )
    return tmp_path


class _Epochs(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.ended: list[int] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.ended.append(epoch + 1)


def test_train_dense_writes_every_output_and_then_drops_its_checkpoint(workdir: Path) -> None:
    epochs = _Epochs()
    result = train_dense.run(_params(), workdir, callbacks=[epochs])
    assert epochs.ended == [1, 2] and result.epochs_run == 2
    for artifact in artifacts.produced_by("train_dense"):
        assert artifact.at(workdir).stat().st_size > 0, artifact.path
    summary = artifacts.DENSE_SUMMARY.read(workdir)
    assert summary["parameters"] == 50_992 and summary["epochs_run"] == 2
    history = artifacts.DENSE_HISTORY.read_history(workdir)
    assert history["epoch"] == [1.0, 2.0] and history["val_loss"] == result.history["val_loss"]
    encoder = artifacts.DENSE_ENCODER.read(workdir)
    assert encoder.output_shape == (None, 32)
    assert not (workdir / CHECKPOINT).exists()


def test_a_stage_killed_while_saving_keeps_its_checkpoint(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts.Json, "write", killed)  # the summary, after the models
    with pytest.raises(KeyboardInterrupt):
        train_dense.run(_params(), workdir)
    assert artifacts.DENSE_AUTOENCODER.at(workdir).exists()
    assert (workdir / CHECKPOINT).exists()  # the next run resumes instead of retraining
    monkeypatch.undo()
    result = train_dense.run(_params(), workdir)
    assert result.resumed_epochs == 2
    assert not (workdir / CHECKPOINT).exists()


def test_what_a_stage_reads_and_writes_is_recorded(workdir: Path) -> None:
    from mnist_ae import provenance

    provenance.reset()
    train_dense.run(RecordedParams(_params()), workdir)
    recorded = provenance.recorded()
    # The whole section (through fit_options / model_dump), the strategy the model is built
    # under, the key that shapes the model and the split size that the summary's dataset
    # description records.
    assert recorded["params"] == [
        "seed",
        "train_dense",
        "train_dense.distribute",
        "train_dense.encoding_dim",
        "train_dense.validation_samples",
    ]
    assert set(recorded["read"]) - set(recorded["written"]) == {artifacts.MNIST.path}
    assert set(recorded["written"]) == {a.path for a in artifacts.produced_by("train_dense")}
