"""Where each stage reads and writes, relative to the repository root; dvc.yaml lists the same."""

MNIST = "data/mnist.npz"
NOISY = "data/noisy.npz"

DENSE_AUTOENCODER = "models/dense_autoencoder.keras"
DENSE_ENCODER = "models/dense_encoder.keras"
DENSE_DECODER = "models/dense_decoder.keras"
CONV_DENOISER = "models/conv_denoiser.keras"

DENSE_HISTORY = "metrics/dense_history.csv"
CONV_HISTORY = "metrics/conv_history.csv"
DENSE_SUMMARY = "metrics/train_dense.json"
CONV_SUMMARY = "metrics/train_conv.json"
EVALUATION = "metrics/evaluation.json"

FIGURES = {
    "dense_reconstructions": "figures/dense_reconstructions.png",
    "noisy_digits": "figures/noisy_digits.png",
    "denoising": "figures/denoising.png",
    "training_curves": "figures/training_curves.png",
}
