"""The rules every training run obeys, whichever trainer runs it: ``vaelib.fit`` (the loop, one run)
and ``vaelib.fit_batched`` (the engine, many runs as one computation) both import them from here.

* ``TrainingSettings``: a run's settings (epochs, batch size, lr, optimiser, seed, backend,
  device) in one typed object, checked once when it is made; ``fit``, ``fit_batched``, the command
  line, the sweep files and the experiments' configurations all hand their settings over in one;
* ``History`` (the per-epoch means of every named term) and ``TrainingDiverged`` (a term or a
  gradient stopped being finite; the run was put back to its last good state);
* ``OPTIMIZERS``, the optimisers by name;
* a run's identity, recorded in its checkpoint and compared when it is resumed: ``data_sha256``
  (a digest of the data), ``settings_fingerprint`` (model, objective, run settings),
  ``fingerprint_differences`` (what differs, in words) and ``changed_setup_message``;
* ``resolve_device`` (a device this machine has);
* the checks made before the first epoch, besides the settings' own: ``check_file_arguments``,
  ``check_data_dtype``, ``check_lr``, ``check_decoder_range`` and ``check_checkpoint_paths``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelib import _checks, _io
from vaelib.objectives import Objective, objective_kind

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
# fit's settings that make a run what it is (with the model and objective, see settings_fingerprint).
RESUME_MUST_MATCH = ("batch_size", "optimizer", "seed", "rows", "data_sha256")
# How fit_batched computes: "kernel" (the C kernel), "torch" (the generic PyTorch path) or "auto".
BACKENDS = ("auto", "kernel", "torch")


@dataclass(frozen=True)
class TrainingSettings:
    """The settings of a training run, checked once, when the object is made (a wrong value raises
    ``ValueError`` or ``TypeError`` naming the setting and what it takes).

    * ``epochs``: the total number of passes over the data (a resumed run counts the saved ones);
    * ``batch_size``: points per minibatch (the last of an epoch takes what is left);
    * ``lr``: the optimiser's step size;
    * ``optimizer``: a key of ``OPTIMIZERS`` (``"adam"`` or ``"sgd"``);
    * ``seed``: the run's seed (its data order and sampling noise); ``fit_batched`` takes one seed
      per run instead, in its ``seeds`` argument;
    * ``backend``: how ``fit_batched`` computes, one of ``BACKENDS``: ``"kernel"`` (the C kernel),
      ``"torch"`` (the generic PyTorch path) or ``"auto"`` (the kernel where it applies); ``fit``
      always trains with PyTorch;
    * ``device``: where training runs (``"cpu"``, ``"cuda:0"`` or a ``torch.device``; whether this
      machine has it is checked when training starts).

    ``fit(model, objective, x, TrainingSettings(epochs=50))`` and ``fit(model, objective, x,
    epochs=50)`` are the same call: a trainer's keyword arguments replace the fields of the settings
    it is given (``TrainingSettings()`` when none). ``replace(**changes)`` makes a changed copy.
    """

    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    optimizer: str = "adam"
    seed: int = 0
    backend: str = "auto"
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        _checks.positive_int("epochs", self.epochs)
        _checks.positive_int("batch_size", self.batch_size)
        object.__setattr__(self, "lr", _checks.positive_float("lr", self.lr))
        _checks.one_of("optimizer", self.optimizer, OPTIMIZERS)
        _checks.seed("seed", self.seed)
        _checks.one_of("backend", self.backend, BACKENDS)
        _device_name(self.device)

    def replace(self, **changes: Any) -> TrainingSettings:
        """A copy with ``changes`` in place of those fields (checked like a new one)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (the device as its name)."""
        values = dataclasses.asdict(self)
        values["device"] = str(self.device)
        return values


FIELDS = tuple(f.name for f in dataclasses.fields(TrainingSettings))


def training_settings(settings: TrainingSettings | None = None, **given: Any) -> TrainingSettings:
    """``settings`` (``TrainingSettings()`` when None) with the ``given`` fields that are not None in
    place of its own: how a trainer reads its ``settings`` and keyword arguments."""
    if settings is None:
        settings = TrainingSettings()
    elif not isinstance(settings, TrainingSettings):
        raise TypeError(f"settings must be a vaelib.TrainingSettings or None, got {type(settings).__name__}")
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise TypeError(f"{unknown[0]!r} is not a training setting; the settings are {list(FIELDS)}")
    changes = {name: value for name, value in given.items() if value is not None}
    return settings.replace(**changes) if changes else settings


@dataclass
class History:
    """Per-epoch means of every named term: ``history["loss"][k]`` is epoch k's mean loss."""

    terms: dict[str, list[float]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> list[float]:
        if name not in self.terms:
            raise KeyError(f"no term {name!r} in this history; it logs {sorted(self.terms)}")
        return self.terms[name]

    def __len__(self) -> int:
        return len(next(iter(self.terms.values()), []))

    def append(self, epoch_means: dict[str, float]) -> None:
        for name, value in epoch_means.items():
            self.terms.setdefault(name, []).append(value)

    def final(self) -> dict[str, float]:
        """The last epoch's value of every term."""
        return {name: values[-1] for name, values in self.terms.items()}


class TrainingDiverged(FloatingPointError):
    """A loss term or a gradient became NaN or infinite.

    The model, objective and optimiser have been put back to the end of the last completed epoch
    (saved to the checkpoint file too, when ``fit`` keeps one); ``history`` holds every completed
    epoch; ``epoch`` and ``step`` (1-based) and ``term`` say where it happened.
    """

    def __init__(self, message: str, history: History, *, epoch: int | None = None, step: int | None = None,
                 term: str | None = None):
        super().__init__(message)
        self.history, self.epoch, self.step, self.term = history, epoch, step, term


# ----------------------------------------------------------------------------------------------
# A run's identity: what resuming it must find unchanged
# ----------------------------------------------------------------------------------------------

def data_sha256(x: torch.Tensor) -> str:
    """A fingerprint of the training data, so that a run is never resumed on other data."""
    cpu = x.detach().cpu().contiguous()
    h = hashlib.sha256(f"{cpu.dtype}{tuple(cpu.shape)}".encode())
    h.update(cpu.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def settings_fingerprint(model: nn.Module, objective: Objective, **run_settings: Any) -> dict[str, Any]:
    """What makes a run what it is, recorded in its checkpoint and compared when it is resumed.

    The model's class, constructor arguments (``init_args``, for a registered model), modules (their
    printout shows every layer and its settings, also one changed after construction) and frozen
    parameters; the objective's class, its settings (every attribute that is not a tensor, as
    ``vaelib.objectives.objective_kind`` reads them) and the parameters the trainer trains; and
    ``run_settings`` (batch size, seed, a digest of the data, ...). JSON values only.
    """
    objective_settings = {name: text for name, text in objective_kind(objective)[1] if name != "training"}
    return {"model": {"class": type(model).__name__, "init_args": _json_values(getattr(model, "init_args", None)),
                      "modules": repr(model),
                      "frozen": [name for name, p in model.named_parameters() if not p.requires_grad]},
            "objective": {"class": type(objective).__name__, "settings": objective_settings,
                          "arguments": [name for name in inspect.signature(type(objective).__init__).parameters
                                        if name != "self"],
                          "trained": [name for name, _ in objective.trainer_parameters()]},
            "run": _json_values(run_settings)}


def fingerprint_differences(saved: Any, now: dict[str, Any]) -> list[str]:
    """What differs between a saved fingerprint and the current one, in words ("the objective's
    delta was 0.1, now 0.2"); parts the saved one does not record are not compared. A fingerprint
    of several runs (``{"runs": [...], "run": {...}}``) is compared run by run."""
    saved = saved if isinstance(saved, dict) else {"saved fingerprint": saved}
    differences = []
    if "runs" in saved:
        saved_runs, runs = saved["runs"], now.get("runs", [])
        if not isinstance(saved_runs, list) or len(saved_runs) != len(runs):
            count = len(saved_runs) if isinstance(saved_runs, list) else "?"
            differences.append(f"it holds {count} runs, now {len(runs)} are given")
        else:
            for r, (saved_run, run) in enumerate(zip(saved_runs, runs)):
                differences += [f"run {r}: {d}" for d in fingerprint_differences(saved_run, run)]
    for part, whose in (("model", "the model's"), ("objective", "the objective's")):
        if part not in saved:
            continue
        was, is_ = _as_dict(saved[part]), now[part]
        if was.get("class") != is_["class"]:
            differences.append(f"{whose} class was {was.get('class')}, now {is_['class']}")
            continue
        values = "init_args" if part == "model" else "settings"
        shown = repr if part == "model" else str  # init_args are JSON values, settings already repr()s
        was_values, now_values = _as_dict(was.get(values)), _as_dict(is_[values])
        changed: dict[tuple[str, str], list[str]] = {}  # one line for settings that are one (beta, kl_weight)
        for key in sorted(set(was_values) | set(now_values), key=str):
            if was_values.get(key, _UNSET) != now_values.get(key, _UNSET):
                pair = (_shown(was_values, key, shown), _shown(now_values, key, shown))
                changed.setdefault(pair, []).append(key)
        for (before, after), keys in changed.items():
            named = [key for key in keys if key in is_.get("arguments", ())] or keys  # as the constructor says
            differences.append(f"{whose} {' / '.join(named)} was {before}, now {after}")
        if part == "model" and was_values == now_values and was.get("modules") != is_["modules"]:
            differences.append("the model's modules differ (print the model to see them; was one changed after "
                               "it was built?)")
        listed = "frozen" if part == "model" else "trained"
        if was.get(listed) != is_[listed]:
            differences.append(f"{whose} {listed} parameters were {was.get(listed)}, now {is_[listed]}")
    was_run, now_run = _as_dict(saved.get("run")), now.get("run", {})
    for key in sorted(set(was_run) & set(now_run) if "run" in saved else (), key=str):
        if was_run[key] != now_run[key]:
            if key == "data_sha256":
                differences.append("x is other data (its sha256 differs)")
            elif key == "rows":
                differences.append(f"x had {was_run[key]} rows, now {now_run[key]}")
            else:
                differences.append(f"{key} was {was_run[key]!r}, now {now_run[key]!r}")
    return differences


def changed_setup_message(argument: str, path: str | os.PathLike[str], differences: list[str]) -> str:
    return (f"{argument}={str(path)!r} was saved by another setup: {'; '.join(differences)}. Resume with the "
            f"setup it was saved with, or train anew without {argument}")


_UNSET = object()


def _as_dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _shown(values: dict[Any, Any], key: Any, show: Callable[[Any], str]) -> str:
    return "not set" if key not in values else show(values[key])


def _json_values(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists), or its repr where JSON cannot hold it."""
    if isinstance(value, (list, tuple)):
        return [_json_values(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_values(v) for k, v in value.items()}
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


# ----------------------------------------------------------------------------------------------
# Checks made before the first epoch
# ----------------------------------------------------------------------------------------------

def _device_name(value: object) -> torch.device:
    """``value`` as a torch.device, after checking that it names one (not that this machine has it)."""
    try:
        return torch.device(value)  # type: ignore[call-overload, no-any-return]
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch.device or a name such as 'cpu' or 'cuda:0', got {value!r}") from None


def resolve_device(value: str | torch.device) -> torch.device:
    """The device, after checking that this machine has it (a tensor can be made there)."""
    device = _device_name(value)
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        reason = " ".join(str(exc).split())
        raise ValueError(f"device={str(device)!r} is not available on this machine ({reason}); use device='cpu'"
                         + (f" or one of the {torch.cuda.device_count()} CUDA devices" if torch.cuda.is_available()
                            else "")) from None
    return device


def check_file_arguments(checkpoint_every: object, checkpoint: object, resume_from: object) -> None:
    """Types and ranges of the file arguments every trainer takes (``fit`` and ``fit_batched``);
    the files themselves are checked by ``check_checkpoint_paths``."""
    _checks.positive_int("checkpoint_every", checkpoint_every)
    for name, path in (("checkpoint", checkpoint), ("resume_from", resume_from)):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{name} must be a file path (str or os.PathLike) or None, got {type(path).__name__}")


def check_data_dtype(x: torch.Tensor, models: Sequence[nn.Module]) -> None:
    """The data must have the floating-point dtype of the models' parameters."""
    dtype = next((p.dtype for p in models[0].parameters() if p.is_floating_point()), None)
    if dtype is not None and x.dtype != dtype:
        whose = "the model's" if len(models) == 1 else "the models'"
        raise TypeError(f"x has dtype {x.dtype} but {whose} parameters are {dtype}; convert with x.to({dtype})")


def check_lr(lr: float, parameters: Sequence[torch.Tensor]) -> None:
    """lr must be a number the parameters' dtype can hold (1e39 overflows float32 to inf)."""
    for dtype in sorted({p.dtype for p in parameters if p.is_floating_point()}, key=str):
        largest = torch.finfo(dtype).max
        if lr > largest:
            raise ValueError(f"lr={lr:g} is too large for {dtype} parameters (the largest {dtype} is {largest:.4g}); "
                             "use a learning rate such as 1e-3")


def check_decoder_range(model: nn.Module, x: torch.Tensor) -> None:
    """A model whose output is a Bernoulli decoder's logits (``ModelOutput.recon_is_logits``) can only
    fit data in [0, 1]. Asked of the model's own output, once, on the first row (a forward pass in
    evaluation mode, without gradients) and only when x leaves [0, 1]."""
    low, high = x.min().item(), x.max().item()
    if 0.0 <= low and high <= 1.0:
        return
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            out = model(x[:1])
    finally:
        model.train(was_training)
    if getattr(out, "recon_is_logits", False):
        raise ValueError(f"the model has a Bernoulli decoder (it outputs logits), which models data in [0, 1], "
                         f"but x holds values in [{low:.4g}, {high:.4g}]; rescale x to [0, 1], e.g. "
                         "(x - x.min()) / (x.max() - x.min()), or use a Gaussian decoder")


def check_checkpoint_paths(checkpoint: str | os.PathLike[str] | None, resume_from: str | os.PathLike[str] | None,
                           overwrite: bool, *, kind: str = "checkpoint") -> None:
    """Before any training: ``checkpoint`` can be written (its folder exists and is writable, it is
    not a folder or a special file) and is not an existing file unless ``overwrite`` or it is the
    ``resume_from`` file; ``resume_from`` exists."""
    if resume_from is not None and not Path(resume_from).is_file():
        problem = f"no {kind} file there" if not Path(resume_from).exists() else "it is not a regular file"
        raise FileNotFoundError(f"resume_from={str(resume_from)!r}: {problem}")
    if checkpoint is None:
        return
    path = _io.check_writable(checkpoint, f"the {kind}", argument="checkpoint")
    if path.exists() and not overwrite and not (resume_from is not None and os.path.samefile(path, resume_from)):
        raise FileExistsError(f"checkpoint={str(checkpoint)!r} already exists; pass overwrite=True to replace it, or "
                              f"resume_from={str(checkpoint)!r} to continue the run it holds")
