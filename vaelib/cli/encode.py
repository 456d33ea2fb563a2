"""``python -m vaelib encode``: the codes a trained model gives the rows of a data file."""
from __future__ import annotations

import argparse
from pathlib import Path

from vaelib.cli import add_allow_large_flag, add_import_flag, _data, _files, fail, seed

EXAMPLE = """examples:
  python -m vaelib encode run.ckpt --data data.csv --out codes.npy              # posterior means
  python -m vaelib encode run.ckpt --data data.csv --out codes.csv --sample --seed 1"""


def add_parser(commands) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "encode", help="write the codes of a data file's rows (.npy or .csv)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Encode the rows of a data file (as for train) with the model in a checkpoint and\n"
                    "write one code per row: a VAE's posterior mean by default, or with --sample one draw\n"
                    "z ~ q(z|x) per row; an autoencoder's code. A model trained with --standardize\n"
                    "standardises the rows with its scaling first. Writes .npy, or .csv without a header.",
        epilog=EXAMPLE)
    cmd.add_argument("checkpoint", metavar="CKPT",
                     help="a checkpoint written by python -m vaelib train (or vaelib.fit)")
    cmd.add_argument("--data", required=True, metavar="FILE", help="the rows to encode")
    cmd.add_argument("--out", required=True, metavar="FILE", help="the file to write: .npy or .csv")
    cmd.add_argument("--sample", action="store_true",
                     help="a VAE's code drawn from q(z|x) instead of its mean")
    cmd.add_argument("--seed", type=seed, default=0, help="seed of the codes drawn with --sample (default 0)")
    _data.add_column_flags(cmd, "; default: those train used")
    add_import_flag(cmd)
    add_allow_large_flag(cmd, "encode")
    return cmd


def run(args: argparse.Namespace) -> int:
    try:
        out = _files.output_file(args.out, "--out", _files.ARRAY_SUFFIXES)
        checkpoint, data = Path(args.checkpoint), Path(args.data)
        codes, what = encode(checkpoint, data, _data.flag_selection(args) or _data.recorded_selection(checkpoint),
                             args.sample, args.seed)
        _files.write_array(out, codes.cpu().numpy())
    except (ValueError, TypeError, OSError) as exc:
        return fail(args.command, exc, status=2)
    print(f"wrote {len(codes)} codes of {codes.shape[1]} values each ({what}) of the rows of {data} to {out}")
    return 0


def encode(checkpoint: Path, data: Path, selection: dict, sample: bool, seed: int):
    """The codes of the rows of ``data`` and what they are (in words)."""
    import torch

    model, scaling = _data.trained_model(checkpoint)
    encoder = getattr(model, "encode", None)
    if not callable(encoder):
        raise ValueError(f"{checkpoint} holds a {type(model).__name__}, which has no encode(x) method")
    x = _data.model_input(model, scaling, _data.read_data(data, selection), data, checkpoint)
    with torch.no_grad():
        code = encoder(x)
    if not isinstance(code, tuple):
        if sample:
            raise ValueError(f"--sample draws from a VAE's posterior; the {type(model).__name__} in {checkpoint} "
                             "has a deterministic code")
        return code, "the autoencoder's code"
    mu, logvar = code
    if not sample:
        return mu, "posterior means"
    reparameterize = getattr(model, "reparameterize", None)
    if not callable(reparameterize):
        raise ValueError(f"--sample needs the model's reparameterize(mu, logvar, noise); {type(model).__name__} "
                         "has none")
    noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed), dtype=mu.dtype)
    return reparameterize(mu, logvar, noise), f"one draw from q(z|x) per row, seed {seed}"
