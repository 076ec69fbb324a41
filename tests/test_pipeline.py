"""End to end: the real `dvc repro` on a shrunk copy of the repository, checked through DVC's
outputs and the MLflow store. Slow-ish (a few minutes): every stage imports TensorFlow."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import psycopg
import pytest
import yaml

from mnist_ae import artifacts
from mnist_ae.artifacts import VAE_NAMES
from mnist_ae.config import flatten
from mnist_ae.tracking.links import runs_url
from mnist_ae.tracking.row import cpu_model
from mnist_ae.tracking.row import numeric_metrics as numeric_scores
from pipeline_repo import OUTPUTS, SECRETS, STAGES, TEAM_USER, Pipeline, TeamServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipeline(built_pipeline: Pipeline) -> Pipeline:
    """The session's shrunk repository itself (with the MLflow run of its first `dvc repro`)."""
    return built_pipeline


def test_every_output_exists_and_metrics_are_sane(pipeline: Pipeline) -> None:
    for name in OUTPUTS:
        assert (pipeline.root / name).stat().st_size > 0, name
    with np.load(pipeline.root / artifacts.MNIST.path) as mnist:
        assert mnist["x_train"].shape == (400, 28, 28) and mnist["x_test"].shape == (100, 28, 28)
    with np.load(pipeline.root / artifacts.NOISY.path) as noisy:
        assert noisy["x_test_noisy"].dtype == np.float32
        assert noisy["x_test_noisy"].min() >= 0.0 and noisy["x_test_noisy"].max() <= 1.0
    evaluation = json.loads((pipeline.root / artifacts.EVALUATION.path).read_text())
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
        {str(label) for label in np.load(pipeline.root / artifacts.MNIST.path)["y_test"]}
    )
    assert evaluation["test_samples"] == 100
    # One headline number recomputed independently: the saved denoiser on the noisy test set,
    # PSNR written out here (mean over images of 10 log10(1 / MSE)), not the product's.
    import keras

    denoiser = keras.saving.load_model(pipeline.root / artifacts.CONV_DENOISER.path)
    with np.load(pipeline.root / artifacts.NOISY.path) as noisy_file:
        noisy_test = noisy_file["x_test_noisy"]
    with np.load(pipeline.root / artifacts.MNIST.path) as mnist_file:
        clean_test = mnist_file["x_test"].astype(np.float64) / 255.0
    denoised = denoiser.predict(noisy_test[..., None], batch_size=50, verbose=0)
    errors = ((denoised[..., 0].astype(np.float64) - clean_test) ** 2).mean(axis=(1, 2))
    psnr = float(np.mean(10 * np.log10(1 / errors)))
    assert evaluation["denoising"]["conv_denoiser"]["psnr"] == pytest.approx(psnr, abs=1e-4)
    sweep = (pipeline.root / artifacts.NOISE_SWEEP.path).read_text().splitlines()
    assert sweep[0].startswith("noise_factor,") and len(sweep) == 1 + 3
    report = (pipeline.root / artifacts.REPORT_MARKDOWN.path).read_text()
    for png in artifacts.FIGURES.values():
        assert f"(../{png.path})" in report
    assert report.count("data:image/png;base64,") == 0
    html = (pipeline.root / artifacts.REPORT_HTML.path).read_text()
    assert html.count("data:image/png;base64,") == len(artifacts.FIGURES)
    summary = json.loads((pipeline.root / artifacts.DENSE_SUMMARY.path).read_text())
    assert summary["parameters"] == 50_992 and summary["epochs_run"] == 1
    # DVC sees the metrics and plots it was told about.
    shown = json.loads(pipeline.run("dvc", "metrics", "show", "--json").stdout)
    assert json.dumps(shown).count("conv_denoiser") >= 1
    for files in artifacts.VAE.values():  # the VAEs' training summaries and test scores too
        for metrics_file, key in ((files.summary, "best_val_loss"), (files.evaluation, "nll")):
            value = json.loads(metrics_file.at(pipeline.root).read_text())[key]
            assert f'"{metrics_file.path}"' in json.dumps(shown)
            assert f'"{key}": {json.dumps(value)}' in json.dumps(shown)
    for png in artifacts.FIGURES.values():
        assert png.at(pipeline.root).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlflow_holds_one_complete_run(pipeline: Pipeline) -> None:
    runs = pipeline.runs()
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    params = yaml.safe_load((pipeline.root / "params.yaml").read_text())
    assert run.data.params == {key: str(value) for key, value in flatten(params).items()}
    evaluation = json.loads((pipeline.root / artifacts.EVALUATION.path).read_text())
    numeric = {k: v for k, v in flatten(evaluation).items() if not isinstance(v, str)}
    assert numeric and "goals.conv_psnr_margin_db" in numeric
    for key, value in numeric.items():
        assert run.data.metrics[key] == pytest.approx(value)
    for name, files in artifacts.VAE.items():  # the VAEs' test scores, as DVC shows them
        scores = json.loads(files.evaluation.at(pipeline.root).read_text())
        for key, value in numeric_scores(scores).items():
            assert run.data.metrics[f"vae_{name}.test.{key}"] == pytest.approx(value)
    client = pipeline.client()
    assert len(client.get_metric_history(run.info.run_id, "dense.val_loss")) == 1
    assert len(client.get_metric_history(run.info.run_id, "vae_likelihood.val_kl")) == 1
    head = pipeline.run("git", "rev-parse", "HEAD").stdout.strip()
    assert run.data.tags["git.commit"] == head
    # Each trained model's wall time and CPU, tags of the run that trained it.
    for prefix in ("dense", "conv", *(f"vae_{name}" for name in artifacts.VAE)):
        assert float(run.data.tags[f"{prefix}.train_seconds"]) > 0, prefix
        assert run.data.tags[f"{prefix}.train_epochs_timed"] == "1", prefix
        assert run.data.tags[f"{prefix}.train_cpu"] == cpu_model(), prefix
    assert run.data.tags["pipeline.stages_run"] == ",".join(STAGES[1:])  # check_params logs nothing
    figures = {item.path for item in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {png.path for png in artifacts.FIGURES.values()}
    reports = {item.path for item in client.list_artifacts(run.info.run_id, "reports")}
    assert reports == {"reports/report.md", "reports/report.html"}
    logged = {
        model.name: model
        for model in client.search_logged_models([run.info.experiment_id])
        if model.source_run_id == run.info.run_id
    }
    vaes = {f"vae_{name}_{part}" for name in VAE_NAMES for part in ("encoder", "decoder")}
    dense = {"dense_autoencoder", "dense_encoder", "dense_decoder"}
    assert set(logged) == {*dense, "conv_denoiser", *vaes}
    # A run name that says what ran, and an experiment MLflow's UI knows is model training.
    dirty = "-dirty" if run.data.tags["git.dirty"] == "true" else ""
    assert run.info.run_name == f"repro-{head[:7]}{dirty}"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # What it trained on: the data files by SHA-256 (the first 32 hex digits fit MLflow's digest).
    datasets = {item.dataset.name: item for item in run.inputs.dataset_inputs}
    assert set(datasets) == {"mnist", "mnist-noisy"}
    for name, data_file in (("mnist", artifacts.MNIST), ("mnist-noisy", artifacts.NOISY)):
        sha256 = hashlib.sha256(data_file.at(pipeline.root).read_bytes()).hexdigest()
        assert datasets[name].dataset.digest == sha256[:32]
        tags = {tag.key: tag.value for tag in datasets[name].tags}
        assert tags["sha256"] == sha256 and tags["mlflow.data.context"] == "training"
        assert (tags["train_samples"], tags["validation_samples"]) == ("320", "80")
    # Registered over HTTP as the first versions, and so the champions.
    for model, name in (
        ("conv_denoiser", "mnist-conv-denoiser"),
        ("dense_autoencoder", "mnist-dense-autoencoder"),
        ("vae_likelihood_encoder", "mnist-vae-encoder"),
        ("vae_likelihood_decoder", "mnist-vae-decoder"),
    ):
        champion = client.get_model_version_by_alias(name, "champion")
        assert int(champion.version) == 1 and champion.run_id == run.info.run_id
        assert champion.tags["git.commit"] == head
        assert champion.tags["champion.decision"].startswith("no champion yet; ")
        assert run.data.tags[f"registry.{model}"].startswith(f"{name} v1: now champion")
    denoising = evaluation["denoising"]["conv_denoiser"]
    champion = client.get_model_version_by_alias("mnist-conv-denoiser", "champion")
    assert float(champion.tags["test.psnr"]) == denoising["psnr"]
    vae_scores = json.loads(artifacts.VAE["likelihood"].evaluation.at(pipeline.root).read_text())
    champion = client.get_model_version_by_alias("mnist-vae-decoder", "champion")
    assert float(champion.tags["test.nll"]) == vae_scores["nll"]
    k = vae_scores["importance_samples"]
    assert champion.tags["test_data.sha256"] == f"{vae_scores['test_data_sha256']} k={k}"
    # Nothing MLflow-specific leaks into DVC outputs.
    for name in (
        artifacts.EVALUATION.path,
        artifacts.DENSE_SUMMARY.path,
        artifacts.CONV_SUMMARY.path,
    ):
        assert run.info.run_id not in (pipeline.root / name).read_text()


def test_the_run_is_served_by_the_team_server_from_postgresql(
    pipeline: Pipeline, tracking_server: TeamServer, tmp_path: Path
) -> None:
    assert pipeline.tracking_uri == tracking_server.url
    assert tracking_server.url.startswith("http://127.0.0.1:")
    assert not (pipeline.root / "mlflow.db").exists()  # nothing went to the default store
    # Through the REST API itself, as TEAM_USER, not only MlflowClient.
    experiment = _rest(pipeline, "experiments/get-by-name", experiment_name="mnist-autoencoders")
    experiment_id = experiment["experiment"]["experiment_id"]
    found = _rest(pipeline, "runs/search", method="POST", experiment_ids=[experiment_id])
    assert len(found["runs"]) == 1
    run = found["runs"][0]
    params = {item["key"]: item["value"] for item in run["data"]["params"]}
    assert params["train_dense.encoding_dim"] == "32"
    assert run["info"]["user_id"] == TEAM_USER
    # Without credentials the server answers nothing.
    with pytest.raises(urllib.error.HTTPError) as refused:
        _rest(pipeline, "experiments/search", authenticated=False, max_results=1)
    assert refused.value.code == 401
    # The row lives in PostgreSQL (read there directly), the files in the server's folder:
    # clients got proxied `mlflow-artifacts:` URIs and never needed storage credentials.
    with _database(tracking_server, "mlflow") as database:
        stored = database.execute(
            "SELECT status, artifact_uri FROM runs WHERE run_uuid = %s", (run["info"]["run_id"],)
        ).fetchone()
        assert database.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    assert stored[0] == "FINISHED" and stored[1].startswith("mlflow-artifacts:/")
    # Models, figures and the report download through the server, byte for byte.
    client = pipeline.client()
    for name in (
        artifacts.REPORT_MARKDOWN.path,
        artifacts.FIGURES["dense_reconstructions"].path,
    ):
        downloaded = client.download_artifacts(run["info"]["run_id"], name, str(tmp_path))
        assert Path(downloaded).read_bytes() == (pipeline.root / name).read_bytes()
    import keras

    (logged,) = [
        model
        for model in client.search_logged_models([experiment_id])
        if model.source_run_id == run["info"]["run_id"] and model.name == "conv_denoiser"
    ]
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=logged.artifact_location,
        dst_path=str(tmp_path / "model"),
        tracking_uri=pipeline.tracking_uri,
    )
    model = mlflow.keras.load_model(local)
    saved = keras.saving.load_model(pipeline.root / artifacts.CONV_DENOISER.path)
    for ours, theirs in zip(model.get_weights(), saved.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@contextlib.contextmanager
def _database(server: TeamServer, name: str) -> Iterator[psycopg.Connection]:
    settings = json.loads((server.directory / "settings.json").read_text())
    password = (server.directory / "db-password").read_text().strip()
    with psycopg.connect(
        host="127.0.0.1", port=settings["db_port"], user="mlflow", password=password, dbname=name
    ) as connection:
        yield connection


def test_no_secret_from_the_environment_or_git_remote_is_logged(pipeline: Pipeline) -> None:
    for run in pipeline.runs():
        logged = [*run.data.params.items(), *run.data.tags.items()]
        for key, value in logged:
            for secret in SECRETS.values():
                assert secret not in key and secret not in value, key


def _rest(
    pipeline: Pipeline,
    endpoint: str,
    method: str = "GET",
    authenticated: bool = True,
    **payload: object,
) -> dict:
    url = f"{pipeline.tracking_uri}/api/2.0/mlflow/{endpoint}"
    headers = {"Content-Type": "application/json"}
    if authenticated:
        account = f"{TEAM_USER}:{SECRETS['MLFLOW_TRACKING_PASSWORD']}"
        headers["Authorization"] = f"Basic {base64.b64encode(account.encode()).decode()}"
    if method == "GET":
        request = urllib.request.Request(
            f"{url}?{urllib.parse.urlencode(payload)}", headers=headers
        )
    else:
        body = json.dumps(payload).encode()
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
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
    errors = [line for line in result.stderr.splitlines() if ": invalid params: " in line]
    assert errors == [
        "check_params: invalid params: params.yaml: 'train_dense.epochs': "
        "Input should be greater than or equal to 1 (got 0)"
    ]
    assert "Traceback" not in result.stderr
    assert pipeline.digests() == before


def test_changing_a_figures_param_reruns_only_figures_and_logs_a_complete_row(
    pipeline: Pipeline,
) -> None:
    pipeline.edit_params("figures", "dpi", 60)
    ran, result = pipeline.repro()
    assert ran == ["check_params", "figures", "report"]  # the report embeds the figures
    runs = pipeline.runs()
    assert len(runs) == 2
    first, latest = runs[0], runs[-1]
    # The run ends with its link on the server, opening the run in the Model training view.
    link = runs_url(pipeline.tracking_uri, latest.info.experiment_id, latest.info.run_id)
    assert f"[report] MLflow run {latest.info.run_name}: {link}\n" in result.stderr
    assert latest.data.params["figures.dpi"] == "60"
    assert latest.data.tags["pipeline.stages_run"] == "figures,report"
    # The same row as the first run's, where every stage ran and logged its part live: the
    # report back-filled, from the outputs, all that the skipped stages would have logged.
    assert set(latest.data.metrics) == set(first.data.metrics)
    for key, value in first.data.metrics.items():
        assert latest.data.metrics[key] == pytest.approx(value), key
    for key in (  # one per stage that logs metrics; the first two were once missed
        "data.train_samples",
        "baselines.non_local_means.strength",
        "dense.parameters",
        "conv.best_val_loss",
        "goals.conv_psnr_margin_db",
        "vae_manifold.best_val_loss",
        "vae_likelihood.test.nll",
    ):
        assert key in latest.data.metrics, key
    assert latest.data.metrics["data.train_samples"] == 400
    client = pipeline.client()
    for name in (  # nothing was retrained
        "mnist-conv-denoiser",
        "mnist-dense-autoencoder",
        "mnist-vae-encoder",
        "mnist-vae-decoder",
    ):
        assert len(client.search_model_versions(f"name='{name}'")) == 1, name
    assert not any(key.startswith("registry.") for key in latest.data.tags)
    history = client.get_metric_history(latest.info.run_id, "conv.val_loss")
    assert [point.step for point in history] == [1]
    sweep = client.get_metric_history(latest.info.run_id, "sweep.conv_denoiser_psnr")
    assert [point.step for point in sweep] == [0, 1, 2]

    def files(run_id: str) -> set[str]:
        top = client.list_artifacts(run_id)
        return {
            item.path
            for entry in top
            for item in (client.list_artifacts(run_id, entry.path) if entry.is_dir else [entry])
        }

    assert files(latest.info.run_id) == files(first.info.run_id)
    assert "evaluation.json" in files(first.info.run_id)


def test_forced_repro_is_byte_identical(pipeline: Pipeline) -> None:
    # The VAE stages, a third of this test's time, are re-run byte for byte in-process by
    # tests/test_vae.py instead; every other stage is forced here, in its own process.
    forced = [stage for stage in STAGES if not stage.startswith(("train_vae@", "evaluate_vae@"))]
    lock_before = (pipeline.root / "dvc.lock").read_text()
    ran, _ = pipeline.repro("--force", "--single-item", *forced)
    assert ran == forced
    assert (pipeline.root / "dvc.lock").read_text() == lock_before
