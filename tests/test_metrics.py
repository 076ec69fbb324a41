"""Metric functions against hand-computed values."""

import math

import numpy as np
import pytest

from mnist_ae import metrics


def test_bce_of_half_is_log_two() -> None:
    clean = np.array([[1.0, 0.0, 1.0, 0.0]])
    assert metrics.binary_crossentropy(clean, np.full_like(clean, 0.5)) == pytest.approx(
        math.log(2)
    )


def test_bce_hand_computed_and_clipped() -> None:
    clean = np.array([[1.0, 0.0]])
    candidate = np.array([[0.9, 0.2]])
    expected = -(math.log(0.9) + math.log(0.8)) / 2
    assert metrics.binary_crossentropy(clean, candidate) == pytest.approx(expected)
    # A confidently wrong pixel is clipped at 1e-7, as Keras does: -log(1e-7) / 2.
    worst = metrics.binary_crossentropy(np.array([[1.0, 1.0]]), np.array([[0.0, 1.0]]))
    assert worst == pytest.approx(-math.log(1e-7) / 2, rel=1e-6)


def test_mse_and_psnr_hand_computed() -> None:
    clean = np.zeros((2, 4))
    candidate = np.array([[0.1, 0.1, 0.1, 0.1], [0.2, 0.0, 0.0, 0.0]])
    # Per image MSE 0.01 -> 20 dB.
    assert metrics.mean_squared_error(clean, candidate) == pytest.approx(0.01)
    assert metrics.psnr(clean, candidate) == pytest.approx(20.0)
    assert metrics.psnr(clean, clean) == pytest.approx(100.0)  # capped, not infinite


def test_ssim_of_identical_images_is_one_and_drops_with_noise() -> None:
    rng = np.random.default_rng(0)
    clean = rng.random((3, 28, 28))
    assert metrics.ssim(clean, clean) == pytest.approx(1.0)
    assert metrics.ssim(clean, np.clip(clean + rng.normal(0, 0.3, clean.shape), 0, 1)) < 0.9


def test_image_quality_keys_and_shape_mismatch() -> None:
    clean = np.zeros((2, 28, 28))
    assert set(metrics.image_quality(clean, clean + 0.1)) == {"bce", "mse", "psnr", "ssim"}
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.mean_squared_error(clean, np.zeros((2, 784 + 1)))


def test_batched_ssim_equals_scikit_image_image_by_image() -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(5)
    clean = rng.random((515, 28, 28))  # more than one chunk of 512
    candidate = np.clip(clean + rng.normal(0, 0.2, clean.shape), 0, 1)
    expected = np.mean(
        [structural_similarity(a, b, data_range=1.0) for a, b in zip(clean, candidate, strict=True)]
    )
    assert metrics.ssim(clean, candidate) == pytest.approx(expected, abs=1e-12)
