"""The one-page run report, as Markdown and as self-contained HTML (figures embedded)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from typing import Any

# Which params a reader needs to interpret the numbers.
KEY_PARAMS = [
    "seed",
    "prepare.source",
    "prepare.train_samples",
    "prepare.test_samples",
    "noise.noise_factor",
    "train_dense.encoding_dim",
    "train_dense.optimizer",
    "train_dense.learning_rate",
    "train_dense.epochs",
    "train_dense.batch_size",
    "train_conv.filters",
    "train_conv.optimizer",
    "train_conv.learning_rate",
    "train_conv.epochs",
    "train_conv.batch_size",
    "train_conv.early_stopping_patience",
    "baselines.tuning_samples",
]


def _tables(evaluation: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for the reconstruction and denoising tables."""
    reconstruction = evaluation["reconstruction"]
    denoising = evaluation["denoising"]
    tuned = evaluation.get("tuned_strength", {})
    tables = [
        (
            "Reconstruction (clean test images)",
            ["method", "BCE", "MSE", "PSNR (dB)", "MSE, output clipped to [0, 1]"],
            [
                [
                    name,
                    f"{m['bce']:.4f}",
                    f"{m['mse']:.4f}",
                    f"{m['psnr']:.2f}",
                    f"{m['mse_clipped']:.4f}",
                ]
                for name, m in reconstruction.items()
            ],
        ),
        (
            "Denoising (noisy test images vs clean)",
            ["method", "tuned strength", "BCE", "MSE", "PSNR (dB)", "SSIM"],
            [
                [
                    name,
                    f"{tuned[name]:g}" if name in tuned else "",
                    f"{m['bce']:.4f}",
                    f"{m['mse']:.4f}",
                    f"{m['psnr']:.2f}",
                    f"{m['ssim']:.3f}",
                ]
                for name, m in sorted(denoising.items(), key=lambda item: item[1]["psnr"])
            ],
        ),
    ]
    return tables


def _goals(evaluation: Mapping[str, Any]) -> list[str]:
    goals = evaluation["goals"]
    return [
        f"Dense AE test MSE / PCA test MSE = {goals['dense_to_pca_mse_ratio']:.3f} "
        f"(goal ≤ 0.6: {'met' if goals['dense_to_pca_mse_ratio'] <= 0.6 else 'NOT met'}); "
        f"against PCA with its output clipped to [0, 1]: "
        f"{goals['dense_to_clipped_pca_mse_ratio']:.3f}",
        f"Conv denoiser PSNR − best classical ({goals['best_classical']}) = "
        f"{goals['conv_psnr_margin_db']:.2f} dB "
        f"(goal ≥ 6 dB: {'met' if goals['conv_psnr_margin_db'] >= 6 else 'NOT met'})",
    ]


# Where to find the run beside others. No URL: the report is a DVC output, the same bytes
# whichever MLflow store logged the run.
MLFLOW_NOTE = (
    "This run's params, metrics, curves, models and files are one row of the MLflow "
    "experiment. Run `mnist-ae ui` in the repository: it prints the link that opens the runs "
    "table in MLflow's training view, where rows can be compared. The models it trained are "
    "new versions of the registered models (`tracking.registry` in params.yaml)."
)


def _inline_code(escaped: str) -> str:
    """Markdown's `code` spans as HTML <code> (in already escaped text)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def markdown_report(
    values: Mapping[str, Any], evaluation: Mapping[str, Any], figures: Mapping[str, str]
) -> str:
    """The report as Markdown. `values` holds KEY_PARAMS' values; `figures` maps each figure's
    name to its link, relative to the report's directory."""
    lines = ["# Run report: MNIST autoencoders", "", "## Params", ""]
    lines += ["| param | value |", "|---|---|"]
    lines += [f"| `{key}` | {values[key]} |" for key in KEY_PARAMS]
    lines += ["", "## Goals", ""] + [f"- {goal}" for goal in _goals(evaluation)]
    for title, header, rows in _tables(evaluation):
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |"]
        lines += ["|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "## Figures", ""]
    for name, link in figures.items():
        lines += [f"### {name.replace('_', ' ')}", "", f"![{name}]({link})", ""]
    lines += ["## In MLflow", "", MLFLOW_NOTE]
    return "\n".join(lines) + "\n"


def html_report(
    values: Mapping[str, Any], evaluation: Mapping[str, Any], figures: Mapping[str, bytes]
) -> str:
    """The report as one HTML file with every figure (PNG bytes by name) embedded: it opens
    offline, with no other file."""
    escape = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>Run report: MNIST autoencoders</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 10px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%}</style></head><body>",
        "<h1>Run report: MNIST autoencoders</h1><h2>Params</h2><table>",
        "<tr><th>param</th><th>value</th></tr>",
    ]
    parts += [
        f"<tr><td><code>{escape(key)}</code></td><td>{escape(str(values[key]))}</td></tr>"
        for key in KEY_PARAMS
    ]
    parts += ["</table><h2>Goals</h2><ul>"]
    parts += [f"<li>{escape(goal)}</li>" for goal in _goals(evaluation)]
    parts += ["</ul>"]
    for title, header, rows in _tables(evaluation):
        parts += [f"<h2>{escape(title)}</h2><table><tr>"]
        parts += [f"<th>{escape(cell)}</th>" for cell in header]
        parts += ["</tr>"]
        for row in rows:
            parts += ["<tr>", *[f"<td>{escape(cell)}</td>" for cell in row], "</tr>"]
        parts += ["</table>"]
    parts += ["<h2>Figures</h2>"]
    for name, png in figures.items():
        encoded = base64.b64encode(png).decode("ascii")
        parts += [
            f"<h3>{escape(name.replace('_', ' '))}</h3>",
            f"<img alt='{escape(name)}' src='data:image/png;base64,{encoded}'>",
        ]
    parts += ["<h2>In MLflow</h2>", f"<p>{_inline_code(escape(MLFLOW_NOTE))}</p>"]
    parts += ["</body></html>"]
    return "\n".join(parts) + "\n"
