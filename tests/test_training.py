"""Fitting: determinism, validation split, early stopping bookkeeping."""

from pathlib import Path

import keras
import numpy as np
import pytest

from mnist_ae import models, training


def _fit_once(
    epochs: int = 2,
    patience: int | None = None,
    samples: int = 96,
    encoding_dim: int = 8,
    seed: int = 11,
    **options: object,
) -> tuple[list, training.FitResult]:
    """Train a small dense AE on seeded random images; `options` go to training.fit."""
    training.make_deterministic(seed)
    images = np.random.default_rng(seed).random((samples, 784), dtype=np.float32)
    autoencoder, _, _ = models.build_dense_autoencoder(encoding_dim)
    result = training.fit(
        autoencoder,
        images,
        images,
        optimizer="adam",
        learning_rate=0.01,
        epochs=epochs,
        batch_size=16,
        validation_samples=32,
        early_stopping_patience=patience,
        **options,
    )
    return autoencoder.get_weights(), result


@pytest.mark.parametrize(
    "speed",
    [{}, {"jit_compile": True, "steps_per_execution": 3}],
    ids=["default", "xla-and-steps-per-execution"],
)
def test_same_seed_gives_identical_weights_and_history(speed: dict) -> None:
    first_weights, first = _fit_once(**speed)
    second_weights, second = _fit_once(**speed)
    for a, b in zip(first_weights, second_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.history == second.history
    assert first.epochs_run == 2 and len(first.history["val_loss"]) == 2
    assert first.best_epoch == 2  # no early stopping: the weights are the last epoch's


def test_loss_goes_down() -> None:
    _, result = _fit_once(epochs=5)
    assert result.history["loss"][-1] < result.history["loss"][0]


def _memorising_fit(
    checkpoint: Path | None = None,
    callbacks: list | None = None,
    epochs: int = 12,
    **options: object,
) -> tuple[keras.Model, training.FitResult]:
    """A dense AE that memorises training noise while its val_loss, on unrelated noise, soon
    stops improving. By default the learning rate is halved after each 2 epochs without
    improvement (`options` go to training.fit and may change that)."""
    training.make_deterministic(5)
    images = np.random.default_rng(1).random((64, 784), dtype=np.float32)
    autoencoder, _, _ = models.build_dense_autoencoder(64)
    settings: dict = {"reduce_lr_patience": 2, "reduce_lr_factor": 0.5, **options}
    result = training.fit(
        autoencoder,
        images,
        images,
        optimizer="adam",
        learning_rate=0.05,
        epochs=epochs,
        batch_size=8,
        validation_samples=16,
        checkpoint=checkpoint,
        resume_key="k",
        callbacks=callbacks or [],
        **settings,
    )
    return autoencoder, result


def _epoch_snapshots() -> tuple[list[list[np.ndarray]], keras.callbacks.Callback]:
    """A callback that appends the model's weights at the end of every epoch to the list."""
    snapshots: list[list[np.ndarray]] = []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append(recorder.model.get_weights())
    )
    return snapshots, recorder


def test_early_stopping_stops_and_keeps_the_best_epochs_weights() -> None:
    snapshots, recorder = _epoch_snapshots()
    autoencoder, result = _memorising_fit(
        callbacks=[recorder], epochs=30, early_stopping_patience=2, reduce_lr_patience=None
    )
    assert result.epochs_run < 30  # it stopped early
    assert result.best_epoch < result.epochs_run  # ... after val_loss got worse
    assert result.best_val_loss == min(result.history["val_loss"])
    for kept, best in zip(autoencoder.get_weights(), snapshots[result.best_epoch - 1], strict=True):
        np.testing.assert_array_equal(kept, best)


def test_validation_and_batch_size_limits() -> None:
    images = np.zeros((10, 784), np.float32)
    with pytest.raises(ValueError, match="validation_samples must be between 1 and 9"):
        training.split_validation(images, images, 10)
    autoencoder, _, _ = models.build_dense_autoencoder(4)
    with pytest.raises(ValueError, match="batch_size 64 is larger than the 8 training samples"):
        training.fit(
            autoencoder,
            images,
            images,
            optimizer="adam",
            learning_rate=0.01,
            epochs=1,
            batch_size=64,
            validation_samples=2,
        )


class _Interrupt(keras.callbacks.Callback):
    """Raise KeyboardInterrupt during epoch `epoch` (0-based), as Ctrl-C would: at its first
    batch-end callback, before the epoch ends (with steps_per_execution > 1, Keras calls it
    after the first call into TF, a group of steps)."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch
        self.current = -1

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.current = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.current == self.epoch:
            raise KeyboardInterrupt


def _resumable_fit(
    checkpoint: Path,
    callbacks: list | None = None,
    key: str = "k",
    patience: int | None = None,
    epochs: int = 4,
) -> tuple[list, training.FitResult]:
    return _fit_once(
        epochs,
        patience,
        samples=160,
        encoding_dim=16,
        seed=3,
        checkpoint=checkpoint,
        resume_key=key,
        callbacks=callbacks or [],
    )


def test_interrupted_training_resumes_to_exactly_the_uninterrupted_weights(
    tmp_path: Path,
) -> None:
    expected_weights, expected = _resumable_fit(tmp_path / "straight.npz")

    checkpoint = tmp_path / "resumed.npz"
    with pytest.raises(KeyboardInterrupt):
        _resumable_fit(checkpoint, callbacks=[_Interrupt(epoch=2)])
    assert checkpoint.exists()  # two completed epochs were saved
    weights, result = _resumable_fit(checkpoint)
    assert result.resumed_epochs == 2
    assert result.history == expected.history and result.epochs_run == 4
    for got, want in zip(weights, expected_weights, strict=True):
        np.testing.assert_array_equal(got, want)
    # Kept until the stage has written its outputs: a kill while saving them loses nothing.
    _, again = _resumable_fit(checkpoint)
    assert again.resumed_epochs == 4 and again.history == expected.history
    training.remove_checkpoint(checkpoint)
    assert not checkpoint.exists()


def test_batch_order_is_a_function_of_seed_and_epoch_only() -> None:
    import tensorflow as tf

    images = np.arange(10, dtype=np.float32).reshape(10, 1)
    epoch = tf.Variable(0, dtype=tf.int64)
    batches = training.training_batches(images, images, 4, seed=7, epoch=epoch)

    def order() -> list[float]:
        return [float(v) for inputs, _ in batches for v in inputs.numpy().ravel()]

    first = order()
    assert sorted(first) == list(range(10))  # every sample once, in batches of 4, 4, 2
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    epoch.assign(1)
    second = order()
    assert second != first and sorted(second) == sorted(first)
    epoch.assign(0)
    assert order() == first  # epoch 0 again, as after a restart


def test_checkpoint_of_other_params_or_unreadable_is_not_resumed(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        _resumable_fit(checkpoint, callbacks=[_Interrupt(epoch=1)], key="old-params")
    _, result = _resumable_fit(checkpoint, key="new-params")
    assert result.resumed_epochs == 0 and result.epochs_run == 4

    training.remove_checkpoint(checkpoint)
    checkpoint.write_bytes(b"PK\x03\x04 truncated")
    _, result = _resumable_fit(checkpoint)
    assert result.resumed_epochs == 0 and result.epochs_run == 4


def test_early_stopping_state_survives_a_restart(tmp_path: Path) -> None:
    expected_weights, expected = _resumable_fit(tmp_path / "a.npz", patience=1, epochs=12)
    assert expected.epochs_run < 12  # it did stop early
    checkpoint = tmp_path / "b.npz"
    interrupt_at = expected.epochs_run - 1  # during the last epoch it ran
    with pytest.raises(KeyboardInterrupt):
        _resumable_fit(checkpoint, [_Interrupt(interrupt_at)], patience=1, epochs=12)
    weights, result = _resumable_fit(checkpoint, patience=1, epochs=12)
    assert result.resumed_epochs == interrupt_at
    assert result.history == expected.history and result.best_epoch == expected.best_epoch
    for got, want in zip(weights, expected_weights, strict=True):  # the best epoch's weights
        np.testing.assert_array_equal(got, want)


def test_diverged_training_fails_instead_of_saving_a_model(tmp_path: Path) -> None:
    images = np.full((48, 784), np.nan, dtype=np.float32)  # NaN loss from the first step
    autoencoder, _, _ = models.build_dense_autoencoder(4)
    with pytest.raises(ValueError, match="training diverged: val_loss is nan at epoch 1"):
        training.fit(
            autoencoder,
            images,
            images,
            optimizer="adam",
            learning_rate=0.01,
            epochs=3,
            batch_size=16,
            validation_samples=16,
            checkpoint=tmp_path / "ckpt.npz",
        )
    assert not (tmp_path / "ckpt.npz").exists()  # a diverged epoch is never checkpointed


def test_an_interrupted_run_resumes_to_a_new_total_of_epochs(tmp_path: Path) -> None:
    """Interrupted at epoch 2 of 10, resumed with 4: exactly the weights of a 4-epoch run."""
    expected_weights, expected = _resumable_fit(tmp_path / "straight.npz", epochs=4)
    checkpoint = tmp_path / "resumed.npz"
    with pytest.raises(KeyboardInterrupt):
        _resumable_fit(checkpoint, callbacks=[_Interrupt(epoch=2)], epochs=10)
    weights, result = _resumable_fit(checkpoint, epochs=4)
    assert result.resumed_epochs == 2 and result.history == expected.history
    for got, want in zip(weights, expected_weights, strict=True):
        np.testing.assert_array_equal(got, want)
    # The checkpoint now holds 4 epochs: a 3-epoch run cannot rewind it and starts over.
    _, shorter = _resumable_fit(checkpoint, epochs=3)
    assert shorter.resumed_epochs == 0 and shorter.epochs_run == 3


def test_resume_key_ignores_only_the_number_of_epochs(tmp_path: Path) -> None:
    data = tmp_path / "data.npz"
    data.write_bytes(b"data")
    settings = {"epochs": 10, "batch_size": 32, "learning_rate": 0.001}
    key = training.resume_key(1, settings, [data])
    assert training.resume_key(1, {**settings, "epochs": 99}, [data]) == key
    assert training.resume_key(1, {**settings, "batch_size": 64}, [data]) != key
    assert training.resume_key(2, settings, [data]) != key
    data.write_bytes(b"other data")
    assert training.resume_key(1, settings, [data]) != key


def _first_cut(result: training.FitResult) -> int:
    """The 0-based index of the first epoch run at a lower rate than the first."""
    rates = result.history["learning_rate"]
    return next(epoch for epoch, rate in enumerate(rates) if rate < rates[0])


def _keras_plateau_rule() -> keras.callbacks.ReduceLROnPlateau:
    """Keras' own callback with the rule _memorising_fit asks of training.fit."""
    return keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0)


def _keras_rates(val_losses: list[float]) -> list[float]:
    """The rate each epoch would run at under Keras' callback fed this val_loss curve, on a
    model of its own."""
    reference, _, _ = models.build_dense_autoencoder(4)
    reference.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05), loss="mse")
    rule = _keras_plateau_rule()
    rule.set_model(reference)
    rule.on_train_begin()
    rates = []
    for epoch, val_loss in enumerate(val_losses):
        rates.append(float(np.asarray(reference.optimizer.learning_rate)))
        rule.on_epoch_end(epoch, {"val_loss": val_loss})
    return rates


def test_the_learning_rate_is_cut_as_keras_reduce_lr_on_plateau_would() -> None:
    _, result = _memorising_fit()
    rates = result.history["learning_rate"]  # the rate each epoch ran at
    np.testing.assert_allclose(rates, _keras_rates(result.history["val_loss"]), rtol=1e-6)
    assert len(set(rates)) >= 3  # cut at least twice


def test_without_reduce_lr_there_is_no_learning_rate_curve() -> None:
    _, result = _fit_once(epochs=2)
    assert set(result.history) == {"loss", "val_loss"}


@pytest.mark.parametrize(
    "speed",
    [{}, {"jit_compile": True, "steps_per_execution": 4}],
    ids=["default", "xla-and-steps-per-execution"],
)
def test_a_cut_trains_as_keras_callback_does_and_unlike_a_constant_rate(speed: dict) -> None:
    """Epoch by epoch, the very weights of a run with Keras' ReduceLROnPlateau instead (so a
    cut touches nothing but the rate: not Adam's moments), and the weights of a run without
    cuts up to the first cut only (the compiled step reads the new rate)."""

    def per_epoch(**options: object) -> tuple[list[list[np.ndarray]], training.FitResult]:
        snapshots, recorder = _epoch_snapshots()
        callbacks = [recorder, *options.pop("callbacks", [])]
        _, result = _memorising_fit(callbacks=callbacks, epochs=8, **speed, **options)
        return snapshots, result

    def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    cut, with_cuts = per_epoch()
    by_keras, _ = per_epoch(reduce_lr_patience=None, callbacks=[_keras_plateau_rule()])
    constant, _ = per_epoch(reduce_lr_patience=None)
    first = _first_cut(with_cuts)
    assert 0 < first < 8
    for epoch in range(8):
        assert same(cut[epoch], by_keras[epoch]), epoch
        assert same(cut[epoch], constant[epoch]) == (epoch < first), epoch


def test_learning_rate_cuts_survive_a_restart(tmp_path: Path) -> None:
    expected_model, expected = _memorising_fit(tmp_path / "a.npz")
    # Interrupted in the first epoch at the cut rate: the next decision (after that epoch)
    # needs the checkpoint's record of the cut, or it would cut again at once; that holds as
    # long as this epoch does not improve val_loss (which would reset the count anyway).
    first = _first_cut(expected)
    val_loss = expected.history["val_loss"]
    assert val_loss[first] >= min(val_loss[:first])
    checkpoint = tmp_path / "b.npz"
    with pytest.raises(KeyboardInterrupt):
        _memorising_fit(checkpoint, [_Interrupt(first)])
    model, result = _memorising_fit(checkpoint)
    assert result.resumed_epochs == first
    assert result.history == expected.history
    for got, want in zip(model.get_weights(), expected_model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_cuts_and_early_stopping_together_keep_the_best_epochs_weights() -> None:
    snapshots, recorder = _epoch_snapshots()
    model, result = _memorising_fit(
        callbacks=[recorder], epochs=30, early_stopping_patience=4, reduce_lr_patience=2
    )
    # Stopped 4 epochs after the best one, a cut counting for nothing; cut as Keras would.
    assert result.epochs_run == result.best_epoch + 4 < 30
    rates = result.history["learning_rate"]
    assert len(set(rates)) >= 2
    np.testing.assert_allclose(rates, _keras_rates(result.history["val_loss"]), rtol=1e-6)
    assert result.best_val_loss == min(result.history["val_loss"])
    for kept, best in zip(model.get_weights(), snapshots[result.best_epoch - 1], strict=True):
        np.testing.assert_array_equal(kept, best)
