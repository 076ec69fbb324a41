"""Where each stage reads and writes, relative to the repository root; dvc.yaml lists the same."""

MNIST = "data/mnist.npz"
NOISY = "data/noisy.npz"

DENSE_AUTOENCODER = "models/dense_autoencoder.keras"
DENSE_ENCODER = "models/dense_encoder.keras"
DENSE_DECODER = "models/dense_decoder.keras"
CONV_DENOISER = "models/conv_denoiser.keras"
PCA = "models/pca.npz"

DENSE_HISTORY = "metrics/dense_history.csv"
CONV_HISTORY = "metrics/conv_history.csv"
DENSE_SUMMARY = "metrics/train_dense.json"
CONV_SUMMARY = "metrics/train_conv.json"
EVALUATION = "metrics/evaluation.json"
BASELINE_TUNING = "metrics/baseline_tuning.json"
NOISE_SWEEP = "metrics/noise_sweep.csv"

FIGURES = {
    "dense_reconstructions": "figures/dense_reconstructions.png",
    "noisy_digits": "figures/noisy_digits.png",
    "denoising": "figures/denoising.png",
    "training_curves": "figures/training_curves.png",
    "psnr_by_method": "figures/psnr_by_method.png",
    "denoisers_compared": "figures/denoisers_compared.png",
    "noise_sweep": "figures/noise_sweep.png",
    "latent_space": "figures/latent_space.png",
    "error_per_digit": "figures/error_per_digit.png",
    "worst_reconstructions": "figures/worst_reconstructions.png",
}

REPORT_MARKDOWN = "reports/report.md"
REPORT_HTML = "reports/report.html"
