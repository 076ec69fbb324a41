"""Beyond headline metrics: a noise sweep, the worst reconstructions, the latent space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mnist_ae.baselines import denoise
from mnist_ae.metrics import psnr, ssim
from mnist_ae.noise import add_gaussian_noise


def noise_sweep(
    conv_denoiser: Any,
    clean: np.ndarray,
    noise_factors: Sequence[float],
    baseline: str,
    baseline_strength: float,
    seed: int,
    batch_size: int,
) -> list[dict[str, float]]:
    """PSNR/SSIM of the denoiser, a classical baseline and the noisy input at each noise level.

    Both the denoiser (trained) and the baseline (tuned) were fitted at one noise level; this
    shows how each generalises to others. One seeded noise stream per level.
    """
    rows = []
    for index, factor in enumerate(noise_factors):
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        noisy = add_gaussian_noise(clean, factor, rng)
        denoised = conv_denoiser.predict(
            noisy.reshape(len(noisy), 28, 28, 1), batch_size=batch_size, verbose=0
        ).reshape(clean.shape)
        classical = denoise(baseline, noisy, baseline_strength)
        rows.append(
            {
                "noise_factor": float(factor),
                "conv_denoiser_psnr": psnr(clean, denoised),
                "conv_denoiser_ssim": ssim(clean, denoised),
                "baseline_psnr": psnr(clean, classical),
                "baseline_ssim": ssim(clean, classical),
                "noisy_input_psnr": psnr(clean, noisy),
                "noisy_input_ssim": ssim(clean, noisy),
            }
        )
    return rows


def worst_reconstructed(clean: np.ndarray, reconstructed: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` images with the largest squared error, worst first (stable)."""
    errors = np.mean(
        (clean.reshape(len(clean), -1) - reconstructed.reshape(len(clean), -1)) ** 2, axis=1
    )
    return np.argsort(-errors, kind="stable")[:count]


def project_2d(codes: np.ndarray, method: str, seed: int) -> np.ndarray:
    """2-D projection of latent codes: 'pca' (exact) or 'tsne' (scikit-learn, seeded)."""
    codes = np.asarray(codes, dtype=np.float64)
    if method == "pca":
        centred = codes - codes.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:2].T
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, init="pca", random_state=seed).fit_transform(codes)
    raise ValueError(f"unknown projection '{method}', expected 'pca' or 'tsne'")
