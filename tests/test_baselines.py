"""Baselines on tiny data: PCA, classical denoisers, tuning, the noise sweep, the report."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_ae import analysis, baselines, metrics


def _digits(count: int, seed: int = 0) -> np.ndarray:
    """Smooth blob 'digits' in [0, 1]: structure a denoiser can recover."""
    rng = np.random.default_rng(seed)
    grid = np.mgrid[0:28, 0:28].astype(np.float64)
    images = []
    for _ in range(count):
        centre = rng.uniform(8, 20, size=2)
        width = rng.uniform(3, 6)
        blob = np.exp(-(((grid[0] - centre[0]) ** 2 + (grid[1] - centre[1]) ** 2) / width**2))
        images.append(blob)
    return np.stack(images).astype(np.float32)


def test_pca_with_full_rank_reconstructs_exactly() -> None:
    images = np.random.default_rng(1).random((20, 784))
    pca = baselines.fit_pca(images, 20)  # 20 samples: rank <= 20 after centring
    np.testing.assert_allclose(pca.reconstruct(images), images, atol=1e-10)


def test_pca_matches_the_svd_of_the_centred_data() -> None:
    images = _digits(200).reshape(200, -1)
    pca = baselines.fit_pca(images, 16)
    centred = images.astype(np.float64) - images.mean(axis=0, dtype=np.float64)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projector = vt[:16].T @ vt[:16]  # the same subspace, whatever the signs
    np.testing.assert_allclose(pca.components.T @ pca.components, projector, atol=1e-8)


def test_pca_components_are_orthonormal_and_fewer_reconstruct_worse() -> None:
    images = _digits(60).reshape(60, -1)
    full, small = baselines.fit_pca(images, 30), baselines.fit_pca(images, 2)
    np.testing.assert_allclose(full.components @ full.components.T, np.eye(30), atol=1e-10)
    assert metrics.mean_squared_error(
        images, small.reconstruct(images)
    ) > metrics.mean_squared_error(images, full.reconstruct(images))
    with pytest.raises(ValueError, match=r"PCA needs 1\.\.60 components"):
        baselines.fit_pca(images, 61)


@pytest.mark.parametrize(
    ("name", "strength"),
    [("gaussian", 1.0), ("median", 3), ("total_variation", 0.1), ("non_local_means", 0.2)],
)
def test_each_denoiser_helps_on_noise_and_barely_hurts_clean_input(
    name: str, strength: float
) -> None:
    clean = _digits(8)
    noisy = np.clip(clean + 0.3 * np.random.default_rng(2).standard_normal(clean.shape), 0, 1)
    denoised = baselines.denoise(name, noisy.astype(np.float32), strength)
    assert denoised.shape == clean.shape
    assert metrics.psnr(clean, denoised) > metrics.psnr(clean, noisy) + 2.0
    # On clean smooth input a denoiser may blur a little, never destroy: PSNR stays above 25 dB.
    assert metrics.psnr(clean, baselines.denoise(name, clean, strength)) > 25.0


def test_tuning_picks_the_best_strength_on_the_given_data() -> None:
    clean = _digits(6)
    noisy = np.clip(clean + 0.3 * np.random.default_rng(3).standard_normal(clean.shape), 0, 1)
    tuned = baselines.tune_denoisers(noisy, clean, {"gaussian": [0.1, 1.0, 8.0]})
    result = tuned["gaussian"]
    assert set(result.scores) == {0.1, 1.0, 8.0}
    assert result.strength == max(result.scores, key=result.scores.__getitem__) == 1.0
    assert result.as_dict()["psnr"] == result.scores[1.0]
    assert baselines.best_on_tuning({"a": {"psnr": 12.0}, "b": {"psnr": 14.5}}) == "b"


class _Identity:
    """A stand-in 'denoiser' model: returns its input."""

    def predict(self, images: np.ndarray, **_: object) -> np.ndarray:
        return images


def test_noise_sweep_has_one_row_per_level_and_noise_hurts_more_as_it_grows() -> None:
    clean = _digits(5)
    rows = analysis.noise_sweep(_Identity(), clean, [0.1, 0.5, 1.0], "gaussian", 1.0, 0, 8)
    assert [row["noise_factor"] for row in rows] == [0.1, 0.5, 1.0]
    assert set(rows[0]) == {
        "noise_factor",
        "conv_denoiser_psnr",
        "conv_denoiser_ssim",
        "baseline_psnr",
        "baseline_ssim",
        "noisy_input_psnr",
        "noisy_input_ssim",
    }
    psnrs = [row["noisy_input_psnr"] for row in rows]
    assert psnrs[0] > psnrs[1] > psnrs[2]
    # The identity 'denoiser' scores exactly the noisy input.
    assert rows[1]["conv_denoiser_psnr"] == pytest.approx(rows[1]["noisy_input_psnr"])


def test_per_digit_error_and_worst_reconstructed() -> None:
    clean = np.zeros((4, 28, 28))
    reconstructed = clean.copy()
    reconstructed[1] += 0.5  # label 1: error 0.25
    reconstructed[3] += 0.1  # label 0: error 0.01, averaged with image 0 (error 0)
    labels = np.array([0, 1, 2, 0])
    assert metrics.per_digit_error(clean, reconstructed, labels) == pytest.approx(
        {"0": 0.005, "1": 0.25, "2": 0.0}
    )
    assert analysis.worst_reconstructed(clean, reconstructed, 2).tolist() == [1, 3]


def test_projection_to_two_dimensions() -> None:
    codes = np.random.default_rng(4).random((50, 8))
    points = analysis.project_2d(codes, "pca", seed=0)
    assert points.shape == (50, 2)
    # The first axis carries the most variance.
    assert points[:, 0].var() >= points[:, 1].var()
    assert analysis.project_2d(codes, "tsne", seed=0).shape == (50, 2)
    with pytest.raises(ValueError, match="unknown projection"):
        analysis.project_2d(codes, "umap", seed=0)


@pytest.mark.parametrize(
    ("function", "chunk", "strength"),
    [
        (baselines.median_filter, baselines._median_chunk, 3),
        (baselines.total_variation, baselines._tv_chunk, 0.1),
        (baselines.non_local_means, baselines._nlm_chunk, 0.2),
    ],
)
def test_denoisers_split_across_cores_give_exactly_the_one_loop_result(
    function, chunk, strength, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = np.clip(
        _digits(12) + 0.3 * np.random.default_rng(4).standard_normal((12, 28, 28)), 0, 1
    ).astype(np.float32)
    monkeypatch.setattr(baselines, "_PARALLEL_MIN_IMAGES", 4)  # the process pool path
    np.testing.assert_array_equal(function(images, strength), chunk(images, strength))
