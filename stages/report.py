"""DVC stage `report`: one page per run (Markdown + self-contained HTML), logged to MLflow."""

from mnist_ae.pipeline import report, run_stage

if __name__ == "__main__":
    run_stage("report", report.run)
