"""Sweep files: read, checked and expanded into runs before anything is trained.

``load_spec(path)`` reads a TOML sweep file, ``parse_spec(mapping)`` the same content as a dict; both
check everything (sections, keys, the type of every value, every distinct model and objective,
built once and run on a few points) and raise ``SpecError`` saying what to fix. The result, a
``Sweep``, holds the runs in grid order, each keyed by the SHA-256 of its spec (``spec_hash``), and
splits them into chunks that one ``fit_batched`` call can train (``Sweep.chunks``).

The file format (every table, key and default) is documented in the book, on the page "Running
larger experiments", section "The sweep file format" (label ``sec-sweep-format``).
"""
from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaelib import _checks, _io, limits
from vaelib.data import COSINE_HALF_WIDTH, COSINE_NOISE, cosine_surface, load_array
from vaelib.engine import kernel_covers
from vaelib.models.base import build_model, registered_models
from vaelib.objectives import OBJECTIVES, Objective, make_objective
from vaelib.runs import TrainingSettings

# Part of every run's key: bump it when the meaning of a spec or of a result changes.
FORMAT = 1
SECTIONS = ("data", "model", "training", "objective", "evaluation", "axes")
# The [training] table: the fields of vaelib.TrainingSettings but the device (workers train on the
# CPU), with a sweep's own default of 50 epochs.
SWEEP_TRAINING = TrainingSettings(epochs=50)
TRAINING_DEFAULTS = {key: getattr(SWEEP_TRAINING, key)
                     for key in ("seed", "epochs", "batch_size", "lr", "optimizer", "backend")}
COSINE_DEFAULTS = {"n": 10_000, "seed": 0, "noise": COSINE_NOISE, "half_width": COSINE_HALF_WIDTH}
DATA_METRICS = ("recon", "kl")
SAMPLE_METRICS = ("mmd2", "energy")
SURFACE_METRICS = ("surface_distance", "surface_distance_p90", "coverage_distance", "cell_coverage")
METRICS = DATA_METRICS + SAMPLE_METRICS + SURFACE_METRICS
EVALUATION_DEFAULTS = {"metrics": ["recon", "kl"], "samples": 1000}
# Runs a sweep file may define (the product of its axes' lengths) unless the limits are lifted: far
# more than a day of the book's models on one machine; a grid beyond it is refused before it is expanded.
MAX_RUNS = 100_000


class SpecError(ValueError):
    """A sweep file that cannot be run; the message says what is wrong and what to change."""


@dataclass(frozen=True)
class Run:
    """One run of the grid: ``key`` (SHA-256 of ``spec``), ``spec`` (everything that defines it, as
    JSON values) and ``settings`` (each axis's value for the table; None where an axis does not apply)."""

    key: str
    spec: dict[str, Any]
    settings: dict[str, Any]


@dataclass
class Sweep:
    """A parsed sweep file: its axes (in file order), its runs (in grid order) and the data sets they
    train on, by the hash of their data spec."""

    source: str
    axes: tuple[str, ...]
    runs: list[Run]
    data: dict[str, torch.Tensor] = field(repr=False)

    def chunks(self, runs: Sequence[Run], chunk_size: int) -> list[list[Run]]:
        """``runs`` split into chunks of at most ``chunk_size`` that one ``fit_batched`` call can train:
        grouped by what the call shares, in grid order within a group."""
        _checks.positive_int("chunk_size", chunk_size)
        groups: dict[str, list[Run]] = {}
        for run in runs:
            groups.setdefault(chunk_group(run.spec), []).append(run)
        return [group[i:i + chunk_size] for group in groups.values() for i in range(0, len(group), chunk_size)]


def load_spec(path: str | os.PathLike[str], *, holdout: float | None = None) -> Sweep:
    """Read and check a sweep file (the format: the book's section ``sec-sweep-format``); raises
    ``SpecError`` saying what to fix. ``holdout`` sets ``[evaluation] holdout`` (the file's, if any, is
    replaced): the fraction of the rows held out of training and scored (``sweep --holdout``)."""
    path = Path(path)
    try:  # a regular file only (a FIFO would block), within the size and nesting limits of every document
        mapping = _io.read_document(path, "a sweep file", kind="toml")
    except _io.DocumentError as exc:  # named as every other problem of the file is: by its name
        raise SpecError(str(exc).replace(os.fspath(path), path.name, 1)) from None
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read the sweep file {str(path)!r}: {exc}") from None
    if holdout is not None and isinstance(mapping, dict):
        evaluation = mapping.get("evaluation", {})
        mapping["evaluation"] = {**evaluation, "holdout": holdout} if isinstance(evaluation, dict) else evaluation
    return parse_spec(mapping, base_dir=path.resolve().parent, source=path.name)


def parse_spec(mapping: Mapping[str, Any], *, base_dir: str | os.PathLike[str] = ".", source: str = "the sweep") -> Sweep:
    """A ``Sweep`` from the sweep file's content as a dict; relative data files are found in ``base_dir``.

    Everything is checked here, before any training: the sections and axes, every value's type, every
    model and objective (each distinct one is built once and run on a few data points)."""
    try:
        _io.check_nesting(mapping, f"it nests lists or tables more than {_io.MAX_NESTING} levels deep, deeper "
                                   "than any sweep file")
        return _Parser(mapping, Path(base_dir), source).sweep()
    except _io.DocumentError as exc:
        raise SpecError(f"{source}: {exc}") from None
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None


class _Parser:
    def __init__(self, mapping: Mapping[str, Any], base_dir: Path, source: str):
        if not isinstance(mapping, Mapping):
            raise SpecError(f"a sweep is a TOML table, got {type(mapping).__name__}")
        unknown = sorted(set(mapping) - set(SECTIONS))
        if unknown:
            raise SpecError(f"unknown section {unknown[0]!r}; a sweep has the sections {list(SECTIONS)}")
        self.base_dir, self.source = base_dir, source
        self.sections = {name: dict(_table(mapping, name)) for name in SECTIONS}
        for section in ("data", "training", "objective"):
            for key, value in self.sections[section].items():
                _require_scalar(f"[{section}] {key}", value)
        self.axes = {name: _axis_values(name, values) for name, values in self.sections["axes"].items()}
        self.data_cache: dict[str, tuple[dict[str, Any], torch.Tensor]] = {}
        self.checked: set[str] = set()
        self.work: dict[str, float] = {}  # multiply-adds of one epoch, by model and data (_model_key)

    def sweep(self) -> Sweep:
        objectives = self._objective_names()
        kinds = {name: self._axis_kind(name, objectives) for name in self.axes}
        limits.check_count(math.prod(len(values) for values in self.axes.values()), MAX_RUNS,
                           "the grid (the product of the axes' lengths)",
                           "split the sweep into several files, or shorten its axes")
        runs: dict[str, Run] = {}
        work = 0.0
        for values in itertools.product(*self.axes.values()):  # streamed: one point of the grid at a time
            run = self._run(dict(zip(self.axes, values)), kinds)
            if run.key not in runs:
                runs[run.key] = run
                work += self.work[_model_key(run.spec)] * run.spec["training"]["epochs"] + _evaluation_work(run.spec)
        limits.check_work(work, f"the sweep's {len(runs):,} runs (training and evaluation)",
                          "use fewer runs, epochs, points or samples, or smaller models")
        data = {spec_hash(spec): x for spec, x in self.data_cache.values()}
        return Sweep(self.source, tuple(self.axes), list(runs.values()), data)

    # --- the pieces of one run ------------------------------------------------------------------

    def _run(self, point: dict[str, Any], kinds: dict[str, str]) -> Run:
        by_kind: dict[str, dict[str, Any]] = {kind: {} for kind in ("training", "model", "data", "objective")}
        for name, value in point.items():
            key = name.split(".", 1)[1] if kinds[name] in ("model", "data") else name
            by_kind[kinds[name]][key] = value
        data, x = self._data({**self.sections["data"], **by_kind["data"]})
        objective_name = by_kind["objective"].pop("objective", self.sections["objective"].get("name"))
        accepted = _objective_settings(objective_name)
        base = {k: v for k, v in self.sections["objective"].items() if k != "name"}
        objective = {"name": objective_name,
                     **_normalised({k: v for k, v in {**base, **by_kind["objective"]}.items() if k in accepted},
                                   accepted)}
        spec = {"format": FORMAT, "data": data, "model": self._model({**self.sections["model"], **by_kind["model"]}, x),
                "training": self._training({**self.sections["training"], **by_kind["training"]}),
                "objective": objective, "evaluation": self._evaluation(data)}
        self._check_run(spec, x)
        settings = {name: _setting(spec, name, kinds[name], value) for name, value in point.items()}
        return Run(spec_hash(spec), spec, settings)

    def _data(self, table: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor]:
        cache_key = json.dumps(table, sort_keys=True, default=str)
        if cache_key not in self.data_cache:
            self.data_cache[cache_key] = _resolve_data(table, self.base_dir)
        spec, x = self.data_cache[cache_key]
        return spec, x

    def _model(self, table: dict[str, Any], x: torch.Tensor) -> dict[str, Any]:
        table = dict(table)
        class_name = table.pop("class", None)
        if not isinstance(class_name, str):
            raise SpecError(f"[model] needs class = \"NAME\", one of {sorted(registered_models())}")
        if class_name not in registered_models():
            raise SpecError(f"unknown model class {class_name!r}; registered: {sorted(registered_models())}")
        parameters = _init_parameters(registered_models()[class_name])
        unknown = sorted(set(table) - set(parameters))
        if unknown:
            raise SpecError(f"model {class_name} takes no argument {unknown[0]!r}; its arguments are {parameters}")
        if "in_dim" in parameters and "in_dim" not in table:
            table["in_dim"] = x.shape[1]
        return {"class": class_name, **table}

    def _training(self, table: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(table) - set(TRAINING_DEFAULTS))
        if unknown:
            raise SpecError(f"[training] has no setting {unknown[0]!r}; its settings are {list(TRAINING_DEFAULTS)}")
        try:
            settings = SWEEP_TRAINING.replace(**table)  # vaelib.TrainingSettings checks every value
        except (TypeError, ValueError) as exc:
            raise SpecError(str(exc)) from None
        return {key: getattr(settings, key) for key in TRAINING_DEFAULTS}

    def _evaluation(self, data: dict[str, Any]) -> dict[str, Any]:
        table = self.sections["evaluation"]
        unknown = sorted(set(table) - {"metrics", "samples", "reference_seed", "holdout"})
        if unknown:
            raise SpecError(f"[evaluation] has no setting {unknown[0]!r}; its settings are "
                            "['metrics', 'samples', 'reference_seed', 'holdout']")
        holdout = table.get("holdout")
        if holdout is not None and (isinstance(holdout, bool) or not isinstance(holdout, (int, float))
                                    or not 0 < holdout < 1):
            raise SpecError(f"[evaluation] holdout must be a fraction strictly between 0 and 1 (the rows held out "
                            f"of training and scored), got {holdout!r}")
        evaluation = {**EVALUATION_DEFAULTS, **table}
        if holdout is not None:
            evaluation["holdout"] = float(holdout)  # 0.5 given as 1/2 or 0.50: one run
        chosen = evaluation["metrics"]
        if not isinstance(chosen, list) or not all(isinstance(m, str) for m in chosen):
            raise SpecError(f"[evaluation] metrics must be a list of names from {list(METRICS)}, got {chosen!r}")
        for name in chosen:
            if name not in METRICS:
                raise SpecError(f"unknown metric {name!r}; the metrics are {list(METRICS)}")
            if name in SURFACE_METRICS and data["kind"] != "cosine":
                raise SpecError(f"the metric {name!r} measures samples of the cosine surface; your data come "
                                f"from a file: use {list(DATA_METRICS + SAMPLE_METRICS)}")
        if len(set(chosen)) != len(chosen):
            raise SpecError(f"[evaluation] metrics lists a metric twice: {chosen}")
        default_seed = data["seed"] + 1 if data["kind"] == "cosine" else 0
        evaluation.setdefault("reference_seed", default_seed)
        try:
            _checks.positive_int("samples", evaluation["samples"])
            _checks.seed("reference_seed", evaluation["reference_seed"])
        except (TypeError, ValueError) as exc:
            raise SpecError(f"[evaluation]: {exc}") from None
        return evaluation

    def _check_run(self, spec: dict[str, Any], x: torch.Tensor) -> None:
        """Build each distinct model and objective once and score a few points: the errors a worker
        would meet after minutes of training are found here instead."""
        key = json.dumps([spec["model"], spec["objective"], spec["data"], spec["evaluation"]["metrics"]],
                         sort_keys=True)
        if key in self.checked:
            return
        self._check_size(spec, x)
        model, objective = build_run(spec)
        if not objective.batchable:
            raise SpecError(f"objective {spec['objective']['name']!r} cannot be trained in a batch; a sweep "
                            "trains with vaelib.engine.fit_batched")
        try:
            with torch.no_grad():
                objective(x[:4], model(x[:4]))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise SpecError(f"model {spec['model']['class']} with objective {spec['objective']['name']!r}: "
                            f"{exc}") from None
        wanted = set(spec["evaluation"]["metrics"])
        if wanted & set(SAMPLE_METRICS + SURFACE_METRICS) and not callable(getattr(model, "sample", None)):
            raise SpecError(f"the sample metrics {sorted(wanted - set(DATA_METRICS))} need a generative model "
                            f"with sample(); {spec['model']['class']} has none")
        if "kl" in wanted and not draws_noise(model):
            raise SpecError(f"the metric 'kl' needs a model with a Gaussian encoder (a VAE); "
                            f"{spec['model']['class']} has none")
        self.checked.add(key)

    def _check_size(self, spec: dict[str, Any], x: torch.Tensor) -> None:
        """A model that cannot fit, counted without building it (``vaelib.limits``), and the work
        of one epoch of it on the data, kept for the grid's estimate."""
        args = {k: v for k, v in spec["model"].items() if k != "class"}
        what = f"model {spec['model']['class']} {args}"
        try:
            size = limits.model_size(lambda: build_model(spec["model"]["class"], **args))
        except limits.TooLarge:
            raise
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{what}: {exc}") from None
        limits.check_training(size, runs=1, rows=len(x), batch_size=spec["training"]["batch_size"],
                              epochs=spec["training"]["epochs"], what=what, advice="use a smaller model")
        self.work[_model_key(spec)] = 3.0 * len(x) * (size.forward_work if size is not None else 0)
        samples = spec["evaluation"]["samples"]
        if set(spec["evaluation"]["metrics"]) & set(SAMPLE_METRICS + SURFACE_METRICS):
            limits.check_memory(8 * 4 * samples * x.shape[1], f"[evaluation] samples = {samples:,}",
                                "lower samples")

    # --- axes -------------------------------------------------------------------------------

    def _objective_names(self) -> list[str]:
        names = self.axes.get("objective", [self.sections["objective"].get("name")])
        if names == [None]:
            raise SpecError("say which objective to train: [objective] name = \"elbo\", or an axis "
                            "objective = [\"elbo\", ...]")
        for name in names:
            if name not in OBJECTIVES:
                raise SpecError(f"unknown objective {name!r}; the objectives are {sorted(OBJECTIVES)}")
        base = set(self.sections["objective"]) - {"name"}
        for setting in sorted(base):
            if not any(setting in _objective_settings(name) for name in names):
                raise SpecError(f"[objective] {setting!r} is not a setting of {names}; "
                                f"{_settings_listing(names)}")
        return names

    def _axis_kind(self, name: str, objectives: list[str]) -> str:
        if name in TRAINING_DEFAULTS:
            return "training"
        if name == "objective":
            return "objective"
        section, _, key = name.partition(".")
        if section == "model" and key:
            return "model"
        if section == "data" and key:
            allowed = ("file",) if "file" in self.sections["data"] or key == "file" else tuple(COSINE_DEFAULTS)
            if key not in allowed:
                raise SpecError(f"unknown axis {name!r}: the data take {['data.' + k for k in allowed]}")
            return "data"
        if any(name in _objective_settings(o) for o in objectives):
            return "objective"
        raise SpecError(f"unknown axis {name!r}; an axis is seed, objective, a [training] key "
                        f"{list(TRAINING_DEFAULTS)}, model.<argument>, data.<key> or an objective's setting "
                        f"({_settings_listing(objectives)})")


def _setting(spec: dict[str, Any], name: str, kind: str, value: Any) -> Any:
    """An axis's value in a run's row, as the run uses it (None: the run's objective has no such setting)."""
    if kind == "training":
        return spec["training"][name]
    if kind == "objective":
        return spec["objective"]["name"] if name == "objective" else spec["objective"].get(name)
    if kind == "model":
        return spec["model"][name.split(".", 1)[1]]
    return spec["data"].get(name.split(".", 1)[1], value)  # a data file's path is not in its spec


def _table(mapping: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = mapping.get(name, {})
    if not isinstance(value, Mapping):
        raise SpecError(f"[{name}] must be a table (a [{name}] section), got {type(value).__name__} {value!r}")
    return value


def _axis_values(name: str, values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise SpecError(f"axis {name!r} must be a list of values, e.g. {name} = [{values!r}], got {values!r}")
    if not values:
        raise SpecError(f"axis {name!r} is empty; give it at least one value, or remove it")
    seen = set()
    for value in values:
        if name.startswith("model."):  # a model's argument may be a list (hidden = [32, 16])
            if not isinstance(value, (str, int, float, bool, list)):
                raise SpecError(f"axis {name!r} holds {value!r}; its values must be numbers, strings, booleans "
                                "or lists")
        else:
            _require_scalar(f"axis {name!r}", value)
        text = json.dumps(value, sort_keys=True, default=str)
        if text in seen:
            raise SpecError(f"axis {name!r} lists {value!r} twice")
        seen.add(text)
    return values


def _require_scalar(where: str, value: Any) -> None:
    if not isinstance(value, (str, int, float, bool)):
        raise SpecError(f"{where} holds {type(value).__name__} {value!r}; give a number, a string or a boolean")


def _objective_settings(name: str) -> dict[str, inspect.Parameter]:
    """An objective's settings: its constructor's parameters, by name."""
    parameters = inspect.signature(OBJECTIVES[name].__init__).parameters
    return {p: parameters[p] for p in parameters if p != "self"}


def _settings_listing(names: Sequence[str]) -> str:
    return "; ".join(f"{name} takes {list(_objective_settings(name)) or 'none'}" for name in names)


def _normalised(settings: dict[str, Any], accepted: Mapping[str, inspect.Parameter]) -> dict[str, Any]:
    """Whole numbers given for float settings become floats, so that delta = 1 and delta = 1.0 are one run."""
    return {name: float(value) if isinstance(accepted[name].default, float) and type(value) is int else value
            for name, value in settings.items()}


def _init_parameters(cls: Any) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def _resolve_data(table: dict[str, Any], base_dir: Path) -> tuple[dict[str, Any], torch.Tensor]:
    """The data spec that keys the runs (a file by its contents) and the data themselves."""
    if "file" in table:
        extra = sorted(set(table) - {"file"})
        if extra:
            raise SpecError(f"[data] with a file takes no other key, got {extra}; the cosine data's keys are "
                            f"{list(COSINE_DEFAULTS)}")
        if not isinstance(table["file"], str):
            raise SpecError(f"[data] file must be a path (a string), got {table['file']!r}")
        path = base_dir / table["file"]
        try:
            x = load_array(path)
            with _io.open_regular(path, "the data file") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            raise SpecError(f"cannot use the data file {table['file']!r}: {exc}") from None
        return {"kind": "file", "sha256": digest}, x
    unknown = sorted(set(table) - set(COSINE_DEFAULTS))
    if unknown:
        raise SpecError(f"[data] has no key {unknown[0]!r}; the cosine data take {list(COSINE_DEFAULTS)}, "
                        "your own data file = \"points.npy\"")
    spec = {**COSINE_DEFAULTS, **table}
    if type(spec["n"]) is int and spec["n"] > 0:  # float64 coordinates and their noise, float32 points
        limits.check_memory(60 * spec["n"], f"[data] n = {spec['n']:,} points", "lower n")
    for name in ("noise", "half_width"):
        if type(spec[name]) is int:
            spec[name] = float(spec[name])
    try:
        x = cosine_surface(n=spec["n"], noise=spec["noise"], seed=spec["seed"], half_width=spec["half_width"])
    except (TypeError, ValueError) as exc:
        raise SpecError(f"[data]: {exc}") from None
    return {"kind": "cosine", **spec}, x


def _model_key(spec: dict[str, Any]) -> str:
    return json.dumps([spec["model"], spec["data"]], sort_keys=True)


def _evaluation_work(spec: dict[str, Any]) -> float:
    """Multiply-adds of a run's sample metrics: the pair sums of mmd2 and energy (samples^2 pairs of
    a few features each); the surface metrics cost less."""
    evaluation = spec["evaluation"]
    if not set(evaluation["metrics"]) & set(SAMPLE_METRICS + SURFACE_METRICS):
        return 0.0
    return 4.0 * 8 * float(evaluation["samples"]) ** 2


def spec_hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def chunk_group(spec: dict[str, Any]) -> str:
    """What one fit_batched call shares; the kernel flag keeps runs the C kernel covers away from the
    others, so that a run takes the same path (and gives the same bits) whatever its batch-mates."""
    training = {k: v for k, v in spec["training"].items() if k != "seed"}
    settings = {k: v for k, v in spec["objective"].items() if k != "name"}
    kernel = kernel_covers(make_objective(spec["objective"]["name"], **settings))
    holdout = spec["evaluation"].get("holdout")  # the rows a chunk trains on
    return json.dumps([spec["data"], spec["model"], training, kernel] + ([holdout] if holdout else []),
                      sort_keys=True)


def training_settings(spec: Mapping[str, Any]) -> TrainingSettings:
    """A run's ``[training]`` settings (from its spec) as the ``vaelib.TrainingSettings`` they are."""
    return TrainingSettings(**spec["training"])


def draws_noise(model: torch.nn.Module) -> bool:
    return "noise" in inspect.signature(model.forward).parameters and hasattr(model, "latent_dim")


# Models draw their initial weights from PyTorch's global generator: chunks running on threads of
# one process must not seed and build at the same time.
_BUILD_LOCK = threading.Lock()


def build_run(spec: dict[str, Any]) -> tuple[torch.nn.Module, Objective]:
    """The untrained model and its objective. The weights are those that ``torch.manual_seed(seed)``
    (or ``vaelib.seed_everything(seed)``) then building the model give; the caller's global generator
    state is left as it was."""
    model_args = {k: v for k, v in spec["model"].items() if k != "class"}
    objective_settings = {k: v for k, v in spec["objective"].items() if k != "name"}
    try:
        objective = make_objective(spec["objective"]["name"], **objective_settings)
        with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec["training"]["seed"])
            model = build_model(spec["model"]["class"], **model_args)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"model {spec['model']['class']} {model_args} with objective "
                        f"{spec['objective']['name']!r} {objective_settings}: {exc}") from None
    return model, objective
