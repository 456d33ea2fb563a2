"""Command line: ``python -m vaelib reproduce`` re-runs Ko & Ko's experiment (Table 1 and Figure 1).

    python -m vaelib reproduce                      # the full experiment: 10 runs x 200 epochs x 2 objectives
    python -m vaelib reproduce --runs 2 --epochs 5 --out /tmp/quick

Bad arguments print one line, ``vaelib reproduce: error: ...``, and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys

DEFAULT_OUT = "results"


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit with status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number_parser(convert, accepts, expected: str):
    """An argparse type: ``convert`` the text, then require ``accepts(value)``, else say ``expected``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return parse


_positive_int = _number_parser(int, lambda v: v > 0, "a positive integer")
_non_negative_int = _number_parser(int, lambda v: v >= 0, "a non-negative integer")
_positive_float = _number_parser(float, lambda v: 0 < v < float("inf"), "a positive finite number")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m vaelib``; its defaults are those of ``Ko2023Config``."""
    from vaelib.experiments.ko2023 import ENGINES, Ko2023Config
    from vaelib.objectives import ALPHA_RULES, KL_REDUCTIONS

    d = Ko2023Config()
    parser = _OneLineParser(prog="vaelib", description="vaelib's command line.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    rep = commands.add_parser(
        "reproduce", help="re-run Ko & Ko's experiment: Table 1 and Figure 1",
        description="Re-run Ko & Ko's experiment: train a 2-D VAE on the 3-D noisy cosine data with their "
                    "Lagrangian objective (eq. 7) and with the ELBO (eq. 6), several runs each; print Table 1 "
                    "beside the paper's numbers and write table1.json and figure1.png into --out.")
    rep.add_argument("--runs", type=_positive_int, default=d.runs,
                     help=f"runs per objective, each with its own seed (default {d.runs}, as in the paper)")
    rep.add_argument("--epochs", type=_positive_int, default=d.epochs,
                     help=f"training epochs per run (default {d.epochs}, as in the paper)")
    rep.add_argument("--seed", type=_non_negative_int, default=d.seed,
                     help=f"seed of the data set; run i uses seed + i (default {d.seed})")
    rep.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                     help=f"folder for table1.json and figure1.png, created if needed (default {DEFAULT_OUT}/)")
    rep.add_argument("--engine", choices=sorted(ENGINES), default=d.engine,
                     help=f"training engine (default {d.engine})")
    rep.add_argument("--batch-size", type=_positive_int, default=d.batch_size,
                     help=f"minibatch size (default {d.batch_size}, Kingma & Welling's M)")
    rep.add_argument("--lr", type=_positive_float, default=d.lr,
                     help=f"learning rate of Adam, shared by the network and alpha (default {d.lr:g})")
    rep.add_argument("--n-points", type=_positive_int, default=d.n_points,
                     help=f"size of the data set (default {d.n_points:,}, as in the paper)")
    rep.add_argument("--alpha-rule", choices=ALPHA_RULES, default=d.alpha_rule,
                     help=f"how alpha is kept >= 0 or updated (default {d.alpha_rule!r}, the paper's rule)")
    rep.add_argument("--kl-reduction", choices=KL_REDUCTIONS, default=d.kl_reduction,
                     help=f"KL summed over a batch's points (the paper's eqs. 6-7 read literally) or "
                          f"averaged like the reconstruction error (default {d.kl_reduction!r})")
    rep.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return parser


def reproduce(args: argparse.Namespace) -> int:
    """Check every setting and the output folder first, then train (minutes), print and write."""
    from vaelib.experiments import ko2023
    from vaelib.train import TrainingDiverged

    try:
        config = ko2023.Ko2023Config(
            runs=args.runs, epochs=args.epochs, seed=args.seed, engine=args.engine, batch_size=args.batch_size,
            lr=args.lr, n_points=args.n_points, alpha_rule=args.alpha_rule, kl_reduction=args.kl_reduction)
        ko2023.prepare_output_dir(args.out)
    except (ValueError, TypeError, OSError) as exc:
        return _fail(args.command, exc, status=2)
    try:
        result = ko2023.reproduce(config, progress=not args.no_progress)
    except TrainingDiverged as exc:
        return _fail(args.command, exc, status=1)
    paths = result.save(args.out)
    print(result.table())
    print(f"\ntrained {2 * config.runs} runs in {result.seconds:.0f} s with the {config.engine!r} engine; "
          f"wrote {paths['table']} and {paths['figure']}")
    return 0


def _fail(command: str, exc: BaseException, status: int) -> int:
    message = " ".join(str(exc).split())
    print(f"vaelib {command}: error: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]) and run the command; return the exit status."""
    import matplotlib

    matplotlib.use("Agg")  # figures go to files; no display needed
    args = build_parser().parse_args(argv)
    return reproduce(args)


if __name__ == "__main__":
    sys.exit(main())
