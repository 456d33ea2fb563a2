"""``python -m vaelib reproduce``: re-run Ko & Ko's experiment (Table 1 and Figure 1).

    python -m vaelib reproduce                      # the full experiment: 10 runs x 200 epochs x 2 objectives
    python -m vaelib reproduce --runs 2 --epochs 5 --out /tmp/quick
    python -m vaelib reproduce --resume             # continue one that was interrupted (Ctrl-C, a crash)

While it trains, the training state is kept in OUT/reproduce-state (every few epochs), so that an
interrupted reproduction continues with ``--resume`` and ends exactly as an uninterrupted one would;
the folder is removed once table1.json and figure1.png are written.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vaelib.cli import fail, non_negative_int, positive_float, positive_int
from vaelib.cli._catalogue import catalogue

DEFAULT_OUT = "results"
STATE_DIR = "reproduce-state"


def add_parser(commands) -> argparse.ArgumentParser:
    """The sub-parser; its defaults are those of ``Ko2023Config`` (from ``_catalogue``: no torch)."""
    known = catalogue()
    d = argparse.Namespace(**known["ko2023"])
    RUNNERS, ALPHA_RULES, KL_REDUCTIONS = known["runners"], known["alpha_rules"], known["kl_reductions"]
    rep = commands.add_parser(
        "reproduce", help="re-run Ko & Ko's experiment: Table 1 and Figure 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Re-run Ko & Ko's experiment: train a 2-D VAE on the 3-D noisy cosine data with their "
                    "Lagrangian objective (eq. K7) and with the ELBO (the paper's eq. 6), several runs each; print "
                    "Table 1 beside the paper's numbers and write table1.json and figure1.png into --out (an "
                    "earlier pair is kept unless --overwrite).",
        epilog="examples:\n  python -m vaelib reproduce --runs 2 --epochs 5 --out /tmp/quick\n"
               "  python -m vaelib reproduce --runs 2 --epochs 5 --out /tmp/quick --resume   # after Ctrl-C")
    rep.add_argument("--runs", type=positive_int, default=d.runs,
                     help=f"runs per objective, each with its own seed (default {d.runs}, as in the paper)")
    rep.add_argument("--epochs", type=positive_int, default=d.epochs,
                     help=f"training epochs per run (default {d.epochs}, as in the paper)")
    rep.add_argument("--seed", type=non_negative_int, default=d.seed,
                     help=f"seed of the data set; run i uses seed + i (default {d.seed})")
    rep.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                     help=f"folder for table1.json and figure1.png, created if needed (default {DEFAULT_OUT}/)")
    rep.add_argument("--runner", choices=sorted(RUNNERS), default=d.runner,
                     help=f"how the runs are trained: all at once (batched, vaelib.fit_batched) or one after "
                          f"the other (loop, vaelib.fit) (default {d.runner})")
    # --engine: the former name of --runner, still accepted (not shown in --help)
    rep.add_argument("--engine", choices=sorted(RUNNERS), dest="runner", help=argparse.SUPPRESS)
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
    rep.add_argument("--resume", action="store_true",
                     help=f"continue the reproduction interrupted in --out (its state is in OUT/{STATE_DIR}; the "
                          "same settings are needed); starts from the beginning if nothing was saved")
    rep.add_argument("--overwrite", action="store_true",
                     help="replace a table1.json and figure1.png already in --out (refused without it)")
    rep.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return rep


def run(args: argparse.Namespace) -> int:
    """Check every setting, the memory needed and the output folder first, then train (minutes),
    write the results as one group and print them. Errors are one line: 2 for bad input (also a
    full disk, naming the file), 1 when training diverged, 130 when interrupted."""
    from vaelib.experiments import ko2023
    from vaelib.runs import TrainingDiverged

    try:
        config = ko2023.Ko2023Config(
            runs=args.runs, epochs=args.epochs, seed=args.seed, runner=args.runner, batch_size=args.batch_size,
            lr=args.lr, n_points=args.n_points, alpha_rule=args.alpha_rule, kl_reduction=args.kl_reduction)
        ko2023.check_feasible(config)
        out = ko2023.prepare_output_dir(args.out)
        earlier = [name for name in ko2023.RESULT_FILES if (out / name).exists()]
        if earlier and not args.overwrite and not (args.resume and _holds_state(out / STATE_DIR)):
            raise FileExistsError(f"{out} already holds {' and '.join(earlier)} from an earlier reproduction; pass "
                                  "--overwrite to replace them, or give another --out")
    except (ValueError, TypeError, OSError) as exc:
        return fail(args.command, exc, status=2)
    state = out / STATE_DIR
    try:
        result = ko2023.reproduce(config, progress=not args.no_progress, state_dir=state, resume=args.resume)
        paths = result.save(out)
        ko2023.discard_state(state)
    except TrainingDiverged as exc:
        ko2023.discard_state(state)  # resuming would diverge again: the same settings are required
        return fail(args.command, exc, status=1)
    except KeyboardInterrupt:
        saved = "its training state is saved in" if _holds_state(state) else "nothing was saved yet in"
        return fail(args.command, f"interrupted; {saved} {state}: run the same command with --resume to continue",
                    status=130)
    except (ValueError, TypeError, OSError, MemoryError) as exc:
        return fail(args.command, exc if str(exc) else type(exc).__name__, status=2)
    print(result.table())
    print()
    print(result.sample_quality_table())
    print(f"\ntrained {2 * config.runs} runs in {result.seconds:.0f} s with the {config.runner!r} runner; "
          f"wrote {paths['table']} and {paths['figure']}")
    return 0


def _holds_state(state: Path) -> bool:
    return state.is_dir() and any(path.suffix == ".ckpt" for path in state.iterdir())
