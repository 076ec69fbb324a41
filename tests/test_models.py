"""Model shapes and parameter counts, as in the walkthrough."""

import numpy as np
import pytest

from mnist_ae import models


def test_dense_autoencoder_parameter_counts_and_shapes() -> None:
    autoencoder, encoder, decoder = models.build_dense_autoencoder(32)
    assert autoencoder.count_params() == 50_992
    assert encoder.count_params() == 25_120
    assert decoder.count_params() == 25_872
    images = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    codes = encoder.predict(images, verbose=0)
    assert codes.shape == (4, 32) and codes.min() >= 0.0  # ReLU code
    reconstructed = autoencoder.predict(images, verbose=0)
    assert reconstructed.shape == (4, 784)
    assert reconstructed.min() >= 0.0 and reconstructed.max() <= 1.0  # sigmoid output
    # The decoder shares the autoencoder's last layer: decoder(encoder(x)) == autoencoder(x).
    np.testing.assert_allclose(decoder.predict(codes, verbose=0), reconstructed, rtol=1e-5)


def test_encoding_dim_sets_the_code_size() -> None:
    autoencoder, encoder, _ = models.build_dense_autoencoder(64)
    assert encoder.output_shape == (None, 64)
    assert autoencoder.count_params() == 784 * 64 + 64 + 64 * 784 + 784


def test_conv_denoiser_parameter_count_and_shape() -> None:
    denoiser = models.build_conv_denoiser(32)
    assert denoiser.count_params() == 28_353
    assert denoiser.output_shape == (None, 28, 28, 1)
    assert models.build_conv_denoiser(16).count_params() == 160 + 3 * 2320 + 145


def test_optimizer_by_name_with_explicit_learning_rate() -> None:
    optimizer = models.make_optimizer("adadelta", 1.0)
    assert type(optimizer).__name__ == "Adadelta"
    assert float(optimizer.learning_rate) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        models.make_optimizer("adamax2", 0.1)
