"""The run report names every figure, embeds every figure in HTML, and shows every method."""

from __future__ import annotations

import re
from pathlib import Path

from mnist_ae import report, vae
from mnist_ae.config import load_params, lookup

REPO = Path(__file__).resolve().parents[1]


def _evaluation() -> dict:
    quality = {"bce": 0.1, "mse": 0.01, "psnr": 20.0, "ssim": 0.9}
    return {
        "reconstruction": {
            "dense_autoencoder": {"bce": 0.09, "mse": 0.009, "psnr": 20.5, "mse_clipped": 0.009},
            "pca": {"bce": 0.12, "mse": 0.017, "psnr": 18.6, "mse_clipped": 0.0155},
        },
        "denoising": {
            "conv_denoiser": quality,
            "noisy_input": {**quality, "psnr": 9.4},
            "gaussian": {**quality, "psnr": 12.3},
            "non_local_means": {**quality, "psnr": 14.9},
        },
        "tuned_strength": {"gaussian": 1.0, "non_local_means": 0.3},
        "goals": {
            "dense_to_pca_mse_ratio": 0.53,
            "dense_to_clipped_pca_mse_ratio": 0.58,
            "best_classical": "non_local_means",
            "conv_psnr_margin_db": 5.1,
        },
    }


def _vae(binarized: bool = True) -> dict:
    scores = {
        "nll": 92.279,
        "negative_elbo": 97.878,
        "reconstruction": 74.714,
        "kl": 23.164,
        "importance_samples": 1000,
        "active_units": 16,
        "latent_dim": 50,
        "binarized": binarized,
    }
    return {
        "manifold": {
            "summary": {"epochs_run": 20},
            "evaluation": {**scores, "nll": 152.467, "latent_dim": 2, "active_units": 2},
        },
        "likelihood": {"summary": {"epochs_run": 1200}, "evaluation": scores},
    }


def _values() -> dict[str, object]:
    params = load_params(REPO / "params.yaml")
    return {key: lookup(params, key) for key in report.KEY_PARAMS}


def test_markdown_links_every_figure_and_reports_goals() -> None:
    links = {"noisy_digits": "../figures/noisy_digits.png", "latent_space": "../x/latent.png"}
    text = report.markdown_report(_values(), _evaluation(), _vae(), links)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert linked == ["../figures/noisy_digits.png", "../x/latent.png"]
    assert "| `train_dense.encoding_dim` | 32 |" in text
    assert "0.530 (goal ≤ 0.6: met)" in text
    assert "5.10 dB (goal ≥ 6 dB: NOT met)" in text
    for method in ("dense_autoencoder", "pca", "conv_denoiser", "noisy_input", "gaussian"):
        assert f"| {method} |" in text


def test_the_vaes_stand_beside_the_published_reference_with_what_their_numbers_mean() -> None:
    text = report.markdown_report(_values(), _evaluation(), _vae(), {})
    table = text[text.index("## Variational autoencoders") :]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[1:] == [
        "| Burda et al. 2015, Table 1: VAE, 1 stochastic layer | 784-200-200-50 (tanh) | 3,280 "
        "| 5000 | 86.76 |  |  |  |  |",
        "| this run: manifold | 784-256-2 (relu) | 20 | 1000 | 152.47 | 97.88 | 74.71 | 23.16 "
        "| 2 of 2 |",
        "| this run: likelihood | 784-200-200-50 (tanh) | 1,200 | 1000 | 92.28 | 97.88 | 74.71 "
        "| 23.16 | 16 of 50 |",
    ]
    assert "numbers are log-likelihoods, comparable with it" in table
    assert f"over the test images exceeds {vae.ACTIVE_UNIT_THRESHOLD}." in table
    assert "MLflow tag `vae_<name>.train_seconds`" in table
    grey = report.markdown_report(_values(), _evaluation(), _vae(binarized=False), {})
    assert "are NOT comparable with the reference" in grey
    assert "comparable with it" not in grey
    page = report.html_report(_values(), _evaluation(), _vae(), {})
    assert "<td>this run: likelihood</td>" in page and "<td>86.76</td>" in page
    assert "<code>vae_&lt;name&gt;.train_seconds</code>" in page


def test_html_embeds_every_figure_and_needs_no_other_file() -> None:
    figures = {"noisy_digits": b"\x89PNG fake \x00", "latent_space": b"\x89PNG fake \x01"}
    page = report.html_report(_values(), _evaluation(), _vae(), figures)
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert embedded == ["iVBORyBmYWtlIAA=", "iVBORyBmYWtlIAE="]  # base64 of the bytes above
    assert "<td><code>noise.noise_factor</code></td><td>0.5</td>" in page
    assert "src='http" not in page and "href=" not in page
    assert "<p>This run&#x27;s params" in page and "<code>mnist-ae ui</code>" in page


def test_report_stage_depends_on_exactly_the_params_it_prints() -> None:
    import yaml

    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]["params"]
    assert declared == report.KEY_PARAMS
