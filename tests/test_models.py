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


@pytest.mark.parametrize(
    ("image_shape", "size", "kernel_size"),
    [((7, 7, 5), 2, 3), ((4, 6, 1), 3, (5, 3)), ((9, 8, 4), 1, 3), ((14, 14, 32), 2, 3)],
)
def test_upsampled_conv_is_upsampling_then_conv_in_values_and_gradients(
    image_shape: tuple[int, int, int], size: int, kernel_size: int | tuple[int, int]
) -> None:
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(5)
    images = tf.constant(rng.normal(size=(3, *image_shape)).astype(np.float32))
    fused = models.UpsampledConv2D(1, kernel_size, size=size, padding="same")
    upsample = keras.layers.UpSampling2D(size)
    conv = keras.layers.Conv2D(1, kernel_size, padding="same")
    conv.build(upsample.compute_output_shape((None, *image_shape)))
    fused.build((None, *image_shape))
    weights = [rng.normal(scale=0.3, size=w.shape).astype(np.float32) for w in conv.get_weights()]
    conv.set_weights(weights)
    fused.set_weights(weights)
    results = []
    for layer, forward in ((conv, lambda x: conv(upsample(x))), (fused, fused)):
        with tf.GradientTape() as tape:
            tape.watch(images)
            out = forward(images)
            loss = tf.reduce_sum(out * tf.cos(out))  # not linear: gradients depend on out
        results.append([out, *tape.gradient(loss, [images, *layer.trainable_variables])])
    assert results[1][0].shape == (3, image_shape[0] * size, image_shape[1] * size, 1)
    for expected, actual in zip(results[0], results[1], strict=True):
        assert actual.shape == expected.shape
        scale = float(np.abs(expected).max())
        assert scale > 0.1  # not vacuous
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize(
    "options",
    [{"filters": 2}, {"padding": "valid"}, {"strides": 2}, {"kernel_size": 2}],
)
def test_upsampled_conv_refuses_what_it_does_not_compute(options: dict) -> None:
    settings = {"filters": 1, "kernel_size": 3, "padding": "same", **options}
    with pytest.raises(ValueError, match="UpsampledConv2D needs"):
        models.UpsampledConv2D(**settings)


def test_fused_denoiser_exports_to_plain_keras_with_the_same_function(tmp_path) -> None:
    import keras

    trained = models.build_conv_denoiser(8, fuse_last_upsampling=True)
    assert isinstance(trained.get_layer("denoised"), models.UpsampledConv2D)
    assert trained.count_params() == models.build_conv_denoiser(8).count_params()
    rng = np.random.default_rng(3)
    trained.set_weights([rng.normal(scale=0.3, size=w.shape) for w in trained.get_weights()])
    exported = models.export_conv_denoiser(trained)
    assert {type(layer) for layer in exported.layers} == {
        keras.layers.InputLayer,
        keras.layers.Conv2D,
        keras.layers.MaxPooling2D,
        keras.layers.UpSampling2D,
    }
    images = rng.random((4, 28, 28, 1), dtype=np.float32)
    expected = trained.predict(images, verbose=0)
    assert expected.std() > 0.01  # the weights make a non-constant image
    np.testing.assert_allclose(exported.predict(images, verbose=0), expected, atol=1e-5)
    # What is saved loads with Keras alone (no custom class in the archive).
    exported.save(tmp_path / "denoiser.keras")
    loaded = keras.saving.load_model(tmp_path / "denoiser.keras", compile=False, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, atol=1e-5)
    # The training model round-trips too (registered layer, `size` in its config).
    trained.save(tmp_path / "trained.keras")
    reloaded = keras.saving.load_model(tmp_path / "trained.keras", compile=False)
    assert reloaded.get_layer("denoised").size == 2
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, atol=1e-6)


def test_fused_and_plain_denoisers_train_to_the_same_weights_and_export_keeps_adam() -> None:
    """The custom gradient inside a compiled (graph-mode) train step, as `fit` runs it, and the
    export of a trained model: its compile settings and optimizer state come along."""
    import keras

    rng = np.random.default_rng(11)
    images = rng.random((16, 28, 28, 1), dtype=np.float32)
    plain, fused = models.build_conv_denoiser(4), models.build_conv_denoiser(4, True)
    initial = plain.get_weights()
    fused.set_weights(initial)
    for model in (plain, fused):
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
        for _ in range(3):
            model.train_on_batch(images, images)
    for expected, actual in zip(plain.get_weights(), fused.get_weights(), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(plain.get_weights()[-2], initial[-2])  # the last kernel did train

    exported = models.export_conv_denoiser(fused)
    assert exported.get_compile_config()["loss"] == "binary_crossentropy"
    assert int(exported.optimizer.iterations) == 3
    for target, source in zip(exported.optimizer.variables, fused.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(target), np.asarray(source))
