"""Checkpoints and training states: tensors and JSON in one file that loading can never turn into
code execution.

Two kinds of file share one layout, a ``safetensors`` file whose header metadata holds ``format``,
``version``, ``meta`` (a JSON document) and ``sha256``:

* a **checkpoint** (format ``"vaelib-checkpoint"``, version 1) holds one model with its optimiser,
  objective, history, random state and the settings of the run (``save_checkpoint``,
  ``load_checkpoint``; ``vaelib.fit`` writes them). Its tensors are named by what they belong to:
  ``model.<key>`` and ``objective.<key>`` (the modules' state dicts, the objective's alpha
  included), ``optimizer.<param index>.<key>`` (e.g. Adam's ``exp_avg``), and ``rng.<name>`` (the
  states of the random generators: ``torch``, the global one, and ``order``, fit's data order).
  ``meta`` holds the model's class and constructor arguments, the objective's and optimiser's
  classes, the optimiser's hyper-parameters, the history, the settings of the ``fit`` call and the
  run's fingerprint (see ``vaelib.runs.settings_fingerprint``), which resuming compares, and, when
  the model was trained on standardised data, the ``scaling`` (``vaelib.scaling.Scaling``: each
  feature's mean and scale), so that its samples and scores come back in the data's units.
* a **training state** (format ``"vaelib-training-state"``, version 1) holds any nested state of
  dicts, lists, tuples, tensors and JSON values (``save_state``, ``load_state``):
  ``vaelib.engine.fit_batched`` keeps every run's state in one. Its tensors are named by their
  place in the state (``trainer.theta``); ``meta`` is the state with each tensor replaced by
  ``{"__tensor__": name}`` (a tuple by ``{"__tuple__": [...]}``, a dict with int keys by
  ``{"__int_keys__": {...}}``); ``content`` names what the state is of, so that one kind is never
  read as another.

Why one file: replacing one file is atomic (``vaelib._io``), so a crash while saving leaves the
previous file whole; two files could be caught half-replaced. Why a digest: safetensors rejects a
file whose header or sizes do not add up (a truncated file), but a flipped byte inside a tensor, or
an edited number in the JSON, would load silently. ``sha256`` covers the JSON and every tensor's
name, dtype, shape and bytes. It guards against corruption, not against a forger, who can recompute
it: so everything read is checked as if it came from a stranger. The header's size is checked
against the file's before it is read (a large file that is not a checkpoint is rejected after 8
bytes), JSON nests at most ``MAX_JSON_DEPTH`` levels, every field has the type it must have, and
a state that does not fit is refused before anything is loaded. Safety against code execution
comes from the format: tensors and JSON only, nothing is unpickled. This module knows no model
class: ``vaelib.models.load_model`` rebuilds a model, and only from a class registered with
``vaelib.models.register_model``, never from a name that imports code.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from vaelib import _io
from vaelib.scaling import Scaling

FORMAT = "vaelib-checkpoint"
VERSION = 1
STATE_FORMAT = "vaelib-training-state"
STATE_VERSION = 1
_HEADER_SIZE_BYTES = 8  # safetensors files start with the header's length, a little-endian u64
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit: it reads no larger header
MAX_JSON_DEPTH = 64
_GROUPS = ("model", "objective", "optimizer", "rng")
_TENSOR, _TUPLE, _INT_KEYS = "__tensor__", "__tuple__", "__int_keys__"


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
    fingerprint: dict | None = None
    scaling: Scaling | None = None

    def restore(self, model: nn.Module, objective: nn.Module | None = None,
                optimizer: torch.optim.Optimizer | None = None) -> None:
        """Load the saved states into ``model`` (and ``objective``, ``optimizer`` when given).

        Checks the classes first and rolls every object back if any state does not fit, so that a
        failed restore leaves nothing half-loaded.
        """
        parts: list[tuple[str, Any, str | None, dict[str, Any] | None]] = [
            ("model", model, self.model_class, self.model_state)]
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
        backups = [(target, copy.deepcopy(dict(target.state_dict()))) for _, target, _, _ in parts]
        try:
            for role, target, _, state in parts:
                if role == "optimizer":
                    assert state is not None  # checked above
                    state = _optimizer_state_like(target, state)
                target.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            for target, backup in backups:
                target.load_state_dict(backup)
            reason = " ".join(str(exc).split())  # torch's message spans lines: make it one
            raise CheckpointError(f"{self.path} does not fit the given {role}: {reason}") from exc


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, objective: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, history=None,
                    rng_state: Mapping[str, torch.Tensor] | None = None,
                    fit_settings: Mapping | None = None, fingerprint: Mapping | None = None,
                    scaling: Scaling | None = None) -> Path:
    """Write a checkpoint atomically (``vaelib._io``): the old file at ``path``, if any, stays whole
    until the new one is complete on disk.

    ``history`` is a ``vaelib.History`` or a dict of per-epoch lists; ``rng_state`` maps names to
    generator states (``torch.get_rng_state()``, ``generator.get_state()``); ``fit_settings`` and
    ``fingerprint`` are JSON-able dicts recorded for ``fit``'s resume checks; ``scaling`` the
    standardisation the model's data went through (``vaelib.scaling.Scaling``). Returns the path.
    """
    path = _io.check_writable(path, "the checkpoint", probe=False)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if objective is not None and not isinstance(objective, nn.Module):
        raise TypeError(f"objective must be a torch.nn.Module or None, got {type(objective).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    if scaling is not None and not isinstance(scaling, Scaling):
        raise TypeError(f"scaling must be a vaelib.scaling.Scaling or None, got {type(scaling).__name__}")
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
        "fingerprint": _jsonable("fingerprint", None if fingerprint is None else dict(fingerprint)),
        "torch_version": torch.__version__,
    }
    if scaling is not None:  # only then: files without it stay as they were
        meta["scaling"] = scaling.to_dict()
    for name, state in (rng_state or {}).items():
        tensors[f"rng.{name}"] = state
    return _write(path, FORMAT, VERSION, _to_json("checkpoint metadata", meta), tensors, "the checkpoint")


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and verify a checkpoint: raises ``CheckpointError`` naming the file when it is truncated,
    corrupted, edited or not a vaelib checkpoint, and ``FileNotFoundError`` when it does not exist."""
    path = Path(path)
    meta, tensors = _read(path, FORMAT, VERSION)
    meta = _checkpoint_meta(path, meta)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        group, _, key = name.partition(".")
        if group not in _GROUPS or not key:
            raise CheckpointError(f"{path} is not a valid checkpoint: it holds a tensor named {name!r}, which is "
                                  f"none of {', '.join(g + '.<key>' for g in _GROUPS)}")
        groups.setdefault(group, {})[key] = t
    for name, t in groups.get("rng", {}).items():
        if t.dtype != torch.uint8 or t.dim() != 1:
            raise CheckpointError(f"{path} is not a valid checkpoint: its random state {name!r} is a {t.dtype} "
                                  f"tensor of shape {tuple(t.shape)}, not a generator state (uint8, one dimension)")
    objective, optimizer = meta["objective"], meta["optimizer"]
    return Checkpoint(
        path=path,
        model_class=meta["model"]["class"], model_args=meta["model"]["init_args"],
        model_state={**groups.get("model", {}), **meta["model"]["other_state"]},
        objective_class=None if objective is None else objective["class"],
        objective_state=None if objective is None else {**groups.get("objective", {}), **objective["other_state"]},
        optimizer_class=None if optimizer is None else optimizer["class"],
        optimizer_state=None if optimizer is None else _join_optimizer_state(path, optimizer,
                                                                              groups.get("optimizer", {})),
        history=meta["history"], rng_state=groups.get("rng", {}), fit_settings=meta["fit"],
        fingerprint=meta.get("fingerprint"), scaling=_scaling(path, meta.get("scaling")))


def save_state(path: str | os.PathLike, state: Mapping, *, content: str) -> Path:
    """Write a training state atomically: ``state`` is a dict of dicts, lists, tuples, tensors and
    JSON values; ``content`` names what it is the state of (``load_state`` requires the same).
    Returns the path."""
    path = _io.check_writable(path, "the training state", probe=False)
    tensors: dict[str, torch.Tensor] = {}
    meta = {"content": content, "state": _encode_tree(dict(state), "", tensors)}
    return _write(path, STATE_FORMAT, STATE_VERSION, _to_json("training state", meta), tensors, "the training state")


def load_state(path: str | os.PathLike, *, content: str) -> dict:
    """Read and verify a training state written by ``save_state`` with the same ``content``; raises
    ``CheckpointError`` naming the file for anything else (see the module's docstring)."""
    path = Path(path)
    meta, tensors = _read(path, STATE_FORMAT, STATE_VERSION)
    if not isinstance(meta, dict) or set(meta) != {"content", "state"}:
        raise CheckpointError(f"{path} is not a valid training state: its description lacks 'content' or 'state'")
    if meta["content"] != content:
        raise CheckpointError(f"{path} holds the training state of {meta['content']!r}, not of {content!r}")
    used: set[str] = set()
    state = _decode_tree(path, meta["state"], tensors, used, "the state")
    unused = sorted(set(tensors) - used)
    if unused or not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a valid training state: " + (
            f"it holds tensors its description does not mention ({', '.join(unused[:5])})" if unused
            else "its state is not a dict"))
    return state


def check_generator_state(path: Path, name: str, state, device: str | torch.device = "cpu") -> torch.Tensor:
    """``state`` if a generator on ``device`` accepts it (tried on a scratch generator), else a
    CheckpointError: to check a saved random state before anything else is restored."""
    try:
        torch.Generator(device=device).set_state(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise CheckpointError(f"{path} holds a random state {name!r} that a generator on {device} does not "
                              f"accept ({reason}); the file is damaged or was saved on another device") from None
    return state


# ----------------------------------------------------------------------------------------------
# The file: writing


def _write(path: Path, file_format: str, version: int, meta_json: str, tensors: Mapping[str, torch.Tensor],
           what: str) -> Path:
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    header = {"format": file_format, "version": str(version), "meta": meta_json, "sha256": _digest(meta_json, tensors)}
    data = safetensors.torch.save(tensors, metadata=header)
    header_bytes = int.from_bytes(data[:_HEADER_SIZE_BYTES], "little")
    if header_bytes > MAX_HEADER_BYTES:
        raise ValueError(f"cannot write {what} {path}: its description takes {header_bytes:,} bytes, more than the "
                         f"{MAX_HEADER_BYTES:,} a safetensors file can hold (a history of very many epochs?)")
    _io.write_file(path, data, what)
    return path


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


def _encode_tree(value, name: str, tensors: dict):
    """JSON for a nested state, its tensors moved to ``tensors`` under their place's name (see the
    module's docstring)."""
    if isinstance(value, torch.Tensor):
        if name in tensors:
            raise ValueError(f"two tensors of the state would both be stored as {name!r}; rename a key")
        tensors[name] = value
        return {_TENSOR: name}
    child = (lambda key: f"{name}.{key}" if name else str(key))
    if isinstance(value, tuple):
        return {_TUPLE: [_encode_tree(v, child(i), tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode_tree(v, child(i), tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        keys = list(value)
        if keys and all(isinstance(k, int) and not isinstance(k, bool) for k in keys):
            return {_INT_KEYS: {str(k): _encode_tree(v, child(k), tensors) for k, v in value.items()}}
        if not all(isinstance(k, str) for k in keys) or (len(keys) == 1 and keys[0] in (_TENSOR, _TUPLE, _INT_KEYS)):
            raise TypeError(f"the state at {name or 'its top'} has keys {keys}; use all-str or all-int keys "
                            f"(and not a lone {_TENSOR!r}, {_TUPLE!r} or {_INT_KEYS!r})")
        return {k: _encode_tree(v, child(k), tensors) for k, v in value.items()}
    return _jsonable(f"the state at {name}", value)


def _to_json(what: str, value) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"{what} holds NaN or an infinite number, which JSON cannot store: {exc}") from exc


def _digest(meta_json: str, tensors) -> str:
    """sha256 of the JSON metadata and of every tensor's name, dtype, shape and bytes (hashed in
    place: no copy of the bytes)."""
    h = hashlib.sha256(meta_json.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# The file: reading


_KINDS = {FORMAT: ("a checkpoint of one model", "saved by fit or save_checkpoint; load it with load_checkpoint"),
          STATE_FORMAT: ("a training state", "saved by fit_batched; pass it to fit_batched(resume_from=...)")}


def _read(path: Path, file_format: str, version: int) -> tuple[object, dict[str, torch.Tensor]]:
    """The verified ``meta`` (parsed) and tensors of a file of ``file_format``. The header is checked
    before anything else is read; the tensors are then read from a memory map, one copy in memory
    (not the file's bytes and the tensors as well)."""
    metadata = _read_metadata(path, file_format, version)
    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
            tensors = {name: f.get_tensor(name) for name in names}
    except SafetensorError as exc:
        raise CheckpointError(f"{path} is corrupted or truncated: safetensors cannot read it ({exc})") from exc
    if _digest(metadata["meta"], tensors) != metadata["sha256"]:
        raise CheckpointError(f"{path} is corrupted or was edited: its content does not match the sha256 "
                              "digest recorded when it was saved")
    return _parse_json(path, metadata["meta"], "its description"), tensors


def _read_metadata(path: Path, file_format: str, version: int) -> dict[str, str]:
    """The header's vaelib metadata, after checking that the file is a regular file whose header is
    complete, of sane size, valid JSON and ours. Reads the header only."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint file at {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a folder, not a checkpoint file") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise CheckpointError(f"{path} is a folder, not a checkpoint file" if stat.S_ISDIR(info.st_mode) else
                              f"{path} is not a regular file (a FIFO, device or socket), so not a checkpoint")
    with os.fdopen(fd, "rb") as f:
        size = info.st_size
        if size < _HEADER_SIZE_BYTES:
            raise CheckpointError(f"{path} is truncated or not a checkpoint: it holds only {size} bytes")
        header_len = int.from_bytes(f.read(_HEADER_SIZE_BYTES), "little")
        if _HEADER_SIZE_BYTES + header_len > size:
            raise CheckpointError(f"{path} is truncated or not a checkpoint: its header promises {header_len} bytes "
                                  f"but the file holds {size} in all")
        if header_len > MAX_HEADER_BYTES:
            raise CheckpointError(f"{path} is not a checkpoint: its header would take {header_len:,} bytes, more than "
                                  f"the {MAX_HEADER_BYTES:,} of any safetensors file")
        raw = f.read(header_len)
    not_json = "is corrupted or not a checkpoint: its header is not valid JSON"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path} {not_json} ({exc})") from None
    header = _parse_json(path, text, "its header", error=not_json)
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    found = metadata.get("format")
    if found != file_format:
        if found in _KINDS:
            kind, hint = _KINDS[found]
            raise CheckpointError(f"{path} is {kind} ({hint}), not {_KINDS[file_format][0]}")
        expected = "checkpoint" if file_format == FORMAT else "training state"
        raise CheckpointError(f"{path} is not a vaelib {expected}: its metadata has format {found!r}, expected "
                              f"{file_format!r}")
    if metadata.get("version") != str(version):
        raise CheckpointError(f"{path} has checkpoint format version {metadata.get('version')!r}; this vaelib "
                              f"reads version {version}")
    if not isinstance(metadata.get("meta"), str) or not isinstance(metadata.get("sha256"), str):
        raise CheckpointError(f"{path} is corrupted: its metadata lacks 'meta' or 'sha256'")
    return metadata


def _parse_json(path: Path, text: str, what: str, error: str | None = None):
    """Parsed JSON that nests at most MAX_JSON_DEPTH levels, else a CheckpointError. Python's parser
    stops deeper nesting with a RecursionError; the depth is then measured without recursion, so
    that nothing that walks the result later can recurse deeply."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path} {error or 'is not a valid vaelib file: ' + what + ' is not valid JSON'} "
                              f"({' '.join(str(exc).split())})") from None
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise CheckpointError(f"{path} is not a valid vaelib file: {what} nests more than {MAX_JSON_DEPTH} "
                                      "levels deep, deeper than any vaelib file")
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


def _checkpoint_meta(path: Path, meta) -> dict:
    """``meta`` after checking that every field a checkpoint needs is there with the right type."""
    def need(value, kinds, where: str):
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise CheckpointError(f"{path} is not a valid checkpoint: {where} is {type(value).__name__}, "
                                  f"expected {names}")
        return value

    need(meta, (dict,), "its description")
    keys = ("model", "objective", "optimizer", "history", "fit")
    missing = [key for key in keys if key not in meta]
    if missing:
        raise CheckpointError(f"{path} is not a valid checkpoint: its description lacks {', '.join(missing)}")
    model = need(meta["model"], (dict,), "model")
    need(model.get("class"), (str,), "model.class")
    need(model.get("init_args"), (dict, type(None)), "model.init_args")
    need(model.get("other_state"), (dict,), "model.other_state")
    if need(meta["objective"], (dict, type(None)), "objective") is not None:
        need(meta["objective"].get("class"), (str,), "objective.class")
        need(meta["objective"].get("other_state"), (dict,), "objective.other_state")
    optimizer = need(meta["optimizer"], (dict, type(None)), "optimizer")
    if optimizer is not None:
        need(optimizer.get("class"), (str,), "optimizer.class")
        for i, group in enumerate(need(optimizer.get("param_groups"), (list,), "optimizer.param_groups")):
            need(group, (dict,), f"optimizer.param_groups[{i}]")
            for j, index in enumerate(need(group.get("params"), (list,), f"optimizer.param_groups[{i}].params")):
                need(index, (int,), f"optimizer.param_groups[{i}].params[{j}]")
        for index, state in need(optimizer.get("other_state"), (dict,), "optimizer.other_state").items():
            if not index.isdigit():
                raise CheckpointError(f"{path} is not a valid checkpoint: optimizer.other_state has the key "
                                      f"{index!r}, not a parameter index")
            need(state, (dict,), f"optimizer.other_state[{index!r}]")
    lengths = set()
    for name, values in need(meta["history"], (dict,), "history").items():
        for value in need(values, (list,), f"history[{name!r}]"):
            need(value, (int, float), f"an entry of history[{name!r}]")
        lengths.add(len(values))
    if len(lengths) > 1:
        raise CheckpointError(f"{path} is not a valid checkpoint: its history's terms have different lengths "
                              f"{sorted(lengths)}")
    need(meta["fit"], (dict, type(None)), "fit")
    need(meta.get("fingerprint"), (dict, type(None)), "fingerprint")
    return meta


def _scaling(path: Path, value) -> Scaling | None:
    if value is None:
        return None
    try:
        return Scaling.from_dict(value)
    except ValueError as exc:
        raise CheckpointError(f"{path} is not a valid checkpoint: its scaling is invalid ({exc})") from None


def _decode_tree(path: Path, value, tensors: Mapping[str, torch.Tensor], used: set, where: str):
    """The state that ``_encode_tree`` described, every marker checked (see the module's docstring)."""
    def invalid(reason: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a valid training state: {where} {reason}")

    if isinstance(value, list):
        return [_decode_tree(path, v, tensors, used, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((marker, inner),) = value.items()
        if marker == _TENSOR:
            if not isinstance(inner, str) or inner not in tensors or inner in used:
                raise invalid(f"names the tensor {inner!r}, which the file does not hold (or names it twice)")
            used.add(inner)
            return tensors[inner]
        if marker == _TUPLE:
            if not isinstance(inner, list):
                raise invalid("is a tuple without a list of items")
            return tuple(_decode_tree(path, inner, tensors, used, where))
        if marker == _INT_KEYS:
            if not isinstance(inner, dict) or not all(re.fullmatch(r"-?\d{1,18}", k) for k in inner):
                raise invalid("is a dict with int keys whose keys are not all ints")
            return {int(k): _decode_tree(path, v, tensors, used, f"{where}[{k}]") for k, v in inner.items()}
    return {k: _decode_tree(path, v, tensors, used, f"{where}.{k}") for k, v in value.items()}


def _join_optimizer_state(path: Path, optimizer_meta: dict, tensors: Mapping[str, torch.Tensor]) -> dict:
    """Rebuild torch's optimizer state dict from the JSON part and the ``<index>.<key>`` tensors."""
    state = {int(index): dict(rest) for index, rest in optimizer_meta["other_state"].items()}
    for name, t in tensors.items():
        index, _, key = name.partition(".")
        if not index.isdigit() or not key:
            raise CheckpointError(f"{path} is not a valid checkpoint: it holds the tensor 'optimizer.{name}', "
                                  "which is not named optimizer.<parameter index>.<key>")
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
    groups += state["param_groups"][len(groups):]  # more groups than the optimizer has: load_state_dict says so
    return {"state": copy.deepcopy(state["state"]), "param_groups": groups}
