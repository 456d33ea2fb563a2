"""Checkpoints: a model with its optimiser, objective, history, configuration and random state, in
one file that loading can never turn into code execution.

The file (format version 1) is a ``safetensors`` file:

* its **tensors** are named by what they belong to: ``model.<key>`` and ``objective.<key>`` (the
  modules' state dicts, the objective's alpha included), ``optimizer.<param index>.<key>`` (e.g.
  Adam's ``exp_avg``, ``exp_avg_sq`` and ``step``), and ``rng.<name>`` (the states of the random
  number generators: ``torch``, the global one, and ``order``, the data-order generator of ``fit``);
* its header's metadata holds ``format`` (``"vaelib-checkpoint"``), ``version``, ``meta`` (a JSON
  document: the model's class and constructor arguments, the objective's and optimiser's classes,
  the optimiser's hyper-parameters, the history, the settings of the ``fit`` call) and ``sha256``.

Why one file: replacing one file is atomic (``os.replace``), so a crash while saving leaves the
previous checkpoint whole; two files could be caught half-replaced. Why a digest: safetensors
rejects a file whose header or sizes do not add up (a truncated file), but a flipped byte inside a
tensor, or an edited number in the JSON, would load silently. ``sha256`` covers the JSON and every
tensor's name, dtype, shape and bytes, so any such change is reported with the file's name. It
guards against corruption, not against a forger, who can recompute it. Safety against code
execution comes from the format: tensors and JSON only, nothing is unpickled. This module knows no
model class: ``vaelib.models.load_model`` rebuilds a model, and only from a class registered with
``vaelib.models.register_model``, never from a name that imports code.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import inspect
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

FORMAT = "vaelib-checkpoint"
VERSION = 1
_HEADER_SIZE_BYTES = 8  # safetensors files start with the header's length, a little-endian u64


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: truncated, corrupted, edited, or for a different setup."""


@dataclass(frozen=True)
class Checkpoint:
    """The verified contents of a checkpoint file; ``restore`` applies them (``vaelib.models.load_model``
    rebuilds the model from ``model_class`` and ``model_args``)."""

    path: Path
    model_class: str
    model_args: dict | None
    model_state: dict
    objective_class: str | None
    objective_state: dict | None
    optimizer_class: str | None
    optimizer_state: dict | None
    history: dict[str, list[float]]
    rng_state: dict[str, torch.Tensor]
    fit_settings: dict | None

    def restore(self, model: nn.Module, objective: nn.Module | None = None,
                optimizer: torch.optim.Optimizer | None = None) -> None:
        """Load the saved states into ``model`` (and ``objective``, ``optimizer`` when given).

        Checks the classes first and rolls every object back if any state does not fit, so that a
        failed restore leaves nothing half-loaded.
        """
        parts = [("model", model, self.model_class, self.model_state)]
        if objective is not None:
            parts.append(("objective", objective, self.objective_class, self.objective_state))
        if optimizer is not None:
            parts.append(("optimizer", optimizer, self.optimizer_class, self.optimizer_state))
        for role, target, saved_class, state in parts:
            if state is None:
                raise CheckpointError(f"{self.path} holds no {role} state")
            if type(target).__name__ != saved_class:
                raise CheckpointError(f"{self.path} holds the {role} state of class {saved_class}, but the "
                                      f"{role} given is of class {type(target).__name__}")
        backups = [(target, _detached_copy(target.state_dict())) for _, target, _, _ in parts]
        try:
            for role, target, _, state in parts:
                if role == "optimizer":
                    state = _optimizer_state_like(target, state)
                target.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError) as exc:
            for target, backup in backups:
                target.load_state_dict(backup)
            reason = " ".join(str(exc).split())  # torch's message spans lines: make it one
            raise CheckpointError(f"{self.path} does not fit the given {role}: {reason}") from exc


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, objective: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, history=None,
                    rng_state: Mapping[str, torch.Tensor] | None = None,
                    fit_settings: Mapping | None = None) -> Path:
    """Write a checkpoint atomically: the old file at ``path``, if any, stays whole until the new
    one is complete on disk (temporary file in the same folder, fsync, then os.replace).

    ``history`` is a ``vaelib.History`` or a dict of per-epoch lists; ``rng_state`` maps names to
    generator states (``torch.get_rng_state()``, ``generator.get_state()``); ``fit_settings`` is
    a JSON-able dict recorded for ``fit``'s resume checks. Returns the path.
    """
    path = _writable_path(path)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if objective is not None and not isinstance(objective, nn.Module):
        raise TypeError(f"objective must be a torch.nn.Module or None, got {type(objective).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    meta = {
        "model": {"class": type(model).__name__,
                  "init_args": _jsonable("model init_args", getattr(model, "init_args", None)),
                  "other_state": _split_state("model", model.state_dict(), tensors)},
        "objective": None if objective is None else {
            "class": type(objective).__name__,
            "other_state": _split_state("objective", objective.state_dict(), tensors)},
        "optimizer": None if optimizer is None else _split_optimizer_state(optimizer, tensors),
        "history": _jsonable("history", _history_terms(history)),
        "fit": _jsonable("fit_settings", None if fit_settings is None else dict(fit_settings)),
        "torch_version": torch.__version__,
    }
    for name, state in (rng_state or {}).items():
        tensors[f"rng.{name}"] = state
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    meta_json = _to_json("checkpoint metadata", meta)
    header = {"format": FORMAT, "version": str(VERSION), "meta": meta_json, "sha256": _digest(meta_json, tensors)}
    _atomic_write(path, safetensors.torch.save(tensors, metadata=header))
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and verify a checkpoint: raises ``CheckpointError`` naming the file when it is truncated,
    corrupted, edited or not a vaelib checkpoint, and ``FileNotFoundError`` when it does not exist."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    data = path.read_bytes()
    header = _read_metadata(path, data)
    try:
        tensors = safetensors.torch.load(data)
    except SafetensorError as exc:
        raise CheckpointError(f"{path} is corrupted or truncated: safetensors cannot read it ({exc})") from exc
    if _digest(header["meta"], tensors) != header["sha256"]:
        raise CheckpointError(f"{path} is corrupted or was edited: its content does not match the sha256 "
                              "digest recorded when it was saved")
    meta = json.loads(header["meta"])
    groups = _group_by_prefix(tensors)
    optimizer = meta["optimizer"]
    return Checkpoint(
        path=path,
        model_class=meta["model"]["class"], model_args=meta["model"]["init_args"],
        model_state={**groups.get("model", {}), **meta["model"]["other_state"]},
        objective_class=None if meta["objective"] is None else meta["objective"]["class"],
        objective_state=None if meta["objective"] is None else {
            **groups.get("objective", {}), **meta["objective"]["other_state"]},
        optimizer_class=None if optimizer is None else optimizer["class"],
        optimizer_state=None if optimizer is None else _join_optimizer_state(optimizer, groups.get("optimizer", {})),
        history=meta["history"], rng_state=groups.get("rng", {}), fit_settings=meta["fit"])


# ----------------------------------------------------------------------------------------------
# Writing


def _writable_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write the checkpoint {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write the checkpoint {path}: it is a folder; give a file name")
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file next to ``path``, flush it to disk, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _split_state(prefix: str, state: Mapping, tensors: dict) -> dict:
    """Put the tensors of a state dict into ``tensors`` (as ``prefix.key``); return the rest (JSON)."""
    other = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[f"{prefix}.{key}"] = value
        else:
            other[key] = _jsonable(f"{prefix} state {key!r}", value)
    return other


def _split_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict) -> dict:
    state = optimizer.state_dict()
    other = {str(index): _split_state(f"optimizer.{index}", per_param, tensors)
             for index, per_param in state["state"].items()}
    return {"class": type(optimizer).__name__,
            "param_groups": _jsonable("optimizer param_groups", state["param_groups"]), "other_state": other}


def _history_terms(history) -> dict[str, list[float]]:
    """The per-epoch lists of a ``vaelib.History`` (its ``terms``), of a plain dict, or of None."""
    terms = getattr(history, "terms", {} if history is None else history)
    if not isinstance(terms, Mapping):
        raise TypeError(f"history must be a vaelib.History, a dict of lists or None, got {type(history).__name__}")
    return {name: [float(v) for v in values] for name, values in terms.items()}


def _jsonable(what: str, value):
    """``value`` with tuples as lists, checked to survive a JSON round trip unchanged."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(what, v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{what} must have string keys to be stored in JSON, got {list(value)}")
        return {k: _jsonable(f"{what}[{k!r}]", v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{what} = {value!r} ({type(value).__name__}) cannot be stored in a checkpoint's JSON; "
                    "use numbers, strings, booleans, lists and dicts")


def _to_json(what: str, value) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"{what} holds NaN or an infinite number, which JSON cannot store: {exc}") from exc


def _digest(meta_json: str, tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 of the JSON metadata and of every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(meta_json.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode("utf-8"))
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Reading


def _read_metadata(path: Path, data: bytes) -> dict[str, str]:
    """The header's vaelib metadata, after checking that the header is complete and ours."""
    if len(data) < _HEADER_SIZE_BYTES:
        raise CheckpointError(f"{path} is truncated or not a checkpoint: it holds only {len(data)} bytes")
    header_len = int.from_bytes(data[:_HEADER_SIZE_BYTES], "little")
    if _HEADER_SIZE_BYTES + header_len > len(data):
        raise CheckpointError(f"{path} is truncated or not a checkpoint: its header promises {header_len} bytes "
                              f"but the file holds {len(data)} in all")
    try:
        header = json.loads(data[_HEADER_SIZE_BYTES:_HEADER_SIZE_BYTES + header_len])
        metadata = header.get("__metadata__") or {}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise CheckpointError(f"{path} is corrupted or not a checkpoint: its header is not valid JSON ({exc})") from exc
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vaelib checkpoint: its metadata has format "
                              f"{metadata.get('format')!r}, expected {FORMAT!r}")
    if metadata.get("version") != str(VERSION):
        raise CheckpointError(f"{path} has checkpoint format version {metadata.get('version')!r}; this vaelib "
                              f"reads version {VERSION}")
    if not isinstance(metadata.get("meta"), str) or not isinstance(metadata.get("sha256"), str):
        raise CheckpointError(f"{path} is corrupted: its metadata lacks 'meta' or 'sha256'")
    return metadata


def _group_by_prefix(tensors: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """{"model.encoder.0.weight": t} -> {"model": {"encoder.0.weight": t}}."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        prefix, _, key = name.partition(".")
        groups.setdefault(prefix, {})[key] = t
    return groups


def _join_optimizer_state(optimizer_meta: dict, tensors: Mapping[str, torch.Tensor]) -> dict:
    """Rebuild torch's optimizer state dict from the JSON part and the ``<index>.<key>`` tensors."""
    state = {int(index): dict(rest) for index, rest in optimizer_meta["other_state"].items()}
    for name, t in tensors.items():
        index, _, key = name.partition(".")
        state.setdefault(int(index), {})[key] = t
    return {"state": state, "param_groups": optimizer_meta["param_groups"]}


def _optimizer_state_like(optimizer: torch.optim.Optimizer, state: dict) -> dict:
    """The saved state with JSON lists turned back into tuples where the optimizer uses tuples
    (Adam's betas), so that a restored optimizer's state dict equals the saved one. The tensors are
    copied: an optimizer updates its state in place and must not share it with the checkpoint."""
    groups = []
    for live, saved in zip(optimizer.param_groups, state["param_groups"]):
        groups.append({k: tuple(v) if isinstance(live.get(k), tuple) and isinstance(v, list) else v
                       for k, v in saved.items()})
    return {"state": copy.deepcopy(state["state"]), "param_groups": groups}


def _detached_copy(state: Mapping) -> dict:
    """A deep copy of a (module or optimizer) state dict, so that it survives later updates."""
    return copy.deepcopy(dict(state))
