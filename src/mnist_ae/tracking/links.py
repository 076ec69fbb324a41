"""Links into the MLflow UI that open on the runs, not on MLflow's GenAI pages.

MLflow 3's UI has two views, switched by the "GenAI / Model training" toggle at its top left
and remembered in the browser (GenAI by default): the plain experiment link
`<server>/#/experiments/<id>` opens a new user's browser on the GenAI overview (traces,
tokens), whatever the experiment's `mlflow.experimentKind` tag says. The URL parameter
`workflowType=machine_learning` selects the Model training view for that page without changing
the remembered choice; it works on the runs table and on a run's page alike (checked with
MLflow 3.17 in headless Chromium: tests/test_ui.py).
"""

from __future__ import annotations

import logging
import urllib.parse

from mnist_ae.tracking.row import LiveTracker, Tracker
from mnist_ae.tracking.store import display_uri, is_http

log = logging.getLogger(__name__)

TRAINING_VIEW = "workflowType=machine_learning"


def runs_url(base_url: str, experiment_id: str, run_id: str | None = None) -> str:
    """The UI page of an experiment's runs table (or of one of its runs) in the Model training
    view; `base_url` is the server's address, shown without credentials, query or fragment."""
    base = display_uri(base_url).rstrip("/")
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected the MLflow server's http(s) address, found {base!r}")
    page = f"/experiments/{urllib.parse.quote(experiment_id, safe='')}/runs"
    if run_id is not None:
        page += f"/{urllib.parse.quote(run_id, safe='')}"
    return f"{base}/#{page}?{TRAINING_VIEW}"


def announce_run(tracker: Tracker) -> None:
    """Log where the tracker's MLflow run is: its link on a tracking server (the run's page in
    the Model training view), or its local store and `mnist-ae ui`; nothing without a run."""
    if not isinstance(tracker, LiveTracker):
        return
    info = tracker.client.get_run(tracker.run_id).info
    if is_http(tracker.uri):
        where = runs_url(tracker.uri, info.experiment_id, tracker.run_id)
    else:  # a file or database store has no UI of its own: `mnist-ae ui` serves one
        where = f"in {display_uri(tracker.uri)}; open it with mnist-ae ui"
    log.info("MLflow run %s: %s", info.run_name, where)
