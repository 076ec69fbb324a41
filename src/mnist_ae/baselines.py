"""Non-neural baselines: PCA at the autoencoder's code size, and classical image denoisers."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
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
    """PCA with `components` components on flat training images, in float64.

    The principal axes are the top eigenvectors of the 784x784 scatter matrix, accumulated in
    chunks: the same axes as an SVD of the centred data (to rounding; a test checks), without
    holding a centred copy and an SVD workspace of 60,000 x 784 doubles (peak RSS of the
    baselines stage: 2.45 GB with the SVD).
    """
    flat = np.asarray(images).reshape(len(images), -1)
    if not 1 <= components <= min(flat.shape):
        raise ValueError(f"PCA needs 1..{min(flat.shape)} components, got {components}")
    mean = flat.mean(axis=0, dtype=np.float64)
    scatter = np.zeros((flat.shape[1], flat.shape[1]))
    for start in range(0, len(flat), 8192):
        centred = flat[start : start + 8192].astype(np.float64) - mean
        scatter += centred.T @ centred
    _, vectors = np.linalg.eigh(scatter)  # eigenvalues ascending
    return PcaModel(mean=mean, components=vectors[:, ::-1][:, :components].T.copy())


def gaussian_filter(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each 28x28 image (no blur across images)."""
    return ndimage.gaussian_filter(images, sigma=(0, sigma, sigma), mode="nearest")


def _median_chunk(images: np.ndarray, size: float) -> np.ndarray:
    size = int(size)
    return ndimage.median_filter(images, size=(1, size, size), mode="nearest")


def median_filter(images: np.ndarray, size: int) -> np.ndarray:
    """Median filter of each image with a size x size window (no window spans two images)."""
    return _per_image(_median_chunk, images, size)


def _tv_chunk(images: np.ndarray, weight: float) -> np.ndarray:
    return np.stack([denoise_tv_chambolle(image, weight=weight) for image in images])


def _nlm_chunk(images: np.ndarray, h: float) -> np.ndarray:
    return np.stack(
        [
            denoise_nl_means(image, h=h, patch_size=3, patch_distance=5, fast_mode=True)
            for image in images
        ]
    )


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Below this many images a process pool costs more (start-up ~1 s) than it saves.
_PARALLEL_MIN_IMAGES = 2_000


def _per_image(
    function: Callable[[np.ndarray, float], np.ndarray], images: np.ndarray, strength: float
) -> np.ndarray:
    """Apply a per-image filter to a stack, split across the CPU cores for large stacks.

    Images are independent, chunks keep their order: the result is identical to one loop.
    Workers are forked, not spawned: a spawned worker re-imports the stage script and with it
    TensorFlow (~6 s and ~0.5 GB each). The forked workers run only NumPy and scikit-image
    code, never TensorFlow, so the parent's TF threads cannot deadlock them. Only on Linux:
    macOS's system libraries are not safe to use in a child forked from a threaded process,
    so there the loop runs in this process.
    """
    workers = min(usable_cores(), 8) if sys.platform.startswith("linux") else 1
    if workers < 2 or len(images) < _PARALLEL_MIN_IMAGES:
        return function(images, strength)
    chunks = np.array_split(images, workers)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return np.concatenate(list(pool.map(function, chunks, [strength] * len(chunks))))


def total_variation(images: np.ndarray, weight: float) -> np.ndarray:
    """Total-variation denoising (Chambolle) of each image."""
    return _per_image(_tv_chunk, images, weight)


def non_local_means(images: np.ndarray, h: float) -> np.ndarray:
    """Non-local means of each image (3x3 patches, search distance 5, fast mode)."""
    return _per_image(_nlm_chunk, images, h)


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
