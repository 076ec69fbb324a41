"""Stage `report`: one page per run (Markdown + self-contained HTML); completes the MLflow row
and registers the run's models."""

from __future__ import annotations

from pathlib import Path

from mnist_ae import artifacts, report
from mnist_ae.config import Params, lookup
from mnist_ae.tracking import NO_TRACKING, Tracker
from mnist_ae.tracking.links import announce_run
from mnist_ae.tracking.registry import register_tracked_models


def run(params: Params, workdir: Path, tracker: Tracker = NO_TRACKING) -> None:
    """Write the run report, fill in the MLflow row for the stages DVC skipped, and register
    the models this run trained (tracking.registry); end with where the run is in MLflow."""
    values = {key: lookup(params, key) for key in report.KEY_PARAMS}
    evaluation = artifacts.EVALUATION.read(workdir)
    vae = {
        name: {"summary": files.summary.read(workdir), "evaluation": files.evaluation.read(workdir)}
        for name, files in artifacts.VAE.items()
    }
    links = {name: f"../{png.path}" for name, png in artifacts.FIGURES.items()}
    images = {name: png.read_bytes(workdir) for name, png in artifacts.FIGURES.items()}
    artifacts.REPORT_MARKDOWN.write(workdir, report.markdown_report(values, evaluation, vae, links))
    artifacts.REPORT_HTML.write(workdir, report.html_report(values, evaluation, vae, images))
    tracker.log_stage("report")
    tracker.complete_row()
    scores = {name: files["evaluation"] for name, files in vae.items()}
    register_tracked_models(tracker, {**evaluation, "vae": scores})
    announce_run(tracker)  # where to see it, near the end of what `dvc repro` prints
