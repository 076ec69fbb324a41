"""DVC stage `train_conv`: the convolutional denoising autoencoder, noisy -> clean."""

from mnist_ae.pipeline import run_stage, train_conv

if __name__ == "__main__":
    run_stage("train_conv", train_conv.run)
