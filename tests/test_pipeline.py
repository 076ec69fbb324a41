"""End to end: the real `dvc repro` on a shrunk copy of the repository, checked through DVC's
outputs and the MLflow store. Slow-ish (a few minutes): every stage imports TensorFlow."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from mnist_ae import paths
from mnist_ae.config import flatten
from pipeline_repo import OUTPUTS, SECRETS, STAGES, Pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipeline(built_pipeline: Pipeline) -> Pipeline:
    """The session's shrunk repository itself (with the MLflow run of its first `dvc repro`)."""
    return built_pipeline


def test_every_output_exists_and_metrics_are_sane(pipeline: Pipeline) -> None:
    for name in OUTPUTS:
        assert (pipeline.root / name).stat().st_size > 0, name
    with np.load(pipeline.root / paths.MNIST) as mnist:
        assert mnist["x_train"].shape == (400, 28, 28) and mnist["x_test"].shape == (100, 28, 28)
    with np.load(pipeline.root / paths.NOISY) as noisy:
        assert noisy["x_test_noisy"].dtype == np.float32
        assert noisy["x_test_noisy"].min() >= 0.0 and noisy["x_test_noisy"].max() <= 1.0
    evaluation = json.loads((pipeline.root / paths.EVALUATION).read_text())
    denoisers = {"conv_denoiser", "noisy_input", "gaussian", "median"}
    denoisers |= {"total_variation", "non_local_means"}
    assert set(evaluation["denoising"]) == denoisers
    for scores in evaluation["denoising"].values():
        assert set(scores) == {"bce", "mse", "psnr", "ssim"}
        assert 0 < scores["mse"] < 1 and 0 < scores["psnr"] < 100 and -1 <= scores["ssim"] <= 1
    assert set(evaluation["reconstruction"]) == {"dense_autoencoder", "pca"}
    assert 0 < evaluation["reconstruction"]["dense_autoencoder"]["bce"] < 1
    # The tuned classical denoisers beat doing nothing, even on this tiny run.
    best = evaluation["goals"]["best_classical"]
    assert evaluation["denoising"][best]["psnr"] > evaluation["denoising"]["noisy_input"]["psnr"]
    assert sorted(evaluation["per_digit_mse"]["pca"]) == sorted(
        {str(label) for label in np.load(pipeline.root / paths.MNIST)["y_test"]}
    )
    assert evaluation["test_samples"] == 100
    sweep = (pipeline.root / paths.NOISE_SWEEP).read_text().splitlines()
    assert sweep[0].startswith("noise_factor,") and len(sweep) == 1 + 3
    report = (pipeline.root / paths.REPORT_MARKDOWN).read_text()
    for figure in paths.FIGURES.values():
        assert f"(../figures/{Path(figure).name})" in report
    assert report.count("data:image/png;base64,") == 0
    html = (pipeline.root / paths.REPORT_HTML).read_text()
    assert html.count("data:image/png;base64,") == len(paths.FIGURES)
    summary = json.loads((pipeline.root / paths.DENSE_SUMMARY).read_text())
    assert summary["parameters"] == 50_992 and summary["epochs_run"] == 1
    # DVC sees the metrics and plots it was told about.
    shown = json.loads(pipeline.run("dvc", "metrics", "show", "--json").stdout)
    assert json.dumps(shown).count("conv_denoiser") >= 1
    for figure in paths.FIGURES.values():
        assert (pipeline.root / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlflow_holds_one_complete_run(pipeline: Pipeline) -> None:
    runs = pipeline.runs()
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    params = yaml.safe_load((pipeline.root / "params.yaml").read_text())
    assert run.data.params == {key: str(value) for key, value in flatten(params).items()}
    evaluation = json.loads((pipeline.root / paths.EVALUATION).read_text())
    numeric = {k: v for k, v in flatten(evaluation).items() if not isinstance(v, str)}
    assert numeric and "goals.conv_psnr_margin_db" in numeric
    for key, value in numeric.items():
        assert run.data.metrics[key] == pytest.approx(value)
    client = pipeline.client()
    assert len(client.get_metric_history(run.info.run_id, "dense.val_loss")) == 1
    head = pipeline.run("git", "rev-parse", "HEAD").stdout.strip()
    assert run.data.tags["git.commit"] == head
    assert run.data.tags["pipeline.stages_run"] == ",".join(STAGES)
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id, "figures")}
    assert artifacts == {f"figures/{Path(name).name}" for name in paths.FIGURES.values()}
    reports = {item.path for item in client.list_artifacts(run.info.run_id, "reports")}
    assert reports == {"reports/report.md", "reports/report.html"}
    logged = {
        model.name: model
        for model in client.search_logged_models([run.info.experiment_id])
        if model.source_run_id == run.info.run_id
    }
    assert set(logged) == {"dense_autoencoder", "dense_encoder", "dense_decoder", "conv_denoiser"}
    # Nothing MLflow-specific leaks into DVC outputs.
    for name in (paths.EVALUATION, paths.DENSE_SUMMARY, paths.CONV_SUMMARY):
        assert run.info.run_id not in (pipeline.root / name).read_text()


def test_the_run_is_served_by_the_real_tracking_server(pipeline: Pipeline) -> None:
    assert pipeline.tracking_uri and pipeline.tracking_uri.startswith("http://127.0.0.1:")
    assert not (pipeline.root / "mlflow.db").exists()  # nothing went to the default store
    # Through the REST API itself, not only MlflowClient.
    experiment = _rest(pipeline, "experiments/get-by-name", experiment_name="mnist-autoencoders")
    experiment_id = experiment["experiment"]["experiment_id"]
    found = _rest(pipeline, "runs/search", method="POST", experiment_ids=[experiment_id])
    assert len(found["runs"]) == 1
    params = {item["key"]: item["value"] for item in found["runs"][0]["data"]["params"]}
    assert params["train_dense.encoding_dim"] == "32"


def test_no_secret_from_the_environment_or_git_remote_is_logged(pipeline: Pipeline) -> None:
    for run in pipeline.runs():
        logged = [*run.data.params.items(), *run.data.tags.items()]
        for key, value in logged:
            for secret in SECRETS.values():
                assert secret not in key and secret not in value, key


def _rest(pipeline: Pipeline, endpoint: str, method: str = "GET", **payload: object) -> dict:
    url = f"{pipeline.tracking_uri}/api/2.0/mlflow/{endpoint}"
    if method == "GET":
        request = urllib.request.Request(f"{url}?{urllib.parse.urlencode(payload)}")
    else:
        body = json.dumps(payload).encode()
        request = urllib.request.Request(
            url, data=body, method=method, headers={"Content-Type": "application/json"}
        )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_second_repro_runs_nothing(pipeline: Pipeline) -> None:
    ran, result = pipeline.repro()
    assert ran == []
    assert "Data and pipelines are up to date" in result.stdout
    assert len(pipeline.runs()) == 1


def test_bad_params_fail_in_one_line_and_leave_outputs_alone(pipeline: Pipeline) -> None:
    before = pipeline.digests()
    original = (pipeline.root / "params.yaml").read_text()
    pipeline.edit_params("train_dense", "epochs", 0)
    try:
        _ran, result = pipeline.repro(check=False)
    finally:
        (pipeline.root / "params.yaml").write_text(original)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("train_dense:")]
    assert errors == [
        "train_dense: invalid params: params.yaml: 'train_dense.epochs': "
        "Input should be greater than or equal to 1 (got 0)"
    ]
    assert "Traceback" not in result.stderr
    assert pipeline.digests() == before


def test_changing_a_figures_param_reruns_only_figures_and_logs_a_complete_row(
    pipeline: Pipeline,
) -> None:
    pipeline.edit_params("figures", "dpi", 60)
    ran, _ = pipeline.repro()
    assert ran == ["figures", "report"]  # the report embeds the figures
    runs = pipeline.runs()
    assert len(runs) == 2
    first, latest = runs[0], runs[-1]
    assert latest.data.params["figures.dpi"] == "60"
    assert latest.data.tags["pipeline.stages_run"] == "figures,report"
    evaluation = json.loads((pipeline.root / paths.EVALUATION).read_text())
    for key, value in flatten(evaluation).items():
        if not isinstance(value, str):
            assert latest.data.metrics[key] == pytest.approx(first.data.metrics[key])
    client = pipeline.client()
    history = client.get_metric_history(latest.info.run_id, "conv.val_loss")
    assert [point.step for point in history] == [1]
    sweep = client.get_metric_history(latest.info.run_id, "sweep.conv_denoiser_psnr")
    assert [point.step for point in sweep] == [0, 1, 2]
    for key in ("dense.parameters", "conv.best_val_loss", "non_local_means.tuned_strength"):
        assert key in first.data.metrics, key
    for key in ("dense.parameters", "conv.best_val_loss", "tuned_strength.non_local_means"):
        assert latest.data.metrics[key] == pytest.approx(first.data.metrics[key]), key


def test_forced_repro_is_byte_identical(pipeline: Pipeline) -> None:
    lock_before = (pipeline.root / "dvc.lock").read_text()
    ran, _ = pipeline.repro("--force")
    assert ran == STAGES
    assert (pipeline.root / "dvc.lock").read_text() == lock_before
