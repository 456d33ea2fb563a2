"""``python -m vaelib train``: train a model on your own data file (.npy, .csv or IDX).

Settings come in three layers, each overriding the one before: the defaults (those of the model's
class, of the objective and of ``vaelib.fit``), a TOML file (``--config``, see ``CONFIG_EXAMPLE``),
the command line. With ``--resume`` the settings recorded beside the checkpoint come first, so the
same data and the same checkpoint are all that a resumed run needs.
"""
from __future__ import annotations

import argparse
import inspect
import tomllib
from pathlib import Path

from vaelib.cli import _files, fail, positive_float, positive_int, seed

SECTIONS = ("model", "objective", "training")
TOP_LEVEL = ("seed", "holdout")
TRAINING = ("epochs", "batch_size", "lr", "optimizer")
DEFAULT_MODEL = "vae"
CONFIG_EXAMPLE = """\
seed = 0
holdout = 0.1            # fraction of the rows held out, scored after every epoch

[model]
name = "vae"             # a model that takes rows of numbers: vae, autoencoder, ...
latent_dim = 2           # any argument of the model's constructor but in_dim (the data's width)
hidden = [32]
decoder = "gaussian"

[objective]
name = "elbo"            # a name from vaelib.objectives.OBJECTIVES
beta = 1.0               # any setting of that objective

[training]               # epochs, batch_size, lr, optimizer
epochs = 50
lr = 0.001"""
EXAMPLE = """examples:
  python -m vaelib train data.csv --checkpoint run.ckpt --epochs 50 --holdout 0.1
  python -m vaelib train data.csv --checkpoint ae.ckpt --model autoencoder --hidden 64 32 --latent-dim 4
  python -m vaelib train digits.npy --checkpoint bvae.ckpt --decoder bernoulli --objective-arg beta=4
  python -m vaelib train data.csv --checkpoint run.ckpt --resume --epochs 100     # 50 more epochs
  python -m vaelib train data.csv --checkpoint run.ckpt --config run.toml --tensorboard tb/

Writes run.ckpt, run.history.csv (loss terms per epoch, held-out ones too) and run.settings.json.

a --config file (TOML) holds the same settings as the flags:
""" + "\n".join(f"  {line}".rstrip() for line in CONFIG_EXAMPLE.splitlines())


# Registered models this command cannot train from a file and an objective's name alone: the CVAE
# needs a label appended to every row (vaelib.append_labels), the AAE its adversarial objective
# (vaelib.adversarial.AdversarialRegularizer, which owns a discriminator): train them from Python.
NOT_FROM_FILES = frozenset({"CVAE", "AAE"})


def tabular_models() -> dict[str, type]:
    """The registered model classes that take ``in_dim`` (rows of numbers), by lower-case name."""
    from vaelib.models import registered_models

    return {name.lower(): cls for name, cls in registered_models().items()
            if "in_dim" in inspect.signature(cls.__init__).parameters and name not in NOT_FROM_FILES}


def add_parser(commands) -> argparse.ArgumentParser:
    from vaelib.objectives import OBJECTIVES
    from vaelib.runs import OPTIMIZERS
    from vaelib.train import fit

    fit_defaults = {name: p.default for name, p in inspect.signature(fit).parameters.items()}
    cmd = commands.add_parser(
        "train", help="train a model on your own data file (.npy, .csv or IDX)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an autoencoder or a VAE on the rows of a data file and save a checkpoint, with\n"
                    "the history beside it. A CSV file holds one point per line, numbers separated by\n"
                    "commas; its first line is a header (and skipped) when one of its fields is text that\n"
                    "is not a number. Settings: the defaults, then --config FILE.toml, then the flags.",
        epilog=EXAMPLE)
    cmd.add_argument("data", help="the data: .npy, .csv, or IDX (.idx, *-ubyte, optionally .gz); one row a point")
    cmd.add_argument("--checkpoint", required=True, metavar="PATH",
                     help="the checkpoint file to write (refused if it exists, unless --resume or --overwrite)")
    cmd.add_argument("--resume", action="store_true",
                     help="continue the run saved in --checkpoint (same data; --epochs is the new total)")
    cmd.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint with a new run")
    cmd.add_argument("--config", metavar="FILE.toml", help="settings in a TOML file; flags override them")
    models = cmd.add_argument_group("model (defaults: those of the model's class)")
    models.add_argument("--model", metavar="NAME", dest="model_name",
                        help=f"one of {', '.join(sorted(tabular_models()))} (default {DEFAULT_MODEL})")
    models.add_argument("--latent-dim", type=positive_int, metavar="N", help="size of the code")
    models.add_argument("--hidden", type=positive_int, nargs="*", metavar="N",
                        help="hidden layer sizes of the encoder (the decoder mirrors them); none: linear")
    models.add_argument("--activation", metavar="NAME", help="activation function, e.g. ptanh, relu, elu")
    models.add_argument("--decoder", metavar="KIND", help="a VAE's decoder: gaussian or bernoulli (data in [0, 1])")
    models.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="any other argument of the model's constructor, e.g. noise_std=0.3 (repeatable)")
    objectives = cmd.add_argument_group("objective")
    objectives.add_argument("--objective", metavar="NAME", dest="objective_name",
                            help=f"one of {', '.join(OBJECTIVES)} (default: elbo for a VAE, reconstruction "
                                 "otherwise)")
    objectives.add_argument("--objective-arg", action="append", default=[], metavar="KEY=VALUE",
                            help="a setting of the objective, e.g. beta=4 or delta=0.1 (repeatable)")
    training = cmd.add_argument_group("training")
    training.add_argument("--epochs", type=positive_int, help=f"total epochs (default {fit_defaults['epochs']})")
    training.add_argument("--batch-size", type=positive_int,
                          help=f"minibatch size (default {fit_defaults['batch_size']})")
    training.add_argument("--lr", type=positive_float, help=f"learning rate (default {fit_defaults['lr']:g})")
    training.add_argument("--optimizer", choices=sorted(OPTIMIZERS),
                          help=f"optimiser (default {fit_defaults['optimizer']})")
    training.add_argument("--seed", type=seed,
                          help="seed of the initial weights, the data order, the noise and the split (default 0)")
    training.add_argument("--holdout", type=holdout_fraction, metavar="FRACTION",
                          help="fraction of the rows held out of training and scored every epoch (default 0)")
    training.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard event files into DIR")
    training.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return cmd


def holdout_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    """Check everything that can be checked before training, then train, save and report."""
    from vaelib.runs import TrainingDiverged

    try:
        plan = prepare(args)
    except (ValueError, TypeError, OSError) as exc:
        return fail(args.command, exc, status=2)
    try:
        history = plan.train(progress=not args.no_progress)
    except TrainingDiverged as exc:
        return fail(args.command, exc, status=1)
    except (ValueError, TypeError, OSError) as exc:
        return fail(args.command, exc, status=2)
    plan.report(history)
    return 0


# ----------------------------------------------------------------------------------------------
# Settings: defaults < recorded (--resume) < --config < flags


def resolve_settings(args: argparse.Namespace, recorded: dict | None) -> dict:
    """The run's settings as one dict: ``seed``, ``holdout`` and the three sections."""
    settings = {"seed": 0, "holdout": 0.0, "model": {}, "objective": {}, "training": {}}
    if recorded is not None:
        merge(settings, {key: recorded[key] for key in (*TOP_LEVEL, *SECTIONS) if key in recorded})
    if args.config is not None:
        merge(settings, read_config(args.config))
    merge(settings, flag_settings(args))
    return settings


def merge(settings: dict, layer: dict) -> None:
    for key, value in layer.items():
        if key in SECTIONS:
            settings[key].update(value)
        else:
            settings[key] = value


def read_config(path_text: str) -> dict:
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


def flag_settings(args: argparse.Namespace) -> dict:
    """The settings given on the command line (flags left out are absent, not None)."""
    model = {"name": args.model_name, "latent_dim": args.latent_dim, "hidden": args.hidden,
             "activation": args.activation, "decoder": args.decoder}
    model.update(key_values("--model-arg", args.model_arg))
    objective = {"name": args.objective_name, **key_values("--objective-arg", args.objective_arg)}
    training = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer}
    layer = {"seed": args.seed, "holdout": args.holdout, "model": model, "objective": objective,
             "training": training}
    return {key: ({k: v for k, v in value.items() if v is not None} if key in SECTIONS else value)
            for key, value in layer.items() if value is not None}


def key_values(flag: str, items: list[str]) -> dict:
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


def model_class(settings: dict) -> type:
    name = str(settings["model"].get("name", DEFAULT_MODEL))
    models = tabular_models()
    if name.lower() not in models:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(models))}")
    return models[name.lower()]


def model_arguments(cls: type, settings: dict) -> dict:
    arguments = {k: v for k, v in settings["model"].items() if k != "name"}
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "in_dim")]
    if "in_dim" in arguments:
        raise ValueError("in_dim is not a setting: it is the number of columns of the data")
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise ValueError(f"model {cls.__name__.lower()!r} has no setting {', '.join(map(repr, unknown))}; its "
                         f"settings are {', '.join(accepted)}")
    return arguments


# ----------------------------------------------------------------------------------------------
# The run


class Plan:
    """A checked run: data, model, objective and files, ready to train."""

    def __init__(self, args, settings, data_path, x_train, x_heldout, model, objective, checkpoint):
        self.args, self.settings, self.data_path = args, settings, data_path
        self.x_train, self.x_heldout, self.model, self.objective = x_train, x_heldout, model, objective
        self.checkpoint = checkpoint
        self.history_file = _files.history_path(checkpoint)
        self.rows: list[dict] = []
        self.settings_saved = False

    def train(self, progress: bool):
        from vaelib.train import fit

        resume = self.args.resume
        if resume:
            self.rows = self._previous_rows()
        writer = self._tensorboard()
        try:
            return fit(self.model, self.objective, self.x_train, **self.settings["training"],
                       seed=self.settings["seed"], progress=progress, on_epoch_end=self._epoch_end(writer),
                       checkpoint=self.checkpoint, resume_from=self.checkpoint if resume else None,
                       overwrite=self.args.overwrite)
        finally:
            if writer is not None:
                writer.close()

    def report(self, history) -> None:
        final = history.final()
        model = self.model
        print(f"trained {type(model).__name__} {model.init_args} with {self.settings['objective']['name']!r} "
              f"for {len(history)} epochs on {len(self.x_train)} rows of {self.data_path}")
        print("last epoch:     " + _terms_text(final))
        if self.x_heldout is not None:
            heldout = {k[len("heldout_"):]: v for k, v in self.rows[-1].items() if k.startswith("heldout_")}
            print(f"held out ({len(self.x_heldout)} rows): " + _terms_text(heldout))
        print(f"wrote {self.checkpoint}, {self.history_file} and {_files.settings_path(self.checkpoint)}")

    def _epoch_end(self, writer):
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

    def _previous_rows(self) -> list[dict]:
        """The history so far: the checkpoint's terms, with the held-out ones from the old CSV."""
        from vaelib.checkpoint import load_checkpoint

        terms = load_checkpoint(self.checkpoint).history
        epochs = len(next(iter(terms.values()), []))
        columns, old = [], {}
        if self.history_file.is_file():
            columns, rows = _files.read_table(self.history_file)
            old = {int(row["epoch"]): row for row in rows if "epoch" in row}
        names = sorted(terms, key=lambda name: columns.index(name) if name in columns else len(columns))
        rows = []
        for i in range(epochs):
            heldout = {k: v for k, v in old.get(i + 1, {}).items() if k.startswith("heldout_")}
            rows.append({"epoch": i + 1, **{name: terms[name][i] for name in names}, **heldout})
        return rows

    def _recorded_settings(self) -> dict:
        return {"format": _files.SETTINGS_FORMAT,
                "data": {"path": str(self.data_path),
                         "rows": len(self.x_train) + (0 if self.x_heldout is None else len(self.x_heldout)),
                         "columns": self.x_train.shape[1]},
                **self.settings}

    def _tensorboard(self):
        if self.args.tensorboard is None:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ValueError(f"--tensorboard needs the tensorboard package ({exc}); pip install tensorboard") from exc
        return SummaryWriter(log_dir=self.args.tensorboard)


def prepare(args: argparse.Namespace) -> Plan:
    """Every check that needs no training: files, settings, data, model and objective together."""
    import torch

    import vaelib
    from vaelib.data import load_array, split_indices
    from vaelib.objectives import make_objective
    from vaelib.train import fit

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
    unknown = sorted(set(settings["training"]) - set(TRAINING))
    if unknown:
        raise ValueError(f"unknown training setting {', '.join(map(repr, unknown))}; the settings are "
                         f"{', '.join(TRAINING)}")
    fit_defaults = {name: p.default for name, p in inspect.signature(fit).parameters.items()}
    settings["training"] = {key: settings["training"].get(key, fit_defaults[key]) for key in TRAINING}
    return Plan(args, settings, data_path, x, x_heldout, model, objective, checkpoint)


def _check_checkpoint_state(args, checkpoint: Path, data_path: Path) -> None:
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
