"""Experiment configuration: YAML files validated into dataclasses.

A run's configuration is built in three layers, each overriding the one before:

1. ``params/<experiment>.yaml``   the experiment (model flags, optimiser, loss weights);
2. ``params/scales/<scale>.yaml`` the scale overlay (``smoke``, ``cpu``, ``full``), applied
   identically to every experiment so that a comparison at one scale is fair (its ``at_most:``
   section holds upper bounds, a miniature's narrower text side, rather than values); then the
   ``scales: {<scale>: …}`` block of the experiment's files, where a model family states once
   what it needs at a scale (the learning family's cpu epochs), inherited through ``extends:``;
3. explicit overrides (the notebook's ``parameters`` cell), as a nested dict or dotted keys.

Every value is validated against the field metadata below. A mistake stops with a message
naming the file, the key and what is allowed, e.g.
``params/bad.yaml: unknown key 'train.epoch'; allowed keys here: batch_size, epochs, ...``.
The resolved configuration is written next to every result and hashed
(:func:`config_hash`); the hash decides whether a finished run can be reused.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from storylib.io import UniqueKeyLoader


def packaged_params_dir() -> Path:
    """Where the experiment and scale files are read from.

    One source of truth, the top-level ``params/`` of the repository (the design card's
    layout). A wheel or a non-editable install carries a copy as package data,
    ``storylib/params/``: setuptools builds it from the top-level folder (``package-dir``
    in ``pyproject.toml`` maps ``storylib.params`` onto ``params/``), so there is never a
    second copy in the repository to keep in step. The packaged copy is read when the
    installed package has one (``importlib.resources``); a checkout (editable install or
    ``PYTHONPATH``) has none and reads the top-level folder, so an edit there takes effect
    at once.
    """
    packaged = resources.files("storylib").joinpath("params")
    if packaged.is_dir():          # installed packages are folders on disk (no zip imports)
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "params"


PARAMS_DIR = packaged_params_dir()
SCALES = ("smoke", "cpu", "full")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


def _choice(*allowed: str, default: str) -> Any:
    return field(default=default, metadata={"choices": allowed})


def _registered(kind: str, default: str) -> Any:
    """A decoder name, checked against :mod:`storylib.models.registry` (torch-free)."""
    return field(default=default, metadata={"registry": kind})


def _number(default: float | int, low: float | None = None, high: float | None = None, *,
            above: float | None = None) -> Any:
    """A numeric field: ``low <= value <= high``; ``above`` is a strict lower bound (``value > above``)."""
    return field(default=default, metadata={"min": low, "max": high, "above": above})


@dataclass
class DataConfig:
    """Where the stories come from and how windows are cut and cached."""

    # auto | storyreasoning | synthetic | a folder of hub-layout parquet files
    source: str = "auto"
    revision: str = "main"
    image_height: int = _number(60, 16, 1024)
    image_width: int = _number(125, 16, 2048)
    equalize: bool = False
    window_mode: str = _choice("first", "sliding", default="first")
    tokenizer: str = _choice("auto", "bert-base-uncased", "trained", default="auto")
    vocab_size: int = _number(2000, 50, 100_000)
    max_text_length: int = _number(120, 8, 512)
    val_fraction: float = _number(0.2, 0.0, 0.9)
    split_seed: int = _number(0, 0)
    synthetic_train_stories: int = _number(1500, 10)
    synthetic_test_stories: int = _number(300, 5)
    synthetic_seed: int = _number(0, 0)
    # 0 = every window; a positive number keeps the first N windows of that split
    max_train_windows: int = _number(0, 0)
    max_val_windows: int = _number(0, 0)
    max_test_windows: int = _number(0, 0)


@dataclass
class ModelConfig:
    """Architecture of :class:`storylib.models.StoryPredictor` (one dataclass, as in nanoGPT)."""

    latent_dim: int = _number(16, 2, 4096)
    image_feature_dim: int = _number(16, 2, 4096)
    embedding_dim: int = _number(16, 2, 4096)
    text_hidden: int = _number(16, 2, 4096)
    gru_hidden: int = _number(16, 2, 4096)
    lstm_layers: int = _number(1, 1, 8)
    dropout: float = _number(0.0, 0.0, 0.9)
    backbone_channels: list = field(default_factory=lambda: [16, 32, 64])
    decoder_channels: int = _number(64, 4, 1024)
    cross_modal_attention: bool = False
    attention_heads: int = _number(4, 1, 64)
    vae: bool = False
    vae_samples: int = _number(4, 1, 64)
    # standard: z ~ N(μ, σ²) of the context, KL to N(0, I) (Kingma & Welling 2014); learned: a
    # learned prior N(μ, σ²) of the context and, while training, a posterior that also sees
    # frame 5, KL(posterior ‖ prior) (SVG-LP, Denton & Fergus 2018)
    vae_prior: str = _choice("standard", "learned", default="standard")
    # decoders are chosen by name from storylib.models.registry (conv, residual, warp; lstm, copy)
    image_decoder: str = _registered("image", default="conv")
    text_decoder: str = _registered("text", default="lstm")
    tie_embeddings: bool = False


@dataclass
class TrainConfig:
    """Optimiser, schedule, loss weights and bookkeeping of one training run."""

    epochs: int = _number(10, 1, 10_000)
    batch_size: int = _number(8, 1, 4096)
    optimizer: str = _choice("adam", "adamw", default="adam")
    lr: float = _number(1e-3, high=10.0, above=0.0)
    weight_decay: float = _number(0.0, 0.0, 1.0)
    # none: constant lr; onecycle: OneCycleLR (max_lr, pct_start, …); cosine: cosine decay of
    # lr to 0 over every step (Loshchilov & Hutter 2017, SGDR, without restarts)
    schedule: str = _choice("none", "onecycle", "cosine", default="none")
    max_lr: float = _number(3e-3, high=10.0, above=0.0)
    pct_start: float = _number(0.1, 0.0, 1.0)
    anneal_strategy: str = _choice("cos", "linear", default="cos")
    div_factor: float = _number(3.0, 1.0)
    final_div_factor: float = _number(100.0, 1.0)
    grad_clip: float = _number(1.0, 0.0)
    image_loss: str = _choice("l1", "mse", default="l1")
    image_weight: float = _number(1.0, 0.0)
    text_weight: float = _number(1.0, 0.0)
    context_weight: float = _number(0.2, 0.0)
    kl_weight: float = _number(0.0, 0.0)
    kl_warmup_epochs: int = _number(0, 0)
    augment: bool = False
    device: str = _choice("auto", "cpu", "cuda", "mps", default="auto")
    amp: bool = True
    # epochs (1-based) at which to draw a visualisation grid; the last epoch is always drawn
    visualize_epochs: list = field(default_factory=list)


@dataclass
class EvalConfig:
    """How the test windows are scored and what is kept for the browser."""

    batch_size: int = _number(64, 1, 4096)
    # image_mae_best_of_k: the best of this many frames sampled from z (a VAE; a deterministic
    # model's samples are all alike, so its best-of-K equals its MAE)
    best_of_k: int = _number(5, 1, 64)
    max_generation_length: int = _number(60, 4, 512)
    # test windows whose predicted frames are saved (the first N); 0 = all
    saved_prediction_windows: int = _number(0, 0)


@dataclass
class ExperimentConfig:
    name: str = "baseline"
    description: str = ""
    scale: str = _choice(*SCALES, default="cpu")
    seed: int = _number(0, 0)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --------------------------------------------------------------------------- validation


def _check_value(spec: dataclasses.Field, value: Any, where: str) -> Any:
    """Return ``value`` converted to the field's type, or raise ConfigError naming ``where``."""
    expected = spec.type if isinstance(spec.type, str) else spec.type.__name__
    default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            # NaN compares false with every bound, so it would pass the range checks below
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
    elif isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{where}: expected a list of whole numbers, got {value!r}")
    else:  # pragma: no cover - every field has one of the types above
        raise ConfigError(f"{where}: unsupported field type {expected}")
    choices = spec.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not allowed; choose one of {', '.join(choices)}")
    registry = spec.metadata.get("registry")
    if registry:
        from storylib.models.registry import decoder_names  # torch-free; models import config, not back

        known = decoder_names(registry)
        if value not in known:
            raise ConfigError(f"{where}: unknown {registry} decoder {value!r}; known {registry} decoders: "
                              f"{', '.join(known)}")
    low, high = spec.metadata.get("min"), spec.metadata.get("max")
    if low is not None and value < low:
        raise ConfigError(f"{where}: {value!r} is below the minimum {low}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: {value!r} is above the maximum {high}")
    above = spec.metadata.get("above")
    if above is not None and value <= above:
        raise ConfigError(f"{where}: {value!r} must be greater than {above}")
    return value


Store = Callable[[dataclasses.Field, Any, Any, str], Any]


def _replace(spec: dataclasses.Field, current: Any, value: Any, where: str) -> Any:
    """A layer's value replaces the current one."""
    return _check_value(spec, value, where)


def _apply(target: Any, values: Mapping[str, Any], source: str, prefix: str = "", store: Store = _replace) -> None:
    """Walk ``values`` into the dataclass ``target`` in place, validating every key; ``store``
    decides what a leaf becomes (the layer's value, or the current value cut to a bound)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or '(top level)'}' must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(target)}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key '{dotted}'; allowed keys here: {', '.join(sorted(fields))}"
            )
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, source, f"{dotted}.", store)
        else:
            setattr(target, key, store(fields[key], current, value, f"{source}: key '{dotted}'"))


def _read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.load(handle, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
    return loaded


def _nest_dotted(overrides: Mapping[str, Any]) -> dict:
    """Turn ``{"train.epochs": 2}`` into ``{"train": {"epochs": 2}}``; nested dicts pass through."""
    nested: dict = {}
    for key, value in overrides.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, Mapping) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(value)
        else:
            node[parts[-1]] = value
    return nested


def available_experiments(params_dir: Path | None = None) -> list[str]:
    """Names of the experiments that have a ``params/<name>.yaml`` file."""
    return sorted(p.stem for p in Path(params_dir or PARAMS_DIR).glob("*.yaml"))


EXTENDS_KEY = "extends"
# An experiment file may adapt a scale to its own family: ``scales: {cpu: {train: {epochs: 12}}}``
# is applied after ``params/scales/cpu.yaml``, so a family that needs more epochs than the shared
# overlay states it once in its base file, and every experiment extending it inherits it.
SCALES_KEY = "scales"


def experiment_layers(experiment: str, params_dir: Path) -> list[tuple[Path, dict]]:
    """The parameter files of ``experiment``, base first: ``extends: <other experiment>`` makes
    a file state only what differs from another (chains allowed; a cycle is an error naming
    the files). Each layer keeps its file, so an error names the file that set the key."""
    layers: list[tuple[Path, dict]] = []
    chain: list[Path] = []
    name: str | None = experiment
    while name is not None:
        path = params_dir / f"{name}.yaml"
        if path in chain:
            cycle = " → ".join(str(p) for p in [*chain[chain.index(path):], path])
            raise ConfigError(f"{chain[-1]}: '{EXTENDS_KEY}' makes a cycle: {cycle}")
        if not path.is_file():
            known = ", ".join(available_experiments(params_dir)) or "none"
            where = f"{chain[-1]}: '{EXTENDS_KEY}: {name}'" if chain else str(path)
            raise ConfigError(f"{where}: no such experiment file {path.name}; known experiments: {known}")
        values = _read_yaml(path)
        parent = values.pop(EXTENDS_KEY, None)
        if parent is not None and not isinstance(parent, str):
            raise ConfigError(f"{path}: key '{EXTENDS_KEY}': expected the name of another experiment, got {parent!r}")
        chain.append(path)
        layers.append((path, values))
        name = parent
    return layers[::-1]


def _scale_blocks(path: Path, blocks: Any) -> dict:
    """The ``scales:`` mapping of one experiment file, checked: scale name → overrides."""
    if blocks is None:
        return {}
    if not isinstance(blocks, Mapping):
        raise ConfigError(f"{path}: key '{SCALES_KEY}' must map scale names ({', '.join(SCALES)}) to settings, "
                          f"got {blocks!r}")
    unknown = [name for name in blocks if name not in SCALES]
    if unknown:
        raise ConfigError(f"{path}: key '{SCALES_KEY}.{unknown[0]}': no such scale; choose among {', '.join(SCALES)}")
    return {name: block or {} for name, block in blocks.items()}


# A scale overlay's ``at_most:`` section holds upper bounds: a value above its bound is cut to
# it, a value below is kept. It shrinks the wide models of a miniature scale (the published
# family's 512-wide embeddings) without widening the narrow ones (the course baseline's 16),
# by one rule that every experiment gets alike.
AT_MOST_KEY = "at_most"


def _cut_to_bound(spec: dataclasses.Field, current: Any, bound: Any, where: str) -> Any:
    """``min(current, bound)``, the bound validated like a value."""
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        raise ConfigError(f"{where}: only numbers can have an upper bound")
    return min(current, _check_value(spec, bound, where))


def load_experiment_config(
    experiment: str,
    scale: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    params_dir: Path | str | None = None,
) -> ExperimentConfig:
    """Build the validated configuration of ``experiment`` at ``scale`` with ``overrides``."""
    params_dir = Path(params_dir or PARAMS_DIR)
    experiment_file = params_dir / f"{experiment}.yaml"
    if not experiment_file.is_file():
        known = ", ".join(available_experiments(params_dir)) or "none"
        raise ConfigError(f"{experiment_file}: no such experiment file; known experiments: {known}")
    if scale not in SCALES:
        raise ConfigError(f"scale {scale!r} is not allowed; choose one of {', '.join(SCALES)}")
    config = ExperimentConfig(name=experiment, scale=scale)
    layers = experiment_layers(experiment, params_dir)
    family_scales = [(layer_file, _scale_blocks(layer_file, values.pop(SCALES_KEY, None)).get(scale))
                     for layer_file, values in layers]
    for layer_file, values in layers:
        _apply(config, values, str(layer_file))
    config.name, config.scale = experiment, scale
    scale_file = params_dir / "scales" / f"{scale}.yaml"
    if scale_file.is_file():
        scale_values = _read_yaml(scale_file)
        bounds = scale_values.pop(AT_MOST_KEY, None)
        _apply(config, scale_values, str(scale_file))
        if bounds is not None:
            _apply(config, bounds, str(scale_file), f"{AT_MOST_KEY}.", _cut_to_bound)
    # a family's own block comes after the shared overlay and its bounds: what a family states
    # for a scale, it gets
    for layer_file, block in family_scales:
        if block:
            _apply(config, block, f"{layer_file} ({SCALES_KEY}.{scale})")
    if overrides:
        _apply(config, _nest_dotted(overrides), "overrides")
    return config


def run_config(
    experiment: str,
    scale: str,
    seed: int,
    source: str,
    tokenizer: str,
    device: str,
    overrides: Mapping[str, Any] | None = None,
    params_dir: Path | str | None = None,
) -> ExperimentConfig:
    """The configuration of one run whose data source, tokenizer and device are already concrete.

    :func:`storylib.experiment.planned_config` resolves "auto" and calls this; the report calls
    it with the values a run recorded in its ``config.yaml``, to tell whether the run is still
    what the current parameter files would train (see :mod:`storylib.runs`).
    """
    values = {"seed": seed, "data.source": source, "data.tokenizer": tokenizer, "train.device": device,
              **(overrides or {})}
    return load_experiment_config(experiment, scale, overrides=values, params_dir=params_dir)


def config_to_dict(config: ExperimentConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(values: Mapping[str, Any], source: str = "config") -> ExperimentConfig:
    config = ExperimentConfig()
    _apply(config, copy.deepcopy(dict(values)), source)
    return config


# Settings added after runs were recorded, at the value that does what was done before they
# existed: left out of the hash at that value, so those runs stay valid (not stale).
NEUTRAL_SETTINGS: dict[tuple[str, str], Any] = {("model", "vae_prior"): "standard"}


def config_hash(config: ExperimentConfig) -> str:
    """A short, stable hash of everything that changes a run's result."""
    values = config_to_dict(config)
    for (section, key), neutral in NEUTRAL_SETTINGS.items():
        if values[section].get(key) == neutral:
            del values[section][key]
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def config_to_yaml(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def load_config_file(path: Path | str) -> ExperimentConfig:
    """Read a resolved ``config.yaml`` written next to a result."""
    return config_from_dict(_read_yaml(Path(path)), str(path))
