"""The settings of ``python -m vaelib train``, in layers, each overriding the one before: the defaults
(those of the model's class, of the objective and of ``vaelib.TrainingSettings``), the settings
recorded beside the checkpoint (with ``--resume``), a TOML file (``--config``, see
``vaelib.cli.train.CONFIG_EXAMPLE``), the flags. ``resolve_settings`` gives them as one dict, the
layout that ``run.settings.json`` records: ``seed``, ``holdout`` and the tables ``model``,
``objective`` and ``training``; ``training_settings`` hands the training ones over as a
``vaelib.TrainingSettings`` (which checks them).
"""
from __future__ import annotations

import argparse
import inspect
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where it is used: the command's --help needs no torch
    from vaelib.runs import TrainingSettings

SECTIONS = ("model", "objective", "training")
TOP_LEVEL = ("seed", "holdout", "standardize", "patience", "lr_schedule", "preset")
# The [training] keys the command takes: the fields of TrainingSettings but the seed (a top-level
# setting: it also seeds the initial weights and the held-out split), the backend and the device
# (the command trains with vaelib.fit on the CPU).
TRAINING = ("epochs", "batch_size", "lr", "optimizer")
DEFAULT_MODEL = "vae"
# Registered models this command cannot train from a file and an objective's name alone: the CVAE
# needs a label appended to every row (vaelib.append_labels), the AAE its adversarial objective
# (vaelib.adversarial.AdversarialRegularizer, which owns a discriminator): train them from Python.
NOT_FROM_FILES = frozenset({"CVAE", "AAE"})


# Named presets: model and training settings sized by the data (``preset_layer``). They sit just
# above the defaults: --config, the flags and a resumed run's record override them.
PRESETS = ("toy", "tabular", "images")
PRESET_HELP = ("settings sized by the data, below --config and the flags: toy = the defaults (latent 2, hidden "
               "32, 10 epochs: the book's 3-D data); tabular = latent about d/4 (2 to 16), one hidden layer of "
               "4d units (32 to 256), and epochs for about 2,000 optimiser steps (20 to 1,000), since a small "
               "table gives few steps per epoch; images = latent 16, hidden d/2 then d/8 units (at most 512 and "
               "128), steps as for tabular. d: the data's columns. Give --holdout and --patience with them")
PRESET_STEPS, PRESET_EPOCHS = 2000, (20, 1000)


def preset_layer(name: str, rows: int, columns: int, batch_size: int) -> dict[str, Any]:
    """The ``model`` and ``training`` settings preset ``name`` gives ``rows`` training rows of
    ``columns`` columns, trained in minibatches of ``batch_size`` (see ``PRESET_HELP``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if name == "toy":
        return {"model": {"latent_dim": 2, "hidden": [32]}, "training": {"epochs": 10}}
    steps_per_epoch = -(-rows // batch_size)
    low, high = PRESET_EPOCHS
    epochs = min(high, max(low, -(-PRESET_STEPS // steps_per_epoch)))
    if name == "tabular":
        model = {"latent_dim": min(16, max(2, round(columns / 4))), "hidden": [min(256, max(32, 4 * columns))]}
    else:
        model = {"latent_dim": 16, "hidden": [min(512, max(32, columns // 2)), min(128, max(16, columns // 8))]}
    return {"model": model, "training": {"epochs": epochs}}


def apply_preset(settings: dict[str, Any], cls: type, rows: int, columns: int, batch_size: int) -> None:
    """Fill the settings that nothing gave from ``settings["preset"]`` (none: nothing changes); a
    model setting only where the model class ``cls`` takes it (a sparse autoencoder has no hidden
    layers: its code_dim, or the latent_dim of others, is sized as the preset says)."""
    name = settings.get("preset")
    if name is None:
        return
    accepted = inspect.signature(cls).parameters
    for section, values in preset_layer(name, rows, columns, batch_size).items():
        for key, value in values.items():
            if section == "model" and key == "latent_dim" and "latent_dim" not in accepted:
                key = "code_dim"
            if section != "model" or key in accepted:
                settings[section].setdefault(key, value)


def tabular_models() -> dict[str, type]:
    """The registered model classes that take ``in_dim`` (rows of numbers), by lower-case name."""
    from vaelib.models import registered_models

    return {name.lower(): cls for name, cls in registered_models().items()
            if "in_dim" in inspect.signature(cls.__init__).parameters and name not in NOT_FROM_FILES}


def resolve_settings(args: argparse.Namespace, recorded: dict[str, Any] | None) -> dict[str, Any]:
    """The run's settings as one dict: ``seed``, ``holdout`` and the three sections."""
    settings: dict[str, Any] = {"seed": 0, "holdout": 0.0, "standardize": False, "patience": None,
                                "lr_schedule": None, "preset": None, "model": {}, "objective": {}, "training": {}}
    if recorded is not None:
        merge(settings, {key: recorded[key] for key in (*TOP_LEVEL, *SECTIONS) if key in recorded})
    if args.config is not None:
        merge(settings, read_config(args.config))
    merge(settings, flag_settings(args))
    return settings


def merge(settings: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if key in SECTIONS:
            settings[key].update(value)
        else:
            settings[key] = value


def read_config(path_text: str) -> dict[str, Any]:
    path = Path(path_text)
    if path.suffix != ".toml":
        raise ValueError(f"--config {path_text!r} must be a TOML file ending in .toml")
    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"--config: no file at {path_text!r}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path_text} is not valid TOML: {exc}") from exc
    where = f"{path_text}:"
    unknown = sorted(set(config) - set(TOP_LEVEL) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{where} unknown setting {', '.join(map(repr, unknown))}; the file may hold "
                         f"{', '.join(TOP_LEVEL)} and the tables {', '.join(f'[{s}]' for s in SECTIONS)}")
    for section in SECTIONS:
        if not isinstance(config.get(section, {}), dict):
            raise ValueError(f"{where} {section!r} must be a table, [{section}]")
    unknown = sorted(set(config.get("training", {})) - set(TRAINING))
    if unknown:
        raise ValueError(f"{where} unknown setting {', '.join(map(repr, unknown))} in [training]; it may hold "
                         f"{', '.join(TRAINING)}")
    return config


def flag_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (flags left out are absent, not None)."""
    model = {"name": args.model_name, "latent_dim": args.latent_dim, "hidden": args.hidden,
             "activation": args.activation, "decoder": args.decoder}
    model.update(key_values("--model-arg", args.model_arg))
    objective = {"name": args.objective_name, **key_values("--objective-arg", args.objective_arg)}
    training = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer}
    layer = {"seed": args.seed, "holdout": args.holdout, "standardize": args.standardize or None,
             "patience": args.patience, "lr_schedule": args.lr_schedule, "preset": getattr(args, "preset", None),
             "model": model,
             "objective": objective, "training": training}
    return {key: ({k: v for k, v in value.items() if v is not None} if key in SECTIONS else value)
            for key, value in layer.items() if value is not None}


def key_values(flag: str, items: list[str]) -> dict[str, Any]:
    """``["beta=4", "decoder=bernoulli"]`` -> ``{"beta": 4, "decoder": "bernoulli"}``: each value is
    read as a TOML value (numbers, booleans, lists), or else as a string."""
    result = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} beta=4")
        try:
            value = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            value = text
        result[key.strip()] = value
    return result


def model_class(settings: dict[str, Any]) -> type:
    name = str(settings["model"].get("name", DEFAULT_MODEL))
    models = tabular_models()
    if name.lower() not in models:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(models))}")
    return models[name.lower()]


def model_arguments(cls: type, settings: dict[str, Any]) -> dict[str, Any]:
    arguments = {k: v for k, v in settings["model"].items() if k != "name"}
    accepted = [p for p in inspect.signature(cls).parameters if p != "in_dim"]
    if "in_dim" in arguments:
        raise ValueError("in_dim is not a setting: it is the number of columns of the data")
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise ValueError(f"model {cls.__name__.lower()!r} has no setting {', '.join(map(repr, unknown))}; its "
                         f"settings are {', '.join(accepted)}")
    return arguments


def training_settings(settings: dict[str, Any]) -> TrainingSettings:
    """The run's training settings, checked (``vaelib.TrainingSettings``), with the defaults filled
    into ``settings["training"]`` (so that ``run.settings.json`` records every one)."""
    from vaelib.runs import TrainingSettings

    unknown = sorted(set(settings["training"]) - set(TRAINING))
    if unknown:
        raise ValueError(f"unknown training setting {', '.join(map(repr, unknown))}; the settings are "
                         f"{', '.join(TRAINING)}")
    defaults = TrainingSettings()
    settings["training"] = {key: settings["training"].get(key, getattr(defaults, key)) for key in TRAINING}
    return TrainingSettings(**settings["training"], seed=settings["seed"])
