"""Links into the MLflow UI (mnist_ae.tracking.links); tests/test_ui.py opens them in a browser."""

from __future__ import annotations

import pytest

from mnist_ae.tracking.links import runs_url


def test_runs_url_opens_the_runs_table_in_the_training_view() -> None:
    assert runs_url("http://127.0.0.1:5000", "1") == (
        "http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning"
    )
    assert runs_url("http://127.0.0.1:5000/", "12") == (
        "http://127.0.0.1:5000/#/experiments/12/runs?workflowType=machine_learning"
    )


def test_runs_url_of_a_run_opens_its_page_in_the_training_view() -> None:
    assert runs_url("http://127.0.0.1:5000", "1", "d1779450b90d45d5bdb534ea70c3e939") == (
        "http://127.0.0.1:5000/#/experiments/1/runs/d1779450b90d45d5bdb534ea70c3e939"
        "?workflowType=machine_learning"
    )


def test_runs_url_never_shows_credentials_and_keeps_the_server_path() -> None:
    url = runs_url("https://alice:p@ss:w0rd@mlflow.example.invalid:8443/team/?token=t#x", "3")
    assert url == (
        "https://mlflow.example.invalid:8443/team/#/experiments/3/runs"
        "?workflowType=machine_learning"
    )
    assert "alice" not in url
    assert "w0rd" not in url


@pytest.mark.parametrize("base_url", ["sqlite:////work/mlflow.db", "127.0.0.1:5000", "http:x"])
def test_runs_url_needs_a_server_address(base_url: str) -> None:
    with pytest.raises(ValueError, match="expected the MLflow server's http"):
        runs_url(base_url, "1")
