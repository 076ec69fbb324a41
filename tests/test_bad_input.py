"""Bad input, systematically: every params key given a wrong type and an out-of-range value,
broken params files, a batch size larger than the data, and broken local MNIST.

Each must fail the stage with ONE line on stderr naming the problem, an exit code != 0, no
traceback (unless MNIST_AE_DEBUG is set), and every existing output byte-identical.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import yaml

from mnist_ae import artifacts, data, io
from mnist_ae.cli import DEBUG_ENV, run_stage
from mnist_ae.config import Params, flatten
from test_data import _tiny_arrays, _write_idx_dir

REPO = Path(__file__).resolve().parents[1]


class Bad(NamedTuple):
    """Two invalid values for one params key."""

    wrong_type: Any
    out_of_range: Any  # the right type, but outside the range or the allowed choices


# Every leaf key of params.yaml (a list is one key). For a list, both values are lists with one
# bad element; an empty list is tried as well. Every key here must exist in params.yaml and every
# key of params.yaml must be here (test_every_params_key_has_bad_values).
BAD_VALUES: dict[str, Bad] = {
    "seed": Bad("42", -1),
    "tracking.experiment_name": Bad(42, ""),
    "tracking.registry.enabled": Bad("yes", None),
    "tracking.registry.alias": Bad(7, "latest"),
    "tracking.registry.models.conv_denoiser.name": Bad(3, "-not a name"),
    "tracking.registry.models.conv_denoiser.metric": Bad(1, "accuracy"),
    "tracking.registry.models.dense_autoencoder.name": Bad(None, ""),
    "tracking.registry.models.dense_autoencoder.metric": Bad(["bce"], "ssim"),  # not evaluated
    "tracking.registry.models.vae_likelihood_encoder.name": Bad(1.5, "a name"),
    "tracking.registry.models.vae_likelihood_encoder.metric": Bad(True, "psnr"),
    "tracking.registry.models.vae_likelihood_decoder.name": Bad([], "x" * 201),
    "tracking.registry.models.vae_likelihood_decoder.metric": Bad(None, "active_units"),
    "prepare.source": Bad(1, "internet"),
    "prepare.idx_dir": Bad(7, ""),  # "" is out of range only with source: idx (CONTEXT)
    "prepare.train_samples": Bad("all", 0),
    "prepare.test_samples": Bad(2.5, 10_001),
    "noise.noise_factor": Bad("high", -0.1),
    "train_dense.encoding_dim": Bad(32.5, 785),
    "train_dense.optimizer": Bad(3, "adamax"),
    "train_dense.learning_rate": Bad("fast", 0),
    "train_dense.epochs": Bad("ten", 0),
    "train_dense.batch_size": Bad(1.5, 0),
    "train_dense.validation_samples": Bad(None, 0),
    "train_dense.early_stopping_patience": Bad(True, 0),
    "train_dense.reduce_lr_patience": Bad(2.5, 0),
    "train_dense.reduce_lr_factor": Bad("0.2", 1.0),
    "train_dense.steps_per_execution": Bad(2.5, 0),
    "train_dense.jit_compile": Bad(1, "always"),
    "train_dense.distribute": Bad(2, "horovod"),
    "train_conv.filters": Bad("32", 1025),
    "train_conv.optimizer": Bad(["adam"], ""),
    "train_conv.learning_rate": Bad("0.001", 11.0),
    "train_conv.epochs": Bad(15.0, 10_001),
    "train_conv.batch_size": Bad("128", 65_537),
    "train_conv.validation_samples": Bad(True, -5),
    "train_conv.early_stopping_patience": Bad("3", -1),
    "train_conv.reduce_lr_patience": Bad("4", -3),
    "train_conv.reduce_lr_factor": Bad(None, 0.0),
    "train_conv.steps_per_execution": Bad("1", 100_001),
    "train_conv.jit_compile": Bad("yes", "never"),
    "train_conv.distribute": Bad(None, "tpu"),
    "train_conv.fuse_last_upsampling": Bad("yes", None),
    "train_vae.binarize": Bad(True, "sometimes"),
    "train_vae.models.manifold.latent_dim": Bad("2", 3),  # the manifold needs a 2-D code
    "train_vae.models.manifold.hidden": Bad([256, "wide"], [0]),
    "train_vae.models.manifold.activation": Bad(1, "swish"),
    "train_vae.models.manifold.optimizer": Bad(None, "lbfgs"),
    "train_vae.models.manifold.learning_rate": Bad("slow", -0.1),
    "train_vae.models.manifold.epochs": Bad(20.0, 0),
    "train_vae.models.manifold.batch_size": Bad("100", 0),
    "train_vae.models.manifold.validation_samples": Bad(5000.0, 0),
    "train_vae.models.manifold.early_stopping_patience": Bad("none", 0),
    "train_vae.models.manifold.reduce_lr_patience": Bad(True, 0),
    "train_vae.models.manifold.reduce_lr_factor": Bad([0.5], 2.0),
    "train_vae.models.manifold.steps_per_execution": Bad(True, 0),
    "train_vae.models.manifold.jit_compile": Bad(0, "maybe"),
    "train_vae.models.manifold.distribute": Bad(True, "Mirrored"),
    "train_vae.models.likelihood.latent_dim": Bad(50.5, 785),
    "train_vae.models.likelihood.hidden": Bad(["200"], [200, 4097]),
    "train_vae.models.likelihood.activation": Bad(["tanh"], "gelu"),
    "train_vae.models.likelihood.optimizer": Bad(2, "Adam"),
    "train_vae.models.likelihood.learning_rate": Bad(None, 0.0),
    "train_vae.models.likelihood.epochs": Bad("60", 10_001),
    "train_vae.models.likelihood.batch_size": Bad(100.0, 65_537),
    "train_vae.models.likelihood.validation_samples": Bad("5000", -1),
    "train_vae.models.likelihood.early_stopping_patience": Bad(2.5, -2),
    "train_vae.models.likelihood.reduce_lr_patience": Bad("10", -1),
    "train_vae.models.likelihood.reduce_lr_factor": Bad("half", -0.5),
    "train_vae.models.likelihood.steps_per_execution": Bad("1", 0),
    "train_vae.models.likelihood.jit_compile": Bad("no", "sometimes"),
    "train_vae.models.likelihood.distribute": Bad(["auto"], "multi_worker"),
    "baselines.tuning_samples": Bad(None, 60_001),
    "baselines.grids.gaussian": Bad([0.5, "wide"], [0.5, -1.0]),
    "baselines.grids.median": Bad([2.5], [1]),
    "baselines.grids.total_variation": Bad([True], [0.0]),
    "baselines.grids.non_local_means": Bad(["0.1"], [-0.1]),
    "evaluate.batch_size": Bad("1024", 0),
    "evaluate_vae.importance_samples.manifold": Bad("100", 0),
    "evaluate_vae.importance_samples.likelihood": Bad(None, 100_001),
    "evaluate_vae.batch_size": Bad(1.5, 10_001),
    "noise_sweep.noise_factors": Bad([None], [0.1, 10.5]),
    "noise_sweep.batch_size": Bad(1024.0, 0),
    "figures.n_digits": Bad("10", 51),
    "figures.dpi": Bad(100.5, 601),
    "figures.projection": Bad(2, "umap"),
    "figures.projection_samples": Bad(None, 10_001),
    "figures.manifold_size": Bad(20.5, 1),
}

# Other keys a case sets first, for values that are invalid only in combination.
CONTEXT: dict[str, dict[str, Any]] = {"prepare.idx_dir": {"prepare.source": "idx"}}


@cache
def _repo_params_text() -> str:
    return (REPO / "params.yaml").read_text(encoding="utf-8")


def _repo_params() -> dict[str, Any]:
    return yaml.safe_load(_repo_params_text())


def _parent(raw: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    """The mapping that holds a dotted key, and the key's last part."""
    *sections, key = dotted.split(".")
    for section in sections:
        raw = raw[section]
    return raw, key


def _with(changes: dict[str, Any]) -> str:
    """The repository's params.yaml with dotted keys set to new values, as YAML text."""
    raw = copy.deepcopy(_repo_params())
    for dotted, value in changes.items():
        parent, key = _parent(raw, dotted)
        parent[key] = value
    return yaml.safe_dump(raw, sort_keys=False)


def _without(dotted: str) -> str:
    """The repository's params.yaml without one (dotted) key or section, as YAML text."""
    raw = copy.deepcopy(_repo_params())
    parent, key = _parent(raw, dotted)
    del parent[key]
    return yaml.safe_dump(raw, sort_keys=False)


def _edited(old: str, new: str) -> str:
    """The repository's params.yaml text with one exact edit."""
    text = _repo_params_text()
    assert text.count(old) == 1, f"params.yaml no longer holds {old!r} once"
    return text.replace(old, new)


def _bad_value_cases() -> list[Any]:
    leaves = flatten(_repo_params())
    cases = []
    for key, bad in BAD_VALUES.items():
        cases.append(pytest.param(key, bad.wrong_type, id=f"{key}-wrong-type"))
        cases.append(pytest.param(key, bad.out_of_range, id=f"{key}-out-of-range"))
        if isinstance(leaves.get(key), list):
            cases.append(pytest.param(key, [], id=f"{key}-empty-list"))
    return cases


def _must_not_run(params: Params) -> None:
    pytest.fail("the stage body ran although params.yaml is invalid")  # BaseException: not caught


PREVIOUS_OUTPUT = b"PK\x03\x04 an earlier prepare's output\n"


def _run_prepare(
    tmp_path: Path,
    params_text: str | None,
    capsys: pytest.CaptureFixture[str],
    body: Callable[[Params], None],
) -> tuple[int, list[str]]:
    """Run the prepare stage in-process on a params file; return exit code and stderr lines.

    `params_text` None means no params file at all. Checks that the stage's existing output is
    left byte-identical and that nothing went to stdout.
    """
    output = tmp_path / artifacts.MNIST.path
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(PREVIOUS_OUTPUT)
    params_path = tmp_path / "params.yaml"
    if params_text is not None:
        params_path.write_text(params_text, encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        run_stage("prepare", body, str(params_path))
    captured = capsys.readouterr()
    assert output.read_bytes() == PREVIOUS_OUTPUT
    assert captured.out == ""
    return exited.value.code, captured.err.splitlines()


def _invalid_params_line(
    tmp_path: Path, params_text: str | None, capsys: pytest.CaptureFixture[str]
) -> str:
    """Run prepare on bad params; assert exit code 2 and one clean line, and return the line."""
    code, lines = _run_prepare(tmp_path, params_text, capsys, _must_not_run)
    assert code == 2, lines
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith(f"prepare: invalid params: {tmp_path / 'params.yaml'}: "), line
    assert "Traceback" not in line
    return line


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)


def test_every_params_key_has_bad_values() -> None:
    assert set(BAD_VALUES) == set(flatten(_repo_params()))


@pytest.mark.parametrize(("key", "value"), _bad_value_cases())
def test_bad_value_is_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: Any
) -> None:
    line = _invalid_params_line(tmp_path, _with({**CONTEXT.get(key, {}), key: value}), capsys)
    # The dotted key, or the index of the bad element in a list: 'baselines.grids.median.0'.
    assert re.search(rf"'{re.escape(key)}(\.\d+)?': ", line), line
    # It complains about the value we broke, and only about it.
    in_list = isinstance(flatten(_repo_params())[key], list) and value
    offending = value[-1] if in_list else value
    assert line.endswith(f"(got {offending!r})"), line
    assert "more)" not in line, line


@pytest.mark.parametrize(
    ("params_text", "expected"),
    [
        pytest.param(
            _with({"train_dense.epoch": 3}),
            "unknown key 'train_dense.epoch'",
            id="unknown-key-in-section",
        ),
        pytest.param(
            _with({"seeds": 1}),
            "unknown key 'seeds'",
            id="unknown-top-level-key",
        ),
        pytest.param(
            _repo_params_text() + "extra_stage:\n  batch_size: 3\n",
            "unknown key 'extra_stage'",
            id="unknown-section",
        ),
        pytest.param(
            _without("evaluate"),
            "missing section 'evaluate'",
            id="missing-section",
        ),
        pytest.param(
            _without("seed"),
            "missing key 'seed'",
            id="missing-seed",
        ),
        pytest.param(
            _without("train_dense.epochs"),
            "missing key 'train_dense.epochs'",
            id="missing-key",
        ),
        pytest.param(
            _with({"noise": 0.5}),
            "'noise': Input should be a valid dictionary",
            id="section-not-a-mapping",
        ),
        pytest.param(
            _with({"prepare.source": "idx", "prepare.idx_dir": None}),
            "'prepare.idx_dir': idx_dir must be set when source is 'idx'",
            id="idx-source-without-directory",
        ),
        pytest.param(
            _edited("\n  dpi:", "\n\tdpi:"),
            "found character '\\t' that cannot start any token",
            id="malformed-yaml-tab",
        ),
        pytest.param(
            _edited("[0.5, 0.75,", "[0.5, 0.75"),
            # Still valid YAML (one string '0.75 1.0'): strict types catch it.
            "'baselines.grids.gaussian.1': Input should be a valid number (got '0.75 1.0')",
            id="missing-comma-in-list",
        ),
        pytest.param(
            "seed: 42\nnoise: {noise_factor: [0.5\n",
            "malformed YAML at line 3, column 1: expected ',' or ']'",
            id="malformed-yaml-unclosed-bracket",
        ),
        pytest.param(
            "- seed: 42\n- noise: {noise_factor: 0.5}\n",
            "expected a mapping of sections, got list",
            id="not-a-mapping",
        ),
        pytest.param("", "empty, expected a mapping of sections", id="empty-file"),
        pytest.param("# nothing but a comment\n", "empty, expected", id="only-comments"),
        pytest.param(None, "cannot read (No such file or directory)", id="missing-file"),
    ],
)
def test_broken_params_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], params_text: str | None, expected: str
) -> None:
    assert expected in _invalid_params_line(tmp_path, params_text, capsys)


def test_error_in_a_stage_is_its_first_line_and_exit_code_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def body(params: Params) -> None:
        raise ValueError("batch_size 256 is larger than the 15 training samples\nsecond line")

    code, lines = _run_prepare(tmp_path, _repo_params_text(), capsys, body)
    assert code == 1
    assert lines == [
        "prepare: error: batch_size 256 is larger than the 15 training samples "
        f"(set {DEBUG_ENV}=1 for a traceback)"
    ]


def test_debug_setting_lets_the_traceback_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def body(params: Params) -> None:
        raise ValueError("broken")

    (tmp_path / "params.yaml").write_text(_repo_params_text(), encoding="utf-8")
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(ValueError, match="broken"):
        run_stage("prepare", body, str(tmp_path / "params.yaml"))


# The real stage scripts, as DVC runs them: a fresh Python (importing TensorFlow, ~6 s each) in
# a temporary working directory, with MLflow pointed at a store inside it.


def _run_stage_script(
    stage: str, workdir: Path, changes: dict[str, Any], outputs: list[str]
) -> str:
    """Run stages/<stage>.py in `workdir` with changed params and return its one stderr line.

    Asserts exit code 1, no traceback, every output in `outputs` byte-identical (a placeholder
    is written first for each one missing), and that stderr holds exactly one
    non-empty line.
    """
    (workdir / "params.yaml").write_text(_with(changes), encoding="utf-8")
    before = {}
    for name in outputs:
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(f"previous {name}\n".encode())
        before[name] = path.read_bytes()
    ignored = {DEBUG_ENV, "DVC_ROOT", "DVC_EXP_NAME", "PYTHONPATH", "MLFLOW_TRACKING_URI"}
    env = {key: value for key, value in os.environ.items() if key not in ignored}
    env["PYTHONPATH"] = str(REPO / "src")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{stage}.py")],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for name, content in before.items():
        assert (workdir / name).read_bytes() == content, f"{name} changed"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    # Exactly one line: TensorFlow's native start-up chatter is filtered (mnist_ae.quiet) and
    # MLflow's "creating tables" notice silenced (mnist_ae.cli).
    own = lines
    assert len(own) == 1, result.stderr
    assert own[0].endswith(f" (set {DEBUG_ENV}=1 for a traceback)"), own[0]
    return own[0].removesuffix(f" (set {DEBUG_ENV}=1 for a traceback)")


def _missing_dir(directory: Path) -> None:
    """Leave `directory` absent."""


def _truncated_file(directory: Path) -> None:
    _write_idx_dir(directory, _tiny_arrays(), gzipped=False)
    images = directory / data.IDX_FILES["x_train"]
    images.write_bytes(images.read_bytes()[:-100])


def _wrong_shape(directory: Path) -> None:
    arrays = _tiny_arrays()
    arrays["x_train"] = np.zeros((6, 27, 28), dtype=np.uint8)
    _write_idx_dir(directory, arrays, gzipped=True)


@pytest.mark.parametrize(
    ("make_dir", "expected"),
    [
        pytest.param(_missing_dir, r"mnist_idx: IDX directory does not exist$", id="missing"),
        pytest.param(
            _truncated_file,
            r"train-images-idx3-ubyte: IDX header says shape \(6, 28, 28\) \(4704 bytes\) but "
            r"the file holds 4604 bytes \(truncated or padded\)",
            id="truncated",
        ),
        pytest.param(
            _wrong_shape,
            r"mnist_idx: train images should be uint8 of shape \(N, 28, 28\), found uint8 of "
            r"shape \(6, 27, 28\)",
            id="wrong-shape",
        ),
    ],
)
def test_broken_local_mnist_fails_prepare_cleanly(
    tmp_path: Path, make_dir: Callable[[Path], None], expected: str
) -> None:
    directory = tmp_path / "mnist_idx"
    make_dir(directory)
    changes = {"prepare.source": "idx", "prepare.idx_dir": str(directory)}
    line = _run_stage_script("prepare", tmp_path, changes, [artifacts.MNIST.path])
    assert line.startswith(f"prepare: error: {directory}"), line
    assert re.search(expected, line), line


def test_batch_size_larger_than_the_data_fails_train_dense_cleanly(tmp_path: Path) -> None:
    # Params cannot know the data size: the stage finds out, before training or writing.
    rng = np.random.default_rng(0)
    io.save_arrays(
        tmp_path / artifacts.MNIST.path,
        {
            "x_train": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
            "y_train": np.arange(20, dtype=np.uint8) % 10,
            "x_test": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
            "y_test": np.arange(5, dtype=np.uint8),
        },
    )
    outputs = [
        artifacts.MNIST.path,
        artifacts.DENSE_AUTOENCODER.path,
        artifacts.DENSE_ENCODER.path,
        artifacts.DENSE_DECODER.path,
        artifacts.DENSE_HISTORY.path,
        artifacts.DENSE_SUMMARY.path,
    ]
    changes = {"train_dense.batch_size": 256, "train_dense.validation_samples": 5}
    line = _run_stage_script("train_dense", tmp_path, changes, outputs)
    assert line == (
        "train_dense: error: batch_size 256 is larger than the 15 training samples left after "
        "the validation split"
    )
