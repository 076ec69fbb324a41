"""End to end: the real `dvc repro` on a shrunk copy of the repository, checked through DVC's
outputs and the MLflow store. Slow-ish (a few minutes): every stage imports TensorFlow."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mnist_ae import paths
from mnist_ae.config import flatten

REPO = Path(__file__).resolve().parents[1]
STAGES = [
    "prepare",
    "add_noise",
    "train_dense",
    "train_conv",
    "baselines",
    "evaluate",
    "noise_sweep",
    "figures",
    "report",
]
OUTPUTS = [
    paths.MNIST,
    paths.NOISY,
    paths.DENSE_AUTOENCODER,
    paths.DENSE_ENCODER,
    paths.DENSE_DECODER,
    paths.CONV_DENOISER,
    paths.DENSE_HISTORY,
    paths.CONV_HISTORY,
    paths.DENSE_SUMMARY,
    paths.CONV_SUMMARY,
    paths.EVALUATION,
    paths.PCA,
    paths.BASELINE_TUNING,
    paths.NOISE_SWEEP,
    paths.REPORT_MARKDOWN,
    paths.REPORT_HTML,
    *paths.FIGURES.values(),
]

pytestmark = pytest.mark.e2e


def _shrink(params: dict) -> dict:
    params["prepare"].update(train_samples=400, test_samples=100)
    for section in ("train_dense", "train_conv"):
        params[section].update(epochs=1, batch_size=32, validation_samples=80)
    params["evaluate"]["batch_size"] = 50
    params["baselines"]["tuning_samples"] = 20
    params["baselines"]["grids"] = {
        "gaussian": [0.5, 1.0],
        "median": [3],
        "total_variation": [0.1],
        "non_local_means": [0.2, 0.4],
    }
    params["noise_sweep"].update(noise_factors=[0.25, 0.5, 1.0], batch_size=50)
    params["figures"].update(n_digits=5, projection_samples=60)
    return params


class Pipeline:
    """A throw-away git + DVC copy of the repository."""

    def __init__(self, root: Path) -> None:
        self.root = root
        venv_bin = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
        for variable in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE"):
            self.env.pop(variable, None)

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            command, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=900
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def repro(
        self, *arguments: str, check: bool = True
    ) -> tuple[list[str], subprocess.CompletedProcess]:
        result = self.run("dvc", "repro", *arguments, check=check)
        return re.findall(r"Running stage '(\w+)'", result.stdout), result

    def edit_params(self, section: str, key: str, value: object) -> None:
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        params[section][key] = value
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def digests(self) -> dict[str, str]:
        return {
            name: hashlib.sha256((self.root / name).read_bytes()).hexdigest() for name in OUTPUTS
        }

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=f"sqlite:///{self.root / 'mlflow.db'}")

    def runs(self) -> list:
        client = self.client()
        experiment = client.get_experiment_by_name("mnist-autoencoders")
        return client.search_runs(
            [experiment.experiment_id], order_by=["attributes.start_time ASC"]
        )


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    root = tmp_path_factory.mktemp("repo")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    params_path = root / "params.yaml"
    params_path.write_text(
        yaml.safe_dump(_shrink(yaml.safe_load(params_path.read_text())), sort_keys=False)
    )
    pipe = Pipeline(root)
    pipe.run("git", "init", "-q")
    pipe.run("git", "add", "-A")
    pipe.run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "shrunk copy")
    ran, _ = pipe.repro()
    assert ran == STAGES
    return pipe


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
