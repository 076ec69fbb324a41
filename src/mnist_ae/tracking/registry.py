"""MLflow's Model Registry: each run registers the models it trained, and an alias (`champion`)
marks the best version so far.

At the end of a run (stage `report`, once the test metrics exist), every model of
`tracking.registry.models` that this MLflow run logged, that is that this invocation trained,
becomes a new version of its registered model, tagged with the git commit, the DVC experiment,
its test metrics and a digest of the test data they were measured on. A model DVC skipped was
logged by an earlier run and registers nothing new.

The alias moves to the new version only when the version holding it was measured on the same
test data and the new one is strictly better on the rule's metric. The decision, with both
numbers, is logged: on the version (tag `champion.decision`), on the run
(`registry.<model>`) and on the stage's output.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_ae.config import HIGHER_IS_BETTER, REGISTRABLE, ChampionRule, RegistryParams
from mnist_ae.signals import held_signals
from mnist_ae.tracking.row import LiveTracker, Tracker
from mnist_ae.tracking.store import store_lock

log = logging.getLogger(__name__)

TEST_DATA_TAG = "test_data.sha256"
DECISION_TAG = "champion.decision"
# Copied from the run onto each version it registers, when the run has them.
RUN_TAGS = ("git.commit", "git.dirty", "dvc.experiment", "dvc.baseline_rev")


@dataclass(frozen=True)
class Registered:
    """One version this run registered, and what became of the alias."""

    model: str  # the run's model name (conv_denoiser)
    name: str  # the registered model (mnist-conv-denoiser)
    version: int
    champion: bool  # the alias now points at this version
    decision: str  # one line, both numbers


# The test scores of a VAE copied onto its versions (nats per image; active units a count).
VAE_TEST_METRICS = ("nll", "negative_elbo", "reconstruction", "kl", "active_units")


def test_metrics(model: str, results: Mapping[str, Any]) -> tuple[dict[str, float], str, int]:
    """A model's test metrics, the digest of the test data they were measured on (for a VAE
    with the k of its likelihood estimate), and its size. `results` is metrics/evaluation.json
    with, under "vae", each VAE configuration's metrics/vae_<name>.json."""
    kind, key = REGISTRABLE[model].split(".")
    if kind == "vae":
        scores = results["vae"][key]
        numbers = {name: float(scores[name]) for name in VAE_TEST_METRICS}
        # The NLL estimate falls as k grows: versions scored with another k are not compared.
        measured_on = f"{scores['test_data_sha256']} k={scores['importance_samples']}"
        return numbers, measured_on, int(scores["test_samples"])
    numbers = {name: float(value) for name, value in results[kind][key].items()}
    return numbers, results["test_data"][f"{kind}_sha256"], int(results["test_samples"])


def _better(rule: ChampionRule, ours: float, theirs: float) -> bool:
    return ours > theirs if rule.metric in HIGHER_IS_BETTER else ours < theirs


def decide(
    rule: ChampionRule, alias: str, ours: float, test_data: str, current: ModelVersion | None
) -> tuple[bool, str]:
    """Whether the alias moves to the new version, and why, in one line with both numbers."""
    metric = rule.metric
    if current is None:
        return True, f"no {alias} yet; {metric} {ours:.6g}"
    held = f"{alias} v{current.version}"
    theirs = current.tags.get(f"test.{metric}")
    if current.tags.get(TEST_DATA_TAG) != test_data or theirs is None:
        return False, (
            f"{metric} {ours:.6g}, not compared with {held}: measured on other test data "
            f"(or not by this pipeline); it stays"
        )
    theirs_value = float(theirs)
    if _better(rule, ours, theirs_value):
        return True, f"{metric} {ours:.6g} beats {held}'s {theirs_value:.6g}"
    return False, f"{metric} {ours:.6g} does not beat {held}'s {theirs_value:.6g}; it stays"


def _alias_holder(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # another run created it first
            raise


def _already_registered(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return versions[0] if versions else None


def register_run_models(
    client: MlflowClient,
    run_id: str,
    policy: RegistryParams,
    evaluation: Mapping[str, Any],
    tracking_uri: str,
) -> list[Registered]:
    """Register the models this run trained and move the alias where they beat its holder."""
    if not policy.enabled:
        return []
    run = client.get_run(run_id)
    trained = {
        logged.name: logged
        for logged in client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
    }
    results = []
    for model, rule in policy.rules().items():
        if model not in trained:
            continue  # not trained by this invocation: DVC skipped its stage
        numbers, test_data, samples = test_metrics(model, evaluation)
        tags = {key: run.data.tags[key] for key in RUN_TAGS if key in run.data.tags}
        tags |= {f"test.{metric}": repr(value) for metric, value in numbers.items()}
        tags |= {TEST_DATA_TAG: test_data, "test.samples": str(samples)}
        # SQLite: one process at a time from here to the alias (parallel queued experiments).
        # A server has no such lock: two runs finishing in the same second may both compare
        # with the same holder (docs/design.md).
        with store_lock(tracking_uri), held_signals():
            version = _already_registered(client, rule.name, run_id)
            if version is None:
                _ensure_registered_model(client, rule.name)
                version = client.create_model_version(
                    rule.name,
                    trained[model].model_uri,
                    run_id=run_id,
                    tags=tags,
                    model_id=trained[model].model_id,
                )
            current = _alias_holder(client, rule.name, policy.alias)
            if current is not None and int(current.version) == int(version.version):
                # A retried report stage, after this run's version became the holder.
                champion, line = True, f"{rule.name} v{version.version}: {policy.alias} already"
            else:
                champion, why = decide(rule, policy.alias, numbers[rule.metric], test_data, current)
                if champion:
                    client.set_registered_model_alias(rule.name, policy.alias, version.version)
                line = f"{rule.name} v{version.version}: " + (
                    f"now {policy.alias} ({why})" if champion else why
                )
                client.set_model_version_tag(rule.name, version.version, DECISION_TAG, why)
                client.set_tag(run_id, f"registry.{model}", line)
        log.info("%s", line)
        results.append(Registered(model, rule.name, int(version.version), champion, line))
    return results


def register_tracked_models(tracker: Tracker, evaluation: Mapping[str, Any]) -> list[Registered]:
    """register_run_models for the tracker's MLflow run, by its params' policy; nothing
    without a run (NO_TRACKING) or with the registry switched off."""
    if not isinstance(tracker, LiveTracker) or tracker.registry is None:
        return []
    return register_run_models(
        tracker.client, tracker.run_id, tracker.registry, evaluation, tracker.uri
    )
