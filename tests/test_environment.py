"""The environment: oneDNN switched on whatever imports TF first; a lock that is current and
covers every supported Python and platform."""

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = (
    "import {module}\n"
    "from tensorflow.python.util import _pywrap_util_port as port\n"
    "print(port.IsMklEnabled())\n"
)


def _onednn_enabled(module: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"),
    reason="checked on x86-64 only: TensorFlow's oneDNN kernels there are what the switch is for",
)
def test_training_module_gets_onednn_even_though_it_imports_tensorflow_first() -> None:
    assert _onednn_enabled("mnist_ae.training") == "True"


def _uv() -> str:
    """The uv that scripts/setup-env.sh used: on PATH, or the one it bootstrapped."""
    bootstrapped = REPO / ".tools" / "uv" / "bin" / "uv"
    return str(bootstrapped) if bootstrapped.exists() else (shutil.which("uv") or "uv")


def test_lock_is_current_for_pyproject() -> None:
    """uv.lock still satisfies pyproject.toml: checked offline, with an empty cache (uv's fast
    path compares the lock with the declared requirements, no index needed)."""
    with tempfile.TemporaryDirectory() as cache:
        result = subprocess.run(
            [_uv(), "lock", "--check", "--offline"],
            cwd=REPO,
            env={**os.environ, "UV_CACHE_DIR": cache},
            capture_output=True,
            text=True,
        )
    assert result.returncode == 0, result.stderr


def test_lock_has_tensorflow_wheels_for_every_supported_python_and_platform() -> None:
    lock = (REPO / "uv.lock").read_text(encoding="utf-8")
    assert 'requires-python = ">=3.10, <3.14"' in lock
    wheels = set(re.findall(r"tensorflow-2\.21\.\d+-(cp3\d+)-\1-(\w+?)\.whl", lock))
    tags = {"manylinux_2_27_x86_64", "manylinux_2_27_aarch64", "macosx_12_0_arm64"}
    expected = {(f"cp3{minor}", tag) for minor in (10, 11, 12, 13) for tag in tags}
    assert expected <= wheels, sorted(expected - wheels)


def test_setup_script_bootstraps_the_uv_version_pyproject_requires() -> None:
    script = (REPO / "scripts" / "setup-env.sh").read_text(encoding="utf-8")
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    (bootstrapped,) = re.findall(r"^uv_version=(\S+)", script, re.MULTILINE)
    (required,) = re.findall(r'^required-version = "==(\S+)"', pyproject, re.MULTILINE)
    assert bootstrapped == required
