"""The VAE: its loss terms against hand-computed values, the importance-sampled likelihood,
binarisation, saving, and deterministic, resumable training."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mnist_ae import artifacts, io, training, vae
from mnist_ae.artifacts import VAE_NAMES
from mnist_ae.config import Params, load_params
from mnist_ae.pipeline import evaluate_vae, train_vae
from test_training import _Interrupt

REPO = Path(__file__).resolve().parents[1]


def test_the_iwae_papers_architecture_has_the_expected_parameter_counts() -> None:
    encoder = vae.build_vae_encoder([200, 200], "tanh", 50)
    decoder = vae.build_vae_decoder([200, 200], "tanh", 50)
    # 784*200+200 + 200*200+200 + 2*(200*50+50); 50*200+200 + 200*200+200 + 200*784+784.
    assert encoder.count_params() == 217_300
    assert decoder.count_params() == 207_984
    assert [tuple(output.shape) for output in encoder.outputs] == [(None, 50), (None, 50)]
    assert tuple(decoder.output.shape) == (None, 784)


def test_kl_matches_hand_computed_values() -> None:
    mean = np.array([[0.0, 0.0], [1.0, -1.0]], np.float32)
    log_var = np.array([[0.0, 0.0], [math.log(4.0), 0.0]], np.float32)
    # Row 2: 0.5 * ((4 + 1 - 1 - ln 4) + (1 + 1 - 1 - 0)) = 0.5 * (5 - ln 4).
    expected = [0.0, 0.5 * (5.0 - math.log(4.0))]
    np.testing.assert_allclose(np.asarray(vae.gaussian_kl(mean, log_var)), expected, rtol=1e-6)


def test_reconstruction_term_matches_hand_computed_values_and_stays_finite() -> None:
    images = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    logits = np.array([[0.0, 2.0], [100.0, -100.0]], np.float32)
    # -ln sigmoid(0) - ln(1 - sigmoid(2)) = ln 2 + ln(1 + e^2); confident and right: ~0.
    expected = [math.log(2.0) + math.log1p(math.exp(2.0)), 0.0]
    np.testing.assert_allclose(
        np.asarray(vae.bernoulli_nll(images, logits)), expected, rtol=1e-6, atol=1e-6
    )
    wrong = np.asarray(vae.bernoulli_nll(images, -logits))[1]  # confident and wrong: 200 nats
    assert wrong == pytest.approx(200.0, rel=1e-6)


def test_binarization_draws_each_pixel_with_its_grey_value_as_probability() -> None:
    grey = np.linspace(0.0, 1.0, 101, dtype=np.float32)
    images = np.tile(grey, (2000, 1))
    binary = vae.binarize(images, 1, vae.TEST_DRAW)
    assert binary.dtype == np.float32 and set(np.unique(binary)) == {0.0, 1.0}
    assert binary[:, 0].max() == 0.0 and binary[:, -1].min() == 1.0  # 0 and 1 stay put
    # Each column is 2,000 Bernoulli(p) draws: standard error at most 0.0112; 5 of them.
    np.testing.assert_allclose(binary.mean(axis=0), grey, atol=0.056)
    np.testing.assert_array_equal(vae.binarize(images, 1, vae.TEST_DRAW), binary)  # fixed
    assert not np.array_equal(vae.binarize(images, 2, vae.TEST_DRAW), binary)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae.binarize(images * 255.0, 1, vae.TEST_DRAW)
    with pytest.raises(ValueError, match="draw must be at least 1"):
        vae.binarize(images, 1, 0)  # NumPy seeds [seed, 0] as seed: it would repeat other draws


def test_active_units_count_dimensions_whose_mean_varies() -> None:
    rng = np.random.default_rng(0)
    means = rng.normal(size=(5000, 3)) * np.sqrt([0.5, 0.001, 0.03])
    assert vae.active_units(means) == 2


def _tiny_model(seed: int = 0) -> vae.VariationalAutoencoder:
    training.make_deterministic(seed)
    return vae.build_vae([16], "tanh", 3, dynamic_binarization=True, seed=seed)


def _binary_images(count: int, seed: int = 0) -> np.ndarray:
    images = vae.binarize(
        np.random.default_rng(seed).random((count, 784), np.float32), seed, vae.TEST_DRAW
    )
    assert 0.4 < images.mean() < 0.6  # not all zeros, nor all ones
    return images


def test_one_importance_sample_is_the_elbo_and_more_tighten_it() -> None:
    model = _tiny_model()
    images = _binary_images(40)
    single = vae.estimate_likelihood(model.encoder, model.decoder, images, 1, seed=5)
    # k = 1: log w of the one sample is both estimates.
    np.testing.assert_allclose(single.nll, single.sampled_negative_elbo, rtol=1e-6)
    many = vae.estimate_likelihood(
        model.encoder, model.decoder, images, 250, seed=5, batch_size=16, samples_per_pass=64
    )
    # log mean w >= mean log w for the same samples (Jensen), image by image.
    assert np.all(many.nll <= many.sampled_negative_elbo + 1e-4)
    assert many.nll.mean() < single.nll.mean()  # a tighter bound on average
    assert many.nll.shape == (40,) and many.samples == 250
    mean, log_var = model.encoder(images)
    np.testing.assert_allclose(many.kl, np.asarray(vae.gaussian_kl(mean, log_var)), rtol=1e-5)
    np.testing.assert_array_equal(many.posterior_means, np.asarray(mean))
    again = vae.estimate_likelihood(
        model.encoder, model.decoder, images, 250, seed=5, batch_size=16, samples_per_pass=64
    )
    np.testing.assert_array_equal(again.nll, many.nll)  # stateless noise: reproducible


def test_the_sampled_elbo_agrees_with_the_exact_kl() -> None:
    """log p(z) - log q(z|x) averaged over many codes is -KL: a wrong sign or a missing
    constant in either density would show here, by more than the 0.05-nat tolerance."""
    model = _tiny_model()
    images = _binary_images(40)
    estimate = vae.estimate_likelihood(model.encoder, model.decoder, images, 2000, seed=9)
    sampled_kl = estimate.sampled_negative_elbo - estimate.reconstruction
    assert estimate.kl.mean() > 0.5  # a code that carries something
    assert abs(sampled_kl.mean() - estimate.kl.mean()) < 0.05


def test_log_weights_are_the_three_densities_of_the_same_codes() -> None:
    """`_log_weights` against NumPy, for the codes its stateless key draws."""
    import tensorflow as tf

    model = _tiny_model()
    images = _binary_images(3)
    mean, log_var = (np.asarray(part) for part in model.encoder(images))
    key = tf.constant([7, 1], tf.int64)
    log_weights, log_likelihood = (
        np.asarray(part)
        for part in vae._log_weights(
            model.decoder, tf.constant(images), tf.constant(mean), tf.constant(log_var), key, 4
        )
    )
    epsilon = np.asarray(tf.random.stateless_normal([4, *mean.shape], seed=key))
    codes = mean + np.exp(0.5 * log_var) * epsilon
    latent_dim = mean.shape[-1]
    logits = np.asarray(model.decoder(codes.reshape(-1, latent_dim))).reshape(4, len(images), 784)
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    expected_likelihood = np.sum(
        images * np.log(probabilities) + (1 - images) * np.log1p(-probabilities), axis=-1
    )
    normal = lambda z, m, v: -0.5 * np.sum((z - m) ** 2 / v + np.log(2 * np.pi * v), -1)  # noqa: E731
    expected = expected_likelihood + normal(codes, 0.0, 1.0) - normal(codes, mean, np.exp(log_var))
    np.testing.assert_allclose(log_likelihood, expected_likelihood, rtol=1e-4)
    np.testing.assert_allclose(log_weights, expected, rtol=1e-4)


def test_saved_encoder_and_decoder_reload_in_safe_mode_with_identical_outputs(
    tmp_path: Path,
) -> None:
    model = _tiny_model()
    images = _binary_images(8)
    for part, inputs in ((model.encoder, images), (model.decoder, images[:, :3])):
        path = tmp_path / f"{part.name}.keras"
        io.save_model(part, path)
        loaded = io.load_model(path)  # safe mode, no custom objects
        for got, want in zip(
            np.atleast_1d(loaded.predict(inputs, verbose=0)),
            np.atleast_1d(part.predict(inputs, verbose=0)),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)


def _fit_vae(
    checkpoint: Path | None = None,
    callbacks: list | None = None,
    dynamic: bool = True,
    epochs: int = 3,
    jit_compile: bool = False,
    steps_per_execution: int = 1,
) -> tuple[list, list, training.FitResult]:
    model = _tiny_model(seed=4)
    model.dynamic_binarization = dynamic
    grey = np.random.default_rng(4).random((192, 784), np.float32)
    result = training.fit(
        model,
        grey,
        vae.binarize(grey, 4, vae.TRAINING_DRAW),
        optimizer="adam",
        learning_rate=0.003,
        epochs=epochs,
        batch_size=32,
        validation_samples=64,
        seed=4,
        checkpoint=checkpoint,
        resume_key="k",
        callbacks=callbacks or [],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    random_state = [np.asarray(model.noise.state)]
    return model.get_weights(), random_state, result


@pytest.mark.parametrize("jit_compile", [False, True])
def test_training_logs_the_elbo_terms_and_is_byte_reproducible(jit_compile: bool) -> None:
    weights, random_state, result = _fit_vae(jit_compile=jit_compile)
    assert set(result.history) == {
        "loss",
        "val_loss",
        "reconstruction",
        "kl",
        "val_reconstruction",
        "val_kl",
    }
    for prefix in ("", "val_"):
        total = np.add(result.history[f"{prefix}reconstruction"], result.history[f"{prefix}kl"])
        np.testing.assert_allclose(result.history[f"{prefix}loss"], total, rtol=1e-5)
    assert result.history["loss"][-1] < result.history["loss"][0]
    again_weights, again_random, again = _fit_vae(jit_compile=jit_compile)
    assert again.history == result.history
    for got, want in zip(again_weights + again_random, weights + random_state, strict=True):
        np.testing.assert_array_equal(got, want)
    # The dynamic draws matter: training on the grey values themselves ends elsewhere.
    grey_weights, _, _ = _fit_vae(dynamic=False)
    assert not np.array_equal(grey_weights[0], weights[0])


def test_xla_compiles_the_same_step_on_the_same_draws() -> None:
    # jit_compile=True compiles the step's arithmetic only: the random draws stay outside
    # XLA, so both runs draw the same noise and end at nearly the same weights (XLA fuses and
    # reorders float operations, so the bits differ).
    weights, random_state, result = _fit_vae(jit_compile=False)
    xla_weights, xla_random_state, xla = _fit_vae(jit_compile=True)
    np.testing.assert_array_equal(xla_random_state[0], random_state[0])
    np.testing.assert_allclose(xla.history["loss"], result.history["loss"], rtol=1e-3)
    for got, want in zip(xla_weights, weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_only_jit_compile_true_hands_the_update_to_xla() -> None:
    model = _tiny_model()
    model.compile(optimizer="adam", jit_compile=True)
    model.optimizer.build(model.trainable_weights)
    images, epsilon = _binary_images(4), np.zeros((4, 3), np.float32)
    hlo = model._update.experimental_get_compiler_ir(model, images, epsilon)(stage="hlo")
    assert hlo.startswith("HloModule")  # XLA compiled the update
    assert model.jit_compile is False  # and Keras' whole-step XLA stays off
    # "auto" is no XLA, as Keras decides under op determinism: never the random ops.
    for setting in (False, "auto"):
        model.compile(optimizer="adam", jit_compile=setting)
        assert model._update is vae._update and model.jit_compile is False
    with pytest.raises(ValueError, match="jit_compile must be"):
        model.compile(optimizer="adam", jit_compile="always")


# The plain step, and the pipeline's default: XLA arithmetic, 10 steps per call into TF.
@pytest.mark.parametrize(("jit_compile", "steps_per_execution"), [(False, 1), (True, 10)])
def test_an_interrupted_vae_resumes_to_exactly_the_uninterrupted_weights(
    tmp_path: Path, jit_compile: bool, steps_per_execution: int
) -> None:
    """The checkpoint holds the seed generator's state, so the resumed run draws the same
    binarisations and codes as a run that was never stopped."""
    step = {"jit_compile": jit_compile, "steps_per_execution": steps_per_execution}
    expected_weights, expected_random, expected = _fit_vae(
        tmp_path / "straight.npz", epochs=4, **step
    )
    checkpoint = tmp_path / "resumed.npz"
    with pytest.raises(KeyboardInterrupt):
        _fit_vae(checkpoint, callbacks=[_Interrupt(epoch=2)], epochs=4, **step)
    weights, random_state, result = _fit_vae(checkpoint, epochs=4, **step)
    assert result.resumed_epochs == 2 and result.history == expected.history
    for got, want in zip(weights + random_state, expected_weights + expected_random, strict=True):
        np.testing.assert_array_equal(got, want)


def test_draws_of_one_seed_are_independent() -> None:
    images = np.full((200, 784), 0.5, np.float32)
    training_draw = vae.binarize(images, 3, vae.TRAINING_DRAW)
    test_draw = vae.binarize(images, 3, vae.TEST_DRAW)
    agreement = float(np.mean(training_draw == test_draw))
    assert 0.49 < agreement < 0.51  # independent fair coins agree half the time
    # Not the noise sweep's streams either (SeedSequence([seed, level]), mnist_ae.analysis).
    for draw in (vae.TRAINING_DRAW, vae.TEST_DRAW, vae.PRIOR_DRAW):
        sweep = np.random.default_rng(np.random.SeedSequence([3, draw])).random(100)
        assert not np.array_equal(vae._stream(3, draw).random(100), sweep)


def test_the_test_images_are_one_fixed_draw_whatever_their_shape() -> None:
    grey = np.linspace(0.0, 1.0, 3 * 784, dtype=np.float32).reshape(3, 28, 28)
    binary = vae.test_images(grey, binarized=True, seed=5)
    assert set(np.unique(binary)) <= {0.0, 1.0}
    # evaluate_vae scores flat images, figures draws 28x28 ones: the same pixels either way.
    flat = vae.test_images(grey.reshape(3, 784), binarized=True, seed=5)
    np.testing.assert_array_equal(binary.reshape(3, 784), flat)
    np.testing.assert_array_equal(binary, vae.binarize(grey, 5, vae.TEST_DRAW))
    assert vae.test_images(grey, binarized=False, seed=5) is grey


def test_the_manifold_grid_lies_at_gaussian_quantiles_top_row_highest() -> None:
    values = vae.manifold_axis(3)
    np.testing.assert_allclose(values, [-1.6448536269514722, 0.0, 1.6448536269514722], atol=1e-12)
    codes = vae.manifold_codes(values)
    assert codes.shape == (9, 2)
    np.testing.assert_allclose(codes[0], [values[0], values[2]])  # top left: z1 low, z2 high
    np.testing.assert_allclose(codes[2], [values[2], values[2]])  # top right
    np.testing.assert_allclose(codes[8], [values[2], values[0]])  # bottom right
    with pytest.raises(ValueError, match="at least 2 values per axis, got 1"):
        vae.manifold_axis(1)


def test_interpolation_runs_straight_from_one_code_to_the_other() -> None:
    line = vae.interpolate(np.array([0.0, 2.0]), np.array([1.0, -2.0]), 5)
    np.testing.assert_allclose(line, [[0, 2], [0.25, 1], [0.5, 0], [0.75, -1], [1, -2]])
    with pytest.raises(ValueError, match="at least 2 steps, got 1"):
        vae.interpolate(np.zeros(2), np.ones(2), 1)


def test_prior_codes_are_a_fixed_standard_normal_draw_of_the_seed() -> None:
    codes = vae.prior_codes(4000, 5, seed=1)
    assert codes.shape == (4000, 5)
    np.testing.assert_array_equal(codes, vae.prior_codes(4000, 5, seed=1))
    assert not np.array_equal(codes, vae.prior_codes(4000, 5, seed=2))
    assert abs(float(codes.mean())) < 0.05 and abs(float(codes.std()) - 1.0) < 0.05


def test_decoded_means_are_the_pixel_probabilities_of_the_logits() -> None:
    model = _tiny_model()
    codes = vae.prior_codes(3, 3, seed=0)  # the tiny model's latent_dim is 3
    logits = model.decoder.predict(codes.astype(np.float32), verbose=0)
    np.testing.assert_allclose(
        vae.decoded_means(model.decoder, codes),
        (1 / (1 + np.exp(-logits))).reshape(3, 28, 28),
        rtol=1e-6,
    )
    images = _binary_images(4)
    mean, _ = model.encoder.predict(images, verbose=0)
    np.testing.assert_array_equal(vae.posterior_means(model.encoder, images), mean)


def _vae_params(binarize: str = "dynamic") -> Params:
    params = load_params(REPO / "params.yaml")
    small = {"hidden": [16], "epochs": 2, "batch_size": 16, "validation_samples": 16}
    models = params.train_vae.models
    models = models.model_copy(
        update={name: getattr(models, name).model_copy(update=small) for name in VAE_NAMES}
    )
    section = params.train_vae.model_copy(update={"models": models, "binarize": binarize})
    samples = params.evaluate_vae.importance_samples.model_copy(update=dict.fromkeys(VAE_NAMES, 30))
    evaluate = params.evaluate_vae.model_copy(update={"importance_samples": samples})
    return params.model_copy(update={"train_vae": section, "evaluate_vae": evaluate})


def _tiny_mnist(workdir: Path) -> None:
    rng = np.random.default_rng(0)
    artifacts.MNIST.write(
        workdir,
        {
            "x_train": rng.integers(0, 256, (64, 28, 28)),
            "y_train": np.arange(64) % 10,
            "x_test": rng.integers(0, 256, (12, 28, 28)),
            "y_test": np.arange(12) % 10,
        },
    )


@pytest.mark.parametrize("binarize", ["dynamic", "none"])
def test_the_stages_write_every_output_and_the_literatures_scores(
    tmp_path: Path, binarize: str
) -> None:
    _tiny_mnist(tmp_path)
    params = _vae_params(binarize)
    for name in VAE_NAMES:
        result = train_vae.run(params, tmp_path, name=name)
        evaluate_vae.run(params, tmp_path, name=name)
        files = artifacts.VAE[name]
        for artifact in files.all():
            assert artifact.at(tmp_path).stat().st_size > 0, artifact.path
        latent_dim = getattr(params.train_vae.models, name).latent_dim
        summary = files.summary.read(tmp_path)
        encoder, decoder = files.encoder.read(tmp_path), files.decoder.read(tmp_path)
        assert summary["parameters"] == encoder.count_params() + decoder.count_params()
        assert summary["epochs_run"] == 2 and result.epochs_run == 2
        history = files.history.read_history(tmp_path)
        assert {"reconstruction", "kl", "val_reconstruction", "val_kl"} <= set(history)
        scores = files.evaluation.read(tmp_path)
        assert scores["binarized"] is (binarize == "dynamic")
        assert scores["importance_samples"] == 30 and scores["test_samples"] == 12
        assert scores["latent_dim"] == latent_dim and 0 <= scores["active_units"] <= latent_dim
        assert scores["negative_elbo"] == pytest.approx(scores["reconstruction"] + scores["kl"])
        # Importance sampling tightens the bound: the NLL estimate is below the negative ELBO
        # (on average over images; exactly so for each image's own k samples).
        assert 0 < scores["nll"] < scores["negative_elbo"]
    # Both stages again give the same bytes (test_pipeline.py's forced `dvc repro` leaves the
    # VAE stages to this check).
    written = {artifact.path: artifact.sha256(tmp_path) for artifact in _vae_outputs()}
    for name in VAE_NAMES:
        train_vae.run(params, tmp_path, name=name)
        evaluate_vae.run(params, tmp_path, name=name)
    assert {artifact.path: artifact.sha256(tmp_path) for artifact in _vae_outputs()} == written


def _vae_outputs() -> list[artifacts.Artifact]:
    return [artifact for name in VAE_NAMES for artifact in artifacts.VAE[name].all()]


def test_an_unknown_configuration_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown VAE configuration 'wide', expected one of"):
        train_vae.run(_vae_params(), tmp_path, name="wide")
    with pytest.raises(ValueError, match=r"unknown VAE configuration ''"):
        evaluate_vae.run(_vae_params(), tmp_path, name="")


def test_a_checkpoint_of_the_other_binarization_is_not_resumed(tmp_path: Path) -> None:
    """`binarize` is not in the configuration's own params, but it changes what the model
    trains on: the checkpoint's key covers the arrays fit() gets, so it does not match."""
    _tiny_mnist(tmp_path)
    checkpoint = tmp_path / training.CHECKPOINT_DIR / "train_vae@likelihood.npz"
    with pytest.raises(KeyboardInterrupt):
        train_vae.run(
            _vae_params("dynamic"), tmp_path, callbacks=[_Interrupt(epoch=1)], name="likelihood"
        )
    assert checkpoint.exists()
    result = train_vae.run(_vae_params("none"), tmp_path, name="likelihood")
    assert result.resumed_epochs == 0
    # The same binarization does resume.
    with pytest.raises(KeyboardInterrupt):
        train_vae.run(
            _vae_params("none"),
            tmp_path,
            callbacks=[_Interrupt(epoch=1)],
            name="likelihood",
        )
    assert train_vae.run(_vae_params("none"), tmp_path, name="likelihood").resumed_epochs == 1
