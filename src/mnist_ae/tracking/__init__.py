"""MLflow tracking: one MLflow run (one row in the UI) per pipeline invocation.

- store: where runs go (MLFLOW_TRACKING_URI, or mlflow.db at the repository root), checked
  before any work, and created safely by parallel stages;
- run: attaching every stage of one `dvc repro` / `dvc exp run` to the same run, with params
  and tags (secrets left out);
- row: what the row holds — each stage's metrics, curves, models and files, declared once in
  `row.ROW` — and the trackers that log it, live and back-filled;
- links: links into the MLflow UI that open the runs table in its Model training view.

Nothing here writes to a DVC output: run ids and timestamps live only in MLflow.
"""

from mnist_ae.tracking.row import NO_TRACKING, ROW, LiveTracker, Tracker
from mnist_ae.tracking.run import pipeline_run
from mnist_ae.tracking.store import TrackingUnavailableError, tracking_uri

__all__ = [
    "NO_TRACKING",
    "ROW",
    "LiveTracker",
    "Tracker",
    "TrackingUnavailableError",
    "pipeline_run",
    "tracking_uri",
]
