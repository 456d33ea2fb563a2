"""A checked run of ``python -m vaelib train``: ``prepare(args)`` does every check that needs no
training (files, settings, data, model and objective together) and returns a ``TrainingRun``,
which trains (``vaelib.fit``), records each epoch beside the checkpoint (``run.history.csv``, the
held-out terms, ``run.settings.json``, TensorBoard events) and reports.
"""
from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelib import limits
from vaelib.cli import _data, _files
from vaelib.cli._train_settings import (apply_preset, model_arguments, model_class, resolve_settings,
                                        training_settings)
from vaelib.objectives import Objective
from vaelib.runs import History, TrainingSettings
from vaelib.scaling import Scaling


class TrainingRun:
    """A checked run: data, model, objective, training settings and files, ready to train."""

    def __init__(self, args: argparse.Namespace, settings: dict[str, Any], training: TrainingSettings, data_path: Path,
                 x_train: torch.Tensor, x_heldout: torch.Tensor | None, model: nn.Module, objective: Objective,
                 checkpoint: Path, scaling: Scaling | None = None, selection: dict[str, Any] | None = None,
                 notes: list[str] | None = None):
        self.args, self.settings, self.training, self.data_path = args, settings, training, data_path
        self.x_train, self.x_heldout, self.model, self.objective = x_train, x_heldout, model, objective
        self.checkpoint, self.scaling, self.selection = checkpoint, scaling, selection or {}
        self.notes = notes or []  # warnings found before training, one line each
        self.history_file = _files.history_path(checkpoint)
        self.rows: list[dict[str, Any]] = []
        self.settings_saved = False
        self.scores_heldout_itself = False  # True only when resuming a run of an earlier vaelib

    def train(self, progress: bool) -> History:
        from vaelib.checkpoint import load_checkpoint
        from vaelib.train import fit

        resume, heldout = self.args.resume, self.x_heldout
        if resume:
            self.rows = self._previous_rows()
            if heldout is not None and self.rows and not any(k.startswith("heldout_") for k in
                                                             load_checkpoint(self.checkpoint).history):
                # A run of an earlier vaelib kept its held-out scores in the CSV only, and fit resumes
                # a history term by term: score them here after each epoch, as that version did.
                self.scores_heldout_itself, heldout = True, None
        writer = self._tensorboard()
        try:
            history = fit(self.model, self.objective, self.x_train, self.training, progress=progress,
                          on_epoch_end=self._epoch_end(writer), checkpoint=self.checkpoint,
                          resume_from=self.checkpoint if resume else None, overwrite=self.args.overwrite,
                          scaling=self.scaling, heldout=heldout, patience=self.settings["patience"],
                          lr_schedule=self.settings["lr_schedule"], device=self.device)
        finally:
            if writer is not None:
                writer.close()
        self.model.to("cpu")
        if len(self.rows) > len(history):  # stopped early: the checkpoint holds the best epoch
            del self.rows[len(history):]
            _files.write_table(self.history_file, self.rows)
        return history

    @property
    def device(self) -> str:
        import torch

        device = self.args.device or "cpu"
        return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device

    def report(self, history: History) -> None:
        final = history.final()
        model = self.model
        print(f"trained {type(model).__name__} {model.init_args} with {self.settings['objective']['name']!r} "
              f"for {len(history)} epochs on {len(self.x_train)} rows of {self.data_path}")
        patience = self.settings["patience"]
        if len(history) < self.training.epochs and patience is not None:
            print(f"stopped early: the held-out loss did not improve for {patience} epochs after epoch "
                  f"{len(history)}, whose weights the checkpoint holds")
        print(("best epoch:     " if len(history) < self.training.epochs else "last epoch:     ")
              + _terms_text({k: v for k, v in final.items() if not k.startswith("heldout_")}))
        if "recon" in final:
            bernoulli = getattr(model, "decoder_kind", None) == "bernoulli"
            print("  (recon: " + ("the cross-entropy -log p(x|z), nats per point" if bernoulli else
                                  "the squared error per point, " + ("standardised" if self.scaling else "data")
                                  + " units squared") + ("; kl: nats per point)" if "kl" in final else ")"))
        if self.x_heldout is not None:
            heldout = {k[len("heldout_"):]: v for k, v in self.rows[-1].items() if k.startswith("heldout_")}
            print(f"held out ({len(self.x_heldout)} rows): " + _terms_text(heldout))
        print(f"wrote {self.checkpoint}, {self.history_file} and {_files.settings_path(self.checkpoint)}")

    def findings(self, history: History) -> list[str]:
        """What the finished run shows (``vaelib.diagnostics``), one sentence each."""
        from vaelib.diagnostics import findings

        return [finding.message for finding in findings(self.model, self.objective, self.x_train, history)]

    def _epoch_end(self, writer: Any) -> Callable[[int, dict[str, float]], None]:
        def on_epoch_end(epoch: int, means: dict[str, float]) -> None:
            row = {"epoch": epoch + 1, **means}  # the held-out terms too: fit scores them
            if self.scores_heldout_itself and self.x_heldout is not None:
                from vaelib.train import heldout_terms

                device = next(self.model.parameters()).device
                row.update({f"heldout_{name}": value for name, value in heldout_terms(
                    self.model, self.objective, self.x_heldout.to(device), self.training.seed).items()})
            if not self.settings_saved:  # after an epoch, when fit has accepted the setup
                _files.write_json(_files.settings_path(self.checkpoint), self._recorded_settings())
                self.settings_saved = True
            del self.rows[epoch:]
            self.rows.append(row)
            _files.write_table(self.history_file, self.rows)
            if writer is not None:
                for name, value in row.items():
                    tag = f"heldout/{name[len('heldout_'):]}" if name.startswith("heldout_") else f"train/{name}"
                    if name != "epoch":
                        writer.add_scalar(tag, value, epoch + 1)
                writer.flush()
        return on_epoch_end

    def _previous_rows(self) -> list[dict[str, Any]]:
        """The history so far: the checkpoint's terms, with the held-out ones from the old CSV."""
        from vaelib.checkpoint import load_checkpoint

        terms = load_checkpoint(self.checkpoint).history
        epochs = len(next(iter(terms.values()), []))
        columns: list[str] = []
        old: dict[int, dict[str, float]] = {}
        if self.history_file.is_file():
            columns, rows = _files.read_table(self.history_file)
            old = {int(row["epoch"]): row for row in rows if "epoch" in row}
        names = sorted(terms, key=lambda name: columns.index(name) if name in columns else len(columns))
        rows = []
        for i in range(epochs):
            heldout = {k: v for k, v in old.get(i + 1, {}).items() if k.startswith("heldout_")}
            rows.append({"epoch": i + 1, **{name: terms[name][i] for name in names}, **heldout})
        return rows

    def _recorded_settings(self) -> dict[str, Any]:
        return {"format": _files.SETTINGS_FORMAT,
                "data": {"path": str(self.data_path),
                         "rows": len(self.x_train) + (0 if self.x_heldout is None else len(self.x_heldout)),
                         "columns": self.x_train.shape[1], "selection": self.selection},
                **self.settings}

    def _tensorboard(self) -> Any:
        if self.args.tensorboard is None:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ValueError(f"--tensorboard needs the tensorboard package ({exc}); pip install tensorboard") from exc
        return SummaryWriter(log_dir=self.args.tensorboard)


def prepare(args: argparse.Namespace) -> TrainingRun:
    """Every check that needs no training: files, settings, data, model and objective together."""
    import torch

    import vaelib
    from vaelib.data import split_indices
    from vaelib.objectives import GECO, make_objective, relative_kappa
    from vaelib.scaling import scale_problem
    from vaelib.train import LR_SCHEDULES

    default_rate = inspect.signature(GECO).parameters["rate"].default

    checkpoint = _files.output_file(args.checkpoint, "--checkpoint")
    data_path = Path(args.data)
    _check_checkpoint_state(args, checkpoint, data_path)
    recorded = _files.read_settings(checkpoint) if args.resume else None
    settings = resolve_settings(args, recorded)
    run_seed, holdout = settings["seed"], settings["holdout"]
    if isinstance(run_seed, bool) or not isinstance(run_seed, int) or not 0 <= run_seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {run_seed!r}")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout < 1:
        raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    patience, schedule = settings["patience"], settings["lr_schedule"]
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience must be a positive integer, got {patience!r}")
    if patience is not None and holdout == 0:
        raise ValueError("--patience stops on the held-out loss: give --holdout too (e.g. --holdout 0.1)")
    if schedule is not None and schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")
    if schedule is not None and args.resume:
        raise ValueError("--resume: a run with an lr schedule cannot be resumed (the schedule's state is not in the "
                         "checkpoint); train it anew with --overwrite")
    if args.tensorboard is not None and Path(args.tensorboard).exists() and not Path(args.tensorboard).is_dir():
        raise ValueError(f"--tensorboard {args.tensorboard!r} is a file; give a folder")

    selection = _data.flag_selection(args)
    if args.resume and not selection and recorded is not None:
        selection = recorded.get("data", {}).get("selection", {})
    if recorded is not None:
        _check_resumed_setup(recorded, settings, selection)
    x = _data.read_data(data_path, selection)
    x_heldout = None
    if holdout > 0:
        train_rows, heldout_rows = split_indices(len(x), holdout, seed=run_seed)
        x, x_heldout = x[train_rows], x[heldout_rows]
    standardize = settings["standardize"]
    if not isinstance(standardize, bool):
        raise ValueError(f"standardize must be true or false, got {standardize!r}")
    scaling, notes = None, []
    if standardize:
        scaling = Scaling.fit(x)  # on the training rows only: the held-out rows stay unseen
        x = scaling.apply(x)
        x_heldout = None if x_heldout is None else scaling.apply(x_heldout)

    cls = model_class(settings)
    apply_preset(settings, cls, len(x), x.shape[1],
                 settings["training"].get("batch_size", TrainingSettings().batch_size))
    arguments = model_arguments(cls, settings)
    training = training_settings(settings)
    # Counted before anything is allocated: a model that cannot fit is one line, not a traceback.
    limits.check_training(limits.model_size(lambda: cls(in_dim=x.shape[1], **arguments)), runs=1, rows=len(x),
                          batch_size=training.batch_size, epochs=training.epochs,
                          what=f"{cls.__name__} {arguments} on {len(x):,} rows",
                          advice="use a smaller model (--latent-dim, --hidden) or fewer epochs")
    vaelib.seed_everything(run_seed)  # the initial weights
    model = cls(in_dim=x.shape[1], **arguments)
    recorded_args = {key: value for key, value in model.init_args.items() if key != "in_dim"}
    settings["model"] = {"name": cls.__name__.lower(), **recorded_args}
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        out = model(x[:2])
    objective_settings = dict(settings["objective"])
    name = objective_settings.pop("name", "elbo" if out.mu is not None else "reconstruction")
    settings["objective"]["name"] = name
    fraction = objective_settings.pop("kappa_fraction", None)
    objective_settings.pop("data_variance", None)  # recorded beside kappa_fraction; computed anew
    if fraction is not None:
        if name != "geco" or "kappa" in settings["objective"] and "kappa_fraction" not in (recorded or {}).get(
                "objective", {}):
            raise ValueError("kappa_fraction sets GECO's kappa relative to the data: use it with --objective geco "
                             "and without kappa")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or fraction <= 0:
            raise ValueError(f"kappa_fraction must be a positive number, got {fraction!r}")
        # kappa and the rate in the data's units: kappa = fraction·V and log alpha moves by
        # rate·(R - kappa)/V per step, V = sum_j Var(x_j) (see vaelib.cli.train's help)
        variance = relative_kappa(x, 1.0)
        objective_settings["kappa"] = settings["objective"]["kappa"] = fraction * variance
        objective_settings["rate"] = objective_settings.get("rate", default_rate) / variance
        settings["objective"]["data_variance"] = variance
    objective = make_objective(name, **objective_settings)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        objective(x[:2], model(x[:2]))  # a model and an objective that do not fit fail here, not mid-run
    if out.recon_is_logits and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"a Bernoulli decoder needs data in [0, 1], but {data_path} ranges over "
                         f"[{x.min().item():g}, {x.max().item():g}]; rescale the data (8-bit images: divide by "
                         "255) or use --decoder gaussian" + ("; --standardize gives values outside [0, 1], "
                                                             "leave it out" if scaling is not None else ""))
    problem = None if scaling is not None or out.recon_is_logits else scale_problem(x)
    if problem is not None:
        notes.append(f"{data_path}: {problem}; pass --standardize")
    _check_device(args.device)
    if recorded is not None:
        notes += _record_changes(checkpoint, recorded, settings)
    return TrainingRun(args, settings, training, data_path, x, x_heldout, model, objective, checkpoint, scaling,
                       selection, notes)


def _check_device(name: str | None) -> None:
    from vaelib.runs import resolve_device

    if name is None or name == "auto":
        return
    try:
        resolve_device(name)
    except ValueError:
        raise ValueError(f"--device {name}: no such device on this machine; use --device cpu, or auto (a GPU when "
                         "there is one)") from None


def _check_resumed_setup(recorded: dict[str, Any], settings: dict[str, Any], selection: dict[str, Any]) -> None:
    """Before the data is read: a resumed run must split, select and scale the data as it did; say
    which flag differs, in the command's terms (the trainer would only see other data)."""
    recorded_data = recorded.get("data", {})
    for key, flag in (("holdout", "--holdout"), ("seed", "--seed"), ("standardize", "--standardize")):
        if key in recorded and recorded[key] != settings[key]:
            was, now = recorded[key], settings[key]
            if key == "standardize":
                raise ValueError(f"--resume: the run was trained {'with' if was else 'without'} --standardize; "
                                 f"resume it {'with' if was else 'without'} it, or start anew with --overwrite")
            raise ValueError(f"--resume: the run was trained with {flag} {was}, now {flag} {now}, which gives other "
                             f"training rows; resume with {flag} {was}, or start anew with --overwrite")
    if recorded_data.get("selection", {}) != selection:
        raise ValueError(f"--resume: the run was trained on the columns {recorded_data.get('selection') or 'all'} "
                         f"(--columns, --drop, --label), now {selection or 'all'}; resume with the same columns")


def _record_changes(checkpoint: Path, recorded: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """A training setting a resumed run may change (the learning rate) is recorded in the
    settings' ``changes``, with the epoch it applies from; returns a note for each change."""
    from vaelib.checkpoint import load_checkpoint

    changes = list(recorded.get("changes", []))
    notes = []
    was, now = recorded.get("training", {}).get("lr"), settings["training"]["lr"]
    if was is not None and was != now:
        done = len(next(iter(load_checkpoint(checkpoint).history.values()), []))
        changes.append({"from_epoch": done + 1, "lr": {"was": was, "now": now}})
        notes.append(f"--lr {now:g} replaces the run's {was:g} from epoch {done + 1}; "
                     f"{_files.settings_path(checkpoint)} records the change under 'changes'")
    if changes:
        settings["changes"] = changes
    return notes


def _check_checkpoint_state(args: argparse.Namespace, checkpoint: Path, data_path: Path) -> None:
    companions = (checkpoint, _files.history_path(checkpoint), _files.settings_path(checkpoint))
    if data_path.exists() and any(p.exists() and p.samefile(data_path) for p in companions):
        raise ValueError(f"--checkpoint {args.checkpoint!r} would overwrite the data file or be written beside "
                         "it under its name; choose another checkpoint name")
    if args.resume and args.overwrite:
        raise ValueError("--resume continues a checkpoint and --overwrite replaces it: give one of them")
    if args.resume and not checkpoint.is_file():
        raise ValueError(f"--resume: there is no checkpoint at {args.checkpoint!r} to continue")
    if checkpoint.exists() and not (args.resume or args.overwrite):
        raise ValueError(f"{args.checkpoint!r} exists; pass --resume to continue that run or --overwrite to "
                         "replace it")


def _terms_text(terms: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.6g}" for name, value in terms.items())
