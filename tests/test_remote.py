"""Sharing results through remotes, end to end, with real git and DVC commands: the built
pipeline pushed to a bare git repository and to a DVC remote (a directory, and an
S3-compatible moto server that checks credentials), then pulled into fresh clones that get
every output and reproduce nothing; an experiment shared with `dvc exp push` / `dvc exp
pull`; and the S3 failures a user meets (endpoint down, bucket missing, wrong secret), each
failing with a message that names it and leaving the workspace alone."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.exceptions
import pytest

from mnist_ae import artifacts
from pipeline_repo import OUTPUTS, Pipeline, free_port, publish, ran_stages

pytestmark = pytest.mark.e2e

BUCKET = "mnist-ae-dvc"
S3_URL = f"s3://{BUCKET}/cache"
REGION = "us-east-1"
# moto serves this many requests unchecked, then checks every request's signature and the
# caller's IAM policy: exactly the set-up calls of _create_account.
SETUP_REQUESTS = 4
ALLOW_S3 = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key_id: str
    secret_access_key: str


def _create_account(endpoint: str) -> S3Server:
    """An IAM user allowed s3:*, its access key and the bucket: SETUP_REQUESTS requests."""
    setup = {
        "endpoint_url": endpoint,
        "region_name": REGION,
        "aws_access_key_id": "setup",
        "aws_secret_access_key": "setup",
    }
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="dvc")
    key = iam.create_access_key(UserName="dvc")["AccessKey"]
    iam.put_user_policy(UserName="dvc", PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
    s3 = boto3.client("s3", **setup)
    s3.create_bucket(Bucket=BUCKET)
    # From here on the server checks credentials: the set-up key, which IAM never issued, fails.
    with pytest.raises(botocore.exceptions.ClientError, match="InvalidAccessKeyId"):
        s3.list_objects_v2(Bucket=BUCKET)
    return S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An S3-compatible server on 127.0.0.1 (moto, in its own process) that checks
    credentials, with one bucket and one user's access key; stopped after the module."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield _create_account(f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def _isolated(pipe: Pipeline) -> Pipeline:
    """No AWS settings of the machine's reach DVC: no credentials, profile, config file or
    instance-metadata look-up, so only what the test configures is used."""
    for variable in [name for name in pipe.env if name.startswith("AWS_")]:
        del pipe.env[variable]
    nowhere = str(pipe.root.parent / "no-aws-config")
    pipe.env.update(
        AWS_CONFIG_FILE=nowhere,
        AWS_SHARED_CREDENTIALS_FILE=nowhere,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return pipe


def _set_credentials(pipe: Pipeline, remote: str, server: S3Server) -> None:
    """As the docs say: into .dvc/config.local, which git ignores."""
    for option, value in (
        ("access_key_id", server.access_key_id),
        ("secret_access_key", server.secret_access_key),
    ):
        pipe.run("dvc", "remote", "modify", "--local", remote, option, value)


def _metrics(pipe: Pipeline) -> dict:
    return json.loads(pipe.run("dvc", "metrics", "show", "--json").stdout)


@dataclass(frozen=True)
class Published:
    original: Pipeline  # the built copy, which pushed everything
    origin: Path  # the bare git repository
    digests: dict[str, str]
    metrics: dict
    tracking_uri: str | None

    def clone(self, destination: Path) -> Pipeline:
        """A teammate's fresh `git clone`: code, dvc.lock and .dvc/config, no outputs."""
        self.original.run("git", "clone", "-q", str(self.origin), str(destination))
        return _isolated(Pipeline(destination, tracking_uri=self.tracking_uri))


@pytest.fixture(scope="module")
def published(
    pristine: Pipeline, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    """A copy of the built pipeline with dvc.lock committed, its git history pushed to a bare
    repository and its outputs to two DVC remotes: `storage`, a directory (the default), and
    `s3`, whose URL and endpoint are committed and whose credentials are not."""
    base = tmp_path_factory.mktemp("published")
    original = _isolated(pristine.clone(base / "original"))

    def add_s3(pipe: Pipeline) -> None:
        pipe.run("dvc", "remote", "add", "s3", S3_URL)
        pipe.run("dvc", "remote", "modify", "s3", "endpointurl", s3.endpoint)
        _set_credentials(pipe, "s3", s3)
        pipe.run("dvc", "push", "-r", "s3")

    origin = publish(original, base, add_s3)
    return Published(
        original, origin, original.digests(), _metrics(original), pristine.tracking_uri
    )


@pytest.mark.parametrize("remote", ["storage", "s3"])
def test_a_fresh_clone_pulls_every_output_and_reproduces_nothing(
    published: Published, s3: S3Server, remote: str, tmp_path: Path
) -> None:
    clone = published.clone(tmp_path / "clone")
    assert not any((clone.root / name).exists() for name in OUTPUTS)
    if remote == "s3":
        _set_credentials(clone, "s3", s3)
    clone.run("dvc", "pull", "-r", remote)
    assert clone.digests() == published.digests
    assert json.loads(clone.run("dvc", "status", "--json").stdout) == {}
    ran, _ = clone.repro()
    assert ran == []
    assert _metrics(clone) == published.metrics
    # Nothing to commit (the credentials are in the ignored .dvc/config.local), and no stage
    # ran: every stage logs to MLflow, and the clone's default store was never created.
    assert clone.run("git", "status", "--porcelain").stdout == ""
    assert not (clone.root / "mlflow.db").exists()


def test_s3_credentials_stay_out_of_git(published: Published, s3: S3Server) -> None:
    committed = published.original.run("git", "show", "HEAD:.dvc/config").stdout
    assert S3_URL in committed and s3.endpoint in committed  # the remote itself is shared
    history = published.original.run("git", "-C", str(published.origin), "log", "--all", "-p")
    local = (published.original.root / ".dvc/config.local").read_text()
    for secret in (s3.secret_access_key, s3.access_key_id):
        assert secret in local
        assert secret not in committed and secret not in history.stdout
    published.original.run("git", "check-ignore", "-q", ".dvc/config.local")


# Experiments through git: the figures at another resolution (cheap: only `figures` and
# `report` re-run; an experiment that retrains travels the same way, in tests/test_cluster.py
# too), run in one clone and applied in another.
EXPERIMENT = "dpi-72"
FIGURES = [figure.path for figure in artifacts.FIGURES.values()]


def _experiment(pipe: Pipeline) -> dict:
    """EXPERIMENT's row in `dvc exp show --json`: its rev, params and metrics."""
    shown = json.loads(pipe.run("dvc", "exp", "show", "--json").stdout)
    (row,) = [
        experiment["revs"][0]["data"]
        for baseline in shown
        for experiment in baseline.get("experiments") or []
        if experiment.get("name") == EXPERIMENT
    ]
    return row


@dataclass(frozen=True)
class SharedExperiment:
    digests: dict[str, str]  # clone A's workspace after the run: the experiment's outputs
    row: dict  # its row in A's `dvc exp show --json`


@pytest.fixture(scope="module")
def shared_experiment(
    published: Published, tmp_path_factory: pytest.TempPathFactory
) -> SharedExperiment:
    """Clone A runs the experiment and `dvc exp push`es it: its git ref to the bare
    repository, its outputs to the default remote (the directory)."""
    first = published.clone(tmp_path_factory.mktemp("experiment") / "a")
    first.run("dvc", "pull")
    result = first.run("dvc", "exp", "run", "-n", EXPERIMENT, "-S", "figures.dpi=72")
    assert ran_stages(result.stdout) == ["check_params", "figures", "report"]
    first.run("dvc", "exp", "push", "origin", EXPERIMENT)
    return SharedExperiment(first.digests(), _experiment(first))


@pytest.fixture(scope="module")
def second_clone(
    published: Published,
    shared_experiment: SharedExperiment,
    tmp_path_factory: pytest.TempPathFactory,
) -> Pipeline:
    """Clone B, fresh, after `dvc exp pull` of A's experiment."""
    second = published.clone(tmp_path_factory.mktemp("experiment") / "b")
    second.run("dvc", "exp", "pull", "origin", EXPERIMENT)
    return second


def test_a_pulled_experiment_shows_its_params_and_metrics(
    second_clone: Pipeline, shared_experiment: SharedExperiment, published: Published
) -> None:
    row = _experiment(second_clone)
    assert row["rev"] == shared_experiment.row["rev"]
    assert row["params"]["params.yaml"]["data"]["figures"]["dpi"] == 72
    assert row["metrics"] == shared_experiment.row["metrics"]
    assert row["metrics"] == published.metrics[""]["data"]  # figures change no metric


def test_an_applied_experiment_brings_its_outputs_without_running_anything(
    second_clone: Pipeline, shared_experiment: SharedExperiment, published: Published
) -> None:
    second_clone.run("dvc", "exp", "apply", EXPERIMENT)
    second_clone.run("dvc", "pull")
    assert second_clone.digests() == shared_experiment.digests
    for figure in FIGURES:  # not the baseline's figures
        assert shared_experiment.digests[figure] != published.digests[figure], figure
    ran, _ = second_clone.repro()
    assert ran == []
    assert not (second_clone.root / "mlflow.db").exists()  # no stage ran, none logged


# S3 failures. Each remote is the working `s3` one with a single thing wrong; `dvc push` runs
# in a copy that has the cache, `dvc pull` in one that lost it (so it must download), both
# with every output in the workspace.
def _broken_remotes(server: S3Server, refused_port: int) -> dict[str, dict[str, str]]:
    working = {
        "url": S3_URL,
        "endpointurl": server.endpoint,
        "access_key_id": server.access_key_id,
        "secret_access_key": server.secret_access_key,
    }
    return {
        # Connection refused: botocore retries (5 attempts, backing off), about 8 s in all.
        "unreachable": {**working, "endpointurl": f"http://127.0.0.1:{refused_port}"},
        "no-bucket": {**working, "url": "s3://no-such-bucket/cache"},
        "wrong-secret": {**working, "secret_access_key": "not-the-secret"},
    }


# What DVC's message must say, by failure and command. `dvc pull` first asks for the cache
# prefix with a HEAD request, whose 403 has no body to name the cause: only "Forbidden".
MESSAGES = {
    ("unreachable", "push"): ["Could not connect to the endpoint URL"],
    ("unreachable", "pull"): ["failed to connect to s3", "Could not connect to the endpoint URL"],
    ("no-bucket", "push"): ["NoSuchBucket"],
    ("no-bucket", "pull"): ["NoSuchBucket"],
    ("wrong-secret", "push"): ["SignatureDoesNotMatch"],
    ("wrong-secret", "pull"): ["failed to connect to s3", "Forbidden"],
}


@pytest.fixture(scope="module")
def stranded(
    published: Published, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Pipeline]]:
    """By command, a copy of the published repository with the broken remotes added to its
    .dvc/config.local."""
    base = tmp_path_factory.mktemp("stranded")
    pusher = _isolated(published.original.clone(base / "push"))
    # Bound but not listening: connections are refused, and no other process can take the port.
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        remotes = _broken_remotes(s3, refusing.getsockname()[1])
        sections = [
            "\n".join(
                [
                    f"['remote \"{name}\"']",
                    *(f"    {key} = {value}" for key, value in options.items()),
                ]
            )
            for name, options in remotes.items()
        ]
        with (pusher.root / ".dvc/config.local").open("a") as config:
            config.write("\n" + "\n".join(sections) + "\n")
        puller = _isolated(pusher.clone(base / "pull"))
        shutil.rmtree(puller.root / ".dvc/cache")
        yield {"push": pusher, "pull": puller}


@pytest.mark.parametrize("command", ["push", "pull"])
@pytest.mark.parametrize("failure", ["unreachable", "no-bucket", "wrong-secret"])
def test_an_s3_failure_names_its_cause_and_leaves_the_workspace_alone(
    stranded: dict[str, Pipeline], failure: str, command: str
) -> None:
    pipe = stranded[command]
    before = pipe.digests()
    # Within 60 s, retries included, or the test fails (TimeoutExpired).
    result = subprocess.run(
        ["dvc", command, "-r", failure],
        cwd=pipe.root,
        env=pipe.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode in (1, 255)  # DVC's own codes (README, "A DVC remote")
    for words in MESSAGES[failure, command]:
        assert words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert pipe.digests() == before
