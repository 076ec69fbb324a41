"""Every file the pipeline passes between stages: where it lives, what it holds, how it is read
and written. dvc.yaml lists the same paths (tests/test_dvc_yaml.py checks both ways).

A stage never spells out a path or a dtype: it calls `artifacts.MNIST.read(workdir)` or
`artifacts.EVALUATION.write(workdir, results)`. Paths are relative to the stage's working
directory (the repository root, or a queued experiment's copy of it). Writers are atomic and
byte-deterministic (mnist_ae.io); readers check what they load and raise io.CorruptInputError
with one line naming the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_ae import io, provenance
from mnist_ae.config import VaeModels

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class Artifact:
    """One file, by its path relative to the workdir, and the stage that writes it."""

    path: str
    producer: str

    def at(self, workdir: Path | str) -> Path:
        """The file's location under `workdir`."""
        return Path(workdir) / self.path

    def source(self, workdir: Path | str) -> Path:
        """The file's location, to be read from (recorded: mnist_ae.provenance)."""
        provenance.artifact_read(self.path)
        return self.at(workdir)

    def target(self, workdir: Path | str) -> Path:
        """The file's location, to be written to (recorded: mnist_ae.provenance)."""
        provenance.artifact_written(self.path)
        return self.at(workdir)

    def sha256(self, workdir: Path | str) -> str:
        """The file's SHA-256, hex (as `sha256sum` prints it)."""
        digest = hashlib.sha256()
        with open(self.source(workdir), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


@dataclass(frozen=True)
class Arrays(Artifact):
    """Named arrays in an uncompressed .npz, each with a fixed dtype and shape (None: any)."""

    schema: Mapping[str, tuple[type, Shape]] = field(default_factory=dict)

    def read(self, workdir: Path | str) -> dict[str, np.ndarray]:
        """Load and check every array of the schema."""
        return io.load_arrays(self.source(workdir), self.schema)

    def write(self, workdir: Path | str, arrays: Mapping[str, np.ndarray]) -> None:
        """Save exactly the schema's arrays, in their declared dtypes."""
        if set(arrays) != set(self.schema):
            raise ValueError(f"{self.path}: expected arrays {sorted(self.schema)}")
        typed = {name: np.asarray(arrays[name], self.schema[name][0]) for name in arrays}
        io.save_arrays(self.target(workdir), typed)


@dataclass(frozen=True)
class Mnist(Arrays):
    """The prepare stage's MNIST: uint8 images and labels, as many labels as images."""

    def read(self, workdir: Path | str) -> dict[str, np.ndarray]:
        """Load and check the arrays, and that each split has one label per image."""
        arrays = super().read(workdir)
        for split in ("train", "test"):
            if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
                raise io.CorruptInputError(
                    f"{self.at(workdir)}: {split} images and labels differ in number"
                )
        return arrays


@dataclass(frozen=True)
class Json(Artifact):
    """A JSON object (DVC metrics files among them)."""

    def read(self, workdir: Path | str) -> dict[str, Any]:
        """The object."""
        return io.read_json(self.source(workdir))

    def write(self, workdir: Path | str, payload: Mapping[str, Any]) -> None:
        """Write it with sorted keys."""
        io.write_json(self.target(workdir), payload)


@dataclass(frozen=True)
class Table(Artifact):
    """A CSV of numbers with a header row (a DVC plot source)."""

    def read(self, workdir: Path | str) -> list[dict[str, float]]:
        """The rows."""
        return io.read_table_csv(self.source(workdir))

    def write(self, workdir: Path | str, rows: Sequence[Mapping[str, float]]) -> None:
        """Write the rows, columns in the first row's order."""
        io.write_table_csv(self.target(workdir), rows)

    def columns(self, workdir: Path | str) -> dict[str, list[float]]:
        """The table as one list per column."""
        rows = self.read(workdir)
        return {name: [row[name] for row in rows] for name in rows[0]}


@dataclass(frozen=True)
class History(Table):
    """A per-epoch training history: an `epoch` column (from 1), then each curve the model
    logged (loss and val_loss; the VAE also its ELBO's terms)."""

    def read_history(self, workdir: Path | str) -> dict[str, list[float]]:
        """The history as columns, the epoch column included."""
        return io.read_history_csv(self.source(workdir))

    def write_history(self, workdir: Path | str, history: Mapping[str, Sequence[float]]) -> None:
        """Write per-epoch columns, adding the epoch column."""
        io.write_history_csv(self.target(workdir), history)


@dataclass(frozen=True)
class KerasModel(Artifact):
    """A Keras model as a byte-deterministic .keras archive, loaded in safe mode."""

    def read(self, workdir: Path | str) -> Any:
        """The model (not compiled)."""
        return io.load_model(self.source(workdir))

    def write(self, workdir: Path | str, model: Any) -> None:
        """Save the model."""
        io.save_model(model, self.target(workdir))


@dataclass(frozen=True)
class Png(Artifact):
    """A matplotlib figure saved as PNG."""

    def write(self, workdir: Path | str, figure: Any, dpi: int) -> None:
        """Save the figure and close it."""
        io.save_figure(figure, self.target(workdir), dpi)

    def read_bytes(self, workdir: Path | str) -> bytes:
        """The PNG file's bytes."""
        return self.source(workdir).read_bytes()


@dataclass(frozen=True)
class Text(Artifact):
    """A UTF-8 text file."""

    def write(self, workdir: Path | str, text: str) -> None:
        """Write the text."""
        io.write_text(self.target(workdir), text)


# Written by check_params, always with the same bytes, and a dependency of every other stage:
# so `dvc repro <any stage>` runs the check first, and passing it re-runs nothing downstream.
PARAMS_CHECKED = Text("data/params_checked.txt", "check_params")
PARAMS_CHECKED_TEXT = "params.yaml passed validation (stages/check_params.py)\n"

IMAGES = (np.uint8, (None, 28, 28))
NOISY_IMAGES = (np.float32, (None, 28, 28))
LABELS = (np.uint8, (None,))

MNIST = Mnist(
    "data/mnist.npz",
    "prepare",
    {"x_train": IMAGES, "y_train": LABELS, "x_test": IMAGES, "y_test": LABELS},
)
DATA_SUMMARY = Json("metrics/data.json", "prepare")
NOISY = Arrays(
    "data/noisy.npz", "add_noise", {"x_train_noisy": NOISY_IMAGES, "x_test_noisy": NOISY_IMAGES}
)

DENSE_AUTOENCODER = KerasModel("models/dense_autoencoder.keras", "train_dense")
DENSE_ENCODER = KerasModel("models/dense_encoder.keras", "train_dense")
DENSE_DECODER = KerasModel("models/dense_decoder.keras", "train_dense")
DENSE_HISTORY = History("metrics/dense_history.csv", "train_dense")
DENSE_SUMMARY = Json("metrics/train_dense.json", "train_dense")

CONV_DENOISER = KerasModel("models/conv_denoiser.keras", "train_conv")
CONV_HISTORY = History("metrics/conv_history.csv", "train_conv")
CONV_SUMMARY = Json("metrics/train_conv.json", "train_conv")


@dataclass(frozen=True)
class VaeFiles:
    """What one VAE configuration's stages write (`train_vae@<name>`, `evaluate_vae@<name>`)."""

    encoder: KerasModel
    decoder: KerasModel
    history: History
    summary: Json
    evaluation: Json

    def all(self) -> tuple[Artifact, ...]:
        """Every file, in a fixed order."""
        return (self.encoder, self.decoder, self.history, self.summary, self.evaluation)


# The configurations of params.yaml's train_vae.models, one stage each.
VAE_NAMES = tuple(VaeModels.model_fields)
VAE = {
    name: VaeFiles(
        encoder=KerasModel(f"models/vae_{name}_encoder.keras", f"train_vae@{name}"),
        decoder=KerasModel(f"models/vae_{name}_decoder.keras", f"train_vae@{name}"),
        history=History(f"metrics/vae_{name}_history.csv", f"train_vae@{name}"),
        summary=Json(f"metrics/train_vae_{name}.json", f"train_vae@{name}"),
        evaluation=Json(f"metrics/vae_{name}.json", f"evaluate_vae@{name}"),
    )
    for name in VAE_NAMES
}


def vae_files(name: str) -> VaeFiles:
    """The files of VAE configuration `name`; a ValueError naming the configurations if none."""
    if name not in VAE:
        raise ValueError(f"unknown VAE configuration '{name}', expected one of {list(VAE)}")
    return VAE[name]


PCA = Arrays(
    "models/pca.npz",
    "baselines",
    {"mean": (np.float64, (784,)), "components": (np.float64, (None, 784))},
)
BASELINE_TUNING = Json("metrics/baseline_tuning.json", "baselines")

EVALUATION = Json("metrics/evaluation.json", "evaluate")
NOISE_SWEEP = Table("metrics/noise_sweep.csv", "noise_sweep")

FIGURES = {
    name: Png(f"figures/{name}.png", "figures")
    for name in (
        "dense_reconstructions",
        "noisy_digits",
        "denoising",
        "training_curves",
        "psnr_by_method",
        "denoisers_compared",
        "noise_sweep",
        "latent_space",
        "error_per_digit",
        "worst_reconstructions",
        "vae_manifold",
        "vae_codes",
        "vae_prior_samples",
        "vae_interpolations",
        "vae_reconstructions",
        "vae_training_curves",
    )
}

REPORT_MARKDOWN = Text("reports/report.md", "report")
REPORT_HTML = Text("reports/report.html", "report")

ALL: tuple[Artifact, ...] = (
    PARAMS_CHECKED,
    MNIST,
    DATA_SUMMARY,
    NOISY,
    DENSE_AUTOENCODER,
    DENSE_ENCODER,
    DENSE_DECODER,
    DENSE_HISTORY,
    DENSE_SUMMARY,
    CONV_DENOISER,
    CONV_HISTORY,
    CONV_SUMMARY,
    *(artifact for files in VAE.values() for artifact in files.all()),
    PCA,
    BASELINE_TUNING,
    EVALUATION,
    NOISE_SWEEP,
    *FIGURES.values(),
    REPORT_MARKDOWN,
    REPORT_HTML,
)


def produced_by(stage: str) -> list[Artifact]:
    """The artifacts a stage writes."""
    return [artifact for artifact in ALL if artifact.producer == stage]
