"""The variational autoencoder the walkthrough promises, and how the VAE literature scores one.

Model (Kingma & Welling 2014; the IWAE paper's one-stochastic-layer VAE at 784-200-200-50):
an MLP encoder gives a diagonal Gaussian posterior q(z|x) = N(mean, exp(log_var)); an MLP
decoder gives Bernoulli logits of p(x|z); the prior is N(0, I). Encoder and decoder are plain
functional models (they save and load in safe mode, no custom objects); `VariationalAutoencoder`
only joins them for training, with the reparameterised sample and the dynamic binarisation
drawn from one `keras.random.SeedGenerator`, so training is byte-reproducible and its random
state is part of the checkpoint.

Every number is in nats per image: the reconstruction term is the Bernoulli negative
log-likelihood summed over the 784 pixels, the KL term is summed over the latent dimensions.
On binary images these are log-probabilities; on grey images (`binarize: none`) the
"reconstruction" is a cross-entropy, not a log-likelihood, and the NLL is not comparable with
published numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
from scipy.special import expit

from mnist_ae.models import IMAGE_PIXELS

LOG_2PI = math.log(2.0 * math.pi)
# A latent dimension is "active" when its posterior mean varies over the test images by more
# than this (Burda et al. 2015, section 5.2).
ACTIVE_UNIT_THRESHOLD = 0.01


def build_vae_encoder(hidden: Sequence[int], activation: str, latent_dim: int) -> keras.Model:
    """784 -> hidden... -> (mean, log_var), each latent_dim wide. 784-200-200-50 (tanh):
    217,300 parameters."""
    image = keras.Input(shape=(IMAGE_PIXELS,), name="image")
    x = image
    for index, units in enumerate(hidden, start=1):
        x = layers.Dense(units, activation=activation, name=f"encode_{index}")(x)
    mean = layers.Dense(latent_dim, name="mean")(x)
    log_var = layers.Dense(latent_dim, name="log_var")(x)
    return keras.Model(image, [mean, log_var], name="vae_encoder")


def build_vae_decoder(hidden: Sequence[int], activation: str, latent_dim: int) -> keras.Model:
    """latent_dim -> hidden (reversed)... -> 784 Bernoulli logits (linear: sigmoid gives the
    pixel probabilities). 50-200-200-784 (tanh): 207,984 parameters."""
    code = keras.Input(shape=(latent_dim,), name="code")
    x = code
    for index, units in enumerate(reversed(hidden), start=1):
        x = layers.Dense(units, activation=activation, name=f"decode_{index}")(x)
    logits = layers.Dense(IMAGE_PIXELS, name="logits")(x)
    return keras.Model(code, logits, name="vae_decoder")


def gaussian_kl(mean: Any, log_var: Any) -> Any:
    """KL(N(mean, exp(log_var)) || N(0, I)) per row, summed over the last axis (nats)."""
    return 0.5 * ops.sum(ops.exp(log_var) + ops.square(mean) - 1.0 - log_var, axis=-1)


def bernoulli_nll(images: Any, logits: Any) -> Any:
    """-log p(images | logits) per row, summed over the last axis (nats): the cross-entropy
    of sigmoid(logits) against the targets, computed stably from the logits."""
    # max(l, 0) - l * x + log(1 + exp(-|l|)) == softplus(l) - l * x, without overflow.
    per_pixel = ops.relu(logits) - logits * images + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.sum(per_pixel, axis=-1)


# Independent fixed draws from one seed: the training set's (whose validation slice val_loss
# reads), the test set's, and the prior codes of the samples figure. Each is NumPy's
# SeedSequence of (seed, VAE_STREAM, draw): the VAE_STREAM entry keeps them apart from the
# other (seed, index) streams of the project (the noise sweep's levels, mnist_ae.analysis).
VAE_STREAM = 0x5641E  # any constant no other stream of the project starts with
TRAINING_DRAW, TEST_DRAW = 1, 2
PRIOR_DRAW = 3
# Logits held at once by the likelihood estimate: batch x samples per pass x 784 floats.
LOGITS_PER_PASS = 7_840_000  # 31 MB: 100 images x 100 samples


def _stream(seed: int, draw: int) -> np.random.Generator:
    """The VAE's fixed draw `draw` of `seed`."""
    return np.random.default_rng([seed, VAE_STREAM, draw])


def binarize(images: np.ndarray, seed: int, draw: int) -> np.ndarray:
    """A fixed Bernoulli draw of every pixel: 1 with probability equal to its grey value.

    The test set of the likelihood literature ("binarised once with a fixed seed"). float32,
    the shape of `images`, which must lie in [0, 1]. Different `draw`s of one seed are
    independent streams (see VAE_STREAM); `draw` must be at least 1.
    """
    if draw < 1:
        raise ValueError(f"draw must be at least 1, got {draw}")
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise ValueError("binarize expects grey values in [0, 1]")
    draws = _stream(seed, draw).random(images.shape, dtype=np.float32)
    return (draws < images).astype(np.float32)


def test_images(images: np.ndarray, binarized: bool, seed: int) -> np.ndarray:
    """The test images the VAEs are scored and drawn on: grey values in [0, 1], binarised
    once with the seed (TEST_DRAW) when they train binarised. Any shape; the draw of a pixel
    depends only on its flat index."""
    return binarize(images, seed, TEST_DRAW) if binarized else images


class _ReplicaSeedGenerator(keras.random.SeedGenerator):
    """A SeedGenerator whose draws differ between the replicas of a tf.distribute strategy.

    Under MirroredStrategy every replica runs the training step on its share of the batch and
    would otherwise draw the same numbers for it: the same binarisation and code noise for two
    different images. Each replica folds its id into the seed instead (independent streams).
    On one device nothing changes: the same draws as a plain SeedGenerator.
    """

    def next(self, ordered: bool = True) -> Any:
        seed = super().next(ordered)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return seed
        return tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)


class VariationalAutoencoder(keras.Model):
    """Encoder + reparameterised sample + decoder, trained on the negative ELBO.

    `fit` takes (inputs, targets) pairs like the other models: with `dynamic_binarization`,
    each training step draws a fresh Bernoulli sample of its input batch (so every epoch sees
    new binary images); validation scores the targets as they are (binarised once, with a
    fixed seed, by the caller). Logs `loss` (the negative ELBO), `reconstruction` and `kl`,
    all in nats per image. Never saved whole: the encoder and decoder are.
    """

    def __init__(
        self,
        encoder: keras.Model,
        decoder: keras.Model,
        dynamic_binarization: bool,
        seed: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.dynamic_binarization = dynamic_binarization
        self.noise = _ReplicaSeedGenerator(seed, name="vae_noise")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self._update = _update  # the training step's arithmetic: XLA-compiled by compile()
        self.built = True  # its weights are the encoder's and decoder's, built already

    def compile(self, *args: Any, jit_compile: bool | str = "auto", **kwargs: Any) -> None:
        """Keras' compile, except that `jit_compile=True` compiles the step's arithmetic
        with XLA (forward, gradients, optimizer update) while the random draws stay outside it.

        XLA-compiling the whole step (Keras' own jit_compile) made an epoch about 4x slower on
        CPU, through its random-number ops; without them, XLA fuses the step's many small ops
        (docs/benchmarks.md). The draws still come from the model's SeedGenerator, in the same
        order, so training stays byte-reproducible and resumable.

        "auto" (and False) means no XLA, as Keras' own "auto" decides under TF op determinism,
        which the pipeline always turns on: Keras never compiles the whole step, random ops
        included, whatever the device.
        """
        if jit_compile not in (True, False, "auto"):
            raise ValueError(f"jit_compile must be true, false or 'auto', not {jit_compile!r}")
        # A function per compile: a tf.function may create variables (the optimizer's) only
        # on its first call.
        self._update = tf.function(_update, jit_compile=True) if jit_compile is True else _update
        super().compile(*args, jit_compile=False, **kwargs)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def sample_code(self, mean: Any, log_var: Any, epsilon: Any = None) -> Any:
        """z = mean + sigma * epsilon, epsilon ~ N(0, I) from the model's seed generator
        unless given."""
        if epsilon is None:
            epsilon = keras.random.normal(ops.shape(mean), seed=self.noise)
        return mean + ops.exp(0.5 * log_var) * epsilon

    def call(self, images: Any, training: bool = False) -> Any:
        """Bernoulli logits of a reconstruction through one sampled code."""
        mean, log_var = self.encoder(images, training=training)
        return self.decoder(self.sample_code(mean, log_var), training=training)

    def negative_elbo_terms(self, images: Any, epsilon: Any = None) -> tuple[Any, Any]:
        """Per-image reconstruction (one sampled code) and KL terms, in nats. The code's
        noise is `epsilon` when given, else drawn from the model's seed generator."""
        mean, log_var = self.encoder(images, training=True)
        logits = self.decoder(self.sample_code(mean, log_var, epsilon), training=True)
        return bernoulli_nll(images, logits), gaussian_kl(mean, log_var)

    def _record(self, reconstruction: Any, kl: Any) -> dict[str, Any]:
        self.loss_tracker.update_state(reconstruction + kl)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data: Any) -> dict[str, Any]:
        images, _ = data
        if self.dynamic_binarization:
            draws = keras.random.uniform(ops.shape(images), seed=self.noise)
            images = ops.cast(draws < images, images.dtype)
        code_shape = (ops.shape(images)[0], self.encoder.output[0].shape[-1])
        epsilon = keras.random.normal(code_shape, seed=self.noise)
        return self._record(*self._update(self, images, epsilon))

    def test_step(self, data: Any) -> dict[str, Any]:
        _, targets = data
        return self._record(*self.negative_elbo_terms(targets))


def _update(model: VariationalAutoencoder, images: Any, epsilon: Any) -> tuple[Any, Any]:
    """One optimizer step on the mean negative ELBO of `images`, with the code's noise
    `epsilon` given; returns the per-image reconstruction and KL terms."""
    with tf.GradientTape() as tape:
        reconstruction, kl = model.negative_elbo_terms(images, epsilon)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas == 1:
            loss = ops.mean(reconstruction + kl)
        else:  # each replica's share of the global batch (perhaps none); their gradients add up
            total = ops.sum(reconstruction + kl)
            count = ops.cast(ops.shape(reconstruction)[0], total.dtype)
            loss = ops.divide_no_nan(total, count) / replicas
    gradients = tape.gradient(loss, model.trainable_weights)
    model.optimizer.apply(gradients, model.trainable_weights)
    return reconstruction, kl


def build_vae(
    hidden: Sequence[int],
    activation: str,
    latent_dim: int,
    dynamic_binarization: bool,
    seed: int,
) -> VariationalAutoencoder:
    """A VAE ready for training.fit: its encoder and decoder are `.encoder` / `.decoder`."""
    return VariationalAutoencoder(
        build_vae_encoder(hidden, activation, latent_dim),
        build_vae_decoder(hidden, activation, latent_dim),
        dynamic_binarization,
        seed,
        name="vae",
    )


@dataclass(frozen=True)
class LikelihoodEstimate:
    """Per-image test scores of a VAE (nats; arrays of one value per image)."""

    nll: np.ndarray  # -log p(x) estimated with k importance samples (the IWAE bound)
    sampled_negative_elbo: np.ndarray  # -(mean of log w over the same k samples)
    reconstruction: np.ndarray  # -(mean over the k samples of log p(x|z))
    kl: np.ndarray  # KL(q(z|x) || p(z)), exact
    posterior_means: np.ndarray  # (images, latent_dim)
    samples: int  # k


@tf.function(reduce_retracing=True)
def _log_weights(
    decoder: keras.Model,
    images: tf.Tensor,
    mean: tf.Tensor,
    log_var: tf.Tensor,
    key: tf.Tensor,
    samples: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """log w = log p(x|z) + log p(z) - log q(z|x) and log p(x|z), shape (samples, batch), for
    `samples` codes per image drawn with the stateless key."""
    shape = tf.concat([[samples], tf.shape(mean)], axis=0)
    epsilon = tf.random.stateless_normal(shape, seed=key)
    codes = mean + tf.exp(0.5 * log_var) * epsilon  # (samples, batch, latent)
    latent = tf.shape(mean)[-1]
    logits = decoder(tf.reshape(codes, [-1, latent]), training=False)
    logits = tf.reshape(logits, [samples, -1, IMAGE_PIXELS])
    log_likelihood = -bernoulli_nll(images[None], logits)
    log_prior = -0.5 * tf.reduce_sum(tf.square(codes) + LOG_2PI, axis=-1)
    log_posterior = -0.5 * tf.reduce_sum(tf.square(epsilon) + log_var + LOG_2PI, axis=-1)
    return log_likelihood + log_prior - log_posterior, log_likelihood


def estimate_likelihood(
    encoder: keras.Model,
    decoder: keras.Model,
    images: np.ndarray,
    samples: int,
    seed: int,
    batch_size: int = 100,
    samples_per_pass: int | None = None,
) -> LikelihoodEstimate:
    """Importance-sampled log-likelihood (Burda et al. 2015), with q(z|x) as the proposal.

    log p(x) >= log (1/k) sum_i w_i, w_i = p(x, z_i) / q(z_i|x), z_i ~ q(z|x); the bound
    tightens as k grows, and at k = 1 it is the ELBO estimate of the same sample. The noise is
    a stateless function of (seed, batch, pass), so an estimate is reproducible; another
    batch_size draws other noise (the same estimate within its Monte-Carlo error). Memory is
    bounded by batch_size x samples_per_pass decoded images, by default about LOGITS_PER_PASS
    logits (100 images x 100 samples).
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    images = np.asarray(images, dtype=np.float32).reshape(len(images), IMAGE_PIXELS)
    if samples_per_pass is None:
        samples_per_pass = max(1, LOGITS_PER_PASS // (batch_size * IMAGE_PIXELS))
    per_pass = min(samples, samples_per_pass)
    outputs: dict[str, list[np.ndarray]] = {"nll": [], "elbo": [], "rec": [], "kl": [], "mean": []}
    for batch_index, start in enumerate(range(0, len(images), batch_size)):
        batch = tf.constant(images[start : start + batch_size])
        mean, log_var = encoder(batch, training=False)
        log_sum = tf.fill([tf.shape(batch)[0]], -np.inf)
        weight_sum = tf.zeros([tf.shape(batch)[0]])
        likelihood_sum = tf.zeros([tf.shape(batch)[0]])
        for pass_index, first in enumerate(range(0, samples, per_pass)):
            count = min(per_pass, samples - first)
            key = tf.constant([seed, batch_index * 1_000_003 + pass_index], dtype=tf.int64)
            log_weights, log_likelihood = _log_weights(decoder, batch, mean, log_var, key, count)
            log_sum = tf.reduce_logsumexp(tf.concat([log_sum[None], log_weights], axis=0), axis=0)
            weight_sum += tf.reduce_sum(log_weights, axis=0)
            likelihood_sum += tf.reduce_sum(log_likelihood, axis=0)
        outputs["nll"].append((math.log(samples) - log_sum).numpy())
        outputs["elbo"].append((-weight_sum / samples).numpy())
        outputs["rec"].append((-likelihood_sum / samples).numpy())
        outputs["kl"].append(np.asarray(gaussian_kl(mean, log_var)))
        outputs["mean"].append(np.asarray(mean))
    joined = {name: np.concatenate(values) for name, values in outputs.items()}
    return LikelihoodEstimate(
        nll=joined["nll"],
        sampled_negative_elbo=joined["elbo"],
        reconstruction=joined["rec"],
        kl=joined["kl"],
        posterior_means=joined["mean"],
        samples=samples,
    )


def active_units(posterior_means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions whose posterior mean varies over the images by more than
    `threshold` (variance over axis 0)."""
    return int(np.sum(np.var(np.asarray(posterior_means, np.float64), axis=0) > threshold))


def test_scores(
    encoder: keras.Model,
    decoder: keras.Model,
    images: np.ndarray,
    samples: int,
    seed: int,
    batch_size: int,
) -> dict[str, float | int]:
    """The VAE literature's test numbers, means over `images` (nats per image): `nll` (the
    k-sample importance estimate), `negative_elbo` = `reconstruction` (over the same k codes)
    + `kl` (exact), and `active_units` of the latent_dim."""
    estimate = estimate_likelihood(encoder, decoder, images, samples, seed, batch_size)
    means = estimate.posterior_means
    reconstruction = float(np.mean(estimate.reconstruction, dtype=np.float64))
    kl = float(np.mean(estimate.kl, dtype=np.float64))
    return {
        "nll": float(np.mean(estimate.nll, dtype=np.float64)),
        "negative_elbo": reconstruction + kl,
        "reconstruction": reconstruction,
        "kl": kl,
        "importance_samples": samples,
        "active_units": active_units(means),
        "latent_dim": int(means.shape[1]),
        "test_samples": len(images),
    }


def posterior_means(encoder: keras.Model, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The means of q(z|x) of flat images, shape (images, latent_dim)."""
    flat = np.asarray(images, dtype=np.float32).reshape(len(images), IMAGE_PIXELS)
    mean, _ = encoder.predict(flat, batch_size=batch_size, verbose=0)
    return np.asarray(mean)


def decoded_means(decoder: keras.Model, codes: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The pixel probabilities sigmoid(logits) of p(x|z) for each code, shape (codes, 28, 28):
    the image a VAE "draws" for a code (its mean, not a Bernoulli sample)."""
    logits = decoder.predict(np.asarray(codes, dtype=np.float32), batch_size=batch_size, verbose=0)
    return expit(np.asarray(logits, dtype=np.float64)).reshape(-1, 28, 28)


def prior_codes(count: int, latent_dim: int, seed: int) -> np.ndarray:
    """`count` codes from the prior N(0, I), a fixed draw of the seed (PRIOR_DRAW)."""
    return _stream(seed, PRIOR_DRAW).standard_normal((count, latent_dim))


def manifold_axis(size: int, low: float = 0.05, high: float = 0.95) -> np.ndarray:
    """`size` latent values at evenly spaced quantiles of N(0, 1) from `low` to `high` (Kingma
    & Welling's manifold: the inverse CDF of a uniform grid)."""
    if size < 2:
        raise ValueError(f"a manifold needs at least 2 values per axis, got {size}")
    normal = statistics.NormalDist()
    return np.array([normal.inv_cdf(q) for q in np.linspace(low, high, size)])


def manifold_codes(values: np.ndarray) -> np.ndarray:
    """The 2-D codes of the grid values x values, row by row: row r holds z2 = values[-1 - r]
    (top row highest, as on a plot's y axis), column c holds z1 = values[c]."""
    z1, z2 = np.meshgrid(values, values[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=1)


def interpolate(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """`steps` codes on the straight line from `start` to `end`, both included."""
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    weights = np.linspace(0.0, 1.0, steps)[:, None]
    return (1.0 - weights) * np.asarray(start)[None] + weights * np.asarray(end)[None]
