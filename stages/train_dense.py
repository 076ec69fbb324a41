"""DVC stage `train_dense`: the dense autoencoder 784 -> 32 -> 784, plus its encoder/decoder."""

from mnist_ae.pipeline import run_stage, train_dense

if __name__ == "__main__":
    run_stage("train_dense", train_dense.run)
