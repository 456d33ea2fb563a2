"""``python -m vaelib train``: train a model on your own data file (.npy, .csv or IDX).

Settings come in three layers, each overriding the one before: the defaults (those of the model's
class, of the objective and of ``vaelib.TrainingSettings``), a TOML file (``--config``, see
``CONFIG_EXAMPLE``), the command line. With ``--resume`` the settings recorded beside the checkpoint
come first, so the same data and the same checkpoint are all that a resumed run needs.

This module is the command (its parser and ``run``); the layered settings are read in
``vaelib.cli._train_settings``, and ``vaelib.cli._train_run`` checks, trains, records and reports.
"""
from __future__ import annotations

import argparse

from vaelib.cli import add_allow_large_flag, add_import_flag, _data, fail, positive_float, positive_int, seed
from vaelib.cli._catalogue import catalogue
from vaelib.cli._train_settings import DEFAULT_MODEL, PRESET_HELP, PRESETS

CONFIG_EXAMPLE = """\
seed = 0
holdout = 0.1            # fraction of the rows held out, scored after every epoch
standardize = true       # each column to mean 0, std 1 on the training rows (kept in the checkpoint)

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
  python -m vaelib train data.csv --checkpoint run.ckpt --standardize --label species --drop id
  python -m vaelib train data.csv --checkpoint g.ckpt --standardize --objective geco --objective-arg kappa_fraction=0.5
  python -m vaelib train data.csv --checkpoint ae.ckpt --model autoencoder --hidden 64 32 --latent-dim 4
  python -m vaelib train digits.npy --checkpoint bvae.ckpt --decoder bernoulli --objective-arg beta=4
  python -m vaelib train data.csv --checkpoint run.ckpt --resume --epochs 100     # 50 more epochs
  python -m vaelib train data.csv --checkpoint run.ckpt --config run.toml --tensorboard tb/

Writes run.ckpt, run.history.csv (loss terms per epoch, held-out ones too) and run.settings.json.

a --config file (TOML) holds the same settings as the flags:
""" + "\n".join(f"  {line}".rstrip() for line in CONFIG_EXAMPLE.splitlines())


def add_parser(commands) -> argparse.ArgumentParser:
    known = catalogue()  # vaelib's objectives, optimisers, models and TrainingSettings' defaults, without torch
    defaults = argparse.Namespace(**known["training"])
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
                        help=f"one of {', '.join(known['tabular_models'])} (default {DEFAULT_MODEL})")
    models.add_argument("--latent-dim", type=positive_int, metavar="N",
                        help="size of the code (a VAE's default 2 can be plotted; wider data often needs more: "
                             "train warns when dimensions go unused)")
    models.add_argument("--hidden", type=positive_int, nargs="*", metavar="N",
                        help="hidden layer sizes of the encoder (the decoder mirrors them); none: linear")
    models.add_argument("--activation", metavar="NAME", help="activation function, e.g. ptanh, relu, elu")
    models.add_argument("--decoder", metavar="KIND", help="a VAE's decoder: gaussian or bernoulli (data in [0, 1])")
    models.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="any other argument of the model's constructor, e.g. noise_std=0.3 (repeatable)")
    objectives = cmd.add_argument_group("objective")
    objectives.add_argument("--objective", metavar="NAME", dest="objective_name",
                            help=f"one of {', '.join(known['objectives'])} (default: elbo for a VAE, reconstruction "
                                 "otherwise)")
    objectives.add_argument("--objective-arg", action="append", default=[], metavar="KEY=VALUE",
                            help="a setting of the objective, e.g. beta=4 or delta=0.1 (repeatable). GECO's kappa "
                                 "is in the units of the reconstruction term: the squared error summed over the "
                                 "columns, per point (standardised units with --standardize); its default 0.05 "
                                 "suits the book's 3-D data, not yours. kappa_fraction=F sets kappa = F·V, V the "
                                 "data's variance summed over the columns (the error of predicting each column's "
                                 "mean: 13 for 13 standardised columns), and reads GECO's rate per unit of V, so "
                                 "that alpha moves as fast on any scale")
    training = cmd.add_argument_group("training")
    training.add_argument("--preset", choices=PRESETS, help=PRESET_HELP)
    training.add_argument("--epochs", type=positive_int,
                          help=f"total epochs (default {defaults.epochs}, sized for the book's 3-D toy data; a data "
                               "set of your own usually needs more: --preset tabular sizes them by the data, or give many "
                               "with --holdout and --patience, which stops at the best epoch)")
    training.add_argument("--batch-size", type=positive_int,
                          help=f"minibatch size (default {defaults.batch_size})")
    training.add_argument("--lr", type=positive_float, help=f"learning rate (default {defaults.lr:g})")
    training.add_argument("--optimizer", choices=known["optimizers"],
                          help=f"optimiser (default {defaults.optimizer})")
    training.add_argument("--seed", type=seed,
                          help="seed of the initial weights, the data order, the noise and the split (default 0)")
    training.add_argument("--holdout", type=holdout_fraction, metavar="FRACTION",
                          help="fraction of the rows held out of training and scored every epoch (default 0)")
    training.add_argument("--patience", type=positive_int, metavar="N",
                          help="stop when the held-out loss has not improved for N epochs and keep the best "
                               "epoch's weights (needs --holdout; default: train every epoch)")
    training.add_argument("--lr-schedule", choices=known["lr_schedules"],
                          help="cosine: the learning rate falls to 0 over the epochs (CosineAnnealingLR); plateau: "
                               "divided by 10 after 10 epochs without improvement of the held-out (else training) "
                               "loss (ReduceLROnPlateau); default: constant. A run with one cannot be resumed")
    training.add_argument("--device", metavar="NAME",
                          help="cpu, cuda, cuda:1, ... or auto (cuda when there is one); default cpu")
    training.add_argument("--standardize", action="store_true", default=None,
                          help="standardise each column (mean 0, std 1 on the training rows); the scaling is "
                               "kept in the checkpoint, and sample, encode and evaluate apply or invert it")
    training.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard event files into DIR")
    training.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    _data.add_column_flags(cmd)
    add_import_flag(cmd)
    add_allow_large_flag(cmd, "train")
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
    from vaelib.cli._train_run import prepare
    from vaelib.runs import TrainingDiverged

    try:
        training_run = prepare(args)
    except (ValueError, TypeError, OSError) as exc:
        return fail(args.command, exc, status=2)
    warn(args.command, training_run.notes)
    try:
        history = training_run.train(progress=not args.no_progress)
    except TrainingDiverged as exc:
        return fail(args.command, exc, status=1)
    except (ValueError, TypeError, OSError) as exc:
        return fail(args.command, exc, status=2)
    training_run.report(history)
    warn(args.command, training_run.findings(history))
    return 0


def warn(command: str, messages: list[str]) -> None:
    """Each message as one line on stderr: ``vaelib COMMAND: warning: ...``."""
    import sys

    for message in messages:
        print(f"vaelib {command}: warning: {' '.join(message.split())}", file=sys.stderr)
