"""Figures as matplotlib objects; saving them is io.save_figure's job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless and deterministic

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def digit_grid(rows: Mapping[str, np.ndarray], title: str | None = None) -> Figure:
    """One row of 28x28 digits per entry of `rows` (label -> images), columns aligned."""
    counts = {len(images) for images in rows.values()}
    if len(counts) != 1:
        raise ValueError(f"every row needs the same number of digits, got {sorted(counts)}")
    columns = counts.pop()
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(columns * 1.0, len(rows) * 1.15), squeeze=False
    )
    for row, (label, images) in enumerate(rows.items()):
        for column in range(columns):
            axis = axes[row][column]
            axis.imshow(images[column].reshape(28, 28), cmap="gray", vmin=0.0, vmax=1.0)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Loss and val_loss per epoch, one panel per model."""
    figure, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.5), squeeze=False)
    for axis, (name, history) in zip(axes[0], histories.items(), strict=True):
        epochs = history.get("epoch") or list(range(1, len(history["loss"]) + 1))
        axis.plot(epochs, history["loss"], marker="o", markersize=3, label="loss (train)")
        axis.plot(epochs, history["val_loss"], marker="o", markersize=3, label="val_loss")
        best = int(np.argmin(history["val_loss"]))
        axis.axvline(
            epochs[best], color="gray", linestyle=":", label=f"best epoch {epochs[best]:.0f}"
        )
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.set_ylabel("binary cross-entropy")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def pipeline_figures(
    dense_autoencoder: object,
    conv_denoiser: object,
    clean: np.ndarray,
    noisy: np.ndarray,
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    evaluation: Mapping[str, Mapping[str, float]],
) -> dict[str, Figure]:
    """All the pipeline's figures for the given test digits (float images in [0, 1])."""
    reconstructed = dense_autoencoder.predict(clean.reshape(len(clean), -1), verbose=0)
    denoised = conv_denoiser.predict(noisy.reshape(len(noisy), 28, 28, 1), verbose=0)
    dense, conv, baseline = (
        evaluation["dense_autoencoder"],
        evaluation["conv_denoiser"],
        evaluation["noisy_input"],
    )
    return {
        "dense_reconstructions": digit_grid(
            {"original": clean, "dense AE": reconstructed},
            title=f"Dense autoencoder (test BCE {dense['bce']:.4f}, MSE {dense['mse']:.4f})",
        ),
        "noisy_digits": digit_grid({"noisy": noisy}),
        "denoising": digit_grid(
            {"noisy": noisy, "denoised": denoised, "clean": clean},
            title=(
                f"Conv denoiser: test PSNR {conv['psnr']:.1f} dB, SSIM {conv['ssim']:.3f} "
                f"(noisy input {baseline['psnr']:.1f} dB, {baseline['ssim']:.3f})"
            ),
        ),
        "training_curves": training_curves(
            {"dense autoencoder": histories["dense"], "conv denoiser": histories["conv"]}
        ),
    }
