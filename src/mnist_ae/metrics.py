"""Reconstruction-quality metrics on images in [0, 1], averaged over the test set."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

# Keras clips predictions to [eps, 1 - eps] in binary cross-entropy; so do we, which also keeps
# the BCE of the noisy input (exact 0s and 1s after clipping) finite.
EPSILON = 1e-7
# PSNR of a perfect reconstruction is infinite; a floor on the MSE caps it at 100 dB.
MSE_FLOOR = 1e-10


def _pair(clean: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clean = np.asarray(clean, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if clean.shape != candidate.shape:
        raise ValueError(f"shape mismatch: {clean.shape} vs {candidate.shape}")
    return clean.reshape(len(clean), -1), candidate.reshape(len(candidate), -1)


def binary_crossentropy(clean: np.ndarray, candidate: np.ndarray) -> float:
    """Mean per-pixel binary cross-entropy, as Keras computes it."""
    target, prediction = _pair(clean, candidate)
    prediction = np.clip(prediction, EPSILON, 1.0 - EPSILON)
    loss = -(target * np.log(prediction) + (1.0 - target) * np.log(1.0 - prediction))
    return float(loss.mean())


def mean_squared_error(clean: np.ndarray, candidate: np.ndarray) -> float:
    """Mean per-pixel squared error."""
    target, prediction = _pair(clean, candidate)
    return float(np.mean((target - prediction) ** 2))


def psnr(clean: np.ndarray, candidate: np.ndarray) -> float:
    """Mean over images of the per-image PSNR in dB, for data range 1."""
    target, prediction = _pair(clean, candidate)
    per_image_mse = np.maximum(np.mean((target - prediction) ** 2, axis=1), MSE_FLOOR)
    return float(np.mean(10.0 * np.log10(1.0 / per_image_mse)))


def ssim(clean: np.ndarray, candidate: np.ndarray) -> float:
    """Mean over images of scikit-image's SSIM (7x7 window, data range 1)."""
    clean = np.asarray(clean, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if clean.shape != candidate.shape:
        raise ValueError(f"shape mismatch: {clean.shape} vs {candidate.shape}")
    side = 28
    clean = clean.reshape(len(clean), side, side)
    candidate = candidate.reshape(len(candidate), side, side)
    scores = [
        structural_similarity(target, image, data_range=1.0)
        for target, image in zip(clean, candidate, strict=True)
    ]
    return float(np.mean(scores))


def image_quality(clean: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """BCE, MSE, PSNR and SSIM of `candidate` against `clean`."""
    return {
        "bce": binary_crossentropy(clean, candidate),
        "mse": mean_squared_error(clean, candidate),
        "psnr": psnr(clean, candidate),
        "ssim": ssim(clean, candidate),
    }
