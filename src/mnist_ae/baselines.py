"""Non-neural baselines: PCA at the autoencoder's code size, and classical image denoisers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

from mnist_ae.metrics import psnr


@dataclass(frozen=True)
class PcaModel:
    """A fitted PCA: x ≈ mean + (x - mean) @ components.T @ components."""

    mean: np.ndarray  # (784,)
    components: np.ndarray  # (k, 784), orthonormal rows

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """Project flat images (N, 784) onto the k components and back."""
        centred = images.reshape(len(images), -1) - self.mean
        return (centred @ self.components.T) @ self.components + self.mean


def fit_pca(images: np.ndarray, components: int) -> PcaModel:
    """PCA with `components` components on flat training images, by exact SVD (float64)."""
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    if not 1 <= components <= min(flat.shape):
        raise ValueError(f"PCA needs 1..{min(flat.shape)} components, got {components}")
    mean = flat.mean(axis=0)
    # Economy SVD of the centred data; rows of vt are the principal axes, largest first.
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    return PcaModel(mean=mean, components=vt[:components])


def gaussian_filter(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each 28x28 image (no blur across images)."""
    return ndimage.gaussian_filter(images, sigma=(0, sigma, sigma), mode="nearest")


def median_filter(images: np.ndarray, size: int) -> np.ndarray:
    """Median filter of each image with a size x size window."""
    size = int(size)
    return ndimage.median_filter(images, size=(1, size, size), mode="nearest")


def total_variation(images: np.ndarray, weight: float) -> np.ndarray:
    """Total-variation denoising (Chambolle) of each image."""
    return np.stack([denoise_tv_chambolle(image, weight=weight) for image in images])


def non_local_means(images: np.ndarray, h: float) -> np.ndarray:
    """Non-local means of each image (3x3 patches, search distance 5, fast mode)."""
    return np.stack(
        [
            denoise_nl_means(image, h=h, patch_size=3, patch_distance=5, fast_mode=True)
            for image in images
        ]
    )


DENOISERS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "gaussian": gaussian_filter,
    "median": median_filter,
    "total_variation": total_variation,
    "non_local_means": non_local_means,
}


@dataclass(frozen=True)
class Tuned:
    """The strength chosen for one denoiser and the PSNR of every value tried."""

    strength: float
    scores: dict[float, float]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: the chosen strength, its PSNR, and the PSNR of every value tried."""
        return {
            "strength": self.strength,
            "psnr": self.scores[self.strength],
            "psnr_by_strength": {f"{value:g}": score for value, score in self.scores.items()},
        }


def tune_denoisers(
    noisy: np.ndarray, clean: np.ndarray, grids: Mapping[str, Sequence[float]]
) -> dict[str, Tuned]:
    """For each denoiser, the strength from its grid with the best mean PSNR on (noisy, clean).

    Call it with a slice of the TRAINING set: the test set must not choose the parameters.
    """
    tuned = {}
    for name, grid in grids.items():
        denoise = DENOISERS[name]
        scores = {float(value): psnr(clean, denoise(noisy, value)) for value in grid}
        tuned[name] = Tuned(strength=max(scores, key=scores.__getitem__), scores=scores)
    return tuned


def best_on_tuning(tuning: Mapping[str, Mapping[str, object]]) -> str:
    """The classical denoiser with the highest PSNR on the tuning slice (training data)."""
    return max(tuning, key=lambda name: float(tuning[name]["psnr"]))


def denoise(name: str, images: np.ndarray, strength: float) -> np.ndarray:
    """Apply the named classical denoiser."""
    return np.clip(DENOISERS[name](images, strength), 0.0, 1.0)
