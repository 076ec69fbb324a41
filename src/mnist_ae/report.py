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
    "train_vae.binarize",
    "train_vae.models.manifold.hidden",
    "train_vae.models.manifold.activation",
    "train_vae.models.manifold.epochs",
    "train_vae.models.likelihood.hidden",
    "train_vae.models.likelihood.latent_dim",
    "train_vae.models.likelihood.activation",
    "train_vae.models.likelihood.epochs",
    "evaluate_vae.importance_samples.manifold",
    "evaluate_vae.importance_samples.likelihood",
]

# The published number the likelihood VAE is put beside: Burda, Grosse & Salakhutdinov (2015),
# "Importance Weighted Autoencoders", Table 1, MNIST, VAE with one stochastic layer (k = 1).
REFERENCE_VAE = {
    "model": "Burda et al. 2015, Table 1: VAE, 1 stochastic layer",
    "architecture": "784-200-200-50 (tanh)",
    "epochs": "3,280",
    "k": "5000",
    "nll": "86.76",
}
VAE_COLUMNS = [
    "model",
    "architecture",
    "epochs",
    "k",
    "test NLL",
    "test −ELBO",
    "reconstruction",
    "KL",
    "active units",
]


def _architecture(values: Mapping[str, Any], name: str, latent_dim: int) -> str:
    """784-hidden...-latent of VAE configuration `name`, from the printed params."""
    hidden = values[f"train_vae.models.{name}.hidden"]
    activation = values[f"train_vae.models.{name}.activation"]
    layers = "-".join(str(size) for size in [784, *hidden, latent_dim])
    return f"{layers} ({activation})"


def _vae_table(
    values: Mapping[str, Any], vae: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> tuple[str, list[str], list[list[str]]]:
    """The reference beside this run's VAEs: `vae` maps each configuration to its training
    summary and test scores (`summary`, `evaluation`: metrics/train_vae_<name>.json and
    metrics/vae_<name>.json)."""
    reference = REFERENCE_VAE
    rows = [
        [
            reference["model"],
            reference["architecture"],
            reference["epochs"],
            reference["k"],
            reference["nll"],
            "",
            "",
            "",
            "",
        ]
    ]
    for name, files in vae.items():
        scores, summary = files["evaluation"], files["summary"]
        rows.append(
            [
                f"this run: {name}",
                _architecture(values, name, scores["latent_dim"]),
                f"{summary['epochs_run']:,}",
                str(scores["importance_samples"]),
                f"{scores['nll']:.2f}",
                f"{scores['negative_elbo']:.2f}",
                f"{scores['reconstruction']:.2f}",
                f"{scores['kl']:.2f}",
                f"{scores['active_units']} of {scores['latent_dim']}",
            ]
        )
    return (
        "Variational autoencoders against the literature (nats per test image)",
        VAE_COLUMNS,
        rows,
    )


def _vae_notes(vae: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """What the VAE numbers mean, and where the training times are."""
    notes = [
        "Test NLL: −log p(x), estimated by importance sampling with k samples of q(z|x) (the "
        "IWAE bound: an upper bound on the NLL that tightens as k grows). −ELBO = "
        "reconstruction (−log p(x|z), over the same k codes) + KL(q(z|x) ‖ p(z)). A latent "
        "dimension is active when the variance of its posterior mean over the test images "
        "exceeds 0.01.",  # vae.ACTIVE_UNIT_THRESHOLD (not imported: no TensorFlow here)
    ]
    if all(files["evaluation"]["binarized"] for files in vae.values()):
        notes.append(
            "Trained on dynamically binarised images, scored on the test images binarised "
            "once with the seed, as the reference: the numbers are log-likelihoods, "
            "comparable with it (a larger k gives a slightly lower, tighter estimate; the "
            f"reference used k = {REFERENCE_VAE['k']})."
        )
    else:
        notes.append(
            "Trained and scored on grey images (`train_vae.binarize: none`): the "
            '"reconstruction" is a cross-entropy, not a log-likelihood, and these numbers '
            "are NOT comparable with the reference."
        )
    notes.append(
        "Training wall time is not printed here (the report's bytes do not depend on the "
        "machine): it is the MLflow tag `vae_<name>.train_seconds` of the run that trained "
        "the model, beside `vae_<name>.train_cpu`; docs/benchmarks.md has measured times."
    )
    return notes


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


VaeResults = Mapping[str, Mapping[str, Mapping[str, Any]]]


def markdown_report(
    values: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    vae: VaeResults,
    figures: Mapping[str, str],
) -> str:
    """The report as Markdown. `values` holds KEY_PARAMS' values; `vae` each VAE's summary and
    scores (see _vae_table); `figures` maps each figure's name to its link, relative to the
    report's directory."""
    lines = ["# Run report: MNIST autoencoders", "", "## Params", ""]
    lines += ["| param | value |", "|---|---|"]
    lines += [f"| `{key}` | {values[key]} |" for key in KEY_PARAMS]
    lines += ["", "## Goals", ""] + [f"- {goal}" for goal in _goals(evaluation)]
    for title, header, rows in [*_tables(evaluation), _vae_table(values, vae)]:
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |"]
        lines += ["|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [""] + [f"- {note}" for note in _vae_notes(vae)]
    lines += ["", "## Figures", ""]
    for name, link in figures.items():
        lines += [f"### {name.replace('_', ' ')}", "", f"![{name}]({link})", ""]
    lines += ["## In MLflow", "", MLFLOW_NOTE]
    return "\n".join(lines) + "\n"


def html_report(
    values: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    vae: VaeResults,
    figures: Mapping[str, bytes],
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
    for title, header, rows in [*_tables(evaluation), _vae_table(values, vae)]:
        parts += [f"<h2>{escape(title)}</h2><table><tr>"]
        parts += [f"<th>{escape(cell)}</th>" for cell in header]
        parts += ["</tr>"]
        for row in rows:
            parts += ["<tr>", *[f"<td>{escape(cell)}</td>" for cell in row], "</tr>"]
        parts += ["</table>"]
    parts += ["<ul>", *[f"<li>{_inline_code(escape(note))}</li>" for note in _vae_notes(vae)]]
    parts += ["</ul>"]
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
