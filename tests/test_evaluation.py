"""Test-set evaluation with stub models on constant images: every number worked out by hand.

A constant image c against a constant output o has per-pixel squared error (c - o)^2, so each
expected value below is a few lines of arithmetic, written out beside it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnist_ae import baselines, evaluation
from mnist_ae.baselines import PcaModel


class _StubModel:
    """A stand-in Keras model: records each input, returns outputs chosen by the test."""

    def __init__(self, outputs: np.ndarray) -> None:
        self.outputs = outputs
        self.calls: list[tuple[np.ndarray, int | None]] = []

    def predict(
        self, images: np.ndarray, batch_size: int | None = None, verbose: int = 0
    ) -> np.ndarray:
        """The chosen outputs, whatever the input."""
        self.calls.append((np.array(images), batch_size))
        return self.outputs


def _constant_images(values: list[float]) -> np.ndarray:
    """One 28x28 float64 image per value, every pixel equal to it."""
    return np.stack([np.full((28, 28), value) for value in values])


def _overshooting_pca(amount: float) -> PcaModel:
    """A one-component PCA that reconstructs a constant image c as c + amount on the top 14
    rows and c - amount on the bottom 14: outside [0, 1] where c is 0 or 1."""
    pattern = np.where(np.arange(784) < 392, amount, -amount)  # sums to 0: orthogonal to ones
    # The one (unit) component is ones / 28: it keeps c; the mean's pattern is added back.
    return PcaModel(mean=0.3 + pattern, components=np.full((1, 784), 1 / 28))


def _shift(images: np.ndarray, strength: float) -> np.ndarray:
    """A stand-in classical denoiser: every pixel plus `strength`."""
    return images + strength


def _toward_grey(images: np.ndarray, strength: float) -> np.ndarray:
    """A stand-in classical denoiser: every pixel moved `strength` of the way to 0.5."""
    return (1 - strength) * images + strength * 0.5


@pytest.fixture
def stub_denoisers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the stand-in denoisers; baselines.denoise still clips their output to [0, 1]."""
    monkeypatch.setitem(baselines.DENOISERS, "shift", _shift)
    monkeypatch.setitem(baselines.DENOISERS, "toward_grey", _toward_grey)


@pytest.mark.usefixtures("stub_denoisers")
def test_evaluate_scores_models_and_baselines_as_computed_by_hand() -> None:
    clean = _constant_images([0.0, 0.5, 1.0, 0.25])
    labels = np.array([3, 7, 3, 1], dtype=np.uint8)
    noisy = _constant_images([0.2, 0.8, 0.9, 0.05])
    # Dense AE errors 0.1, -0.3, 0.1 (1.1: clipped, 0), 0.05.
    dense = _StubModel(_constant_images([0.1, 0.2, 1.1, 0.3]).reshape(4, 784))
    conv = _StubModel(_constant_images([0.05, 0.45, 0.9, 0.3]).reshape(4, 28, 28, 1))
    # As the baselines stage records them: `shift` wins on the tuning slice, not on the test set.
    tuning = {
        "shift": {"strength": -0.1, "psnr": 18.0},
        "toward_grey": {"strength": 0.5, "psnr": 16.5},
    }
    assert baselines.best_on_tuning(tuning) == "shift"
    tuned = {name: record["strength"] for name, record in tuning.items()}

    results = evaluation.evaluate(
        dense, _overshooting_pca(0.2), conv, tuned, clean, noisy, labels, batch_size=3
    )

    ((dense_input, dense_batch),) = dense.calls
    np.testing.assert_array_equal(dense_input, clean.reshape(4, 784))
    ((conv_input, conv_batch),) = conv.calls
    np.testing.assert_array_equal(conv_input, noisy.reshape(4, 28, 28, 1))
    assert dense_batch == conv_batch == 3

    reconstruction = results["reconstruction"]
    assert set(reconstruction) == {"dense_autoencoder", "pca"}
    assert reconstruction["dense_autoencoder"] == pytest.approx(
        {
            # Clipped output 0.1, 0.2, 1.0, 0.3: mean of -log(0.9), -(0.5 log 0.2 + 0.5 log 0.8),
            # -log(1 - 1e-7), -(0.25 log 0.3 + 0.75 log 0.7).
            "bce": 0.39753768914187987,
            "mse": 0.028125,  # (0.01 + 0.09 + 0.01 + 0.0025) / 4
            "psnr": 19.119543704721593,  # (20 + 10.4576 + 20 + 26.0206) / 4 dB
            "mse_clipped": 0.025625,  # (0.01 + 0.09 + 0 + 0.0025) / 4
        },
        rel=1e-9,
    )
    assert reconstruction["pca"] == pytest.approx(
        {
            # Clipped halves: (0.2, 0), (0.7, 0.3), (1, 0.8), (0.45, 0.05).
            "bce": 0.4302928455866771,
            "mse": 0.04,  # every pixel off by 0.2
            "psnr": 13.979400086720375,  # 10 log10(1 / 0.04)
            "mse_clipped": 0.03,  # (0.02 + 0.04 + 0.02 + 0.04) / 4: half of c = 0, 1 is exact
        },
        rel=1e-9,
    )

    denoising = results["denoising"]
    assert set(denoising) == {"conv_denoiser", "noisy_input", "shift", "toward_grey"}
    # Conv errors 0.05, 0.05, 0.1, 0.05: (3 x 26.0206 + 20) / 4 dB.
    assert denoising["conv_denoiser"]["psnr"] == pytest.approx(24.51544993495972, rel=1e-9)
    # SSIM of constant images: (2 c o + 1e-4) / (c^2 + o^2 + 1e-4), averaged.
    assert denoising["conv_denoiser"]["ssim"] == pytest.approx(0.7527576601885008, rel=1e-9)
    # Noisy errors 0.2, 0.3, 0.1, 0.2: (13.9794 + 10.4576 + 20 + 13.9794) / 4 dB.
    assert denoising["noisy_input"]["psnr"] == pytest.approx(14.604093769761874, rel=1e-9)
    # Shifted by -0.1 and clipped: 0.1, 0.7, 0.8, 0 (not -0.05): errors 0.1, 0.2, 0.2, 0.25.
    assert denoising["shift"]["mse"] == pytest.approx(0.038125, rel=1e-9)
    assert denoising["shift"]["psnr"] == pytest.approx(15.0, rel=1e-9)  # (20 + 2 x 13.98 + 12.04)/4
    # Halfway to grey: 0.35, 0.65, 0.7, 0.275: errors 0.35, 0.15, 0.3, 0.025.
    assert denoising["toward_grey"]["psnr"] == pytest.approx(17.023897166011714, rel=1e-9)

    # Raw output errors by label; "3" averages images 0 and 2.
    assert results["per_digit_mse"]["dense_autoencoder"] == pytest.approx(
        {"1": 0.0025, "3": 0.01, "7": 0.09}, rel=1e-9
    )
    # Raw PCA output: 0.04 for every digit (clipped, digit 3 would be 0.02).
    assert results["per_digit_mse"]["pca"] == pytest.approx(
        {"1": 0.04, "3": 0.04, "7": 0.04}, rel=1e-9
    )

    goals = results["goals"]
    assert goals["best_classical"] == "toward_grey"  # best on the test set: 17.02 > 15.0 dB
    assert goals["dense_to_pca_mse_ratio"] == pytest.approx(0.703125, rel=1e-9)  # 0.028125/0.04
    assert goals["dense_to_clipped_pca_mse_ratio"] == pytest.approx(
        0.8541666666666666,
        rel=1e-9,  # 0.025625 / 0.03
    )
    assert goals["conv_psnr_margin_db"] == pytest.approx(7.491552768948001, rel=1e-9)
    assert results["tuned_strength"] == {"shift": -0.1, "toward_grey": 0.5}
    assert results["test_samples"] == 4
    assert json.loads(json.dumps(results)) == results  # evaluation.json holds it unchanged


@pytest.mark.usefixtures("stub_denoisers")
def test_best_classical_is_a_tuned_denoiser_even_when_the_noisy_input_beats_it() -> None:
    clean = _constant_images([0.2, 0.2])
    noisy = _constant_images([0.3, 0.1])  # errors 0.1, 0.1: 20 dB
    conv = _StubModel(_constant_images([0.5, 0.0]).reshape(2, 28, 28, 1))  # errors 0.3, 0.2
    dense = _StubModel(_constant_images([0.3, 0.2]).reshape(2, 784))
    results = evaluation.evaluate(
        dense,
        _overshooting_pca(0.2),
        conv,
        {"toward_grey": 0.5, "shift": 0.15},
        clean,
        noisy,
        np.array([5, 5]),
        batch_size=8,
    )
    psnr = {name: quality["psnr"] for name, quality in results["denoising"].items()}
    assert psnr == pytest.approx(
        {
            "noisy_input": 20.0,
            "shift": 19.030899869919438,  # 0.45, 0.25: (12.0412 + 26.0206) / 2
            "toward_grey": 16.989700043360187,  # 0.4, 0.3: (13.9794 + 20) / 2
            "conv_denoiser": 12.218487496163563,  # (10.4576 + 13.9794) / 2
        },
        rel=1e-9,
    )
    assert results["goals"]["best_classical"] == "shift"
    # The conv denoiser loses here: the margin is negative, 12.2185 - 19.0309 dB.
    assert results["goals"]["conv_psnr_margin_db"] == pytest.approx(-6.812412373755874, rel=1e-9)
    assert results["per_digit_mse"]["dense_autoencoder"] == pytest.approx({"5": 0.005}, rel=1e-9)
    assert results["test_samples"] == 2


def test_reconstruction_quality_clips_only_for_bce_and_mse_clipped() -> None:
    clean = np.array([[1.0, 0.0], [1.0, 0.0]])
    reconstructed = np.array([1.2, 0.1, 0.5, -0.1])  # any shape with as many pixels
    quality = evaluation.reconstruction_quality(clean, reconstructed)
    assert quality == pytest.approx(
        {
            # Clipped 1, 0.1, 0.5, 0 (BCE clips to 1e-7 from the ends):
            # (2 x -log(1 - 1e-7) + log(10 / 9) + log(2)) / 4.
            "bce": 0.19962697405444538,
            "mse": 0.0775,  # (0.04 + 0.01 + 0.25 + 0.01) / 4
            "psnr": 12.440583195105628,  # per image 0.025 and 0.13: (16.0206 + 8.8606) / 2 dB
            "mse_clipped": 0.065,  # (0 + 0.01 + 0.25 + 0) / 4
        },
        rel=1e-9,
    )
