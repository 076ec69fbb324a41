"""The benchmark (`make bench`): how close training gets to this machine's limit.

In ONE run, on full MNIST and the params in params.yaml:
1. sgemm: the machine's float32 matrix-multiply rate through TensorFlow (the kernels training
   uses), best of several 2048x2048 and 4096x4096 products — the "peak" figures compare to.
2. Epoch time of the dense AE, the conv denoiser and the likelihood VAE (`--models`), with
   the project's training code (the stage's own function, `mnist_ae.pipeline.train_<model>`,
   in a scratch workdir, checkpoints included, MLflow not) and with the walkthrough's plain
   `model.fit(x, y, batch_size, shuffle=True)` on NumPy arrays (the VAE: the same model,
   compiled and fitted as keras.io's VAE example), interleaved (A B, B A, ...) so
   drifts in the machine's speed hit both alike; each measurement is a fresh model trained for
   one warm-up epoch (tracing, allocation) plus `--epochs` timed epochs; medians of wall and
   process CPU time reported, with samples/s, achieved GFLOP/s (from the models' FLOP count)
   and the ratios to the baseline and to the sgemm peak. Both include the per-epoch
   validation pass.
3. Time to quality: wall seconds of the project's training until val BCE <= 0.095 (dense) and
   <= 0.100 (conv), from the start of `fit` (tracing included).
4. Unless --no-pipeline: `dvc repro --force` of the whole pipeline through
   scripts/time_stages.py (each stage's wall time and peak RSS), then the wall time of a
   no-op `dvc repro` (median of 3).
Writes bench/results/bench.json (or --out) and prints a table. A benchmark, not a test:
nothing asserts a time.

Usage: make bench   or   .venv/bin/python bench/run.py [--repeats 3] [--epochs 1] [--no-pipeline]
                                                        [--models dense conv vae]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import mnist_ae  # noqa: E402, F401  (sets TensorFlow's switches before TF is imported)

# isort: split
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mnist_ae import artifacts, baselines, config, data, models, training, vae  # noqa: E402
from mnist_ae.pipeline import train_conv, train_dense, train_vae  # noqa: E402
from mnist_ae.tracking.row import cpu_model  # noqa: E402

KINDS = ("dense", "conv", "vae")  # vae: the likelihood configuration (train_vae.models)
QUALITY = {"dense": 0.095, "conv": 0.100}  # val BCE targets of the time-to-quality runs


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    from tensorflow.python.util import _pywrap_util_port as port

    return {
        "cpu": cpu_model(),
        "cores": baselines.usable_cores(),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onednn": bool(port.IsMklEnabled()),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def sgemm_gflops(repeats: int = 10) -> dict[str, float]:
    """Best float32 matmul rate through TF, in GFLOP/s, for two sizes."""
    rates = {}
    for size in (2048, 4096):
        a = tf.random.stateless_uniform((size, size), seed=(1, 2))
        b = tf.random.stateless_uniform((size, size), seed=(3, 4))
        multiply = tf.function(lambda x, y: tf.matmul(x, y))
        multiply(a, b).numpy()  # warm-up
        best = float("inf")
        for _ in range(repeats if size == 2048 else max(3, repeats // 3)):
            start = time.perf_counter()
            multiply(a, b).numpy()
            best = min(best, time.perf_counter() - start)
        rates[str(size)] = 2 * size**3 / best / 1e9
    return rates


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of the Dense and Conv2D layers for one sample (activations, pooling
    and upsampling are negligible)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a VAE's encoder and decoder
            total += forward_flops(layer)
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, keras.layers.Conv2D):
            height, width = layer.output.shape[1:3]
            kernel_h, kernel_w, channels_in, channels_out = layer.kernel.shape
            total += 2 * height * width * kernel_h * kernel_w * channels_in * channels_out
    return total


class _EpochClock(keras.callbacks.Callback):
    """Wall and process CPU time of each epoch (training + validation), and wall seconds since
    fit started. CPU time shows the work done when a shared host throttles the machine."""

    def __init__(self, stop_at: float | None = None) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.started = time.perf_counter()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.started = time.perf_counter()  # from the start of fit: tracing included
        self.epoch_seconds: list[float] = []
        self.epoch_cpu_seconds: list[float] = []
        self.elapsed: list[float] = []
        self.val_loss: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch_cpu_start = time.process_time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        self.epoch_seconds.append(now - self._epoch_start)
        self.epoch_cpu_seconds.append(time.process_time() - self._epoch_cpu_start)
        self.elapsed.append(now - self.started)
        self.val_loss.append(float((logs or {})["val_loss"]))
        if self.stop_at is not None and self.val_loss[-1] <= self.stop_at:
            self.model.stop_training = True


def _build(kind: str, params: config.Params, walkthrough: bool = False) -> keras.Model:
    """The model as its stage trains it, or (walkthrough) with the plain Keras layers."""
    if kind == "vae":  # the same model either way: only the training loop differs
        settings = params.train_vae.models.likelihood
        return vae.build_vae(
            settings.hidden,
            settings.activation,
            settings.latent_dim,
            dynamic_binarization=params.train_vae.binarize == "dynamic",
            seed=params.seed,
        )
    if kind == "dense":
        return models.build_dense_autoencoder(params.train_dense.encoding_dim)[0]
    fuse = params.train_conv.fuse_last_upsampling and not walkthrough
    return models.build_conv_denoiser(params.train_conv.filters, fuse)


def _section(kind: str, params: config.Params) -> Any:
    if kind == "vae":
        return params.train_vae.models.likelihood
    return params.train_dense if kind == "dense" else params.train_conv


def _settings(kind: str, params: config.Params) -> dict[str, Any]:
    return _section(kind, params).fit_options()


def _overridden(kind: str, params: config.Params, overrides: dict[str, Any]) -> config.Params:
    """params with the model's training section changed."""
    changed = _section(kind, params).model_copy(update=overrides)
    if kind == "vae":
        models_section = params.train_vae.models.model_copy(update={"likelihood": changed})
        section = params.train_vae.model_copy(update={"models": models_section})
        return params.model_copy(update={"train_vae": section})
    return params.model_copy(update={"train_dense" if kind == "dense" else "train_conv": changed})


STAGES = {"dense": train_dense.run, "conv": train_conv.run, "vae": train_vae.runner("likelihood")}


def project_fit(kind: str, params: config.Params, **overrides: Any) -> _EpochClock:
    """The pipeline's own training stage, exactly as `dvc repro` runs it (minus MLflow), in a
    scratch workdir that links the repository's data/; `overrides` change the stage's params
    (and `stop_at`, a val BCE at which to stop)."""
    clock = _EpochClock(overrides.pop("stop_at", None))
    params = _overridden(kind, params, overrides)
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "data").symlink_to(ROOT / "data")
        STAGES[kind](params, Path(scratch), callbacks=[clock])
    return clock


def walkthrough_fit(
    kind: str, params: config.Params, x: np.ndarray, y: np.ndarray, epochs: int
) -> _EpochClock:
    """The walkthrough's recipe: compile, then fit on NumPy arrays with shuffle=True (the VAE
    as keras.io's example trains one: its own train_step, no loss to compile)."""
    training.make_deterministic(params.seed)
    settings = _settings(kind, params)
    model = _build(kind, params, walkthrough=True)
    model.compile(
        optimizer=models.make_optimizer(settings["optimizer"], settings["learning_rate"]),
        loss=None if kind == "vae" else "binary_crossentropy",
    )
    (fit_x, fit_y), validation = training.split_validation(x, y, settings["validation_samples"])
    clock = _EpochClock()
    model.fit(
        fit_x,
        fit_y,
        batch_size=settings["batch_size"],
        epochs=epochs,
        shuffle=True,
        validation_data=validation,
        callbacks=[clock],
        verbose=0,
    )
    return clock


def load_pairs(kind: str, params: config.Params) -> tuple[np.ndarray, np.ndarray]:
    """Full-MNIST training inputs and targets of one model, from the pipeline's data files."""
    if kind == "vae":
        return train_vae.training_data(params, ROOT)
    clean = data.to_unit_float(artifacts.MNIST.read(ROOT)["x_train"])
    if kind == "dense":
        flat = data.flat_images(clean)
        return flat, flat
    noisy = artifacts.NOISY.read(ROOT)["x_train_noisy"]
    return data.channel_images(noisy), data.channel_images(clean)


def epoch_benchmark(
    kind: str, params: config.Params, repeats: int, epochs: int, peak: float
) -> dict[str, Any]:
    """Interleaved project vs walkthrough epoch times of one model."""
    x, y = load_pairs(kind, params)
    samples = len(x) - _settings(kind, params)["validation_samples"]
    plain = _build(kind, params, walkthrough=True)  # the FLOPs of the plain layers
    flops_per_epoch = 3 * forward_flops(plain) * samples  # forward + backward
    times: dict[str, list[float]] = {"project": [], "walkthrough": []}
    cpu_times: dict[str, list[float]] = {"project": [], "walkthrough": []}
    for repeat in range(repeats):
        order = ("project", "walkthrough") if repeat % 2 == 0 else ("walkthrough", "project")
        for variant in order:
            if variant == "project":
                clock = project_fit(kind, params, epochs=1 + epochs)
            else:
                clock = walkthrough_fit(kind, params, x, y, epochs=1 + epochs)
            times[variant].extend(clock.epoch_seconds[1:])  # epoch 1 = warm-up
            cpu_times[variant].extend(clock.epoch_cpu_seconds[1:])
            print(f"  {kind} {variant}: {[round(t, 3) for t in clock.epoch_seconds]} s/epoch")
    result: dict[str, Any] = {
        "batch_size": _settings(kind, params)["batch_size"],
        "samples_per_epoch": samples,
        "gflop_per_epoch": flops_per_epoch / 1e9,
    }
    for variant, values in times.items():
        median = statistics.median(values)
        result[variant] = {
            "epoch_seconds": [round(value, 4) for value in values],
            "median_epoch_seconds": median,
            "epoch_cpu_seconds": [round(value, 4) for value in cpu_times[variant]],
            "median_epoch_cpu_seconds": statistics.median(cpu_times[variant]),
            "samples_per_second": samples / median,
            "gflops": flops_per_epoch / median / 1e9,
            "fraction_of_sgemm_peak": flops_per_epoch / median / 1e9 / peak,
        }
    result["speedup_vs_walkthrough"] = (
        result["walkthrough"]["median_epoch_seconds"] / result["project"]["median_epoch_seconds"]
    )
    return result


def time_to_quality(kind: str, params: config.Params) -> dict[str, Any]:
    """Seconds until the project's training first reaches the val BCE target."""
    clock = project_fit(kind, params, stop_at=QUALITY[kind])
    reached = [i for i, loss in enumerate(clock.val_loss) if loss <= QUALITY[kind]]
    return {
        "target_val_bce": QUALITY[kind],
        "reached": bool(reached),
        "epochs": reached[0] + 1 if reached else None,
        "seconds": clock.elapsed[reached[0]] if reached else None,
        "val_bce": clock.val_loss[reached[0]] if reached else clock.val_loss[-1],
    }


def pipeline_benchmark(out_dir: Path) -> dict[str, Any]:
    """`dvc repro --force` (per-stage wall time and peak RSS), then no-op repro times."""
    stages_json = out_dir / "stages.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/time_stages.py"), "--force", "--json", stages_json],
        cwd=ROOT,
        check=True,
    )
    stages = json.loads(stages_json.read_text())
    no_op = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(["dvc", "repro"], cwd=ROOT, check=True, capture_output=True)
        no_op.append(time.perf_counter() - start)
    stages["no_op_repro_seconds"] = [round(value, 2) for value in no_op]
    stages["no_op_repro_median_seconds"] = statistics.median(no_op)
    return stages


def table(report: dict[str, Any]) -> str:
    """The human-readable summary."""
    peak = report["sgemm_gflops"]["peak"]
    lines = [
        f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"GPUs: {report['machine']['gpus'] or 'none'}, TF {report['machine']['tensorflow']}",
        f"sgemm peak: {peak:.0f} GFLOP/s",
        "",
        "| model | variant | s/epoch (median) | CPU s/epoch | samples/s | GFLOP/s | % of peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, result in report["epochs"].items():
        for variant in ("walkthrough", "project"):
            row = result[variant]
            lines.append(
                f"| {kind} (batch {result['batch_size']}) | {variant} "
                f"| {row['median_epoch_seconds']:.3f} | {row['median_epoch_cpu_seconds']:.3f} "
                f"| {row['samples_per_second']:,.0f} "
                f"| {row['gflops']:.1f} | {100 * row['fraction_of_sgemm_peak']:.1f} % |"
            )
        lines.append(f"| {kind} | speed-up | {result['speedup_vs_walkthrough']:.2f}x | | | | |")
    lines.append("")
    for kind, ttq in report["time_to_quality"].items():
        if ttq["reached"]:
            lines.append(
                f"time to quality, {kind}: val BCE {ttq['val_bce']:.4f} <= "
                f"{ttq['target_val_bce']} after {ttq['epochs']} epochs, {ttq['seconds']:.1f} s"
            )
        else:
            lines.append(f"time to quality, {kind}: target {ttq['target_val_bce']} NOT reached")
    pipeline = report.get("pipeline")
    if pipeline:
        lines += ["", "| stage | wall s | peak RSS MB |", "|---|---|---|"]
        for stage, seconds in pipeline["stages_seconds"].items():
            rss = pipeline.get("stages_peak_rss_mb", {}).get(stage, float("nan"))
            lines.append(f"| {stage} | {seconds:.1f} | {rss:.0f} |")
        lines.append(f"| total `dvc repro --force` | {pipeline['total_seconds']:.1f} | |")
        lines.append(
            f"| no-op `dvc repro` (median of 3) | {pipeline['no_op_repro_median_seconds']:.2f} | |"
        )
    return "\n".join(lines)


def main() -> int:
    """Run every part and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved measurements each")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per measurement")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the dvc repro part")
    parser.add_argument(
        "--models", nargs="+", choices=KINDS, default=list(KINDS), help="models to time"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/bench.json")
    arguments = parser.parse_args()
    os.chdir(ROOT)
    for required in (artifacts.MNIST.path, artifacts.NOISY.path):
        if not Path(required).exists():
            print(f"bench: {required} is missing; run `dvc repro add_noise` first", file=sys.stderr)
            return 1
    params = config.load_params(ROOT / "params.yaml")
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv)}
    print("sgemm ...", flush=True)
    rates = sgemm_gflops()
    report["sgemm_gflops"] = {**rates, "peak": max(rates.values())}
    report["epochs"] = {}
    for kind in arguments.models:
        print(f"epoch times, {kind} ...", flush=True)
        report["epochs"][kind] = epoch_benchmark(
            kind, params, arguments.repeats, arguments.epochs, report["sgemm_gflops"]["peak"]
        )
    report["time_to_quality"] = {}
    for kind in (kind for kind in arguments.models if kind in QUALITY):
        print(f"time to quality, {kind} ...", flush=True)
        report["time_to_quality"][kind] = time_to_quality(kind, params)
    if not arguments.no_pipeline:
        print("pipeline: dvc repro --force ...", flush=True)
        report["pipeline"] = pipeline_benchmark(arguments.out.parent)
    arguments.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nwritten: {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
