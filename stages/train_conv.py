"""DVC stage `train_conv`: the convolutional denoising autoencoder, noisy -> clean."""

from mnist_ae import data, io, models, paths, tracking, training
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def main(params: Params) -> None:
    """Train on (noisy, clean) training pairs and save the model and its history."""
    settings = params.train_conv
    checkpoint = training.CHECKPOINT_DIR / "train_conv.npz"
    with tracking.pipeline_run("train_conv", params):
        training.make_deterministic(params.seed)
        clean = training.channel_images(data.to_unit_float(io.load_mnist(paths.MNIST)["x_train"]))
        noisy = training.channel_images(io.load_noisy(paths.NOISY)["x_train_noisy"])
        if len(noisy) != len(clean):
            raise ValueError(f"{paths.NOISY} and {paths.MNIST} hold different training sets")
        trained = models.build_conv_denoiser(settings.filters, settings.fuse_last_upsampling)
        result = training.fit(
            trained,
            noisy,
            clean,
            **settings.fit_options(),
            seed=params.seed,
            checkpoint=checkpoint,
            resume_key=training.resume_key(
                params.seed, settings.model_dump(), [paths.MNIST, paths.NOISY]
            ),
            callbacks=[tracking.epoch_logger("conv")],
        )
        denoiser = models.export_conv_denoiser(trained)  # plain Keras layers, same weights
        io.save_model(denoiser, paths.CONV_DENOISER)
        tracking.log_resumed_epochs(result.history, result.resumed_epochs, "conv")
        io.write_history_csv(paths.CONV_HISTORY, result.history)
        summary = result.summary(denoiser)
        io.write_json(paths.CONV_SUMMARY, summary)
        tracking.log_metrics(summary, "conv.")
        tracking.log_keras_model(denoiser, "conv_denoiser", noisy[:8])
        training.remove_checkpoint(checkpoint)  # last: every output is written


if __name__ == "__main__":
    run_stage("train_conv", main)
