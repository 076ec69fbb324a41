"""The walkthrough's models, in the Keras 3 Functional API."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

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


def _upsampled_one_channel_conv(inputs: Any, kernel: Any, size: int) -> Any:
    """conv2d(nearest-upsample(inputs, size), kernel), 'same' padding, ONE output channel.

    Each tap of a one-channel kernel is a C-vector, so the convolution is one matmul at the
    input's own resolution, (pixels x C) @ (C x taps) — nearest upsampling commutes with it —
    then the taps are upsampled and summed from shifted views. The gradient is written out
    (shifted copies of the upstream gradient, a block sum, two matmuls), because autodiff of
    the shifted sum is slower than the whole native layer.
    """
    rows, cols, channels, _ = kernel.shape
    small_h, small_w = inputs.shape[1], inputs.shape[2]
    height, width = small_h * size, small_w * size
    taps = [(row, col) for row in range(rows) for col in range(cols)]
    padding = [[0, 0], [rows // 2, rows // 2], [cols // 2, cols // 2], [0, 0]]

    @ops.custom_gradient
    def conv(x: Any, per_tap: Any) -> Any:
        small = ops.matmul(x, per_tap)  # (batch, small_h, small_w, taps)
        tapped = ops.repeat(ops.repeat(small, size, axis=1), size, axis=2) if size > 1 else small
        padded = ops.pad(tapped, padding)
        shifted = [
            padded[:, r : r + height, c : c + width, k : k + 1] for k, (r, c) in enumerate(taps)
        ]
        out = ops.sum(ops.stack(shifted), axis=0)

        def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any]:
            if upstream is None:
                (upstream,) = args
            padded_up = ops.pad(upstream, padding)
            # d tapped[p, q, (r, c)] = upstream[p - r + rows // 2, q - c + cols // 2]
            d_tapped = ops.concatenate(
                [
                    padded_up[
                        :,
                        rows - 1 - r : rows - 1 - r + height,
                        cols - 1 - c : cols - 1 - c + width,
                        :,
                    ]
                    for r, c in taps
                ],
                axis=-1,
            )
            d_small = d_tapped
            if size > 1:  # the gradient of nearest upsampling: sum over each size x size block
                d_small = ops.average_pool(d_tapped, size, size, "valid", "channels_last")
                d_small = d_small * float(size * size)
            d_x = ops.matmul(d_small, ops.transpose(per_tap))
            d_per_tap = ops.matmul(
                ops.transpose(ops.reshape(x, (-1, channels))), ops.reshape(d_small, (-1, len(taps)))
            )
            return d_x, d_per_tap

        return out, grad

    # Reshaped outside the custom gradient (autodiff carries it back to the kernel variable).
    return conv(inputs, ops.transpose(ops.reshape(kernel, (len(taps), channels))))


@keras.saving.register_keras_serializable(package="mnist_ae")
class UpsampledConv2D(layers.Conv2D):
    """`Conv2D(1, k, padding="same")(UpSampling2D(size)(x))` as one layer, for training.

    The same function with the same weights as those two Keras layers (up to float32
    rounding), but the upsampled tensor (batch x 28 x 28 x filters in the denoiser) is never
    built, in either direction: a denoiser training step takes ~14 % less CPU time
    this way (bench/conv_layers_ab.py). One output channel, 'same' padding,
    stride 1, odd kernel, channels_last only; anything else is refused. The trained model is
    exported to the plain layers (export_conv_denoiser), so a saved model needs Keras alone.
    """

    def __init__(self, filters: int, kernel_size: Any, size: int = 2, **kwargs: Any) -> None:
        super().__init__(filters, kernel_size, **kwargs)
        self.size = int(size)
        rows, cols = self.kernel_size
        if not (
            filters == 1
            and self.size >= 1
            and self.padding == "same"
            and self.data_format == "channels_last"
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and rows % 2 == 1
            and cols % 2 == 1
        ):
            raise ValueError(
                "UpsampledConv2D needs filters=1, padding='same', stride 1, no dilation, "
                "an odd kernel size and channels_last"
            )

    def _upsampled(self, input_shape: Any) -> tuple[Any, ...]:
        batch, rows, cols, channels = input_shape
        grow = lambda n: None if n is None else n * self.size  # noqa: E731
        return (batch, grow(rows), grow(cols), channels)

    def build(self, input_shape: Any) -> None:
        super().build(self._upsampled(input_shape))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return super().compute_output_shape(self._upsampled(input_shape))

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        if None in tuple(inputs.shape[1:3]):
            raise ValueError("UpsampledConv2D needs a fixed image height and width")
        return _upsampled_one_channel_conv(inputs, kernel, self.size)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size}


def build_conv_denoiser(filters: int = 32, fuse_last_upsampling: bool = False) -> keras.Model:
    """Conv(f, 3x3)+MaxPool twice, Conv+UpSampling twice, Conv(1, 3x3) sigmoid.

    At filters 32: 28,353 parameters, as in the walkthrough. With `fuse_last_upsampling`, the
    last UpSampling2D + Conv2D pair is one UpsampledConv2D (faster to train on a CPU): the same
    function with the same weights, turned back into plain Keras layers by
    `export_conv_denoiser`. Layers are named, so both variants' weights line up by name too.
    """
    noisy = keras.Input(shape=(28, 28, 1), name="noisy")
    x = layers.Conv2D(filters, 3, activation="relu", padding="same", name="encode_1")(noisy)
    x = layers.MaxPooling2D(2, padding="same", name="pool_1")(x)
    x = layers.Conv2D(filters, 3, activation="relu", padding="same", name="encode_2")(x)
    encoded = layers.MaxPooling2D(2, padding="same", name="code")(x)  # 7 x 7 x filters
    x = layers.Conv2D(filters, 3, activation="relu", padding="same", name="decode_1")(encoded)
    x = layers.UpSampling2D(2, name="upsample_1")(x)
    x = layers.Conv2D(filters, 3, activation="relu", padding="same", name="decode_2")(x)
    output = {"activation": "sigmoid", "padding": "same", "name": "denoised"}
    if fuse_last_upsampling:
        clean = UpsampledConv2D(1, 3, size=2, **output)(x)
    else:
        x = layers.UpSampling2D(2, name="upsample_2")(x)
        clean = layers.Conv2D(1, 3, **output)(x)
    return keras.Model(noisy, clean, name="conv_denoiser")


def export_conv_denoiser(trained: keras.Model) -> keras.Model:
    """The plain-Keras denoiser (no UpsampledConv2D) holding `trained`'s weights, layer by
    layer name, and, if `trained` was compiled, its compile settings and optimizer state: what
    is saved, so loading it needs Keras alone, and training can go on from it."""
    plain = build_conv_denoiser(trained.get_layer("encode_1").filters)
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(trained.get_layer(layer.name).get_weights())
    compile_config = trained.get_compile_config() if trained.compiled else None
    if compile_config:
        plain.compile_from_config(compile_config)  # also builds the optimizer's slots
        # Same layers in the same order, so the slots (iterations, moments) line up.
        for target, source in zip(
            plain.optimizer.variables, trained.optimizer.variables, strict=True
        ):
            target.assign(source)
    return plain


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
