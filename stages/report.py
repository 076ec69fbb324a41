"""DVC stage `report`: one page per run (Markdown + self-contained HTML), logged to MLflow."""

from mnist_ae import io, paths, report, tracking
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def main(params: Params) -> None:
    """Write the run report and complete this run's MLflow row."""
    with tracking.pipeline_run("report", params) as client:
        evaluation = io.read_json(paths.EVALUATION)
        sweep = io.read_table_csv(paths.NOISE_SWEEP)
        series = {
            "dense": (io.read_history_csv(paths.DENSE_HISTORY), 1),
            "conv": (io.read_history_csv(paths.CONV_HISTORY), 1),
            "sweep": ({name: [row[name] for row in sweep] for name in sweep[0]}, 0),
        }
        summaries = {
            "dense": io.read_json(paths.DENSE_SUMMARY),
            "conv": io.read_json(paths.CONV_SUMMARY),
        }
        io.write_text(
            paths.REPORT_MARKDOWN,
            report.markdown_report(params, evaluation, paths.FIGURES, "../figures"),
        )
        io.write_text(paths.REPORT_HTML, report.html_report(params, evaluation, paths.FIGURES))
        # Stages DVC skipped logged nothing in this run: fill in their metrics and curves.
        tracking.backfill(client, {**evaluation, **summaries}, series)
        tracking.log_artifacts([*paths.FIGURES.values()], "figures")
        tracking.log_artifacts([paths.REPORT_MARKDOWN, paths.REPORT_HTML], "reports")
        tracking.log_artifacts([paths.EVALUATION])


if __name__ == "__main__":
    run_stage("report", main)
