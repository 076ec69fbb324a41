"""The run report names every figure, embeds every figure in HTML, and shows every method."""

from __future__ import annotations

import re
from pathlib import Path

from mnist_ae import paths, report
from mnist_ae.config import load_params

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


def _figures(tmp_path: Path) -> dict[str, str]:
    figures = {}
    for index, name in enumerate(paths.FIGURES):
        path = tmp_path / Path(paths.FIGURES[name]).name
        path.write_bytes(b"\x89PNG fake " + bytes([index]))
        figures[name] = str(path)
    return figures


def test_markdown_links_every_figure_and_reports_goals(tmp_path: Path) -> None:
    params = load_params(REPO / "params.yaml")
    text = report.markdown_report(params, _evaluation(), paths.FIGURES, "../figures")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert linked == [f"../figures/{Path(path).name}" for path in paths.FIGURES.values()]
    assert "0.530 (goal ≤ 0.6: met)" in text
    assert "5.10 dB (goal ≥ 6 dB: NOT met)" in text
    for method in ("dense_autoencoder", "pca", "conv_denoiser", "noisy_input", "gaussian"):
        assert f"| {method} |" in text


def test_html_embeds_every_figure_and_needs_no_other_file(tmp_path: Path) -> None:
    params = load_params(REPO / "params.yaml")
    figures = _figures(tmp_path)
    page = report.html_report(params, _evaluation(), figures)
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    # b"\x89PNG fake " and the figure's index byte (0 to 9), in base64.
    assert embedded == [
        "iVBORyBmYWtlIAA=",
        "iVBORyBmYWtlIAE=",
        "iVBORyBmYWtlIAI=",
        "iVBORyBmYWtlIAM=",
        "iVBORyBmYWtlIAQ=",
        "iVBORyBmYWtlIAU=",
        "iVBORyBmYWtlIAY=",
        "iVBORyBmYWtlIAc=",
        "iVBORyBmYWtlIAg=",
        "iVBORyBmYWtlIAk=",
    ]
    assert "src='http" not in page and "href=" not in page


def test_report_stage_depends_on_exactly_the_params_it_prints() -> None:
    import yaml

    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]["params"]
    assert declared == report.KEY_PARAMS
