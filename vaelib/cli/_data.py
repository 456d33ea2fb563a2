"""What the commands share about data and trained models: the column flags (``--columns``,
``--drop``, ``--label``, read by ``vaelib.readers.load_table``), a checkpoint's model with the
scaling it was trained under, and the one-line refusal of data a Bernoulli decoder cannot score.

``train`` records the column selection in ``run.settings.json``; ``evaluate`` and ``encode`` use
it unless their own flags say otherwise, so a file laid out like the training file needs no flags.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelib.cli import _files

if TYPE_CHECKING:  # torch is imported where it is used: a command's --help needs none of it
    import torch
    from torch import nn

    from vaelib.scaling import Scaling

SELECTION = ("columns", "drop", "label")


def column(text: str) -> int | str:
    """A column given on the command line: a position (0-based) when it is a whole number, else a
    header's name."""
    return int(text) if text.lstrip("-").isdigit() else text


def add_column_flags(cmd: argparse.ArgumentParser, default_note: str = "") -> None:
    group = cmd.add_argument_group("columns (text files: by header name or 0-based position" + default_note + ")")
    group.add_argument("--columns", nargs="+", type=column, metavar="COL",
                       help="keep only these columns, in this order")
    group.add_argument("--drop", nargs="+", type=column, metavar="COL",
                       help="leave these columns out (an index column, an identifier, ...)")
    group.add_argument("--label", type=column, metavar="COL",
                       help="a label column (it may hold text): left out of the data")


def flag_selection(args: argparse.Namespace) -> dict[str, Any]:
    """The column selection the flags give (those not given are absent)."""
    return {key: getattr(args, key) for key in SELECTION if getattr(args, key, None) is not None}


def recorded_selection(checkpoint: Path) -> dict[str, Any]:
    """The column selection ``train`` recorded beside ``checkpoint`` (empty when there is none)."""
    settings = _files.read_settings(checkpoint) or {}
    selection = settings.get("data", {}).get("selection", {})
    return {key: selection[key] for key in SELECTION if selection.get(key) is not None}


def read_data(path: Path, selection: dict[str, Any]) -> torch.Tensor:
    """The rows of a data file as float32 (n, d), with ``selection``'s columns."""
    from vaelib.readers import load_table

    return load_table(path, **selection).x


def trained_model(checkpoint: Path) -> tuple[nn.Module, Scaling | None]:
    """The model in ``checkpoint``, in evaluation mode, and the scaling its data went through."""
    from vaelib.checkpoint import load_checkpoint
    from vaelib.models import load_model

    model = load_model(checkpoint)
    model.eval()
    return model, load_checkpoint(checkpoint).scaling


def model_input(model: nn.Module, scaling: Scaling | None, x: torch.Tensor, data: Path,
                checkpoint: Path) -> torch.Tensor:
    """x as the model takes it: checked against the model's width, standardised when the model
    was trained on standardised data, and in [0, 1] for a Bernoulli decoder."""
    width = getattr(model, "in_dim", None)
    if width is not None and x.shape[1] != width:
        raise ValueError(f"{data} has {x.shape[1]} columns, but the {type(model).__name__} in {checkpoint} takes "
                         f"{width}; give data with the columns it was trained on (--columns, --drop, --label)")
    if scaling is not None:
        x = scaling.apply(x)
    check_bernoulli_range(model, x, data)
    return x


def check_bernoulli_range(model: nn.Module, x: torch.Tensor, data: Path) -> None:
    """A Bernoulli decoder models values in [0, 1] only: refuse other data, saying what to do."""
    if getattr(model, "decoder_kind", None) != "bernoulli":
        return
    low, high = x.min().item(), x.max().item()
    if low < 0 or high > 1:
        raise ValueError(f"a Bernoulli decoder scores data in [0, 1], but {data} ranges over [{low:g}, {high:g}]; "
                         "rescale the data as it was for training (8-bit images: divide by 255)")


def decoder_variance(checkpoint: Path, model: nn.Module) -> tuple[float, str]:
    """The Gaussian decoder variance the training objective implies (or a sigma-VAE learned), and
    where it came from (see ``vaelib.cli.evaluate``)."""
    from vaelib.checkpoint import load_checkpoint
    from vaelib.estimators import DEFAULT_DECODER_VARIANCE
    from vaelib.evaluation import implied_decoder_variance
    from vaelib.objectives import make_objective

    settings = _files.read_settings(checkpoint)
    if settings is None:
        return DEFAULT_DECODER_VARIANCE, "default: no settings recorded beside the checkpoint"
    objective_settings = dict(settings.get("objective", {}))
    name = objective_settings.pop("name", None)
    objective_settings.pop("kappa_fraction", None)  # recorded beside the kappa it gave
    variance = objective_settings.pop("data_variance", None)  # with kappa_fraction: the rate per unit of it
    if variance is not None and "rate" in objective_settings:
        objective_settings["rate"] = objective_settings["rate"] / variance
    objective = make_objective(name, **objective_settings)
    saved = load_checkpoint(checkpoint)
    saved.restore(model, objective)
    variance = implied_decoder_variance(objective)
    form = getattr(objective, "form", None)
    if variance is None and form is not None and form.likelihood == "calibrated" and saved.history.get("sigma"):
        return saved.history["sigma"][-1] ** 2, (f"learned by the {name!r} objective: its calibrated sigma in the "
                                                 "last epoch of training, squared")
    if variance is None:
        return DEFAULT_DECODER_VARIANCE, f"default: the {name!r} objective implies no fixed variance"
    return variance, f"implied by the training objective {name!r}"
