"""``python -m vaelib sample``: draw points from a trained VAE's generative model into a file."""
from __future__ import annotations

import argparse
from pathlib import Path

from vaelib.cli import add_allow_large_flag, add_import_flag, _data, _files, fail, positive_int, seed

EXAMPLE = """examples:
  python -m vaelib sample run.ckpt -n 1000 --out samples.npy
  python -m vaelib sample run.ckpt -n 1000 --out samples.csv --seed 7
  python -m vaelib sample run.ckpt -n 1000 --out noisy.npy --with-noise   # x ~ p(x|z), not its mean"""


def add_parser(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "sample", help="draw points from a trained VAE into a .npy or .csv file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Draw n points from the generative model of the VAE in a checkpoint: codes\n"
                    "z ~ N(0, I), decoded to the decoder's mean (a Bernoulli decoder's pixel probabilities),\n"
                    "or with --with-noise drawn from p(x|z) itself (a Gaussian decoder's variance as evaluate\n"
                    "uses it; 0/1 pixels). A model trained with --standardize gives points in the data's\n"
                    "units. Writes an (n, d) array: .npy, or .csv with one point per line and no header.",
        epilog=EXAMPLE)
    cmd.add_argument("checkpoint", metavar="CKPT",
                     help="a checkpoint written by python -m vaelib train (or vaelib.fit)")
    cmd.add_argument("-n", type=positive_int, required=True, help="number of points to draw")
    cmd.add_argument("--out", required=True, metavar="FILE", help="the file to write: .npy or .csv")
    cmd.add_argument("--seed", type=seed, default=0, help="seed of the codes drawn (default 0)")
    cmd.add_argument("--with-noise", action="store_true",
                     help="draw x ~ p(x|z) instead of returning the decoder's mean")
    add_import_flag(cmd)
    add_allow_large_flag(cmd, "sample")
    return cmd


def run(args: argparse.Namespace) -> int:
    import torch

    try:
        out = _files.output_file(args.out, "--out", _files.ARRAY_SUFFIXES)
        model, scaling = _data.trained_model(Path(args.checkpoint))
        if not callable(getattr(model, "sample", None)):
            raise ValueError(f"{args.checkpoint} holds a model of class {type(model).__name__}, which has no "
                             "sample(n) method to draw points with; train a VAE (--model vae) to sample")
        generator = torch.Generator().manual_seed(args.seed)
        points = model.sample(args.n, generator=generator)  # type: ignore[operator]
        noise = ""
        if args.with_noise:
            points, noise = with_noise(model, Path(args.checkpoint), points, generator)
        if scaling is not None:
            points = scaling.invert(points)
        _files.write_array(out, points.detach().cpu().numpy())
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        return fail(args.command, exc, status=2)
    print(f"wrote {args.n} points of {points.shape[1]} values each, drawn from the {type(model).__name__} in "
          f"{args.checkpoint}{noise}, to {out}")
    return 0


def with_noise(model, checkpoint: Path, means, generator):
    """Points drawn from p(x|z) given the decoder's means, and a note of the noise drawn."""
    import torch

    kind = getattr(model, "decoder_kind", None)
    if kind == "bernoulli":
        return torch.bernoulli(means, generator=generator), " (0/1 values drawn from its Bernoulli decoder)"
    if kind != "gaussian":
        raise ValueError(f"--with-noise needs a VAE's Gaussian or Bernoulli decoder; {type(model).__name__} has none")
    variance, source = _data.decoder_variance(checkpoint, model)
    noise = torch.randn(means.shape, generator=generator, dtype=means.dtype)
    return means + variance ** 0.5 * noise, f" (with Gaussian noise of variance {variance:.4g}: {source})"
