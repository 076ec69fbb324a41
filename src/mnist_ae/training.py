"""Seeding and fitting: `model.fit` with callbacks, and a held-out validation slice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from mnist_ae.models import make_optimizer


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TF from one value and make TF ops deterministic.

    With this, the same params give byte-identical weights run after run on one machine,
    which keeps DVC's cache honest. (Different CPUs or a GPU may still give other bits.)
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@dataclass(frozen=True)
class FitResult:
    """Per-epoch history and a summary of one training run."""

    history: dict[str, list[float]]  # loss and val_loss, one value per epoch run
    epochs_run: int
    best_epoch: int  # 1-based epoch whose weights the model holds at the end
    best_val_loss: float

    def summary(self, model: keras.Model) -> dict[str, float | int]:
        """Headline numbers of this run, for the DVC metrics file and MLflow."""
        return {
            "parameters": int(model.count_params()),
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            # Training loss of the weights kept (the best epoch's, not the last one's).
            "best_epoch_loss": self.history["loss"][self.best_epoch - 1],
        }


def split_validation(
    inputs: np.ndarray, targets: np.ndarray, validation_samples: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out the LAST `validation_samples` training examples for validation."""
    if not 0 < validation_samples < len(inputs):
        raise ValueError(
            f"validation_samples must be between 1 and {len(inputs) - 1} "
            f"(the training set has {len(inputs)} samples), got {validation_samples}"
        )
    cut = len(inputs) - validation_samples
    return (inputs[:cut], targets[:cut]), (inputs[cut:], targets[cut:])


def fit(
    model: keras.Model,
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    optimizer: str,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    validation_samples: int,
    early_stopping_patience: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> FitResult:
    """Compile with binary cross-entropy and fit, validating on a held-out training slice.

    The test set is never used here: it is kept for the evaluate stage, so early stopping
    cannot select on it.
    """
    (fit_inputs, fit_targets), validation = split_validation(inputs, targets, validation_samples)
    if batch_size > len(fit_inputs):
        raise ValueError(
            f"batch_size {batch_size} is larger than the {len(fit_inputs)} training samples "
            "left after the validation split"
        )
    model.compile(optimizer=make_optimizer(optimizer, learning_rate), loss="binary_crossentropy")
    all_callbacks = list(callbacks)
    if early_stopping_patience is not None:
        all_callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=early_stopping_patience, restore_best_weights=True
            )
        )
    history = model.fit(
        fit_inputs,
        fit_targets,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        validation_data=validation,
        callbacks=all_callbacks,
        verbose=2,
    ).history
    curves = {name: [float(value) for value in history[name]] for name in ("loss", "val_loss")}
    val_losses = curves["val_loss"]
    if early_stopping_patience is None:
        best_epoch = len(val_losses)  # the weights are the last epoch's
    else:
        best_epoch = int(np.argmin(val_losses)) + 1
    return FitResult(
        history=curves,
        epochs_run=len(val_losses),
        best_epoch=best_epoch,
        best_val_loss=val_losses[best_epoch - 1],
    )


def flat_images(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) floats -> (N, 784), the dense autoencoder's input."""
    return images.reshape(len(images), -1)


def channel_images(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) floats -> (N, 28, 28, 1), the conv denoiser's input."""
    return images.reshape(len(images), 28, 28, 1)
