"""Figures from small arrays: the right panels, and titles and labels taken from the metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from mnist_ae import figures


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    """Close every figure a test opened."""
    yield
    plt.close("all")


def _legend(axis: Axes) -> list[str]:
    """The texts of an axis's legend."""
    return [text.get_text() for text in axis.get_legend().get_texts()]


def _tick_labels(axis: Axes) -> list[str]:
    """The x tick labels of an axis."""
    return [label.get_text() for label in axis.get_xticklabels()]


def _row_labels(figure: Figure, columns: int) -> list[str]:
    """The row labels of a digit grid: the y labels of its first column."""
    return [axis.get_ylabel() for axis in figure.axes[::columns]]


def _constant_images(values: list[float]) -> np.ndarray:
    """One 28x28 float64 image per value, every pixel equal to it."""
    return np.stack([np.full((28, 28), value) for value in values])


def test_digit_grid_has_one_row_per_entry_and_its_label() -> None:
    figure = figures.digit_grid(
        {"original": _constant_images([0.1, 0.2, 0.3]), "dense AE": _constant_images([0, 0, 1])},
        title="Three digits",
    )
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 6
    assert _row_labels(figure, 3) == ["original", "dense AE"]
    assert figure.get_suptitle() == "Three digits"
    assert figure.axes[1].images[0].get_array()[0, 0] == 0.2  # row 1, column 2
    assert figure.axes[5].images[0].get_array()[0, 0] == 1.0  # row 2, column 3
    assert figures.digit_grid({"noisy": _constant_images([0.5])}).get_suptitle() == ""


def test_digit_grid_refuses_rows_of_different_lengths() -> None:
    rows = {"a": _constant_images([0.1, 0.2, 0.3]), "b": _constant_images([0.1, 0.2])}
    with pytest.raises(
        ValueError, match=r"^every row needs the same number of digits, got \[2, 3\]$"
    ):
        figures.digit_grid(rows)


def test_training_curves_mark_the_best_epoch_of_each_model() -> None:
    figure = figures.training_curves(
        {
            "dense autoencoder": {
                "loss": [0.3, 0.2, 0.15, 0.12],
                "val_loss": [0.31, 0.21, 0.19, 0.2],
            },
            # An `epoch` column (as in the history CSV) gives the x values and the label.
            "conv denoiser": {
                "epoch": [4, 5, 6],
                "loss": [0.11, 0.1, 0.09],
                "val_loss": [0.12, 0.1, 0.11],
            },
        }
    )
    assert isinstance(figure, Figure)
    dense, conv = figure.axes
    assert [dense.get_title(), conv.get_title()] == ["dense autoencoder", "conv denoiser"]
    assert _legend(dense) == ["loss (train)", "val_loss", "best epoch 3"]
    assert _legend(conv) == ["loss (train)", "val_loss", "best epoch 5"]
    assert list(dense.lines[0].get_xdata()) == [1, 2, 3, 4]
    assert list(dense.lines[1].get_ydata()) == [0.31, 0.21, 0.19, 0.2]
    assert list(conv.lines[2].get_xdata()) == [5, 5]  # the vertical line at the best epoch
    assert (dense.get_xlabel(), dense.get_ylabel()) == ("epoch", "binary cross-entropy")


def test_psnr_bars_are_sorted_labelled_with_their_values_and_the_best_is_green() -> None:
    figure = figures.psnr_bars(
        {
            "reconstruction": {"dense_autoencoder": {"psnr": 20.54}, "pca": {"psnr": 18.61}},
            "denoising": {
                "conv_denoiser": {"psnr": 24.52},
                "noisy_input": {"psnr": 14.6},
                "total_variation": {"psnr": 17.02},
                "gaussian": {"psnr": 16.04},
            },
        }
    )
    assert isinstance(figure, Figure)
    reconstruction, denoising = figure.axes
    assert reconstruction.get_title() == "Reconstruction: test PSNR (dB)"
    assert denoising.get_title() == "Denoising: test PSNR (dB)"
    assert _tick_labels(reconstruction) == ["pca", "dense\nautoencoder"]
    assert [text.get_text() for text in reconstruction.texts] == ["18.6", "20.5"]
    assert _tick_labels(denoising) == [
        "noisy\ninput",
        "gaussian",
        "total\nvariation",
        "conv\ndenoiser",
    ]
    assert [text.get_text() for text in denoising.texts] == ["14.6", "16.0", "17.0", "24.5"]
    assert [bar.get_facecolor() for bar in denoising.patches] == [
        to_rgba("tab:blue"),
        to_rgba("tab:blue"),
        to_rgba("tab:blue"),
        to_rgba("tab:green"),
    ]
    assert denoising.get_ylabel() == "PSNR (dB), higher is better"


def _sweep_row(factor: float, conv: float, baseline: float, noisy: float) -> dict[str, float]:
    """One noise-sweep row; each SSIM is its PSNR / 100, to tell the panels apart."""
    return {
        "noise_factor": factor,
        "conv_denoiser_psnr": conv,
        "conv_denoiser_ssim": conv / 100,
        "baseline_psnr": baseline,
        "baseline_ssim": baseline / 100,
        "noisy_input_psnr": noisy,
        "noisy_input_ssim": noisy / 100,
    }


def test_sweep_curves_name_the_baseline_and_the_trained_noise_level() -> None:
    rows = [_sweep_row(0.5, 27.0, 22.0, 18.0), _sweep_row(1.5, 21.0, 16.0, 11.0)]
    figure = figures.sweep_curves(rows, trained_at=1.0, baseline="non_local_means")
    assert isinstance(figure, Figure)
    psnr_axis, ssim_axis = figure.axes
    expected_legend = ["conv denoiser", "non local means (tuned)", "noisy input", "trained at 1"]
    assert _legend(psnr_axis) == _legend(ssim_axis) == expected_legend
    assert [psnr_axis.get_xlabel(), ssim_axis.get_xlabel()] == ["noise factor", "noise factor"]
    assert [psnr_axis.get_ylabel(), ssim_axis.get_ylabel()] == ["PSNR (dB)", "SSIM"]
    assert figure.get_suptitle() == "Generalisation across noise levels (test set)"
    assert list(psnr_axis.lines[0].get_xdata()) == [0.5, 1.5]
    assert list(psnr_axis.lines[1].get_ydata()) == [22.0, 16.0]
    assert list(ssim_axis.lines[2].get_ydata()) == [0.18, 0.11]
    assert list(ssim_axis.lines[3].get_xdata()) == [1.0, 1.0]


def test_latent_scatter_colours_by_label_and_hides_the_axes_of_a_projection() -> None:
    points = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]])
    figure = figures.latent_scatter(points, np.array([0, 1, 2, 3, 9]), "Five codes")
    assert isinstance(figure, Figure)
    scatter_axis, colorbar_axis = figure.axes
    assert scatter_axis.get_title() == "Five codes"
    assert colorbar_axis.get_ylabel() == "digit"
    (scatter,) = scatter_axis.collections
    np.testing.assert_array_equal(scatter.get_offsets(), points)
    assert list(scatter.get_array()) == [0, 1, 2, 3, 9]
    assert list(scatter_axis.get_xticks()) == []
    # Codes whose axes mean something (a 2-D latent space) keep their ticks, with labels.
    labelled = figures.latent_scatter(points, np.zeros(5), "Codes", axis_labels=("z1", "z2"))
    assert (labelled.axes[0].get_xlabel(), labelled.axes[0].get_ylabel()) == ("z1", "z2")
    assert len(labelled.axes[0].get_xticks()) > 0


def test_digit_mosaic_tiles_the_digits_row_by_row_and_ticks_their_values() -> None:
    values = np.arange(6, dtype=float).reshape(2, 3) / 10  # row r, column c: 0.3 r + 0.1 c
    images = np.broadcast_to(values[:, :, None, None], (2, 3, 28, 28))
    figure = figures.digit_mosaic(
        images, "A mosaic", [-1.0, 0.0, 1.5], [0.25, -0.25], axis_labels=("z1", "z2")
    )
    (axis,) = figure.axes
    tiled = axis.images[0].get_array()
    assert tiled.shape == (56, 84)
    assert tiled[0, 0] == 0.0
    assert tiled[0, 28] == 0.1  # row 0, column 1
    assert tiled[28, 56] == 0.5  # row 1, column 2
    assert _tick_labels(axis) == ["-1.00", "0.00", "1.50"]
    assert [label.get_text() for label in axis.get_yticklabels()] == ["0.25", "-0.25"]
    assert list(axis.get_xticks()) == [13.5, 41.5, 69.5]
    assert (axis.get_xlabel(), axis.get_ylabel(), axis.get_title()) == ("z1", "z2", "A mosaic")
    plain = figures.digit_mosaic(images, "No values")
    assert list(plain.axes[0].get_xticks()) == list(plain.axes[0].get_yticks()) == []


def test_per_digit_bars_group_by_digit_with_one_bar_per_method() -> None:
    figure = figures.per_digit_bars(
        {
            "dense_autoencoder": {"7": 0.02, "1": 0.005, "3": 0.01},
            "pca": {"3": 0.03, "7": 0.04, "1": 0.02},
        }
    )
    assert isinstance(figure, Figure)
    (axis,) = figure.axes
    assert _tick_labels(axis) == ["1", "3", "7"]
    assert _legend(axis) == ["dense autoencoder", "pca"]
    dense, pca = axis.containers
    assert [bar.get_height() for bar in dense] == [0.005, 0.01, 0.02]
    assert [bar.get_height() for bar in pca] == [0.02, 0.03, 0.04]
    assert axis.get_title() == "Reconstruction error per digit (test set)"
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("digit", "mean squared error")


class _StubModel:
    """A stand-in Keras model: records each input's shape, returns `function(input)`."""

    def __init__(self, function: Callable[[np.ndarray], np.ndarray]) -> None:
        self.function = function
        self.shapes: list[tuple[int, ...]] = []

    def predict(
        self, images: np.ndarray, batch_size: int | None = None, verbose: int = 0
    ) -> np.ndarray:
        """The stub's function of the input."""
        self.shapes.append(images.shape)
        return self.function(images)


def test_pipeline_figures_draws_every_figure_from_the_stub_models_and_metrics() -> None:
    clean = _constant_images([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    noisy = _constant_images([0.05, 0.15, 0.25, 0.35, 0.45, 0.55])
    errors = np.array([0.1, 0.5, 0.0, 0.3, 0.2, 0.4])  # worst first: images 1, 5, 3
    dense = _StubModel(lambda flat: flat + errors[: len(flat), None])
    encoder = _StubModel(lambda flat: np.stack([flat[:, 0], flat[:, 0] ** 2, -flat[:, 0]], 1))
    conv = _StubModel(lambda images: np.clip(images - 0.05, 0.0, 1.0))
    evaluation = {
        "reconstruction": {
            "dense_autoencoder": {"mse": 0.0091234, "psnr": 20.54},
            "pca": {"mse": 0.0168, "psnr": 18.61},
        },
        "denoising": {
            "conv_denoiser": {"psnr": 24.5155, "ssim": 0.91234},
            "noisy_input": {"psnr": 14.6041, "ssim": 0.4567},
            "gaussian": {"psnr": 16.04, "ssim": 0.6},
            "non_local_means": {"psnr": 17.02, "ssim": 0.7},
        },
        "tuned_strength": {"gaussian": 1.0, "non_local_means": 0.3},
        "per_digit_mse": {
            "dense_autoencoder": {"0": 0.01, "1": 0.02},
            "pca": {"0": 0.02, "1": 0.03},
        },
    }
    history = {"loss": [0.3, 0.2], "val_loss": [0.25, 0.26]}
    # The VAE stubs: codes are (mean pixel, -mean pixel, ...), log variances zero; a decoder's
    # logits are 0 everywhere but where its code's first coordinate says.
    manifold_encoder = _StubModel(lambda flat: (flat[:, :2] * [1, -1], np.zeros((len(flat), 2))))
    likelihood_encoder = _StubModel(lambda flat: (flat[:, :5], np.zeros((len(flat), 5))))
    manifold_decoder = _StubModel(
        lambda codes: np.repeat(codes[:, :1] + 2 * codes[:, 1:2], 784, axis=1)
    )
    likelihood_decoder = _StubModel(lambda codes: np.repeat(codes[:, :1], 784, axis=1))
    vae_inputs = figures.VaeFigureInputs(
        manifold_encoder=manifold_encoder,
        manifold_decoder=manifold_decoder,
        likelihood_encoder=likelihood_encoder,
        likelihood_decoder=likelihood_decoder,
        images=(clean > 0.25).astype(np.float32),
        binarized=True,
        histories={"manifold": history, "likelihood": history},
    )
    inputs = figures.FigureInputs(
        dense_autoencoder=dense,
        dense_encoder=encoder,
        conv_denoiser=conv,
        clean=clean,
        noisy=noisy,
        labels=np.array([0, 1, 0, 1, 0, 1]),
        histories={"dense": history, "conv": history},
        evaluation=evaluation,
        sweep=[_sweep_row(0.5, 24.0, 17.0, 14.0)],
        sweep_baseline="non_local_means",
        noise_factor=0.5,
        vae=vae_inputs,
    )

    drawn = figures.pipeline_figures(
        inputs, n_digits=3, projection="pca", projection_samples=4, manifold_size=4, seed=0
    )

    assert dense.shapes == [(6, 784)]
    assert encoder.shapes == [(4, 784)]
    assert conv.shapes == [(3, 28, 28, 1)]
    axes_per_figure = {
        "dense_reconstructions": 6,
        "noisy_digits": 3,
        "denoising": 9,
        "training_curves": 2,
        "psnr_by_method": 2,
        "denoisers_compared": 15,
        "noise_sweep": 2,
        "latent_space": 2,
        "error_per_digit": 1,
        "worst_reconstructions": 6,
        "vae_manifold": 1,
        "vae_codes": 2,
        "vae_prior_samples": 1,
        "vae_interpolations": 9,  # 3 pairs of the 6 test digits, 3 steps each
        "vae_reconstructions": 15,  # original, binarised, dense AE, VAE 2-D, VAE 5-D
        "vae_training_curves": 2,
    }
    assert list(drawn) == list(axes_per_figure)
    assert {name: len(figure.axes) for name, figure in drawn.items()} == axes_per_figure
    assert drawn["dense_reconstructions"].get_suptitle() == (
        "Dense autoencoder: test MSE 0.0091 (PCA at the same code size: 0.0168)"
    )
    assert drawn["denoising"].get_suptitle() == (
        "Conv denoiser: test PSNR 24.5 dB, SSIM 0.912 (noisy input 14.6 dB, 0.457)"
    )
    assert _row_labels(drawn["denoisers_compared"], 3) == [
        "noisy",
        "gaussian",
        "non local means",
        "conv denoiser",
        "clean",
    ]
    assert drawn["worst_reconstructions"].get_suptitle() == (
        "The 3 worst-reconstructed test digits (dense AE, by MSE)"
    )
    worst_shown = [axis.images[0].get_array()[0, 0] for axis in drawn["worst_reconstructions"].axes]
    assert worst_shown == pytest.approx([0.1, 0.5, 0.3, 0.6, 0.9, 0.6])  # originals, then outputs
    assert drawn["latent_space"].axes[0].get_title() == (
        "Dense encoder codes, PCA to 2-D (4 test digits)"
    )
    assert _legend(drawn["noise_sweep"].axes[0])[1] == "non local means (tuned)"
    assert _legend(drawn["training_curves"].axes[1])[2] == "best epoch 1"
    assert _tick_labels(drawn["error_per_digit"].axes[0]) == ["0", "1"]
    # The VAEs: every image is a decoded mean, sigmoid(logits).
    assert manifold_encoder.shapes == [(4, 784)]  # the scatter's projection_samples
    assert likelihood_encoder.shapes == [(6, 784)]  # 3 pairs to interpolate
    assert manifold_decoder.shapes == [(16, 2), (3, 2)]  # the 4 x 4 manifold, 3 reconstructions
    assert likelihood_decoder.shapes == [(64, 5), (9, 5), (3, 5)]  # prior, 3 lines, 3 digits
    manifold = drawn["vae_manifold"].axes[0]
    quantile_05 = -1.6448536269514722
    assert _tick_labels(manifold)[0] == f"{quantile_05:.2f}"
    assert manifold.get_yticklabels()[0].get_text() == f"{-quantile_05:.2f}"
    tiled = manifold.images[0].get_array()
    assert tiled.shape == (4 * 28, 4 * 28)
    # The stub's logit is z1 + 2 z2. Top row: z2 = q(0.95); left column: z1 = q(0.05).
    assert tiled[0, 0] == pytest.approx(1 / (1 + np.exp(quantile_05)))
    assert tiled[0, 3 * 28] == pytest.approx(1 / (1 + np.exp(3 * quantile_05)))
    assert tiled[3 * 28, 0] == pytest.approx(1 / (1 + np.exp(-3 * quantile_05)))  # bottom left
    codes = drawn["vae_codes"].axes[0]
    # The first projection_samples test digits; binarised digit 3 is all ones: code (1, -1).
    np.testing.assert_array_equal(codes.collections[0].get_offsets()[:, 1], [0, 0, 0, -1])
    assert codes.get_title() == "2-D VAE codes (posterior means) of 4 test digits"
    assert _row_labels(drawn["vae_interpolations"], 3) == [
        "0 → 1\n(test 0, 1)",
        "0 → 1\n(test 2, 3)",
        "0 → 1\n(test 4, 5)",
    ]
    # Digits 2 -> 3: codes 0, 0.5, 1 in the first coordinate, which the stub decodes as logit.
    steps = [axis.images[0].get_array()[0, 0] for axis in drawn["vae_interpolations"].axes[3:6]]
    assert steps == pytest.approx([0.5, 1 / (1 + np.exp(-0.5)), 1 / (1 + np.exp(-1.0))])
    assert _row_labels(drawn["vae_reconstructions"], 3) == [
        "original",
        "binarised",
        "dense AE",
        "VAE 2-D",
        "VAE 5-D",
    ]
    assert drawn["vae_training_curves"].axes[0].get_title() == "VAE manifold"
    assert drawn["vae_training_curves"].axes[0].get_ylabel() == "negative ELBO (nats per image)"
