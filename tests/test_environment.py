"""Importing the package switches TensorFlow to oneDNN kernels, whatever imports TF first."""

import subprocess
import sys
from pathlib import Path

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


def test_training_module_gets_onednn_even_though_it_imports_tensorflow_first() -> None:
    assert _onednn_enabled("mnist_ae.training") == "True"
