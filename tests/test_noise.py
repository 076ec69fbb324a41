"""Gaussian noise: statistics, clipping, seeding."""

import numpy as np
import pytest

from mnist_ae.noise import add_gaussian_noise, noisy_splits


def test_noise_has_the_requested_scale_before_clipping() -> None:
    images = np.full((200, 28, 28), 0.5, dtype=np.float32)
    noisy = add_gaussian_noise(images, 0.05, np.random.default_rng(0))  # 10 sigma from 0 and 1
    standardised = (noisy - 0.5) / 0.05
    assert abs(standardised.mean()) < 0.01
    assert abs(standardised.std() - 1.0) < 0.01


def test_noise_is_clipped_to_unit_interval() -> None:
    images = np.random.default_rng(1).random((100, 28, 28), dtype=np.float32)
    noisy = add_gaussian_noise(images, 0.5, np.random.default_rng(2))
    assert noisy.dtype == np.float32
    assert noisy.min() == 0.0 and noisy.max() == 1.0
    # For a black pixel, clip(0.5 * z) is 0 for half the draws.
    black = add_gaussian_noise(np.zeros((100, 784), np.float32), 0.5, np.random.default_rng(3))
    assert abs((black == 0).mean() - 0.5) < 0.01


def test_zero_factor_is_identity_and_negative_is_refused() -> None:
    images = np.random.default_rng(4).random((3, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(add_gaussian_noise(images, 0.0, np.random.default_rng(5)), images)
    with pytest.raises(ValueError, match="noise_factor must be >= 0"):
        add_gaussian_noise(images, -0.1, np.random.default_rng(5))


def test_noisy_splits_are_seeded_and_test_noise_ignores_train_size() -> None:
    rng = np.random.default_rng(6)
    train, test = rng.random((50, 28, 28), np.float32), rng.random((10, 28, 28), np.float32)
    first = noisy_splits(train, test, 0.5, seed=7)
    again = noisy_splits(train, test, 0.5, seed=7)
    other_seed = noisy_splits(train, test, 0.5, seed=8)
    fewer_train = noisy_splits(train[:20], test, 0.5, seed=7)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other_seed[1])
    np.testing.assert_array_equal(first[1], fewer_train[1])
