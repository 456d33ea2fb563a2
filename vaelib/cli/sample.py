"""``python -m vaelib sample``: draw points from a trained VAE's generative model into a file."""
from __future__ import annotations

import argparse

from vaelib.cli import _files, fail, positive_int, seed

EXAMPLE = """examples:
  python -m vaelib sample run.ckpt -n 1000 --out samples.npy
  python -m vaelib sample run.ckpt -n 1000 --out samples.csv --seed 7"""


def add_parser(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "sample", help="draw points from a trained VAE into a .npy or .csv file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Draw n points from the generative model of the VAE in a checkpoint: codes\n"
                    "z ~ N(0, I), decoded to the decoder's mean (a Bernoulli decoder's pixel probabilities).\n"
                    "Writes an (n, d) array: .npy, or .csv with one point per line and no header.",
        epilog=EXAMPLE)
    cmd.add_argument("checkpoint", metavar="CKPT",
                     help="a checkpoint written by python -m vaelib train (or vaelib.fit)")
    cmd.add_argument("-n", type=positive_int, required=True, help="number of points to draw")
    cmd.add_argument("--out", required=True, metavar="FILE", help="the file to write: .npy or .csv")
    cmd.add_argument("--seed", type=seed, default=0, help="seed of the codes drawn (default 0)")
    return cmd


def run(args: argparse.Namespace) -> int:
    import torch

    from vaelib.models import load_model

    try:
        out = _files.output_file(args.out, "--out", _files.ARRAY_SUFFIXES)
        model = load_model(args.checkpoint)
        if not callable(getattr(model, "sample", None)):
            raise ValueError(f"{args.checkpoint} holds a model of class {type(model).__name__}, which has no "
                             "sample(n) method to draw points with; train a VAE (--model vae) to sample")
        model.eval()
        points = model.sample(args.n, generator=torch.Generator().manual_seed(args.seed))  # type: ignore[operator]
        _files.write_array(out, points.detach().cpu().numpy())
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        return fail(args.command, exc, status=2)
    print(f"wrote {args.n} points of {points.shape[1]} values each, drawn from the {type(model).__name__} in "
          f"{args.checkpoint}, to {out}")
    return 0
