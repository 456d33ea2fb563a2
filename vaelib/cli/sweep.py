"""``python -m vaelib sweep``: a grid of experiments from a TOML file, on a Dask cluster, resumable.

    python -m vaelib sweep sweep.toml --out results/sweep            # a LocalCluster, one worker per core
    python -m vaelib sweep sweep.toml --out results/sweep --scheduler tcp://10.0.0.5:8786
"""
from __future__ import annotations

import argparse

from vaelib.cli import add_allow_large_flag, fail, positive_int
from vaelib.cli.train import holdout_fraction

EXAMPLE_SPEC = """\
  # sweep.toml: the ELBO against GECO, 5 seeds each, and eq. K7 over three deltas (25 runs)
  [data]
  n = 2000                     # the noisy cosine surface; or file = "points.npy" (.npy or .csv)
  [model]
  class = "VAE"
  latent_dim = 2
  hidden = [32]
  [training]
  epochs = 50
  batch_size = 100
  lr = 1e-3
  [evaluation]
  metrics = ["recon", "kl", "mmd2"]
  [axes]
  seed = [0, 1, 2, 3, 4]
  objective = ["elbo", "geco", "ko"]
  delta = [0.01, 0.1, 1.0]     # a setting of "ko": the other objectives do not repeat over it
"""


def add_parser(commands) -> argparse.ArgumentParser:
    sweep = commands.add_parser(
        "sweep", help="run a grid of experiments from a TOML file on a Dask cluster, resumably",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train every combination of the axes in SPEC (a TOML file: a base experiment and the "
                    "settings to vary), in chunks that each train as one batched computation, on a Dask "
                    "LocalCluster or an existing cluster. Each finished chunk is saved in --out at once; run "
                    "the same command again to continue an interrupted sweep. At the end: runs.csv/.json (one "
                    "row per run) and summary.csv/.json (mean ± std over seeds). The file format is documented "
                    "in the book: 'Running larger experiments', section 'The sweep file format'.",
        epilog=f"example:\n{EXAMPLE_SPEC}\n  python -m vaelib sweep sweep.toml --out results/sweep --workers 2")
    sweep.add_argument("spec", metavar="SPEC.toml", help="the sweep file")
    sweep.add_argument("--out", required=True, metavar="DIR",
                       help="folder for the results, created if needed; chunks already in it are not retrained")
    sweep.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of an existing Dask scheduler (tcp://HOST:PORT); default: a LocalCluster")
    sweep.add_argument("--workers", type=positive_int, metavar="N",
                       help="worker processes of the LocalCluster, one thread each (default: one per core)")
    sweep.add_argument("--chunk-size", type=positive_int, metavar="K",
                       help="runs per chunk, trained as one batched computation (default: about four chunks per "
                            "worker, at most 64 runs)")
    sweep.add_argument("--keep-models", action="store_true",
                       help="also save each run's weights as a checkpoint, DIR/models/RUN.ckpt (RUN: the table's "
                            "run column), for sample, encode, evaluate and export; a run done without one is "
                            "trained again")
    sweep.add_argument("--holdout", type=holdout_fraction, metavar="FRACTION",
                       help="hold this fraction of the rows out of training (one split, seed 0, for every run) "
                            "and score them: heldout_recon and heldout_kl columns (sets [evaluation] holdout; "
                            "the runs differ from those without it)")
    add_allow_large_flag(sweep, "run a sweep")
    sweep.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return sweep


def run(args: argparse.Namespace) -> int:
    """Check the spec and the output folder, then train, print the summary and say what was written."""
    from vaelib import limits, sweep

    if args.scheduler is not None and args.workers is not None:
        return fail(args.command, "--workers sizes the local cluster; with --scheduler the cluster's own "
                                  "workers run the sweep: give one or the other", status=2)
    try:
        spec = sweep.load_spec(args.spec, holdout=args.holdout)
    except (sweep.SpecError, limits.TooLarge) as exc:
        return fail(args.command, exc, status=2)
    try:
        result = sweep.run_sweep(spec, args.out, scheduler=args.scheduler, workers=args.workers,
                                 chunk_size=args.chunk_size, progress=not args.no_progress,
                                 keep_models=args.keep_models)
    except (OSError, ValueError) as exc:  # the output folder, the scheduler's address
        return fail(args.command, exc, status=2)
    except sweep.SweepIncomplete as exc:
        return fail(args.command, exc, status=1)
    except KeyboardInterrupt:
        return fail(args.command, f"interrupted; the finished chunks are saved in {args.out}: run the same "
                                  "command again to continue", status=130)
    print(result.summary_table())
    for path in result.ignored_files:
        print(f"note: {path} does not verify (edited, damaged or unreadable: its digest, name or specs do not "
              "match); its results were not used, and its runs in this sweep were trained again")
    print(f"\n{len(result.rows)} runs: trained {result.runs_trained} in {result.chunks_trained} chunks "
          f"({result.seconds:.0f} s), {result.runs_skipped} already done; wrote "
          + ", ".join(str(p) for p in result.paths.values()))
    return 0
