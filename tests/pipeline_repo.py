"""A throw-away git + DVC copy of the repository with params.yaml shrunk, for the end-to-end
tests. Built once per test session, that is once per pytest-xdist worker (every stage imports
TensorFlow, so a full run takes a minute or two); each module gets its own copy."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from mlflow.tracking import MlflowClient

from mnist_ae import artifacts
from mnist_ae.provenance import PROVENANCE_ENV

REPO = Path(__file__).resolve().parents[1]
STAGES = [
    "check_params",
    "prepare",
    "add_noise",
    "train_dense",
    "train_conv",
    *(f"train_vae@{name}" for name in artifacts.VAE_NAMES),
    "baselines",
    "evaluate",
    *(f"evaluate_vae@{name}" for name in artifacts.VAE_NAMES),
    "noise_sweep",
    "figures",
    "report",
]
OUTPUTS = [artifact.path for artifact in artifacts.ALL]


def shrink(params: dict) -> dict:
    params["prepare"].update(train_samples=400, test_samples=100)
    for section in ("train_dense", "train_conv"):
        params[section].update(epochs=1, batch_size=32, validation_samples=80)
    for settings in params["train_vae"]["models"].values():
        settings.update(hidden=[16], epochs=1, batch_size=32, validation_samples=80)
    params["train_vae"]["models"]["likelihood"]["latent_dim"] = 5
    params["evaluate"]["batch_size"] = 50
    params["evaluate_vae"].update(
        importance_samples={"manifold": 20, "likelihood": 20}, batch_size=50
    )
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


# Fake credentials in the environment of every pipeline run, and in the git remote's URL. The
# tracking password is TEAM_USER's on the team server (conftest puts both in os.environ).
SECRETS = {
    "MNIST_AE_TEST_API_TOKEN": "tok-3f9c2e71d5",
    "MNIST_AE_TEST_DB_PASSWORD": "pw-a81b44c0e9",
    "MNIST_AE_TEST_SIGNING_KEY": "key-77d0c3b2f1",
    "MLFLOW_TRACKING_PASSWORD": "alice-pw-5d0e8c2a71",
}
TEAM_USER = "alice"
ADMIN_PASSWORD = "admin-pw-9e2b71c44f0a"


class Pipeline:
    """A throw-away git + DVC copy of the repository."""

    def __init__(self, root: Path, tracking_uri: str | None = None) -> None:
        self.root = root
        # None: the pipeline's default store, mlflow.db at the repository root.
        self.tracking_uri = tracking_uri
        venv_bin = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
        for variable in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE"):
            self.env.pop(variable, None)
        if tracking_uri:
            self.env["MLFLOW_TRACKING_URI"] = tracking_uri
        # DVC runs stage commands through $SHELL. CI sets none (DVC then uses /bin/sh, dash on
        # Debian), a terminal usually has bash: pin the stricter one so every machine agrees.
        self.env["SHELL"] = "/bin/sh"
        self.env.update(SECRETS)  # must never reach MLflow (test_pipeline.py checks)
        # What each stage reads and writes, for the dvc.yaml guard (test_dvc_yaml.py).
        self.provenance = root.parent / "provenance"
        self.env[PROVENANCE_ENV] = str(self.provenance)

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
        return ran_stages(result.stdout), result

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
        return MlflowClient(self.tracking_uri or f"sqlite:///{self.root / 'mlflow.db'}")

    def clone(self, destination: Path, tracking_uri: str | None = None) -> Pipeline:
        """An independent copy (git, DVC cache, outputs) that logs to `tracking_uri`, by default
        to an empty MLflow store of its own (whatever this copy logs to)."""
        ignore = shutil.ignore_patterns("mlflow.db*", "mlruns", ".checkpoints")
        shutil.copytree(self.root, destination, symlinks=True, ignore=ignore)
        return Pipeline(destination, tracking_uri)

    def runs(self) -> list:
        """The runs of this copy's MLflow experiment (params.yaml `tracking.experiment_name`),
        oldest first."""
        name = yaml.safe_load((self.root / "params.yaml").read_text())["tracking"][
            "experiment_name"
        ]
        client = self.client()
        experiment = client.get_experiment_by_name(name)
        return client.search_runs(
            [experiment.experiment_id], order_by=["attributes.start_time ASC"]
        )


def ran_stages(output: str) -> list[str]:
    """The stages a `dvc repro` / `dvc exp run` output says it ran, in order."""
    return re.findall(r"Running stage '([^']+)'", output)


def copy_tracked(root: Path) -> list[str]:
    """Copy the repository's git-tracked files (as in the working tree) to `root`; their names."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    return [name for name in tracked if name]


def build(root: Path, tracking_uri: str | None = None) -> Pipeline:
    """Copy the tracked files to `root`, shrink params.yaml, commit, and run `dvc repro`."""
    copy_tracked(root)
    params_path = root / "params.yaml"
    params_path.write_text(
        yaml.safe_dump(shrink(yaml.safe_load(params_path.read_text())), sort_keys=False)
    )
    pipe = Pipeline(root, tracking_uri)
    pipe.run("git", "init", "-q")
    token = SECRETS["MNIST_AE_TEST_API_TOKEN"]
    pipe.run("git", "remote", "add", "origin", f"https://ci:{token}@git.invalid/mnist-ae.git")
    pipe.run("git", "add", "-A")
    pipe.run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "shrunk copy")
    ran, _ = pipe.repro()
    assert ran == STAGES, ran
    return pipe


# A training stage that runs until it is stopped (tests/test_faults.py, test_team.py).
CHECKPOINT = ".checkpoints/train_conv.npz"
# The most epochs params allow: at even 1 ms an epoch the stage would run for 10 s after the
# checkpoint the test waits for, where signalling it takes milliseconds.
UNENDING = 10_000
SIGNAL_AFTER_EPOCH = 2  # the stage's own progress decides when the signal is sent


def checkpointed_epochs(path: Path) -> int:
    try:
        with np.load(path) as archive:
            return len(json.loads(archive["meta"].tobytes())["history"]["val_loss"])
    except FileNotFoundError:
        return 0


def start_unending_training(pipe: Pipeline) -> subprocess.Popen:
    """Start `dvc repro train_conv` for UNENDING epochs (its own process group) and return once
    its checkpoint holds SIGNAL_AFTER_EPOCH epochs: the stage is training, and logging each
    epoch. The caller must end the process."""
    pipe.edit_params("train_conv", "epochs", UNENDING)
    checkpoint = pipe.root / CHECKPOINT
    checkpoint.unlink(missing_ok=True)
    process = subprocess.Popen(
        ["dvc", "repro", "train_conv"],
        cwd=pipe.root,
        env=pipe.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while checkpointed_epochs(checkpoint) < SIGNAL_AFTER_EPOCH:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return process


GIT_IDENTITY = ("-c", "user.name=t", "-c", "user.email=t@t")


def publish(
    pipe: Pipeline, base: Path, configure: Callable[[Pipeline], None] = lambda pipe: None
) -> Path:
    """Share `pipe` as a team does: a directory DVC remote `storage` at base/storage (the
    default) with every output pushed, `configure(pipe)` for anything more (another remote),
    then dvc.lock and .dvc/config committed and pushed to a bare git repository at
    base/origin.git, which becomes `origin`. Returns the bare repository's path."""
    origin = base / "origin.git"
    branch = pipe.run("git", "branch", "--show-current").stdout.strip()
    pipe.run("git", "init", "-q", "--bare", f"--initial-branch={branch}", str(origin))
    pipe.run("git", "remote", "set-url", "origin", str(origin))
    pipe.run("dvc", "remote", "add", "-d", "storage", str(base / "storage"))
    configure(pipe)
    pipe.run("dvc", "push")
    pipe.run("git", "add", "-A")  # dvc.lock and .dvc/config
    pipe.run("git", *GIT_IDENTITY, "commit", "-qm", "results, and where their data lives")
    pipe.run("git", "push", "-q", "origin", branch)
    return origin


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class TeamServer:
    url: str
    directory: Path  # the server's folder (mnist_ae.team_server.Layout)


def tracking_server_command(*arguments: str, **env: str | None) -> subprocess.CompletedProcess:
    """scripts/tracking-server.sh, as a user runs it; `env` adds variables (None: removes)."""
    environment = {**os.environ, **env}
    return subprocess.run(
        ["bash", str(REPO / "scripts/tracking-server.sh"), *arguments],
        env={name: value for name, value in environment.items() if value is not None},
        capture_output=True,
        text=True,
        timeout=300,
    )


@contextlib.contextmanager
def team_server() -> Iterator[TeamServer]:
    """The team tracking server (PostgreSQL, proxied artifacts, basic auth) on free ports of
    127.0.0.1, started and stopped with scripts/tracking-server.sh; user TEAM_USER exists.

    Its folder is made under /tmp by mkdtemp, not pytest's tmp_path: under root PostgreSQL runs
    as user `postgres`, which cannot enter pytest's 0700 folders.
    """
    parent = Path(tempfile.mkdtemp(prefix="mnist-ae-server-"))
    parent.chmod(0o711)
    directory = parent / "server"
    folder = ("--dir", str(directory))
    started = tracking_server_command(
        *folder,
        "start",
        "--port",
        str(free_port()),
        "--db-port",
        str(free_port()),
        MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    try:
        assert started.returncode == 0, started.stderr
        url = started.stdout.split(" at ", 1)[1].split()[0]
        added = tracking_server_command(
            *folder,
            "add-user",
            TEAM_USER,
            MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
            MNIST_AE_NEW_USER_PASSWORD=SECRETS["MLFLOW_TRACKING_PASSWORD"],
        )
        assert added.returncode == 0, added.stderr
        yield TeamServer(url, directory)
    finally:
        stopped = tracking_server_command(*folder, "stop")
        shutil.rmtree(parent, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stderr
