"""Figures as matplotlib objects; saving them is io.save_figure's job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless and deterministic

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from mnist_ae.analysis import project_2d, worst_reconstructed
from mnist_ae.baselines import denoise


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


def psnr_bars(evaluation: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Figure:
    """PSNR per method: reconstruction (dense AE vs PCA) and denoising (all denoisers)."""
    figure, axes = plt.subplots(
        1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 2.6]}, squeeze=False
    )
    for axis, group, title in zip(
        axes[0], ("reconstruction", "denoising"), ("Reconstruction", "Denoising"), strict=True
    ):
        methods = sorted(evaluation[group].items(), key=lambda item: item[1]["psnr"])
        names = [name.replace("_", "\n") for name, _ in methods]
        values = [metrics["psnr"] for _, metrics in methods]
        bars = axis.bar(names, values, color="tab:blue")
        bars[-1].set_color("tab:green")
        axis.bar_label(bars, fmt="%.1f", fontsize=8)
        axis.set_title(f"{title}: test PSNR (dB)")
        axis.set_ylabel("PSNR (dB), higher is better")
        axis.tick_params(axis="x", labelsize=8)
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def sweep_curves(rows: Sequence[Mapping[str, float]], trained_at: float, baseline: str) -> Figure:
    """PSNR and SSIM against noise factor for the denoiser, the baseline and the noisy input."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False)
    factors = [row["noise_factor"] for row in rows]
    series = {
        "conv denoiser": "conv_denoiser",
        f"{baseline.replace('_', ' ')} (tuned)": "baseline",
        "noisy input": "noisy_input",
    }
    for axis, metric in zip(axes[0], ("psnr", "ssim"), strict=True):
        for label, prefix in series.items():
            axis.plot(factors, [row[f"{prefix}_{metric}"] for row in rows], marker="o", label=label)
        axis.axvline(trained_at, color="gray", linestyle=":", label=f"trained at {trained_at:g}")
        axis.set_xlabel("noise factor")
        axis.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Generalisation across noise levels (test set)", fontsize=10)
    figure.tight_layout()
    return figure


def latent_scatter(points: np.ndarray, labels: np.ndarray, method: str) -> Figure:
    """2-D projection of the dense encoder's codes, coloured by digit label."""
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    scatter = axis.scatter(
        points[:, 0], points[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5, vmax=9.5
    )
    figure.colorbar(scatter, ax=axis, ticks=range(10), label="digit")
    axis.set_title(f"Dense encoder codes, {method.upper()} to 2-D ({len(points)} test digits)")
    axis.set_xticks([])
    axis.set_yticks([])
    figure.tight_layout()
    return figure


def per_digit_bars(per_digit: Mapping[str, Mapping[str, float]]) -> Figure:
    """Mean reconstruction MSE per digit, one bar group per method."""
    figure, axis = plt.subplots(figsize=(8, 3.5))
    methods = list(per_digit)
    digits = sorted(per_digit[methods[0]], key=int)
    width = 0.8 / len(methods)
    for offset, method in enumerate(methods):
        positions = np.arange(len(digits)) + (offset - (len(methods) - 1) / 2) * width
        axis.bar(
            positions, [per_digit[method][d] for d in digits], width, label=method.replace("_", " ")
        )
    axis.set_xticks(range(len(digits)), digits)
    axis.set_xlabel("digit")
    axis.set_ylabel("mean squared error")
    axis.set_title("Reconstruction error per digit (test set)")
    axis.legend()
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


@dataclass(frozen=True)
class FigureInputs:
    """Everything the figures are drawn from (float test images in [0, 1])."""

    dense_autoencoder: Any
    dense_encoder: Any
    conv_denoiser: Any
    clean: np.ndarray
    noisy: np.ndarray
    labels: np.ndarray
    histories: Mapping[str, Mapping[str, Sequence[float]]]
    evaluation: Mapping[str, Any]
    sweep: Sequence[Mapping[str, float]]
    sweep_baseline: str
    noise_factor: float


def pipeline_figures(
    inputs: FigureInputs, n_digits: int, projection: str, projection_samples: int, seed: int
) -> dict[str, Figure]:
    """All the pipeline's figures, by name (the keys of mnist_ae.artifacts.FIGURES)."""
    clean, noisy = inputs.clean, inputs.noisy
    shown_clean, shown_noisy = clean[:n_digits], noisy[:n_digits]
    reconstructed = inputs.dense_autoencoder.predict(
        clean.reshape(len(clean), -1), batch_size=1024, verbose=0
    ).reshape(clean.shape)
    denoised = inputs.conv_denoiser.predict(
        shown_noisy.reshape(len(shown_noisy), 28, 28, 1), verbose=0
    ).reshape(shown_clean.shape)
    evaluation = inputs.evaluation
    dense = evaluation["reconstruction"]["dense_autoencoder"]
    pca = evaluation["reconstruction"]["pca"]
    conv = evaluation["denoising"]["conv_denoiser"]
    baseline = evaluation["denoising"]["noisy_input"]
    by_method = {"noisy": shown_noisy}
    for name, strength in evaluation["tuned_strength"].items():
        by_method[name.replace("_", " ")] = denoise(name, shown_noisy, strength)
    by_method["conv denoiser"] = denoised
    by_method["clean"] = shown_clean
    worst = worst_reconstructed(clean, reconstructed, n_digits)
    sample = slice(0, min(projection_samples, len(clean)))
    codes = inputs.dense_encoder.predict(
        clean[sample].reshape(-1, 28 * 28), batch_size=1024, verbose=0
    )
    return {
        "dense_reconstructions": digit_grid(
            {"original": shown_clean, "dense AE": reconstructed[:n_digits]},
            title=(
                f"Dense autoencoder: test MSE {dense['mse']:.4f} "
                f"(PCA at the same code size: {pca['mse']:.4f})"
            ),
        ),
        "noisy_digits": digit_grid({"noisy": shown_noisy}),
        "denoising": digit_grid(
            {"noisy": shown_noisy, "denoised": denoised, "clean": shown_clean},
            title=(
                f"Conv denoiser: test PSNR {conv['psnr']:.1f} dB, SSIM {conv['ssim']:.3f} "
                f"(noisy input {baseline['psnr']:.1f} dB, {baseline['ssim']:.3f})"
            ),
        ),
        "training_curves": training_curves(
            {
                "dense autoencoder": inputs.histories["dense"],
                "conv denoiser": inputs.histories["conv"],
            }
        ),
        "psnr_by_method": psnr_bars(evaluation),
        "denoisers_compared": digit_grid(
            by_method, title="The same noisy test digits, denoised by every method"
        ),
        "noise_sweep": sweep_curves(inputs.sweep, inputs.noise_factor, inputs.sweep_baseline),
        "latent_space": latent_scatter(
            project_2d(codes, projection, seed), inputs.labels[sample], projection
        ),
        "error_per_digit": per_digit_bars(evaluation["per_digit_mse"]),
        "worst_reconstructions": digit_grid(
            {"original": clean[worst], "dense AE": reconstructed[worst]},
            title=f"The {len(worst)} worst-reconstructed test digits (dense AE, by MSE)",
        ),
    }
