"""The Model Registry in a real (SQLite) MLflow store: each run registers the models it trained,
and the champion alias moves only to a better version measured on the same test data. The
same code registering over HTTP on the team server: tests/test_pipeline.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pytest
import yaml

from mnist_ae import tracking
from mnist_ae.config import Params, parse_params
from mnist_ae.data import arrays_sha256
from mnist_ae.tracking.registry import DECISION_TAG, TEST_DATA_TAG, register_tracked_models
from mnist_ae.tracking.store import global_tracking_uri

REPO = Path(__file__).resolve().parents[1]
CONV, DENSE = "mnist-conv-denoiser", "mnist-dense-autoencoder"
SAME_DATA = {"reconstruction_sha256": "r" * 64, "denoising_sha256": "d" * 64}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh SQLite store; the registry is the tracking store (MLflow's default)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with global_tracking_uri(uri):  # and back to what it was, unset included
        assert mlflow.get_registry_uri() == mlflow.get_tracking_uri() == uri
        yield tmp_path


def _params(**registry: Any) -> Params:
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["tracking"]["registry"].update(registry)
    return parse_params(raw)


def _evaluation(psnr: float, bce: float, test_data: dict[str, str] = SAME_DATA) -> dict[str, Any]:
    return {
        "denoising": {"conv_denoiser": {"psnr": psnr, "ssim": 0.8, "bce": 0.1, "mse": 0.01}},
        "reconstruction": {"dense_autoencoder": {"bce": bce, "mse": 0.01, "psnr": 20.0}},
        "test_samples": 100,
        "test_data": test_data,
    }


VAE_ENCODER, VAE_DECODER = "mnist-vae-encoder", "mnist-vae-decoder"
VAE_MODELS = ("vae_likelihood_encoder", "vae_likelihood_decoder")


def _with_vae(
    evaluation: dict[str, Any], nll: float, test_data: str = "b" * 64, k: int = 1000
) -> dict[str, Any]:
    """What the report stage registers from: evaluation.json and each VAE's test scores."""
    scores = {
        "nll": nll,
        "negative_elbo": nll + 5.0,
        "reconstruction": nll - 20.0,
        "kl": 25.0,
        "active_units": 17,
        "latent_dim": 50,
        "importance_samples": k,
        "test_samples": 10_000,
        "binarized": True,
        "test_data_sha256": test_data,
    }
    return {**evaluation, "vae": {"likelihood": scores, "manifold": {**scores, "nll": 150.0}}}


def _tiny_model(inputs: int) -> keras.Model:
    """Any Keras model will do: the registry sees only the logged model."""
    x = keras.Input((inputs,))
    return keras.Model(x, keras.layers.Dense(2)(x))


def _pipeline_run(
    store: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    evaluation: dict[str, Any],
    trained: tuple[str, ...] = ("conv_denoiser", "dense_autoencoder"),
    params: Params | None = None,
) -> list[Any]:
    """One invocation, as DVC runs it: a training stage logs the models it trained, then the
    report stage registers them. Its own DVC experiment name makes it its own MLflow run."""
    monkeypatch.setenv("DVC_EXP_NAME", name)
    params = params or _params()
    sample = np.zeros((2, 4), dtype=np.float32)
    with tracking.pipeline_run("train_conv", params, store) as tracker:
        for model in trained:
            tracker.log_model(model, _tiny_model(4), sample)
    with tracking.pipeline_run("report", params, store) as tracker:
        return register_tracked_models(tracker, evaluation)


def _champion(name: str) -> int:
    return int(mlflow.MlflowClient().get_model_version_by_alias(name, "champion").version)


def test_three_runs_give_three_versions_and_the_best_is_champion(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pipeline_run(store, monkeypatch, "first", _evaluation(psnr=19.0, bce=0.100))
    _pipeline_run(store, monkeypatch, "better", _evaluation(psnr=20.5, bce=0.095))
    worse = _pipeline_run(store, monkeypatch, "worse", _evaluation(psnr=19.8, bce=0.097))
    client = mlflow.MlflowClient()
    for name in (CONV, DENSE):
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        assert versions == [1, 2, 3]
        assert _champion(name) == 2  # the worse third run left it in place
    third = client.get_model_version(CONV, "3")
    run = client.get_run(third.run_id)
    assert run.data.tags["dvc.experiment"] == "worse" == third.tags["dvc.experiment"]
    assert third.tags["git.commit"] == run.data.tags["git.commit"]
    assert float(third.tags["test.psnr"]) == 19.8 and float(third.tags["test.ssim"]) == 0.8
    assert third.tags[TEST_DATA_TAG] == "d" * 64
    # The decision, with both numbers, on the version, on the run, and returned.
    assert third.tags[DECISION_TAG] == "psnr 19.8 does not beat champion v2's 20.5; it stays"
    assert run.data.tags["registry.conv_denoiser"].startswith(f"{CONV} v3: psnr 19.8 does not")
    assert [(r.name, r.version, r.champion) for r in worse] == [(CONV, 3, False), (DENSE, 3, False)]
    second = client.get_model_version(DENSE, "2")
    assert second.tags[DECISION_TAG] == "bce 0.095 beats champion v1's 0.1"
    assert client.get_model_version(DENSE, "1").tags[DECISION_TAG] == "no champion yet; bce 0.1"
    # The version is the model the run logged: it loads from the registry.
    loaded = mlflow.keras.load_model(f"models:/{CONV}@champion")
    assert loaded.output_shape == (None, 2)


def test_the_likelihood_vae_is_registered_by_test_nll_lower_is_better(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluation = _evaluation(psnr=19.0, bce=0.1)
    first = _pipeline_run(store, monkeypatch, "vae", _with_vae(evaluation, 95.0), VAE_MODELS)
    assert [(r.name, r.version, r.champion) for r in first] == [
        (VAE_ENCODER, 1, True),
        (VAE_DECODER, 1, True),
    ]
    better = _pipeline_run(
        store, monkeypatch, "more-epochs", _with_vae(evaluation, 91.5), VAE_MODELS
    )
    assert [r.champion for r in better] == [True, True]
    assert better[1].decision == f"{VAE_DECODER} v2: now champion (nll 91.5 beats champion v1's 95)"
    worse = _pipeline_run(store, monkeypatch, "fewer", _with_vae(evaluation, 93.0), VAE_MODELS)
    assert [r.champion for r in worse] == [False, False]
    # Another test binarisation (another seed): not compared, whatever the number.
    other = _with_vae(evaluation, 80.0, test_data="c" * 64)
    elsewhere = _pipeline_run(store, monkeypatch, "other-seed", other, VAE_MODELS)
    assert [r.champion for r in elsewhere] == [False, False]
    assert "measured on other test data" in elsewhere[0].decision
    # More importance samples lower the estimate: not compared with a k = 1000 champion.
    tighter = _pipeline_run(
        store, monkeypatch, "k5000", _with_vae(evaluation, 90.0, k=5000), VAE_MODELS
    )
    assert [r.champion for r in tighter] == [False, False]
    assert "measured on other test data" in tighter[1].decision
    client = mlflow.MlflowClient()
    for name in (VAE_ENCODER, VAE_DECODER):
        assert _champion(name) == 2
    version = client.get_model_version(VAE_DECODER, "2")
    assert float(version.tags["test.nll"]) == 91.5
    assert int(float(version.tags["test.active_units"])) == 17
    assert version.tags[TEST_DATA_TAG] == "b" * 64 + " k=1000"
    assert version.tags["test.samples"] == "10000"
    assert not client.search_model_versions(f"name='{CONV}'")  # it did not train the others


def test_a_run_that_trained_nothing_registers_nothing(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pipeline_run(store, monkeypatch, "first", _evaluation(psnr=19.0, bce=0.1))
    # DVC skipped train_dense: only the conv denoiser was logged by this run.
    only_conv = _pipeline_run(
        store, monkeypatch, "conv-only", _evaluation(19.5, 0.05), trained=("conv_denoiser",)
    )
    assert [(r.name, r.version, r.champion) for r in only_conv] == [(CONV, 2, True)]
    nothing = _pipeline_run(store, monkeypatch, "report-only", _evaluation(25.0, 0.01), trained=())
    assert nothing == []
    client = mlflow.MlflowClient()
    assert len(client.search_model_versions(f"name='{DENSE}'")) == 1
    assert len(client.search_model_versions(f"name='{CONV}'")) == 2


def test_a_retried_report_stage_registers_no_second_version(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (conv, dense) = _pipeline_run(store, monkeypatch, "retried", _evaluation(19.0, 0.1))
    assert conv.champion and dense.champion
    # The same invocation's report stage again (it failed after registering; DVC reruns it).
    with tracking.pipeline_run("report", _params(), store) as tracker:
        again = register_tracked_models(tracker, _evaluation(19.0, 0.1))
    assert [(r.name, r.version, r.champion) for r in again] == [(CONV, 1, True), (DENSE, 1, True)]
    assert again[0].decision == f"{CONV} v1: champion already"
    client = mlflow.MlflowClient()
    for name in (CONV, DENSE):
        assert len(client.search_model_versions(f"name='{name}'")) == 1
        assert _champion(name) == 1
    # A worse run after it still compares with v1.
    (worse, _) = _pipeline_run(store, monkeypatch, "worse", _evaluation(18.0, 0.2))
    assert (worse.version, worse.champion) == (2, False)


def test_the_test_data_digest_names_exactly_the_arrays() -> None:
    clean = np.zeros((3, 28, 28), dtype=np.float32)
    noisy = np.full((3, 28, 28), 0.5, dtype=np.float32)
    digest = arrays_sha256(clean, noisy)
    assert digest == arrays_sha256(clean.copy(), noisy.copy())
    assert len(digest) == 64
    changed = noisy.copy()
    changed[0, 0, 0] = 0.25
    assert arrays_sha256(clean, changed) != digest  # one pixel of the noisy set
    assert arrays_sha256(clean, noisy.astype(np.float64)) != digest  # the dtype
    assert arrays_sha256(clean, noisy.reshape(3, 784)) != digest  # the shape
    assert arrays_sha256(clean) != digest  # not the reconstruction set's digest


def test_a_champion_measured_on_other_test_data_is_not_compared(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pipeline_run(store, monkeypatch, "full", _evaluation(psnr=19.0, bce=0.1))
    other = {"reconstruction_sha256": "R" * 64, "denoising_sha256": "D" * 64}
    (conv, dense) = _pipeline_run(store, monkeypatch, "shrunk", _evaluation(30.0, 0.01, other))
    assert not conv.champion and not dense.champion
    assert "not compared with champion v1: measured on other test data" in conv.decision
    assert _champion(CONV) == 1 and _champion(DENSE) == 1


def test_the_policy_comes_from_params(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    off = _params(enabled=False)
    assert _pipeline_run(store, monkeypatch, "off", _evaluation(19.0, 0.1), params=off) == []
    assert mlflow.MlflowClient().search_registered_models() == []
    # Another alias, another name, and SSIM deciding instead of PSNR.
    policy = _params(
        alias="best",
        models={
            "conv_denoiser": {"name": "my-denoiser", "metric": "ssim"},
            "dense_autoencoder": None,
            "vae_likelihood_encoder": None,
            "vae_likelihood_decoder": None,
        },
    )
    evaluation = _evaluation(19.0, 0.1)
    _pipeline_run(store, monkeypatch, "a", evaluation, params=policy)
    evaluation["denoising"]["conv_denoiser"] |= {"psnr": 25.0, "ssim": 0.7}  # worse SSIM
    (result,) = _pipeline_run(store, monkeypatch, "b", evaluation, params=policy)
    assert result.name == "my-denoiser" and not result.champion
    assert result.decision == "my-denoiser v2: ssim 0.7 does not beat best v1's 0.8; it stays"
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias("my-denoiser", "best").version) == 1
    assert [m.name for m in client.search_registered_models()] == ["my-denoiser"]
