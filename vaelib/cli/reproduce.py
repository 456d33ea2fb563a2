"""``python -m vaelib reproduce``: re-run Ko & Ko's experiment (Table 1 and Figure 1).

    python -m vaelib reproduce                      # the full experiment: 10 runs x 200 epochs x 2 objectives
    python -m vaelib reproduce --runs 2 --epochs 5 --out /tmp/quick
"""
from __future__ import annotations

import argparse

from vaelib.cli import fail, non_negative_int, positive_float, positive_int

DEFAULT_OUT = "results"


def add_parser(commands) -> argparse.ArgumentParser:
    """The sub-parser; its defaults are those of ``Ko2023Config``."""
    from vaelib.experiments.ko2023 import ENGINES, Ko2023Config
    from vaelib.objectives import ALPHA_RULES, KL_REDUCTIONS

    d = Ko2023Config()
    rep = commands.add_parser(
        "reproduce", help="re-run Ko & Ko's experiment: Table 1 and Figure 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Re-run Ko & Ko's experiment: train a 2-D VAE on the 3-D noisy cosine data with their "
                    "Lagrangian objective (eq. 7) and with the ELBO (eq. 6), several runs each; print Table 1 "
                    "beside the paper's numbers and write table1.json and figure1.png into --out.",
        epilog="example:\n  python -m vaelib reproduce --runs 2 --epochs 5 --out /tmp/quick")
    rep.add_argument("--runs", type=positive_int, default=d.runs,
                     help=f"runs per objective, each with its own seed (default {d.runs}, as in the paper)")
    rep.add_argument("--epochs", type=positive_int, default=d.epochs,
                     help=f"training epochs per run (default {d.epochs}, as in the paper)")
    rep.add_argument("--seed", type=non_negative_int, default=d.seed,
                     help=f"seed of the data set; run i uses seed + i (default {d.seed})")
    rep.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                     help=f"folder for table1.json and figure1.png, created if needed (default {DEFAULT_OUT}/)")
    rep.add_argument("--engine", choices=sorted(ENGINES), default=d.engine,
                     help=f"training engine (default {d.engine})")
    rep.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                     help=f"minibatch size (default {d.batch_size}, Kingma & Welling's M)")
    rep.add_argument("--lr", type=positive_float, default=d.lr,
                     help=f"learning rate of Adam, shared by the network and alpha (default {d.lr:g})")
    rep.add_argument("--n-points", type=positive_int, default=d.n_points,
                     help=f"size of the data set (default {d.n_points:,}, as in the paper)")
    rep.add_argument("--alpha-rule", choices=ALPHA_RULES, default=d.alpha_rule,
                     help=f"how alpha is kept >= 0 or updated (default {d.alpha_rule!r}, the paper's rule)")
    rep.add_argument("--kl-reduction", choices=KL_REDUCTIONS, default=d.kl_reduction,
                     help=f"KL summed over a batch's points (the paper's eqs. 6-7 read literally) or "
                          f"averaged like the reconstruction error (default {d.kl_reduction!r})")
    rep.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return rep


def run(args: argparse.Namespace) -> int:
    """Check every setting and the output folder first, then train (minutes), print and write."""
    from vaelib.experiments import ko2023
    from vaelib.train import TrainingDiverged

    try:
        config = ko2023.Ko2023Config(
            runs=args.runs, epochs=args.epochs, seed=args.seed, engine=args.engine, batch_size=args.batch_size,
            lr=args.lr, n_points=args.n_points, alpha_rule=args.alpha_rule, kl_reduction=args.kl_reduction)
        ko2023.prepare_output_dir(args.out)
    except (ValueError, TypeError, OSError) as exc:
        return fail(args.command, exc, status=2)
    try:
        result = ko2023.reproduce(config, progress=not args.no_progress)
    except TrainingDiverged as exc:
        return fail(args.command, exc, status=1)
    paths = result.save(args.out)
    print(result.table())
    print()
    print(result.sample_quality_table())
    print(f"\ntrained {2 * config.runs} runs in {result.seconds:.0f} s with the {config.engine!r} engine; "
          f"wrote {paths['table']} and {paths['figure']}")
    return 0
