"""Experiments in parallel: four `dvc exp run --queue` experiments run by two queue workers
(`dvc queue start -j 2`) log to the SAME MLflow store as a plain `dvc repro` in the workspace,
each exactly once, with its own params and metrics, in the default SQLite store (without
"database is locked"). Experiments running in parallel against the team tracking server are
tests/test_cluster.py's: a sweep's trials on two Dask workers."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml

from mnist_ae import artifacts
from mnist_ae.config import flatten
from pipeline_repo import Pipeline

pytestmark = pytest.mark.e2e

# Variations: each re-runs only the stages downstream of the changed key (enc-16 retrains).
EXPERIMENTS = {
    "enc-16": ["train_dense.encoding_dim=16"],
    "sweep-2": ["noise_sweep.noise_factors=[0.3,0.9]"],
    "dpi-80": ["figures.dpi=80"],
    "own-code": [],  # queued with a change to the code, reverted in the workspace before it runs
}
# The change: the report's title. Only the report stage depends on that file.
TITLE = "# Run report: MNIST autoencoders"
CHANGED_TITLE = "# Run report: MNIST autoencoders, by the queued copy's own code"


def _stop_workers(pipe: Pipeline) -> None:
    pipe.run("dvc", "queue", "stop", "--kill", check=False)
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if process.info["cwd"] and Path(process.info["cwd"]) == pipe.root:
                process.kill()
        except psutil.Error:
            pass


@pytest.fixture(scope="module")
def swept(pristine: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """The queue run on a copy that logs to the default SQLite file at its root."""
    pipe = pristine.clone(tmp_path_factory.mktemp("queue") / "repo")
    # Queued experiments start from the last commit: commit dvc.lock so that unchanged stages
    # are checked out from the cache rather than re-run.
    pipe.run("git", "add", "-A")
    pipe.run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results")
    ran, result = pipe.repro("--force", "--single-item", "report")  # a plain workspace run
    assert ran == ["report"]
    assert "; open it with mnist-ae ui\n" in result.stderr  # the run's last line: how to see it
    report_code = pipe.root / "src/mnist_ae/report.py"
    original = report_code.read_text()
    for name, settings in EXPERIMENTS.items():
        arguments = [argument for setting in settings for argument in ("-S", setting)]
        if name == "own-code":
            report_code.write_text(original.replace(f'"{TITLE}"', f'"{CHANGED_TITLE}"'))
        pipe.run("dvc", "exp", "run", "--queue", "-n", name, *arguments)
        report_code.write_text(original)  # the workspace's code is the original again
    try:
        # Not through pipes: `dvc queue start` leaves worker processes behind, and one that
        # keeps an inherited pipe open would hold this call until its timeout (seen once).
        subprocess.run(
            ["dvc", "queue", "start", "-j", "2"],
            cwd=pipe.root,
            env=pipe.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=120,
        )
        deadline = time.monotonic() + 900
        while True:
            status = pipe.run("dvc", "queue", "status").stdout
            if not any(word in status for word in ("Queued", "Running")):
                break
            assert time.monotonic() < deadline, status
            time.sleep(2)
    finally:
        _stop_workers(pipe)
    return pipe


def test_every_queued_experiment_succeeds_without_lock_errors(swept: Pipeline) -> None:
    experiments = EXPERIMENTS
    status = swept.run("dvc", "queue", "status").stdout
    for name in experiments:
        line = next(line for line in status.splitlines() if f" {name} " in f" {line} ")
        assert "Success" in line, status
        logs = swept.run("dvc", "queue", "logs", name).stdout
        assert "database is locked" not in logs


def test_dvc_exp_show_lists_each_experiments_params_and_metrics(swept: Pipeline) -> None:
    queued = EXPERIMENTS
    shown = json.loads(swept.run("dvc", "exp", "show", "--json").stdout)
    experiments = {
        experiment["name"]: experiment["revs"][0]["data"]
        for baseline in shown
        for experiment in baseline.get("experiments") or []
        if experiment.get("name") in queued
    }
    assert set(experiments) == set(queued)
    for name, settings in queued.items():
        for setting in settings:
            key, value = setting.split("=", 1)
            section, leaf = key.split(".")
            shown_value = experiments[name]["params"]["params.yaml"]["data"][section][leaf]
            assert json.dumps(shown_value).replace(" ", "") == value
    for data in experiments.values():
        evaluation = data["metrics"][artifacts.EVALUATION.path]["data"]
        assert 0 < evaluation["reconstruction"]["dense_autoencoder"]["bce"] < 1


def test_each_experiment_is_logged_once_in_the_workspace_store(swept: Pipeline) -> None:
    experiments = EXPERIMENTS
    runs = swept.runs()  # the workspace's mlflow.db
    assert len(runs) == 1 + len(experiments)
    by_experiment = {run.data.tags.get("dvc.experiment"): run for run in runs}
    assert set(by_experiment) == {None, *experiments}
    shown = json.loads(swept.run("dvc", "exp", "show", "--json").stdout)
    metrics = {
        experiment["name"]: experiment["revs"][0]["data"]["metrics"][artifacts.EVALUATION.path][
            "data"
        ]
        for baseline in shown
        for experiment in baseline.get("experiments") or []
        if experiment.get("name") in experiments
    }
    every_param = set(flatten(yaml.safe_load((swept.root / "params.yaml").read_text())))
    for name, settings in experiments.items():
        run = by_experiment[name]
        assert run.info.status == "FINISHED" and run.info.run_name == name
        assert set(run.data.params) == every_param
        for setting in settings:
            key, value = setting.split("=", 1)
            assert run.data.params[key].replace(" ", "") == value
        for key, value in flatten(metrics[name]).items():
            if not isinstance(value, str):
                assert run.data.metrics[key] == pytest.approx(value), (name, key)
    # Different params really gave different results, each logged in its own run.
    logged = {name: by_experiment[name].data.metrics for name in experiments}
    if "enc-16" in experiments:
        key = "reconstruction.dense_autoencoder.bce"
        assert logged["enc-16"][key] != logged["sweep-2"][key]
    assert logged["sweep-2"]["sweep.noise_factor"] != logged["own-code"]["sweep.noise_factor"]
    # Nothing was written to a store inside the temporary copies the queue ran in.
    assert not list((swept.root / ".dvc").rglob("mlflow.db"))
    assert not list((swept.root / ".dvc").rglob("mlruns"))


def test_a_queued_experiment_runs_its_own_copy_of_the_code(swept: Pipeline, tmp_path: Path) -> None:
    """Stages run `PYTHONPATH=src`: the code of the experiment's temporary copy, not the
    workspace's (nor an installed one), although the workspace changed back before it ran."""
    assert CHANGED_TITLE not in (swept.root / "src/mnist_ae/report.py").read_text()
    run = next(run for run in swept.runs() if run.data.tags.get("dvc.experiment") == "own-code")
    assert run.data.tags["pipeline.stages_run"] == "report"  # only the changed code re-ran
    report = swept.client().download_artifacts(run.info.run_id, "reports/report.md", tmp_path)
    assert Path(report).read_text().startswith(CHANGED_TITLE + "\n")
    assert (swept.root / artifacts.REPORT_MARKDOWN.path).read_text().startswith(TITLE + "\n")
