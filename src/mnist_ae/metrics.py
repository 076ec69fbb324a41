"""Reconstruction-quality metrics on images in [0, 1], averaged over the test set."""

from __future__ import annotations

import numpy as np

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


def _window_sums(images: np.ndarray, window: int) -> np.ndarray:
    """Sums over every window x window square lying wholly inside each image:
    (n, h, w) -> (n, h - window + 1, w - window + 1), by adding shifted slices (exact order of
    a few additions, no running-sum drift)."""
    rows = images.shape[1] - window + 1
    cols = images.shape[2] - window + 1
    by_rows = images[:, :rows, :].copy()
    for shift in range(1, window):
        by_rows += images[:, shift : shift + rows, :]
    sums = by_rows[:, :, :cols].copy()
    for shift in range(1, window):
        sums += by_rows[:, :, shift : shift + cols]
    return sums


def ssim(clean: np.ndarray, candidate: np.ndarray) -> float:
    """Mean over images of SSIM, computed as scikit-image's `structural_similarity` (7x7
    uniform window, sample covariance, K1 0.01, K2 0.03, data range 1), for the whole stack at
    once, in float64 (equal to scikit-image for float64 input; for float32 input scikit-image
    computes in float32 and differs by ~1e-9).

    scikit-image filters the whole image (reflecting at the borders) and then averages only
    pixels at least 3 from the border, whose 7x7 windows lie wholly inside the image: so only
    those windows are computed here. Chunks of 512 images keep the temporaries in cache.
    """
    clean = np.asarray(clean)
    candidate = np.asarray(candidate)
    if clean.shape != candidate.shape:
        raise ValueError(f"shape mismatch: {clean.shape} vs {candidate.shape}")
    x_all = clean.reshape(len(clean), 28, 28)
    y_all = candidate.reshape(len(candidate), 28, 28)
    window = 7
    area = window**2
    covariance_norm = area / (area - 1)  # sample covariance, as scikit-image
    c1, c2 = 0.01**2, 0.03**2  # (K * data_range)^2 with data_range 1
    per_image = np.empty(len(x_all))
    for start in range(0, len(x_all), 512):
        x = x_all[start : start + 512].astype(np.float64)
        y = y_all[start : start + 512].astype(np.float64)
        mean_x = _window_sums(x, window) / area
        mean_y = _window_sums(y, window) / area
        var_x = covariance_norm * (_window_sums(x * x, window) / area - mean_x * mean_x)
        var_y = covariance_norm * (_window_sums(y * y, window) / area - mean_y * mean_y)
        cov_xy = covariance_norm * (_window_sums(x * y, window) / area - mean_x * mean_y)
        numerator = (2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
        denominator = (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
        per_image[start : start + len(x)] = (numerator / denominator).mean(axis=(1, 2))
    return float(per_image.mean())


def image_quality(clean: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """BCE, MSE, PSNR and SSIM of `candidate` against `clean`."""
    return {
        "bce": binary_crossentropy(clean, candidate),
        "mse": mean_squared_error(clean, candidate),
        "psnr": psnr(clean, candidate),
        "ssim": ssim(clean, candidate),
    }


def per_digit_error(
    clean: np.ndarray, reconstructed: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Mean per-pixel squared reconstruction error for each digit label present."""
    errors = np.mean(
        (clean.reshape(len(clean), -1) - reconstructed.reshape(len(clean), -1)) ** 2, axis=1
    )
    return {str(digit): float(errors[labels == digit].mean()) for digit in np.unique(labels)}
