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

from mnist_ae import vae
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


def training_curves(
    histories: Mapping[str, Mapping[str, Sequence[float]]], loss: str = "binary cross-entropy"
) -> Figure:
    """Loss and val_loss per epoch, one panel per model; `loss` names what they measure."""
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
        axis.set_ylabel(loss)
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


def latent_scatter(
    points: np.ndarray, labels: np.ndarray, title: str, axis_labels: tuple[str, str] | None = None
) -> Figure:
    """2-D codes coloured by digit label. Without axis labels (a projection, whose axes mean
    nothing) the axes have no ticks."""
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    scatter = axis.scatter(
        points[:, 0], points[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5, vmax=9.5
    )
    figure.colorbar(scatter, ax=axis, ticks=range(10), label="digit")
    axis.set_title(title)
    if axis_labels is None:
        axis.set_xticks([])
        axis.set_yticks([])
    else:
        axis.set_xlabel(axis_labels[0])
        axis.set_ylabel(axis_labels[1])
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def digit_mosaic(
    images: np.ndarray,
    title: str,
    column_values: Sequence[float] | None = None,
    row_values: Sequence[float] | None = None,
    axis_labels: tuple[str, str] = ("", ""),
) -> Figure:
    """A rows x columns grid of 28x28 digits (`images` shaped (rows, columns, 28, 28)) drawn
    as one picture; with values, each column and row is ticked with the value it stands for
    (the latent coordinates of a manifold)."""
    rows, columns = images.shape[:2]
    tiled = images.transpose(0, 2, 1, 3).reshape(rows * 28, columns * 28)
    figure, axis = plt.subplots(figsize=(0.4 * columns + 1.2, 0.4 * rows + 1.0))
    axis.imshow(tiled, cmap="gray", vmin=0.0, vmax=1.0)
    centres = np.arange(max(rows, columns)) * 28 + 13.5
    if column_values is None:
        axis.set_xticks([])
    else:
        axis.set_xticks(centres[:columns], [f"{v:.2f}" for v in column_values], rotation=90)
    if row_values is None:
        axis.set_yticks([])
    else:
        axis.set_yticks(centres[:rows], [f"{v:.2f}" for v in row_values])
    axis.tick_params(labelsize=6)
    axis.set_xlabel(axis_labels[0])
    axis.set_ylabel(axis_labels[1])
    axis.set_title(title, fontsize=10)
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
    vae: VaeFigureInputs


@dataclass(frozen=True)
class VaeFigureInputs:
    """The two VAEs (params.yaml train_vae.models) and the test images as they see them."""

    manifold_encoder: Any  # the 2-D VAE: the manifold and the scatter of codes
    manifold_decoder: Any
    likelihood_encoder: Any  # the higher-dimensional VAE: prior samples, interpolations
    likelihood_decoder: Any
    images: np.ndarray  # test images, binarised once when they are trained binarised
    binarized: bool
    histories: Mapping[str, Mapping[str, Sequence[float]]]  # by configuration name


def pipeline_figures(
    inputs: FigureInputs,
    n_digits: int,
    projection: str,
    projection_samples: int,
    manifold_size: int,
    seed: int,
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
    drawn = {
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
            project_2d(codes, projection, seed),
            inputs.labels[sample],
            f"Dense encoder codes, {projection.upper()} to 2-D ({len(codes)} test digits)",
        ),
        "error_per_digit": per_digit_bars(evaluation["per_digit_mse"]),
        "worst_reconstructions": digit_grid(
            {"original": clean[worst], "dense AE": reconstructed[worst]},
            title=f"The {len(worst)} worst-reconstructed test digits (dense AE, by MSE)",
        ),
    }
    return drawn | vae_figures(
        inputs.vae,
        reconstructed,
        clean,
        inputs.labels,
        n_digits,
        manifold_size,
        projection_samples,
        seed,
    )


# Codes drawn from the prior for the figure of samples: an 8 x 8 grid.
PRIOR_SAMPLES = 8
# Rows of the interpolation figure: test digits 0 -> 1, 2 -> 3, ...
INTERPOLATED_PAIRS = 4


def vae_figures(
    inputs: VaeFigureInputs,
    dense_reconstructed: np.ndarray,
    clean: np.ndarray,
    labels: np.ndarray,
    n_digits: int,
    manifold_size: int,
    scatter_samples: int,
    seed: int,
) -> dict[str, Figure]:
    """The VAEs' figures: the 2-D manifold, the 2-D codes, prior samples, interpolations,
    reconstructions beside the dense autoencoder's (`dense_reconstructed`, of `clean`), and
    the training curves. Every image is a decoded mean (pixel probabilities)."""
    images = inputs.images
    shown = slice(0, n_digits)
    pairs = min(INTERPOLATED_PAIRS, len(images) // 2)
    scatter = slice(0, min(scatter_samples, len(images)))
    manifold_codes_of_tests = vae.posterior_means(
        inputs.manifold_encoder, images[: max(scatter.stop, n_digits)]
    )
    likelihood_codes = vae.posterior_means(
        inputs.likelihood_encoder, images[: max(n_digits, 2 * pairs)]
    )
    latent_dim = likelihood_codes.shape[1]
    values = vae.manifold_axis(manifold_size)
    manifold = vae.decoded_means(inputs.manifold_decoder, vae.manifold_codes(values))
    prior = vae.decoded_means(
        inputs.likelihood_decoder, vae.prior_codes(PRIOR_SAMPLES**2, latent_dim, seed)
    )
    steps = max(2, n_digits)
    lines = [
        vae.interpolate(likelihood_codes[2 * pair], likelihood_codes[2 * pair + 1], steps)
        for pair in range(pairs)
    ]  # decoded in one call: one traced function, whatever the number of pairs
    decoded_lines = np.split(
        vae.decoded_means(inputs.likelihood_decoder, np.concatenate(lines)), pairs
    )
    interpolations = {
        f"{labels[2 * pair]} → {labels[2 * pair + 1]}\n(test {2 * pair}, {2 * pair + 1})": line
        for pair, line in enumerate(decoded_lines)
    }
    input_name = "binarised" if inputs.binarized else "VAE input"
    rows = {"original": clean[shown]}
    if inputs.binarized:
        rows[input_name] = images[shown]
    rows["dense AE"] = dense_reconstructed[shown]
    rows["VAE 2-D"] = vae.decoded_means(inputs.manifold_decoder, manifold_codes_of_tests[shown])
    rows[f"VAE {latent_dim}-D"] = vae.decoded_means(
        inputs.likelihood_decoder, likelihood_codes[shown]
    )
    return {
        "vae_manifold": digit_mosaic(
            manifold.reshape(manifold_size, manifold_size, 28, 28),
            title=(
                f"2-D VAE: decoded digits on a {manifold_size}x{manifold_size} grid of codes "
                "(Gaussian quantiles 0.05-0.95)"
            ),
            column_values=values,
            row_values=values[::-1],
            axis_labels=("z1", "z2"),
        ),
        "vae_codes": latent_scatter(
            manifold_codes_of_tests[scatter],
            labels[scatter],
            f"2-D VAE codes (posterior means) of {len(labels[scatter])} test digits",
            axis_labels=("z1", "z2"),
        ),
        "vae_prior_samples": digit_mosaic(
            prior.reshape(PRIOR_SAMPLES, PRIOR_SAMPLES, 28, 28),
            title=f"{latent_dim}-D VAE: {PRIOR_SAMPLES**2} codes from the prior, decoded",
        ),
        "vae_interpolations": digit_grid(
            interpolations,
            title=f"{latent_dim}-D VAE: straight lines between the codes of two test digits",
        ),
        "vae_reconstructions": digit_grid(
            rows,
            title=(
                f"Reconstructions: dense AE of the grey digit; VAEs decode the posterior "
                f"mean of the {input_name.lower()} digit"
            ),
        ),
        "vae_training_curves": training_curves(
            {f"VAE {name}": history for name, history in inputs.histories.items()},
            loss="negative ELBO (nats per image)",
        ),
    }
