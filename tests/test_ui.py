"""`mnist-ae ui` (mnist_ae.commands.ui): its one-line errors, and the real thing: the command
on a store with one run, its printed link opened in a headless Chromium with a fresh profile,
which must show the runs table in MLflow's Model training view (the plain experiment link
shows the GenAI overview instead), then Ctrl-C, after which nothing it started is left.

Chromium is Debian's `chromium` (scripts/setup-env.sh installs it); without it the browser
tests skip, except on CI (CI set), where they fail.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import psutil
import pytest
from mlflow.tracking import MlflowClient

from mnist_ae.commands import MODULES, ui
from mnist_ae.tracking import store
from mnist_ae.tracking.links import runs_url
from mnist_ae.tracking.row import log_training_datasets

REPO = Path(__file__).resolve().parents[1]
RUN_NAME = "repro-abc1234"
DATASET_NAME = "mnist"
SHA256 = "0123abcd" * 8  # MLflow shows the first 32 hex digits: the digest
LINK_TIMEOUT = 120  # seconds; the link comes after about 5 s (8 s on a busy 2-core machine)

# `mnist-ae ui` with only this command's parser (mnist_ae.main imports every command), from
# this checkout's src/ (the installed `mnist-ae` may point at another checkout).
UI_COMMAND = (
    "import argparse, sys\n"
    "from mnist_ae.commands import ui\n"
    "parser = argparse.ArgumentParser(prog='mnist-ae')\n"
    "ui.add_parser(parser.add_subparsers(dest='command', required=True))\n"
    "args = parser.parse_args()\n"
    "sys.exit(args.handler(args))\n"
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mnist-ae")
    ui.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace (params.yaml, no store) as the working directory."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return tmp_path


def test_ui_binds_this_machine_on_port_5000_and_opens_no_browser() -> None:
    assert "ui" in MODULES
    args = parse("ui")
    assert (args.host, args.port, args.open_browser) == ("127.0.0.1", 5000, False)
    assert parse("ui", "--open").open_browser is True
    assert parse("ui", "--no-browser").open_browser is False
    with pytest.raises(SystemExit):
        parse("ui", "--port", "0")


def test_busy_port_is_refused_in_one_line_before_anything_is_made(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert ui.run(parse("ui", "--port", str(port))) == 1
    assert capsys.readouterr().err == (
        f"mnist-ae ui: error: port {port} on 127.0.0.1 is in use (another MLflow UI?); "
        "choose another with --port\n"
    )
    assert not (workspace / "mlflow.db").exists()


def test_invalid_params_fail_in_one_line_naming_the_key(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = workspace / "params.yaml"
    params.write_text(params.read_text().replace("experiment_name:", "experiment_nam:"))
    assert ui.run(parse("ui", "--port", str(free_port()))) == 2
    error = capsys.readouterr().err
    assert error.startswith("mnist-ae ui: invalid params: ")
    assert "tracking.experiment_nam" in error and error.count("\n") == 1


def test_store_in_a_missing_directory_fails_in_one_line(
    workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workspace}/missing/mlflow.db")
    assert ui.run(parse("ui", "--port", str(free_port()))) == 1
    assert capsys.readouterr().err == (
        f"mnist-ae ui: error: MLflow store sqlite:///{workspace}/missing/mlflow.db: "
        f"directory {workspace}/missing does not exist\n"
    )


def log_training_dataset(client: MlflowClient, run_id: str) -> None:
    """Log training data as the pipeline does (tracking.row.log_training_datasets)."""
    described = {"file": "data/mnist.npz", "sha256": SHA256, "train_samples": 3}
    log_training_datasets(client, run_id, {DATASET_NAME: described | {"validation_samples": 1}})


@dataclass
class RunningUi:
    process: subprocess.Popen
    workspace: Path
    port: int
    link: str
    experiment_id: str
    run_id: str
    started: list[psutil.Process]  # what the command started: the server and its workers
    output: list[str]  # its stdout, line by line, as `reader` reads it
    reader: threading.Thread

    @property
    def base(self) -> str:
        return self.link.split("/#/")[0]


def _read_lines(stream: object, lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)


def _wait_for_link(process: subprocess.Popen, output: list[str]) -> str:
    deadline = time.monotonic() + LINK_TIMEOUT
    while time.monotonic() < deadline:
        links = [line.strip() for line in output if line.startswith("http")]
        if links:
            return links[0]
        if process.poll() is not None:
            pytest.fail(f"mnist-ae ui exited {process.returncode}: {process.stderr.read()}")
        time.sleep(0.1)
    pytest.fail(f"mnist-ae ui printed no link within {LINK_TIMEOUT} s: {output}")


def stop_ui(process: subprocess.Popen) -> tuple[int, str]:
    """Ctrl-C to the command (SIGKILL if it has not exited after 30 s): its exit code and
    stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.returncode, process.stderr.read()


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `processes` still running (the same processes: psutil checks start times)."""
    return [
        process
        for process in processes
        if process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    ]


@pytest.fixture(scope="module")
def running_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUi]:
    """`mnist-ae ui` on a free port of a workspace with no store yet (it makes the store and
    the experiment); once it printed its link, one run named RUN_NAME with a training dataset
    and an artifact is logged. Stopped at the end whatever happened."""
    workspace = tmp_path_factory.mktemp("workspace")
    shutil.copy(REPO / "params.yaml", workspace / "params.yaml")
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):
        environment.pop(name, None)
    port = free_port()
    # The command must get Python's Ctrl-C handler even if pytest runs in the background (see
    # conftest's _ctrl_c_enabled, which is set up only after module fixtures).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", UI_COMMAND, "ui", "--port", str(port)],
            cwd=workspace,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    output: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(process.stdout, output), daemon=True)
    reader.start()
    started: list[psutil.Process] = []
    try:
        link = _wait_for_link(process, output)
        started = psutil.Process(process.pid).children(recursive=True)
        experiment = re.search(r"#/experiments/(\d+)/runs", link).group(1)
        uri = f"sqlite:///{workspace / 'mlflow.db'}?timeout=60"
        with (
            store.global_tracking_uri(uri),
            mlflow.start_run(experiment_id=experiment, run_name=RUN_NAME) as run,
        ):
            log_training_dataset(MlflowClient(uri), run.info.run_id)
            mlflow.log_dict({"psnr": 20.0}, "evaluation.json")
        yield RunningUi(
            process, workspace, port, link, experiment, run.info.run_id, started, output, reader
        )
    finally:
        stop_ui(process)
        for leftover in alive(started):
            leftover.kill()
        reader.join(timeout=5)


def test_the_command_makes_the_store_and_prints_the_runs_link(running_ui: RunningUi) -> None:
    experiment = MlflowClient(f"sqlite:///{running_ui.workspace / 'mlflow.db'}").get_experiment(
        running_ui.experiment_id
    )
    assert experiment.name == "mnist-autoencoders"
    assert experiment.artifact_location == (running_ui.workspace / "mlruns").as_uri()
    base = f"http://127.0.0.1:{running_ui.port}"
    assert running_ui.link == runs_url(base, running_ui.experiment_id)
    assert running_ui.output[0].startswith(
        f"MLflow UI on sqlite:///{running_ui.workspace}/mlflow.db (server log: "
    )


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def test_the_server_shows_artifacts_and_keeps_new_ones_beside_the_store(
    running_ui: RunningUi,
) -> None:
    base, run_id = running_ui.base, running_ui.run_id
    # What the UI's artifact browser asks for.
    listing = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/artifacts/list?run_id={run_id}"))
    assert [entry["path"] for entry in listing["files"]] == ["evaluation.json"]
    content = _get(f"{base}/get-artifact?path=evaluation.json&run_uuid={run_id}")
    assert json.loads(content) == {"psnr": 20.0}
    # An experiment made in the UI keeps its artifacts in mlruns/ too, not in ./mlartifacts.
    request = urllib.request.Request(
        f"{base}/ajax-api/2.0/mlflow/experiments/create",
        data=json.dumps({"name": "made-in-the-ui"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    made = json.loads(urllib.request.urlopen(request, timeout=30).read())["experiment_id"]
    answer = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/experiments/get?experiment_id={made}"))
    location = answer["experiment"]["artifact_location"]
    assert location == f"{(running_ui.workspace / 'mlruns').as_uri()}/{made}"


def test_a_tracking_server_gets_its_link_and_nothing_starts(
    running_ui: RunningUi,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(running_ui.workspace)  # its params.yaml
    for name in store.HTTP_DEFAULTS:  # set by the command; gone after the test
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "MLFLOW_TRACKING_URI", f"http://alice:pa55-w0rd@127.0.0.1:{running_ui.port}/"
    )
    children = psutil.Process().children(recursive=True)
    assert ui.run(parse("ui", "--port", str(running_ui.port))) == 0
    assert psutil.Process().children(recursive=True) == children
    printed = capsys.readouterr().out
    assert printed == (
        f"The runs on the tracking server http://127.0.0.1:{running_ui.port}/ "
        f"(MLFLOW_TRACKING_URI):\n{running_ui.link}\n"
    )


# --- In a real browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; scripts/setup-env.sh installs it (as root)")
        pytest.skip("chromium is not installed (Debian: apt install chromium)")
    return found


@dataclass(frozen=True)
class Page:
    title: str
    text: str  # what the page shows, tags and scripts left out
    view: str  # the UI's view: "genai" or "machine_learning"


def open_page(chromium: str, url: str, home: Path) -> Page:
    """`url` as a new user's headless Chromium shows it once its scripts and fetches are done.

    A fresh profile under `home` (no view remembered from another visit); HOME too, where
    Chromium's crash handler keeps its files. Only 127.0.0.1 resolves: no network. Every
    process it started is gone when this returns.
    """
    home.mkdir()
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # as root, Chromium refuses to start with its sandbox
        "--disable-gpu",
        f"--user-data-dir={home / 'profile'}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        # Dump the DOM once the page is idle: virtual time stands still while a fetch is
        # pending, so the UI's data has arrived; the budget bounds animations and timers.
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    process = subprocess.Popen(
        command,
        env={**os.environ, "HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        dom, errors = process.communicate(timeout=90)
    finally:
        leftovers = _stop_chromium(process, home)
    assert process.returncode == 0, errors[-2000:]
    assert not leftovers, f"Chromium left processes behind: {leftovers}"
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    text = " ".join(re.sub(r"<[^>]+>", " ", body).split())
    # The sidebar's Docs link is what names the view (MLflow 3.17): docs/latest/ml/ or /genai/.
    docs = re.search(r'href="https://www\.mlflow\.org/docs/latest/(ml|genai)/"', dom)
    assert title and docs, f"not an MLflow UI page: {text[:500]}"
    view = {"ml": "machine_learning", "genai": "genai"}[docs.group(1)]
    return Page(title.group(1), text, view)


def _stop_chromium(process: subprocess.Popen, home: Path) -> list[str]:
    """Give Chromium's processes (all of which name `home`: its crash handler leaves the
    process group) 5 s to exit, then kill the rest; the command lines of those killed."""
    with contextlib.suppress(ProcessLookupError):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    process.wait()

    def remaining() -> list[psutil.Process]:
        found = []
        for candidate in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if candidate.status() != psutil.STATUS_ZOMBIE and any(
                    str(home) in argument for argument in candidate.cmdline()
                ):
                    found.append(candidate)
        return found

    deadline = time.monotonic() + 5
    while remaining() and time.monotonic() < deadline:
        time.sleep(0.2)
    leftovers = remaining()
    for leftover in leftovers:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    return [" ".join(leftover.cmdline()[:2]) for leftover in leftovers]


def test_the_link_opens_the_runs_table_in_the_training_view(
    chromium: str, running_ui: RunningUi, tmp_path: Path
) -> None:
    page = open_page(chromium, running_ui.link, tmp_path / "chromium")
    assert page.title == f"Runs - Experiment {running_ui.experiment_id} - MLflow"
    assert page.view == "machine_learning"
    assert RUN_NAME in page.text
    assert f"{DATASET_NAME} ({SHA256[:32]}) training" in page.text  # the Dataset column


def test_the_plain_experiment_link_opens_the_genai_overview(
    chromium: str, running_ui: RunningUi, tmp_path: Path
) -> None:
    """Why the link carries workflowType: without it a new user lands on traces and tokens,
    even with the experiment tagged mlflow.experimentKind = custom_model_development."""
    page = open_page(
        chromium, f"{running_ui.base}/#/experiments/{running_ui.experiment_id}", tmp_path / "c"
    )
    assert page.title == f"Overview - Experiment {running_ui.experiment_id} - MLflow"
    assert page.view == "genai"
    assert "Token Usage" in page.text
    assert RUN_NAME not in page.text


def test_the_run_link_opens_the_run_in_the_training_view(
    chromium: str, running_ui: RunningUi, tmp_path: Path
) -> None:
    link = runs_url(running_ui.base, running_ui.experiment_id, running_ui.run_id)
    page = open_page(chromium, link, tmp_path / "chromium")
    assert page.title == f"Run {running_ui.run_id} - MLflow"
    assert page.view == "machine_learning"
    assert RUN_NAME in page.text
    assert f"{DATASET_NAME} ({SHA256[:32]}) training" in page.text


# Last: it stops the module's server.
def test_ctrl_c_stops_the_server_and_everything_it_started(running_ui: RunningUi) -> None:
    assert running_ui.started, "the command started no server"
    returncode, errors = stop_ui(running_ui.process)
    assert (returncode, errors) == (0, "")
    running_ui.reader.join(timeout=5)  # it has read the last line
    assert running_ui.output[-1] == "MLflow UI stopped\n"
    assert alive(running_ui.started) == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", running_ui.port)) != 0  # nothing listens
