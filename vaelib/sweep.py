"""Sweeps: a grid of experiments trained chunk by chunk on a Dask cluster, resumable, one table at the end.

Why: checking a paper's claim means a grid (seeds x objectives x delta x learning rates ...). The batched
engine trains hundreds of runs at once on one machine; a sweep spreads such batches over the cores of a
machine or over many machines through Dask's distributed scheduler, an engine that already runs on a
laptop (``LocalCluster``) and on SSH, Slurm, PBS and Kubernetes clusters (``dask-jobqueue``,
``dask-kubernetes``), and it keeps every finished piece so that an interrupted sweep continues.

**The sweep file** (TOML). A base experiment, then the axes to vary; every combination is a run::

    [data]                      # the 3-D noisy cosine surface of vaelib.data.cosine_surface ...
    n = 2000                    # points (default 10000)
    seed = 0                    # the data set's seed (default 0); also: noise, half_width
    # file = "points.npy"       # ... or your own data, one point per row (vaelib.data.load_array:
                                #     .npy, .csv, IDX), relative to the sweep file

    [model]
    class = "VAE"               # a registered model class (vaelib.models.registered_models())
    latent_dim = 2              # the rest are its constructor's arguments;
    hidden = [32]               # in_dim defaults to the data's number of columns
    activation = "ptanh"

    [training]                  # what vaelib.engine.fit_batched takes (defaults shown)
    seed = 0                    # the run's seed: initial weights, data order, noise (an axis, usually)
    epochs = 50
    batch_size = 100
    lr = 1e-3
    optimizer = "adam"          # "adam" or "sgd"
    backend = "auto"            # "auto", "kernel" or "torch" (see fit_batched)

    [objective]
    name = "elbo"               # by its name in vaelib.objectives.OBJECTIVES (or give an objective axis)
    kl_reduction = "mean"       # settings: each applies to the objectives that take it

    [evaluation]                # what each trained run is scored with (defaults: ["recon", "kl"], 1000)
    metrics = ["recon", "kl", "mmd2", "cell_coverage"]
    samples = 1000              # points decoded from N(0, I) per run for the sample metrics
    # reference_seed = 1        # seed of the fresh reference data (default: the data's seed + 1)

    [axes]                      # the grid, in this order; each a non-empty list of distinct values
    seed = [0, 1, 2, 3, 4]
    objective = ["elbo", "ko", "geco"]
    delta = [0.01, 0.1, 1.0]    # a setting of "ko" only: the ELBO and GECO runs do not repeat over it

That file describes 25 runs: 5 seeds of the ELBO, 5 of GECO and 15 of eq. 7 (``ko``). An axis is named
``seed``, ``objective``, a ``[training]`` key (``lr``, ``epochs``, ...), an objective's setting
(``beta``, ``delta``, ``kappa``, ``alpha_rule``, ...: applied to the runs whose objective takes it, left
empty in the others' rows), ``model.<argument>`` (``model.latent_dim = [2, 4]``) or ``data.<key>``
(``data.seed``, ``data.n``, ``data.file``, ...). Metrics: ``recon`` and ``kl`` score the trained model on
the whole data set (R at a sampled code, with noise seeded by the run's seed, and the closed-form KL
per point, in nats, whatever ``kl_reduction`` the objective trained with); ``mmd2`` and ``energy``
compare ``samples`` decoded points with reference data (fresh cosine data drawn with
``reference_seed``, or a seeded subset of your file); ``surface_distance``, ``surface_distance_p90``,
``coverage_distance`` and ``cell_coverage`` (cosine data only) are those of ``vaelib.metrics``.

**Chunks.** Runs that share what one ``fit_batched`` call must share (the data, the architecture,
epochs, batch size, lr, optimizer, backend, and whether the engine's C kernel covers their objective)
are split into chunks of ``chunk_size`` runs, each trained as one ``fit_batched`` call on a worker. A
run is seeded by its own seed alone and ``fit_batched``'s runs are independent of their batch-mates,
so the table does not depend on the chunking or on the number of workers: bit for bit where the C
kernel trains (on one kind of CPU), within about 1e-6 relative on the generic PyTorch path (matrix
products blocked differently for other batch sizes). A run whose training diverges is recorded with
``status = "diverged"`` and its batch-mates are retrained without it, so they too do not depend on it.

**Resume.** Every run has a key, the SHA-256 of everything that defines it (a file is hashed by its
contents). The client writes each finished chunk to ``OUT/chunks/<hash>.json`` (atomically, with
``vaelib._io``: a temporary file, then a rename), named by the hash of its runs' keys and holding each
run's full spec beside its results. A re-run reads the chunk files, checks each run's key against its
stored spec, and trains only the runs whose key it does not find, whatever the chunk size; a changed
setting changes the key, so a stale result is never taken for a done run. Workers need no access to
the output folder: they return their results to the client.

**Worker failure.** A chunk is a pure function of its inputs, so when a worker dies Dask reruns its
chunk elsewhere; the table is assembled from the grid's run keys, so each run appears exactly once.
A chunk that fails (an error, or a worker that died ``distributed.scheduler.allowed-failures`` times
on it) is reported after the other chunks have finished and been saved; run the sweep again to retry.

**The end result**, in ``OUT``: ``runs.csv`` and ``runs.json`` (one row per run, in grid order: its
key, seed, objective, the axes' values, ``status``, ``final_<term>`` (the last epoch's mean of each
term the objective logs) and ``eval_<metric>``), ``summary.csv`` and ``summary.json`` (one row per
combination of the axes other than ``seed``: the number of runs and of diverged runs, and each
column's mean and sample standard deviation over the seeds), written together (all four or none).

**Where it runs.** ``run_sweep(spec, out)`` starts a ``distributed.LocalCluster`` of ``workers``
processes (default: one per core) with one thread each, with ``VAELIB_THREADS=1`` in their
environment so that they do not oversubscribe the cores, no dashboard, and logs silenced below
errors. ``scheduler="tcp://host:8786"`` uses an existing cluster instead: start its workers with
``VAELIB_THREADS=1`` (one chunk per worker thread) in an environment where vaelib is installed.
Scripts that start a LocalCluster must guard their entry point with ``if __name__ == "__main__":``
(worker processes are spawned and import the main module).

The command line: ``python -m vaelib sweep SPEC.toml --out DIR`` (``vaelib.cli.sweep``). The book's
"Running larger experiments" teaches it.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import inspect
import io
import itertools
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import tomllib

from vaelib import _checks, _io, metrics, threads
from vaelib.data import COSINE_HALF_WIDTH, COSINE_NOISE, cosine_surface, load_array
from vaelib.engine import BACKENDS, RunDiverged, fit_batched, kernel_covers
from vaelib.losses import gaussian_kl
from vaelib.models.base import build_model, registered_models
from vaelib.objectives import OBJECTIVES, kl_term, make_objective, reconstruction_term
from vaelib.tables import mean_std_cell, render_table
from vaelib.runs import OPTIMIZERS

# Part of every run's key: bump it when the meaning of a spec or of a result changes.
FORMAT = 1
SECTIONS = ("data", "model", "training", "objective", "evaluation", "axes")
TRAINING_DEFAULTS = {"seed": 0, "epochs": 50, "batch_size": 100, "lr": 1e-3, "optimizer": "adam",
                     "backend": "auto"}
COSINE_DEFAULTS = {"n": 10_000, "seed": 0, "noise": COSINE_NOISE, "half_width": COSINE_HALF_WIDTH}
DATA_METRICS = ("recon", "kl")
SAMPLE_METRICS = ("mmd2", "energy")
SURFACE_METRICS = ("surface_distance", "surface_distance_p90", "coverage_distance", "cell_coverage")
METRICS = DATA_METRICS + SAMPLE_METRICS + SURFACE_METRICS
EVALUATION_DEFAULTS = {"metrics": ["recon", "kl"], "samples": 1000}
# Default chunking: about this many chunks per worker thread (for balance), at most this many runs each.
CHUNKS_PER_THREAD, MAX_DEFAULT_CHUNK = 4, 64
RESULT_FILES = ("runs.csv", "runs.json", "summary.csv", "summary.json")

__all__ = ["METRICS", "Run", "Sweep", "SweepIncomplete", "SweepResult", "SpecError", "evaluate", "format_summary",
           "load_spec", "local_cluster", "parse_spec", "run_sweep", "summarise", "train_chunk"]


class SpecError(ValueError):
    """A sweep file that cannot be run; the message says what is wrong and what to change."""


class SweepIncomplete(RuntimeError):
    """Some chunks failed; the others were saved, and running the sweep again retries the failed ones."""


# ------------------------------------------------------------------------------------------------
# The spec: parsed, validated and expanded into runs before anything is trained
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One run of the grid: ``key`` (SHA-256 of ``spec``), ``spec`` (everything that defines it, as
    JSON values) and ``settings`` (each axis's value for the table; None where an axis does not apply)."""

    key: str
    spec: dict
    settings: dict


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
            groups.setdefault(_group_key(run.spec), []).append(run)
        return [group[i:i + chunk_size] for group in groups.values() for i in range(0, len(group), chunk_size)]


def load_spec(path: str | os.PathLike) -> Sweep:
    """Read and check a sweep file (see the module's docstring); raises ``SpecError`` saying what to fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the sweep file {str(path)!r}: {exc}") from None
    try:
        mapping = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path.name} is not valid TOML: {exc}") from None
    return parse_spec(mapping, base_dir=path.resolve().parent, source=path.name)


def parse_spec(mapping: Mapping, *, base_dir: str | os.PathLike = ".", source: str = "the sweep") -> Sweep:
    """A ``Sweep`` from the sweep file's content as a dict; relative data files are found in ``base_dir``.

    Everything is checked here, before any training: the sections and axes, every value's type, every
    model and objective (each distinct one is built once and run on a few data points)."""
    try:
        return _Parser(mapping, Path(base_dir), source).sweep()
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None


class _Parser:
    def __init__(self, mapping: Mapping, base_dir: Path, source: str):
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
        self.data_cache: dict[str, tuple[dict, torch.Tensor]] = {}
        self.checked: set[str] = set()

    def sweep(self) -> Sweep:
        objectives = self._objective_names()
        kinds = {name: self._axis_kind(name, objectives) for name in self.axes}
        runs: dict[str, Run] = {}
        for values in itertools.product(*self.axes.values()):
            run = self._run(dict(zip(self.axes, values)), kinds)
            runs.setdefault(run.key, run)
        data = {_hash(spec): x for spec, x in self.data_cache.values()}
        return Sweep(self.source, tuple(self.axes), list(runs.values()), data)

    # --- the pieces of one run ------------------------------------------------------------------

    def _run(self, point: dict, kinds: dict[str, str]) -> Run:
        by_kind = {kind: {} for kind in ("training", "model", "data", "objective")}
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
        return Run(_hash(spec), spec, {name: _setting(spec, name, kinds[name], value) for name, value in point.items()})

    def _data(self, table: dict) -> tuple[dict, torch.Tensor]:
        cache_key = json.dumps(table, sort_keys=True, default=str)
        if cache_key not in self.data_cache:
            self.data_cache[cache_key] = _resolve_data(table, self.base_dir)
        spec, x = self.data_cache[cache_key]
        return spec, x

    def _model(self, table: dict, x: torch.Tensor) -> dict:
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

    def _training(self, table: dict) -> dict:
        unknown = sorted(set(table) - set(TRAINING_DEFAULTS))
        if unknown:
            raise SpecError(f"[training] has no setting {unknown[0]!r}; its settings are {list(TRAINING_DEFAULTS)}")
        training = {**TRAINING_DEFAULTS, **table}
        try:
            _checks.seed("seed", training["seed"])
            _checks.positive_int("epochs", training["epochs"])
            _checks.positive_int("batch_size", training["batch_size"])
            training["lr"] = _checks.positive_float("lr", training["lr"])
            _checks.one_of("optimizer", training["optimizer"], OPTIMIZERS)
            _checks.one_of("backend", training["backend"], BACKENDS)
        except (TypeError, ValueError) as exc:
            raise SpecError(str(exc)) from None
        return training

    def _evaluation(self, data: dict) -> dict:
        table = self.sections["evaluation"]
        unknown = sorted(set(table) - {"metrics", "samples", "reference_seed"})
        if unknown:
            raise SpecError(f"[evaluation] has no setting {unknown[0]!r}; its settings are "
                            "['metrics', 'samples', 'reference_seed']")
        evaluation = {**EVALUATION_DEFAULTS, **table}
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

    def _check_run(self, spec: dict, x: torch.Tensor) -> None:
        """Build each distinct model and objective once and score a few points: the errors a worker
        would meet after minutes of training are found here instead."""
        key = json.dumps([spec["model"], spec["objective"], spec["data"], spec["evaluation"]["metrics"]],
                         sort_keys=True)
        if key in self.checked:
            return
        model, objective = _build(spec)
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
        if "kl" in wanted and not _draws_noise(model):
            raise SpecError(f"the metric 'kl' needs a model with a Gaussian encoder (a VAE); "
                            f"{spec['model']['class']} has none")
        self.checked.add(key)

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


def _setting(spec: dict, name: str, kind: str, value):
    """An axis's value in a run's row, as the run uses it (None: the run's objective has no such setting)."""
    if kind == "training":
        return spec["training"][name]
    if kind == "objective":
        return spec["objective"]["name"] if name == "objective" else spec["objective"].get(name)
    if kind == "model":
        return spec["model"][name.split(".", 1)[1]]
    return spec["data"].get(name.split(".", 1)[1], value)  # a data file's path is not in its spec


def _table(mapping: Mapping, name: str) -> Mapping:
    value = mapping.get(name, {})
    if not isinstance(value, Mapping):
        raise SpecError(f"[{name}] must be a table (a [{name}] section), got {type(value).__name__} {value!r}")
    return value


def _axis_values(name: str, values) -> list:
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


def _require_scalar(where: str, value) -> None:
    if not isinstance(value, (str, int, float, bool)):
        raise SpecError(f"{where} holds {type(value).__name__} {value!r}; give a number, a string or a boolean")


def _objective_settings(name: str) -> dict[str, inspect.Parameter]:
    """An objective's settings: its constructor's parameters, by name."""
    parameters = inspect.signature(OBJECTIVES[name].__init__).parameters
    return {p: parameters[p] for p in parameters if p != "self"}


def _settings_listing(names: Sequence[str]) -> str:
    return "; ".join(f"{name} takes {list(_objective_settings(name)) or 'none'}" for name in names)


def _normalised(settings: dict, accepted: Mapping[str, inspect.Parameter]) -> dict:
    """Whole numbers given for float settings become floats, so that delta = 1 and delta = 1.0 are one run."""
    return {name: float(value) if isinstance(accepted[name].default, float) and type(value) is int else value
            for name, value in settings.items()}


def _init_parameters(cls) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def _resolve_data(table: dict, base_dir: Path) -> tuple[dict, torch.Tensor]:
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
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except (OSError, ValueError) as exc:
            raise SpecError(f"cannot use the data file {table['file']!r}: {exc}") from None
        return {"kind": "file", "sha256": digest}, x
    unknown = sorted(set(table) - set(COSINE_DEFAULTS))
    if unknown:
        raise SpecError(f"[data] has no key {unknown[0]!r}; the cosine data take {list(COSINE_DEFAULTS)}, "
                        "your own data file = \"points.npy\"")
    spec = {**COSINE_DEFAULTS, **table}
    for name in ("noise", "half_width"):
        if type(spec[name]) is int:
            spec[name] = float(spec[name])
    try:
        x = cosine_surface(n=spec["n"], noise=spec["noise"], seed=spec["seed"], half_width=spec["half_width"])
    except (TypeError, ValueError) as exc:
        raise SpecError(f"[data]: {exc}") from None
    return {"kind": "cosine", **spec}, x


def _hash(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _group_key(spec: dict) -> str:
    """What one fit_batched call shares; the kernel flag keeps runs the C kernel covers away from the
    others, so that a run takes the same path (and gives the same bits) whatever its batch-mates."""
    training = {k: v for k, v in spec["training"].items() if k != "seed"}
    settings = {k: v for k, v in spec["objective"].items() if k != "name"}
    kernel = kernel_covers(make_objective(spec["objective"]["name"], **settings))
    return json.dumps([spec["data"], spec["model"], training, kernel], sort_keys=True)


# ------------------------------------------------------------------------------------------------
# A worker's job: one chunk
# ------------------------------------------------------------------------------------------------

# Models draw their initial weights from PyTorch's global generator: chunks running on threads of
# one process must not seed and build at the same time.
_BUILD_LOCK = threading.Lock()


def train_chunk(x: np.ndarray | torch.Tensor, runs: Sequence[dict]) -> list[dict]:
    """Train and score one chunk: ``runs`` are ``{"key": ..., "spec": Run.spec}``, trained together as
    one ``fit_batched`` call on ``x``. Returns one result per run, in order: ``key``, ``status``
    (``"ok"`` or ``"diverged"``, then ``error`` says where), ``final`` (the last epoch's terms) and
    ``eval`` (the metrics). What a Dask worker runs; callable in any process."""
    x = torch.as_tensor(x)
    results: dict[str, dict] = {}
    pending = list(runs)
    while pending:
        built = [_build(run["spec"]) for run in pending]
        training = pending[0]["spec"]["training"]
        try:
            histories = fit_batched([m for m, _ in built], [o for _, o in built], x,
                                    seeds=[run["spec"]["training"]["seed"] for run in pending],
                                    epochs=training["epochs"], batch_size=training["batch_size"], lr=training["lr"],
                                    optimizer=training["optimizer"], backend=training["backend"], progress=False)
        except RunDiverged as exc:
            failed = pending.pop(exc.run)
            results[failed["key"]] = {"key": failed["key"], "status": "diverged", "final": {}, "eval": {},
                                      "error": f"diverged at epoch {exc.epoch}, step {exc.step}: {exc.term} "
                                               "is not finite"}
            continue  # the others again, from their initial weights, without it
        for run, (model, _), history in zip(pending, built, histories):
            results[run["key"]] = {"key": run["key"], "status": "ok", "final": history.final(),
                                   "eval": evaluate(model, x, run["spec"])}
        break
    return [results[run["key"]] for run in runs]


def _build(spec: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
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


def _draws_noise(model: torch.nn.Module) -> bool:
    return "noise" in inspect.signature(model.forward).parameters and hasattr(model, "latent_dim")


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, spec: dict) -> dict[str, float]:
    """A trained run's metrics (see the module's docstring), each from generators seeded by the run's
    seed or the reference seed, so that a run scores the same in any process."""
    model = model.cpu().eval()
    evaluation, seed = spec["evaluation"], spec["training"]["seed"]
    wanted = evaluation["metrics"]
    values: dict[str, float] = {}
    if set(wanted) & set(DATA_METRICS):
        if _draws_noise(model):
            noise = torch.randn(len(x), model.latent_dim, generator=torch.Generator().manual_seed(seed),
                                dtype=x.dtype)
            out = model(x, noise=noise)
        else:
            out = model(x)
        values["recon"] = reconstruction_term(x, out).double().mean().item()
        if "kl" in wanted:
            kl_term(out)  # a clear error for a model without a Gaussian encoder
            values["kl"] = gaussian_kl(out.mu.double(), out.logvar.double()).mean().item()  # float64 from the start
    if set(wanted) & set(SAMPLE_METRICS + SURFACE_METRICS):
        samples = model.sample(evaluation["samples"], generator=torch.Generator().manual_seed(seed))
        values.update(_sample_metrics(samples, x, spec))
    return {name: values[name] for name in wanted}


def _sample_metrics(samples: torch.Tensor, x: torch.Tensor, spec: dict) -> dict[str, float]:
    data, evaluation = spec["data"], spec["evaluation"]
    n, reference_seed = evaluation["samples"], evaluation["reference_seed"]
    if data["kind"] == "cosine":
        reference = cosine_surface(n, noise=data["noise"], seed=reference_seed, half_width=data["half_width"])
        return metrics.cosine_sample_quality(samples, reference, half_width=data["half_width"])
    reference = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(reference_seed))[:n]]
    bandwidth = metrics.median_bandwidth(reference)
    return {"mmd2": metrics.mmd2(samples, reference, bandwidth=bandwidth),
            "energy": metrics.energy_distance(samples, reference)}


# ------------------------------------------------------------------------------------------------
# The client: chunks to the cluster, results to files, one table at the end
# ------------------------------------------------------------------------------------------------

@dataclass
class SweepResult:
    """What ``run_sweep`` gives back: the table's ``rows`` (grid order), the ``summary``, the files it
    wrote, and what this call did: runs trained (in how many chunks), runs found done, seconds, and the
    chunk files it ignored (unreadable, or not matching their name or their runs' specs)."""

    axes: tuple[str, ...]
    rows: list[dict]
    summary: list[dict]
    paths: dict[str, Path]
    runs_trained: int
    chunks_trained: int
    runs_skipped: int
    seconds: float
    ignored_files: list[Path]

    def summary_table(self, style: str = "text") -> str:
        """The summary, one line per combination of the axes, mean ± std of each metric, as text
        (a terminal) or Markdown (a notebook page); see ``vaelib.tables``."""
        return format_summary(self.summary, self.axes, style)


def run_sweep(spec: str | os.PathLike | Sweep, out: str | os.PathLike, *, scheduler: str | None = None,
              workers: int | None = None, chunk_size: int | None = None, progress: bool = True,
              on_chunk: Callable[[Path], object] | None = None) -> SweepResult:
    """Run the sweep ``spec`` (a sweep file, or a ``Sweep`` from ``load_spec``) into the folder ``out``.

    Runs already done in ``out`` are skipped; the others are trained in chunks of ``chunk_size`` runs
    (default: about four chunks per worker thread, at most 64 runs each) on a new ``LocalCluster`` of
    ``workers`` processes (default: one per core), or on the existing cluster at ``scheduler``. Each
    finished chunk is written to ``out/chunks/`` at once, then ``on_chunk(path)`` is called (progress
    reports, tests). Raises ``SpecError`` for a bad spec (before anything runs), ``SweepIncomplete``
    when chunks failed (the rest is saved). See the module's docstring for the files and guarantees.
    """
    started = time.perf_counter()
    sweep = spec if isinstance(spec, Sweep) else load_spec(spec)
    if scheduler is not None and workers is not None:
        raise ValueError("workers sizes the local cluster; with a scheduler address the cluster's own workers "
                         "run the sweep: give one or the other")
    if workers is not None:
        _checks.positive_int("workers", workers)
    if chunk_size is not None:
        _checks.positive_int("chunk_size", chunk_size)
    out = _prepare_output(out)
    chunk_dir = out / "chunks"
    done, ignored = _done_runs(chunk_dir)
    pending = [run for run in sweep.runs if run.key not in done]
    chunks_trained = 0
    if pending:
        with _dask_client(scheduler, workers) as client:
            size = chunk_size or _default_chunk_size(len(pending), sum(client.nthreads().values()) or 1)
            chunks = sweep.chunks(pending, size)
            # closing(): an error in on_chunk cancels the other chunks while the client is still open
            with contextlib.closing(_train_on_cluster(client, sweep, chunks, chunk_dir, progress)) as finished:
                for path, results in finished:
                    done.update((result["key"], result) for result in results)
                    chunks_trained += 1
                    if on_chunk is not None:
                        on_chunk(path)
    rows = [_row(run, done[run.key]) for run in sweep.runs]
    summary = summarise(rows, sweep.axes)
    paths = _write_results(out, rows, summary)
    return SweepResult(sweep.axes, rows, summary, paths, len(pending), chunks_trained,
                       len(sweep.runs) - len(pending), time.perf_counter() - started, ignored)


def _prepare_output(out: str | os.PathLike) -> Path:
    """Create ``out/chunks`` if needed and check that the result files can be written, before any training."""
    if not isinstance(out, (str, os.PathLike)) or os.fspath(out) == "":
        raise ValueError(f"out must be a folder path (str or os.PathLike) such as 'results/sweep', got {out!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out {str(out)!r} exists and is not a folder; give a folder path")
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        _io.check_writable(out / name, "the sweep's result file", probe=name == RESULT_FILES[0])
    return out


def _default_chunk_size(runs: int, worker_threads: int) -> int:
    return max(1, min(MAX_DEFAULT_CHUNK, math.ceil(runs / (CHUNKS_PER_THREAD * worker_threads))))


@contextlib.contextmanager
def local_cluster(workers: int | None = None) -> Iterator:
    """The ``distributed.LocalCluster`` that ``run_sweep`` starts when given no scheduler: ``workers``
    processes (default: one per core) of one thread each, ``VAELIB_THREADS=1`` in their environment,
    no dashboard, logs below errors silenced, scratch space in a private temporary folder. Closed on
    exit. Hold one open to run several sweeps on it: ``run_sweep(..., scheduler=cluster.scheduler_address)``."""
    from distributed import LocalCluster

    if workers is not None:
        _checks.positive_int("workers", workers)
    with tempfile.TemporaryDirectory(prefix="vaelib-sweep-") as scratch, \
            LocalCluster(n_workers=workers or threads.cores(), threads_per_worker=1, processes=True,
                         dashboard_address=None, silence_logs=logging.ERROR, local_directory=scratch,
                         env={threads.ENVIRONMENT_VARIABLE: "1"},
                         # the scheduler's HTTP routes (health, metrics) on a free local port, not 8787
                         scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        yield cluster


@contextlib.contextmanager
def _dask_client(scheduler: str | None, workers: int | None) -> Iterator:
    """A client of the cluster at ``scheduler``, or of a new ``local_cluster(workers)``."""
    from distributed import Client

    if scheduler is None:
        with local_cluster(workers) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); check the address "
                              "(tcp://HOST:PORT) and that the scheduler runs") from None
    with client:
        yield client


def _train_on_cluster(client, sweep: Sweep, chunks: list[list[Run]], chunk_dir: Path,
                      progress: bool) -> Iterator[tuple[Path, list[dict]]]:
    """Submit every chunk, then yield (file, results) for each as it finishes, after writing it."""
    from distributed import as_completed

    used = {_hash(run.spec["data"]) for chunk in chunks for run in chunk}
    data = {key: client.scatter(x.numpy(), broadcast=True) for key, x in sweep.data.items() if key in used}
    futures = {}
    for chunk in chunks:
        name = _hash([run.key for run in chunk])
        payload = [{"key": run.key, "spec": run.spec} for run in chunk]
        future = client.submit(train_chunk, data[_hash(chunk[0].spec["data"])], payload,
                               key=f"vaelib-sweep-chunk-{name}", pure=False)
        futures[future] = (name, chunk)
    failures = []
    bar = tqdm(total=len(chunks), unit="chunk", disable=not progress,
               desc=f"sweep: {sum(map(len, chunks))} runs in {len(chunks)} chunks")
    try:
        for future in as_completed(futures):
            name, chunk = futures[future]
            try:
                results = future.result()
            except Exception as exc:  # a chunk's error is reported with the others', after the rest is saved
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            path = chunk_dir / f"{name}.json"
            entries = [{"key": run.key, "spec": run.spec, "result": result} for run, result in zip(chunk, results)]
            _io.write_file(path, _json_text({"format": FORMAT, "chunk": name, "runs": entries}), what="the chunk")
            bar.update(1)
            yield path, results
    finally:
        bar.close()
        client.cancel(list(futures))
    if failures:
        raise SweepIncomplete(f"{len(failures)} of {len(chunks)} chunks failed (the others are saved; run the "
                              f"sweep again to retry): {failures[0]}")


def _done_runs(chunk_dir: Path) -> tuple[dict[str, dict], list[Path]]:
    """Results in the chunk files whose content checks out, by run key; and the files ignored."""
    done, ignored = {}, []
    for path in sorted(chunk_dir.glob("*.json")):
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
            entries = content["runs"]
            valid = (content["format"] == FORMAT and path.stem == content["chunk"]
                     == _hash([entry["key"] for entry in entries])
                     and all(_hash(entry["spec"]) == entry["key"] == entry["result"]["key"] for entry in entries))
        except (OSError, ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            ignored.append(path)
            continue
        done.update((entry["key"], entry["result"]) for entry in entries)
    return done, ignored


def _row(run: Run, result: dict) -> dict:
    row = {"run": run.key[:12], "seed": run.spec["training"]["seed"], "objective": run.spec["objective"]["name"]}
    row.update((name, value) for name, value in run.settings.items() if name not in row)
    row["status"] = result["status"]
    if "error" in result:
        row["error"] = result["error"]
    row.update((f"final_{name}", value) for name, value in result["final"].items())
    row.update((f"eval_{name}", value) for name, value in result["eval"].items())
    return row


def summarise(rows: Sequence[Mapping], axes: Sequence[str]) -> list[dict]:
    """One row per combination of the axes other than seed, in order of first appearance: ``runs``,
    ``diverged``, and ``<column>_mean`` / ``<column>_std`` (sample std; None for a single run) of every
    ``final_`` and ``eval_`` column over that combination's runs that finished."""

    keys = [axis for axis in axes if axis != "seed"]
    columns = _metric_columns(rows)
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(tuple(json.dumps(row.get(k)) for k in keys), []).append(row)
    summary = []
    for members in groups.values():
        ok = [row for row in members if row["status"] == "ok"]
        entry = {k: members[0].get(k) for k in keys}
        entry.update(runs=len(ok), diverged=len(members) - len(ok))
        for column in columns:
            values = [row[column] for row in ok if row.get(column) is not None]
            stats = metrics.mean_std(values) if values else {"mean": None, "std": None}
            entry.update({f"{column}_mean": stats["mean"], f"{column}_std": stats["std"]})
        summary.append(entry)
    return summary


def _metric_columns(rows: Sequence[Mapping]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update((c, None) for c in row if c.startswith(("final_", "eval_")))
    return sorted(columns, key=lambda c: not c.startswith("eval_"))


def format_summary(summary: Sequence[Mapping], axes: Sequence[str], style: str = "text") -> str:
    """A summary as a table: the axes, runs, then mean ± std of each eval_ column (of the final_
    columns when no metric was evaluated)."""
    keys = [axis for axis in axes if axis != "seed"]
    names = [c[:-5] for c in (summary[0] if summary else {}) if c.endswith("_mean")]
    shown = [c for c in names if c.startswith("eval_")] or names
    header = [*keys, "runs", *(c.removeprefix("eval_") for c in shown)]
    lines = [[("" if entry[k] is None else str(entry[k])) for k in keys] + [str(entry["runs"])]
             + [mean_std_cell(entry[f"{c}_mean"], entry[f"{c}_std"], digits=4) for c in shown] for entry in summary]
    return render_table(header, lines, style)


def _write_results(out: Path, rows: list[dict], summary: list[dict]) -> dict[str, Path]:
    """The four result files, written as one group (``vaelib._io.write_files``): all or none."""
    paths = {name: out / name for name in RESULT_FILES}
    _io.write_files({paths["runs.csv"]: _csv_text(rows), paths["runs.json"]: _json_text(rows),
                     paths["summary.csv"]: _csv_text(summary), paths["summary.json"]: _json_text(summary)},
                    what="the sweep's table")
    return paths


def _json_text(content) -> str:
    return json.dumps(content, indent=1) + "\n"


def _csv_text(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(column for row in rows for column in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return text.getvalue()
