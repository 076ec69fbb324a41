"""The walkthrough's models, in the Keras 3 Functional API."""

from __future__ import annotations

import keras
from keras import layers

IMAGE_PIXELS = 28 * 28


def build_dense_autoencoder(
    encoding_dim: int = 32,
) -> tuple[keras.Model, keras.Model, keras.Model]:
    """Dense 784 -> encoding_dim (ReLU) -> 784 (sigmoid): (autoencoder, encoder, decoder).

    At encoding_dim 32: 50,992 parameters (25,120 encoder + 25,872 decoder). The encoder and
    decoder share their layers with the autoencoder, so training one trains the others.
    """
    image = keras.Input(shape=(IMAGE_PIXELS,), name="image")
    code = layers.Dense(encoding_dim, activation="relu", name="code")(image)
    decoder_layer = layers.Dense(IMAGE_PIXELS, activation="sigmoid", name="reconstruction")
    autoencoder = keras.Model(image, decoder_layer(code), name="dense_autoencoder")
    encoder = keras.Model(image, code, name="dense_encoder")
    code_input = keras.Input(shape=(encoding_dim,), name="code_input")
    decoder = keras.Model(code_input, decoder_layer(code_input), name="dense_decoder")
    return autoencoder, encoder, decoder


def build_conv_denoiser(filters: int = 32) -> keras.Model:
    """Conv(f, 3x3)+MaxPool twice, Conv+UpSampling twice, Conv(1, 3x3) sigmoid.

    At filters 32: 28,353 parameters, as in the walkthrough.
    """
    noisy = keras.Input(shape=(28, 28, 1), name="noisy")
    x = layers.Conv2D(filters, 3, activation="relu", padding="same")(noisy)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
    encoded = layers.MaxPooling2D(2, padding="same")(x)  # 7 x 7 x filters
    x = layers.Conv2D(filters, 3, activation="relu", padding="same")(encoded)
    x = layers.UpSampling2D(2)(x)
    x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
    x = layers.UpSampling2D(2)(x)
    clean = layers.Conv2D(1, 3, activation="sigmoid", padding="same", name="denoised")(x)
    return keras.Model(noisy, clean, name="conv_denoiser")


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """A Keras optimizer by name with an explicit learning rate.

    Explicit because Keras 3's Adadelta() defaults to learning_rate=0.001, with which the
    walkthrough's recipe does not train at all (loss stays at 0.694); Adam at 0.001 does.
    """
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
        "adadelta": keras.optimizers.Adadelta,
        "adagrad": keras.optimizers.Adagrad,
        "nadam": keras.optimizers.Nadam,
    }
    if name not in optimizers:
        raise ValueError(f"unknown optimizer '{name}', expected one of {sorted(optimizers)}")
    return optimizers[name](learning_rate=learning_rate)
