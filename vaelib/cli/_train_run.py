"""A checked run of ``python -m vaelib train``: ``prepare(args)`` does every check that needs no
training (files, settings, data, model and objective together) and returns a ``TrainingRun``,
which trains (``vaelib.fit``), records each epoch beside the checkpoint (``run.history.csv``, the
held-out terms, ``run.settings.json``, TensorBoard events) and reports.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelib.cli import _files
from vaelib.cli._train_settings import model_arguments, model_class, resolve_settings, training_settings
from vaelib.objectives import Objective
from vaelib.runs import History, TrainingSettings


class TrainingRun:
    """A checked run: data, model, objective, training settings and files, ready to train."""

    def __init__(self, args: argparse.Namespace, settings: dict[str, Any], training: TrainingSettings, data_path: Path,
                 x_train: torch.Tensor, x_heldout: torch.Tensor | None, model: nn.Module, objective: Objective,
                 checkpoint: Path):
        self.args, self.settings, self.training, self.data_path = args, settings, training, data_path
        self.x_train, self.x_heldout, self.model, self.objective = x_train, x_heldout, model, objective
        self.checkpoint = checkpoint
        self.history_file = _files.history_path(checkpoint)
        self.rows: list[dict[str, Any]] = []
        self.settings_saved = False

    def train(self, progress: bool) -> History:
        from vaelib.train import fit

        resume = self.args.resume
        if resume:
            self.rows = self._previous_rows()
        writer = self._tensorboard()
        try:
            return fit(self.model, self.objective, self.x_train, self.training, progress=progress,
                       on_epoch_end=self._epoch_end(writer), checkpoint=self.checkpoint,
                       resume_from=self.checkpoint if resume else None, overwrite=self.args.overwrite)
        finally:
            if writer is not None:
                writer.close()

    def report(self, history: History) -> None:
        final = history.final()
        model = self.model
        print(f"trained {type(model).__name__} {model.init_args} with {self.settings['objective']['name']!r} "
              f"for {len(history)} epochs on {len(self.x_train)} rows of {self.data_path}")
        print("last epoch:     " + _terms_text(final))
        if self.x_heldout is not None:
            heldout = {k[len("heldout_"):]: v for k, v in self.rows[-1].items() if k.startswith("heldout_")}
            print(f"held out ({len(self.x_heldout)} rows): " + _terms_text(heldout))
        print(f"wrote {self.checkpoint}, {self.history_file} and {_files.settings_path(self.checkpoint)}")

    def _epoch_end(self, writer: Any) -> Callable[[int, dict[str, float]], None]:
        def on_epoch_end(epoch: int, means: dict[str, float]) -> None:
            row = {"epoch": epoch + 1, **means}
            if self.x_heldout is not None:
                row.update({f"heldout_{k}": v for k, v in self._heldout_terms().items()})
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

    def _heldout_terms(self) -> dict[str, float]:
        """The objective's terms on the held-out rows, in evaluation mode, with noise drawn from a
        generator seeded by the run's seed: the training's own random stream is not touched."""
        import torch

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.settings["seed"])
                terms = self.objective(self.x_heldout, self.model(self.x_heldout))
        finally:
            self.model.train(was_training)
        return {name: value.item() for name, value in terms.items()}

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
                         "columns": self.x_train.shape[1]},
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
    from vaelib.data import load_array, split_indices
    from vaelib.objectives import make_objective

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
    if args.tensorboard is not None and Path(args.tensorboard).exists() and not Path(args.tensorboard).is_dir():
        raise ValueError(f"--tensorboard {args.tensorboard!r} is a file; give a folder")

    x = load_array(data_path)
    x_heldout = None
    if holdout > 0:
        train_rows, heldout_rows = split_indices(len(x), holdout, seed=run_seed)
        x, x_heldout = x[train_rows], x[heldout_rows]

    cls = model_class(settings)
    vaelib.seed_everything(run_seed)  # the initial weights
    model = cls(in_dim=x.shape[1], **model_arguments(cls, settings))
    recorded_args = {key: value for key, value in model.init_args.items() if key != "in_dim"}
    settings["model"] = {"name": cls.__name__.lower(), **recorded_args}
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        out = model(x[:2])
    objective_settings = dict(settings["objective"])
    name = objective_settings.pop("name", "elbo" if out.mu is not None else "reconstruction")
    settings["objective"]["name"] = name
    objective = make_objective(name, **objective_settings)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        objective(x[:2], model(x[:2]))  # a model and an objective that do not fit fail here, not mid-run
    if out.recon_is_logits and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"a Bernoulli decoder needs data in [0, 1], but {data_path} ranges over "
                         f"[{x.min().item():g}, {x.max().item():g}]; rescale the data (8-bit images: divide by "
                         "255) or use --decoder gaussian")
    training = training_settings(settings)
    return TrainingRun(args, settings, training, data_path, x, x_heldout, model, objective, checkpoint)


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
