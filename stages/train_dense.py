"""DVC stage `train_dense`: the dense autoencoder 784 -> 32 -> 784, plus its encoder/decoder."""

from mnist_ae import data, io, models, paths, tracking, training
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def main(params: Params) -> None:
    """Train on clean training images (input = target) and save the three models."""
    settings = params.train_dense
    checkpoint = training.CHECKPOINT_DIR / "train_dense.npz"
    with tracking.pipeline_run("train_dense", params):
        training.make_deterministic(params.seed)
        images = training.flat_images(data.to_unit_float(io.load_mnist(paths.MNIST)["x_train"]))
        autoencoder, encoder, decoder = models.build_dense_autoencoder(settings.encoding_dim)
        result = training.fit(
            autoencoder,
            images,
            images,
            **settings.fit_options(),
            seed=params.seed,
            checkpoint=checkpoint,
            resume_key=training.resume_key(params.seed, settings.model_dump(), [paths.MNIST]),
            callbacks=[tracking.epoch_logger("dense")],
        )
        io.save_model(autoencoder, paths.DENSE_AUTOENCODER)
        io.save_model(encoder, paths.DENSE_ENCODER)
        io.save_model(decoder, paths.DENSE_DECODER)
        tracking.log_resumed_epochs(result.history, result.resumed_epochs, "dense")
        io.write_history_csv(paths.DENSE_HISTORY, result.history)
        summary = result.summary(autoencoder)
        io.write_json(paths.DENSE_SUMMARY, summary)
        tracking.log_metrics(summary, "dense.")
        sample = images[:8]
        tracking.log_keras_model(autoencoder, "dense_autoencoder", sample)
        tracking.log_keras_model(encoder, "dense_encoder", sample)
        tracking.log_keras_model(decoder, "dense_decoder", encoder.predict(sample, verbose=0))
        training.remove_checkpoint(checkpoint)  # last: every output is written


if __name__ == "__main__":
    run_stage("train_dense", main)
